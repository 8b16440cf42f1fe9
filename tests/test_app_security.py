"""The app beyond this machine: the exposure warning, the read-only share mode, and the confirmation an
endpoint only the project names needs before the session sends it anything (issue 12 item 9)."""

from __future__ import annotations

import pytest
from streamlit import config as st_config

from studio.widgets import PAGE_DATA as DATA
from studio.widgets import PAGE_PROJECT as PROJECT
from studio.widgets import PAGE_SYNTH as SYNTH
from tests.apptest import new_app, open_example, run, texts, wait_for_job
from tests.fakes import ScriptedLLM
from treesynth_core.data.export import escape_markdown
from treesynth_core.errors import EndpointError
from treesynth_core.jobs import background as jobs
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.store import Project
from treesynth_core.store.samples import NewSample

FOREIGN = "https://llm.example.net/v1"


@pytest.fixture
def address():
    """Set Streamlit's ``server.address`` for the test (as ``--server.address`` would)."""
    before = st_config.get_option("server.address")

    def set_to(value: str) -> None:
        st_config.set_option("server.address", value)

    yield set_to
    st_config.set_option("server.address", before)


@pytest.mark.parametrize(
    ("bound", "reachable"),
    [("127.0.0.1", False), ("localhost", False), ("::1", False), ("", True), ("0.0.0.0", True), ("10.1.2.3", True)],
)
def test_exposed_addresses(bound, reachable):
    from studio.security import exposed

    assert exposed(bound) is reachable


def test_loopback_shows_no_exposure_warning(projects, address):
    address("127.0.0.1")
    assert "listens on" not in texts(new_app())


def test_beyond_loopback_every_page_warns_what_is_exposed(projects, address):
    address("0.0.0.0")
    at = open_example(new_app())
    warning = "listens on 0.0.0.0, without a login"
    assert warning in texts(at) and "run paid LLM jobs" in texts(at)
    at.switch_page(DATA)
    assert warning in texts(run(at))


def test_read_only_mode_hides_paths_settings_and_jobs(projects, address, monkeypatch):
    address("0.0.0.0")
    monkeypatch.setenv("TREESYNTH_READ_ONLY", "1")
    at = new_app()
    assert "Read-only share mode" in texts(at) and "read the open projects" in texts(at)
    assert "open.path" not in [w.key for w in at.text_input]
    at = open_example(at)
    at.switch_page(PROJECT)
    run(at)
    assert at.button(key="settings.save").disabled and at.button(key="settings.test").disabled
    with Project.open(projects / "example-gsm8k_math") as project:  # so the Decontaminate tab shows its form
        project.add_samples([NewSample(leaf_id="", key="k", instruction="a sample", path=[], sample_set="mine")])
    at.switch_page(DATA)
    shown = [w.key for w in run(at).text_input]
    assert (
        "data.path" not in shown
        and "data.decon.path" not in shown
        and "data.decon.set" in [s.key for s in at.selectbox]
    )
    at.switch_page(SYNTH)
    run(at)
    at.button(key="synth.start").click()
    run(run(at))  # the notice shows on the rerun after the click
    assert "shared read-only: jobs are off" in texts(at)
    with Project.open(projects / "example-gsm8k_math") as project:
        assert jobs.latest_job(project) is None


def test_an_endpoint_only_the_project_names_needs_a_click_once_per_session(projects, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-mine-123")
    folder = projects / "example-gsm8k_math"
    open_example(new_app())  # creates the project
    with Project.open(folder) as project:
        project.save_settings(BackendSettings(backend="openai", model="m", base_url=FOREIGN))
    at = new_app(project="example-gsm8k_math")
    assert "llm.example.net" in texts(at) and "not chosen on this machine" in texts(at)
    at.switch_page(SYNTH)
    run(at)
    at.button(key="synth.start").click()
    run(at)
    with Project.open(folder) as project:
        assert jobs.latest_job(project) is None  # nothing sent before the click
    at.button(key="security.trust").click()
    run(at)
    assert escape_markdown(f"Sending requests to {FOREIGN} with the key in $OPENAI_API_KEY") in texts(at)
    at.button(key="synth.start").click()
    run(at)
    assert wait_for_job(folder).status == "done"  # the fake LLM answered


class FailingLLM(ScriptedLLM):
    """An endpoint whose error text carries markdown: a remote image, a link, raw HTML."""

    async def complete(self, request):
        raise EndpointError(f"server said: {HOSTILE}")


HOSTILE = "![x](http://evil.example/p.png) [click](javascript:alert(1)) <img src=http://evil.example/q.png>"


def test_a_server_error_in_the_app_shows_as_text(projects):
    jobs.set_llm_factory(lambda settings: FailingLLM())
    at = open_example(new_app())
    at.switch_page(SYNTH)
    run(at)
    at.button(key="synth.start").click()
    run(at)
    assert wait_for_job(projects / "example-gsm8k_math").status == "failed"
    errors = [e.value for e in run(at).error]
    assert any(escape_markdown(HOSTILE) in e for e in errors), errors
