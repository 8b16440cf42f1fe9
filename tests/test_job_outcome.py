"""How a job ended, in one line (:mod:`treesynth_core.jobs.outcome`): from its stored outcome, never its
last progress line; and every way a job ends (the app's background jobs, a command's run lease)
stores that outcome."""

from __future__ import annotations

import pytest

from tests.fakes import ScriptedLLM
from treesynth_core.errors import Cancelled, TreeSynthError
from treesynth_core.jobs import background as jobs
from treesynth_core.jobs.lease import run_lease
from treesynth_core.jobs.outcome import job_end, kept_text, took
from treesynth_core.store import JobRecord, Project
from treesynth_core.store.runs import RunCounts

T0, T1 = "2026-01-01T00:00:00+00:00", "2026-01-01T00:03:10+00:00"


def record(status: str, **fields: object) -> JobRecord:
    base: dict = {
        "id": "j1",
        "kind": "synth",
        "params": {},
        "status": status,
        "done": 3,
        "total": 24,
        "message": "done \u2014 embedding the samples\u2026",  # a progress line, never an outcome
        "error": None,
        "started": T0,
        "finished": T1,
        "run_id": "r1",
    }
    return JobRecord(**(base | fields))  # type: ignore[arg-type]


def test_a_finished_job_says_its_result_and_time_never_its_progress_line() -> None:
    end = job_end(record("done", result="added 120 samples, 0 duplicates dropped (130 LLM calls, 0 cached)"))
    assert end is not None and end.status == "done"
    assert end.text == "finished in 3 min 10 s: added 120 samples, 0 duplicates dropped (130 LLM calls, 0 cached)"
    partial = job_end(
        record("done", result="added 12 samples; partly failed: 12 of 16"), RunCounts(19, 12, None, "partial")
    )
    assert partial is not None and partial.status == "partial"  # done, but shown as a warning, not a success
    assert job_end(record("done"), RunCounts(19, 16, None, "ok")).status == "done"  # type: ignore[union-attr]
    older = job_end(record("done"))  # a job from before outcomes were stored: no progress text instead
    assert older is not None and older.text == "finished in 3 min 10 s." and "embedding" not in older.text


def test_a_stopped_job_counts_what_its_run_made() -> None:
    stopped = record("cancelled", result="synthesis stopped; samples made so far are saved")
    end = job_end(stopped, RunCounts(calls=12, samples=37))
    assert end is not None and end.status == "cancelled"
    assert end.text == "stopped after 12 LLM calls, 37 samples (3 min 10 s): samples made so far are saved."
    early = job_end(stopped, RunCounts(calls=0, samples=0))
    assert early is not None and early.text.startswith("stopped before its first reply (3 min 10 s): ")
    no_run = job_end(record("cancelled", kind="import", run_id=None, result="import stopped: nothing was imported"))
    assert no_run is not None and no_run.text == "stopped after 3 min 10 s: nothing was imported."


def test_an_interrupted_job_ends_at_its_last_beat_and_a_failed_one_says_its_error() -> None:
    beat = 1767225600.0 + 65  # T0 + 65 s
    end = job_end(record("interrupted", finished=None, heartbeat=beat), RunCounts(calls=1, samples=0))
    assert end is not None and end.text.startswith("was interrupted after 1 LLM call (1 min 5 s): ")
    failed = job_end(record("failed", error="no API key for https://api.example.com/v1"))
    assert failed is not None and failed.text == "failed: no API key for https://api.example.com/v1"
    assert job_end(record("running")) is None


def test_times_and_stop_messages_read_as_words() -> None:
    assert [took(s) for s in (0.4, 56, 60, 190, 3600, 7500)] == [
        "0 s",
        "56 s",
        "1 min",
        "3 min 10 s",
        "1 h",
        "2 h 5 min",
    ]
    assert kept_text("growth stopped; finished nodes are saved") == "finished nodes are saved"
    assert kept_text("import stopped: nothing was imported") == "nothing was imported"
    assert kept_text("stopped by hand") == "stopped by hand"


def test_a_commands_run_lease_stores_the_outcome_it_set_not_its_progress(project: Project) -> None:
    with run_lease(project, "route", {}) as beat:
        beat.report(10, 20, "embedding the samples (stored for next time)")
        beat.result = "routed 20 of 20: 18 in leaves, 2 fit no value, 0 errors (no LLM calls)"
    job = project.jobs(limit=1)[0]
    assert (
        job.status == "done" and job.result == "routed 20 of 20: 18 in leaves, 2 fit no value, 0 errors (no LLM calls)"
    )
    with pytest.raises(Cancelled, match="routing stopped"), run_lease(project, "route", {}) as beat:
        beat.report(5, 20, "embedding the samples")
        raise Cancelled("routing stopped; finished routes are saved")
    job = project.jobs(limit=1)[0]
    assert job.status == "cancelled" and job.result == "routing stopped; finished routes are saved"
    with pytest.raises(TreeSynthError, match="broke"), run_lease(project, "route", {}) as beat:
        beat.report(5, 20, "embedding the samples")
        raise TreeSynthError("broke")
    job = project.jobs(limit=1)[0]
    assert job.status == "failed" and job.result is None and job.error == "broke"


def test_a_background_job_stores_its_summary_and_who_started_it_where(project: Project) -> None:
    jobs.set_llm_factory(lambda settings: ScriptedLLM())
    try:
        params = {"max_depth": 1, "pivots": 3, "auto_approve": True}
        started = jobs.start_job(project.path, "grow", params, starter="0a1b2c3d", origin="tree")
        assert (started.starter, started.origin) == ("0a1b2c3d", "tree")
        final = jobs.wait_job(project.path, started.id, timeout=60)
    finally:
        jobs.set_llm_factory(None)
    assert final.status == "done" and final.result is not None and final.result.startswith("expanded 1 node")
    assert final.message == final.result  # the last line is the outcome too, not the last progress line
    end = job_end(final)
    assert end is not None and end.text.startswith("finished in ") and end.text.endswith(final.result)
