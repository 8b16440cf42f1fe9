"""The Synthesize page's "Run as a batch job" with AppTest, against the fake Files/Batches server:
prepare (files, requests, cost at the batch price) -> submit -> status -> collect, two rounds, then
Start synthesis completes from the collected replies with no online call; the status table survives
an app restart; the key is never shown; read-only mode hides the actions."""

from __future__ import annotations

import pandas as pd
import pytest

from studio.widgets import PAGE_SYNTH, md
from tests.apptest import new_app, run, texts
from tests.helpers_batch import FakeBatchServer, make_project
from tests.helpers_http import FakeOpenAIServer
from treesynth_core.jobs import background as jobs
from treesynth_core.llm.openai_compat import OpenAICompatLLM
from treesynth_core.store import Project

SECRET = "sk-test-secret-0123456789"


@pytest.fixture
def server(projects, monkeypatch):
    """The project ``p`` on the openai backend, pointed (by the environment) at a fake batch server;
    jobs use the real openai backend (the fake answers no chat completion: an online call fails)."""
    make_project(projects / "p")
    with FakeBatchServer() as fake:
        monkeypatch.setenv("TREESYNTH_LLM", "openai")
        monkeypatch.setenv("TREESYNTH_MODEL", "gpt-4o-mini")
        monkeypatch.setenv("TREESYNTH_BASE_URL", fake.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        jobs.set_llm_factory(lambda settings: OpenAICompatLLM(settings))
        yield fake


def synth_page(per_leaf: int = 4):
    at = new_app(project="p")
    at.switch_page(PAGE_SYNTH)
    run(at)
    at.number_input(key="synth.per_leaf").set_value(per_leaf)
    at.number_input(key="synth.per_call").set_value(2)
    at.radio(key="synth.kind").set_value("pair")
    return run(at)


def click(at, key: str):
    at.button(key=key).click()
    return run(at)


def table(at) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "batch" in d.value.columns)


def one_round(at, requests: int):
    at = click(at, "batch.prepare")
    assert f"Prepared {requests} requests in 1 file" in texts(at), texts(at)
    assert "at the batch price" in texts(at)
    assert list(table(at)["status"])[-1] == "prepared"
    at = click(at, "batch.submit")
    assert "Submitted 1 batch to" in texts(at)
    for _ in range(3):  # the fake moves a batch one status on per look
        at = click(at, "batch.refresh")
    assert list(table(at)["status"])[-1] == "completed"
    at = click(at, "batch.collect")
    assert f"Collected {requests} replies" in texts(at)
    assert list(table(at)["status"])[-1] == "collected"
    return at


def test_prepare_submit_status_collect_then_start_makes_no_online_call(server, projects):
    at = synth_page()
    assert f"Batches go to {md(server.base_url)}" in texts(at)  # where batches go, before anything is sent
    assert "At the batch price this synthesis costs about" in texts(at)  # before preparing
    at = one_round(at, 4)  # the samples
    at = one_round(at, 8)  # then a response for each; collect makes the samples
    assert "Made 8 samples from them; 0 leaves wait for the next round." in texts(at)
    assert SECRET not in texts(at)
    buttons = {b.key: b for b in at.button}
    assert buttons["batch.prepare"].disabled and buttons["synth.start"].disabled  # nothing left to do
    assert [r for r in server.state.requests if r[1].endswith("/chat/completions")] == []
    with Project.open(projects / "p") as project:
        samples = project.samples()
    assert len(samples) == 8 and all(s.response for s in samples)

    restarted = synth_page()  # a fresh app reads the batches from the project
    assert list(table(restarted)["status"]) == ["collected", "collected"]
    assert list(table(restarted)["requests"]) == [4, 8]


def test_read_only_shows_the_batches_without_actions(server, monkeypatch):
    at = synth_page()
    at = click(at, "batch.prepare")
    monkeypatch.setenv("TREESYNTH_READ_ONLY", "1")
    shared = synth_page()
    assert list(table(shared)["status"]) == ["prepared"]
    keys = {b.key for b in shared.button}
    assert not keys & {"batch.prepare", "batch.submit", "batch.refresh", "batch.collect"}


def test_the_embedded_backend_says_batches_need_an_openai_model(projects):
    make_project(projects / "p")
    at = synth_page()
    assert "choose the openai backend and a model" in texts(at)
    assert not {b.key for b in at.button} & {"batch.prepare"}


def test_a_server_without_batch_endpoints_is_one_error_line(projects, monkeypatch):
    make_project(projects / "p")
    with FakeOpenAIServer() as plain:
        monkeypatch.setenv("TREESYNTH_LLM", "openai")
        monkeypatch.setenv("TREESYNTH_MODEL", "gpt-4o-mini")
        monkeypatch.setenv("TREESYNTH_BASE_URL", plain.base_url)
        at = click(synth_page(), "batch.prepare")
        at = click(at, "batch.submit")
    [error] = [e.value for e in at.error]
    assert "has no Files/Batches endpoints" in error
    assert list(table(at)["status"]) == ["prepared"]  # nothing sent: submit again later
