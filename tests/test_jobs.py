"""Background jobs: one at a time, progress persisted, cancel, failure, interrupted and resumed."""

from __future__ import annotations

import asyncio
import time
import typing

import pytest

from tests.fakes import ScriptedLLM
from treesynth_core.errors import EndpointError, TreeSynthError
from treesynth_core.jobs import background as jobs
from treesynth_core.store import Project
from treesynth_core.tree import model as T


@pytest.fixture
def path(tmp_path):
    Project.create(tmp_path / "p", task="Math word problems").close()
    return tmp_path / "p"


@pytest.fixture
def fake():
    made: list[ScriptedLLM] = []

    def factory(settings):
        llm = ScriptedLLM(delay=0.01)
        made.append(llm)
        return llm

    jobs.set_llm_factory(factory)
    yield made
    jobs.set_llm_factory(None)


def test_grow_job_runs_in_background_and_records_progress(path, fake):
    state = jobs.start_job(path, "grow", {"max_depth": 2, "pivots": 3, "auto_approve": True})
    assert state.status == "running" and state.active
    final = jobs.wait_job(path, state.id, timeout=30)
    assert final.status == "done", final.error
    assert final.done == final.total and final.done > 1
    assert "expanded" in final.message and final.run_id
    with Project.open(path) as project:
        assert project.tree().levels() == 2
        assert jobs.latest_job(project, "grow").id == state.id


def test_second_start_returns_the_running_job(path, fake):
    first = jobs.start_job(path, "grow", {"max_depth": 3, "pivots": 3, "auto_approve": True})
    second = jobs.start_job(path, "synth", {"per_leaf": 2})
    assert second.id == first.id and second.kind == "grow"
    jobs.wait_job(path, first.id, timeout=30)


def test_cancel_stops_a_job(path, fake):
    state = jobs.start_job(path, "grow", {"max_depth": 4, "pivots": 3, "auto_approve": True})
    with Project.open(path) as project:
        jobs.cancel_job(project, state.id)
    final = jobs.wait_job(path, state.id, timeout=30)
    assert final.status == "cancelled"
    with Project.open(path) as project:
        assert T.problems(project.tree()) == []
        assert project.stats().runs[0].status == "cancelled"


def test_failed_job_reports_the_error(path):
    def broken(settings):
        llm = ScriptedLLM()
        llm.enqueue("pivots", [EndpointError("could not reach http://127.0.0.1:9/v1 after 6 attempts")])
        return llm

    jobs.set_llm_factory(broken)
    try:
        state = jobs.start_job(path, "grow", {"max_depth": 1})
        final = jobs.wait_job(path, state.id, timeout=30)
    finally:
        jobs.set_llm_factory(None)
    assert final.status == "failed" and "127.0.0.1:9" in final.error


def test_stale_job_reads_interrupted_and_a_new_one_can_start(path, fake):
    with Project.open(path) as project:
        row, created = project.claim_job("grow", {}, stale_after_s=jobs.STALE_AFTER_S)
        assert created
    # simulate a dead process: heartbeat far in the past
    import sqlite3

    conn = sqlite3.connect(path / "treesynth.db")
    conn.execute("UPDATE jobs SET heartbeat = ?", (time.time() - 3600,))
    conn.commit()
    conn.close()
    with Project.open(path) as project:
        assert jobs.get_job(project, row.id).status == "interrupted"
        assert jobs.active_job(project) is None
    state = jobs.start_job(path, "grow", {"max_depth": 1, "pivots": 3})
    assert state.id != row.id
    assert jobs.wait_job(path, state.id, timeout=30).status == "done"


def test_synth_job_and_unknown_options(path, fake):
    with Project.open(path) as project:
        project.apply(
            "build",
            lambda t: T.approve(
                T.attach_split(t, t.root_id, criterion="Operation", values=["a", "b"], provenance=T.Provenance("llm")),
                [],
            ),
        )
        project.apply("approve", lambda t: T.approve(t, [k.id for k in t.children(t.root_id)]))
    state = jobs.start_job(path, "synth", {"per_leaf": 3, "per_call": 3})
    final = jobs.wait_job(path, state.id, timeout=30)
    assert final.status == "done" and "added 6 samples" in final.message
    with pytest.raises(TreeSynthError, match="unknown synth options"):
        jobs.start_job(path, "synth", {"per_leaf": 3, "bogus": 1})


def test_every_job_kind_has_a_spec():
    from treesynth_core.jobs import specs

    assert set(specs.SPECS) == set(typing.get_args(specs.Kind))
    with pytest.raises(TreeSynthError, match="unknown job kind"):
        specs.job_spec("bake")
    options = specs.job_spec("route").parse({"sample_set": "data", "agreement_n": 5.0, "extra": 1})
    assert options == specs.RouteOptions(sample_set="data", agreement_n=5)  # JSON numbers coerced, extras ignored
    grow = specs.job_spec("grow").parse({"max_depth": 3.0, "only": ["a", "b"], "max_calls": 5})
    assert grow.max_depth == 3 and isinstance(grow.max_depth, int) and grow.only == ("a", "b")
    with pytest.raises(TreeSynthError, match="bad baseline options"):
        specs.job_spec("baseline").parse({"n": "many"})


def test_the_cli_reads_job_defaults_without_numpy():
    import subprocess
    import sys

    code = "import sys, treesynth_core.cli.app, treesynth_core.jobs.specs; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_grow_summary_counts_in_words():
    from types import SimpleNamespace

    from treesynth_core.jobs.specs import grow_summary

    one = grow_summary(
        SimpleNamespace(expanded=1, children=1), typing.cast(typing.Any, SimpleNamespace(calls=1, cached=0))
    )
    assert one == "expanded 1 node into 1 child (1 LLM call, 0 cached)"
    many = grow_summary(
        SimpleNamespace(expanded=3, children=12), typing.cast(typing.Any, SimpleNamespace(calls=9, cached=2))
    )
    assert many == "expanded 3 nodes into 12 children (9 LLM calls, 2 cached)"


def test_a_job_whose_project_folder_is_deleted_ends_quietly(path, monkeypatch):
    """Issue 13 item 6: its writes are refused (ProjectGone), and the thread ends without an
    unhandled error when it cannot even record how it ended."""
    import shutil
    import threading

    gate, asked = threading.Event(), threading.Event()

    class Gated(ScriptedLLM):
        async def complete(self, request):
            asked.set()
            while not gate.is_set():
                await asyncio.sleep(0.02)
            return await super().complete(request)

    crashes: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashes.append(args.exc_value))
    jobs.set_llm_factory(lambda settings: Gated())
    try:
        state = jobs.start_job(path, "grow", {"max_depth": 2, "pivots": 3, "auto_approve": True})
        thread = next(t for t in threading.enumerate() if t.name.endswith(state.id))
        assert asked.wait(timeout=30)  # the job is running, its first call waiting
        shutil.rmtree(path)
        gate.set()
        thread.join(timeout=30)
        assert not thread.is_alive() and crashes == []
    finally:
        jobs.set_llm_factory(None)


def test_stop_sends_no_further_call_not_even_a_reask(path):
    """The walk found Stop waiting on the embedded model for a re-ask (minutes a call): once the
    cancel flag is set, the run's next call raises Cancelled before it reaches the backend."""
    import threading

    from treesynth_core.errors import Cancelled
    from treesynth_core.jobs.runs import run_llm_work
    from treesynth_core.llm.base import ChatRequest
    from treesynth_core.llm.settings import BackendSettings

    backend = ScriptedLLM()
    cancel = threading.Event()

    async def work(llm, stop):
        await llm.complete(ChatRequest.chat(None, "first question"))
        stop.set()  # the user presses Stop while this call is in flight
        await llm.complete(ChatRequest.chat(None, "the re-ask"))

    with Project.open(path) as project:
        with pytest.raises(Cancelled, match="no further LLM call was sent"):
            run_llm_work(
                project, "synth", {}, BackendSettings(), work, cancel=cancel, llm_factory=lambda settings: backend
            )
        assert backend.calls() == 1
        assert [r.status for r in project.stats().runs] == ["cancelled"]
