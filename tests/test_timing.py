"""Time estimates from the project's own call log (:mod:`treesynth_core.llm.timing`)."""

from __future__ import annotations

import pytest

from treesynth_core.llm.recording import CallRecord
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.llm.timing import (
    PRIOR_CALL_S,
    TimeRange,
    call_time,
    calls_text,
    estimate_time,
    logged_model,
    per_call,
    quartiles,
)
from treesynth_core.store import Project

EMBEDDED = BackendSettings()
MODEL = logged_model(EMBEDDED)


def log(project: Project, seconds: list[float], *, purpose: str = "synth", **fields: object) -> None:
    defaults: dict = {"backend": "embedded", "model": MODEL, "purpose": purpose}
    for s in seconds:
        project.log_call(CallRecord(latency_s=s, **(defaults | fields)))  # type: ignore[arg-type]


def test_an_empty_log_gives_the_backends_prior_and_says_it_is_a_guess(project: Project) -> None:
    took = per_call(project, EMBEDDED, ("synth",))
    assert (took.low_s, took.high_s) == PRIOR_CALL_S["embedded"]
    assert took.guess and took.basis == "no calls yet: a guess"


def test_median_and_interquartile_range_of_recent_calls(project: Project) -> None:
    log(project, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 100.0])  # one outlier does not move the range
    took = per_call(project, EMBEDDED, ("synth",))
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 100.0]) == (3.0, 5.0, 7.0)
    assert (took.low_s, took.high_s) == (3.0, 7.0)
    assert took.calls == 9 and took.basis == "from 9 earlier synth calls"


def test_cached_failed_other_model_and_other_backend_calls_are_left_out(project: Project) -> None:
    log(project, [10.0, 10.0, 10.0, 10.0])
    log(project, [0.0, 0.0], cached=True)
    log(project, [99.0], error="invalid reply: no JSON")
    log(project, [99.0], model="another-model")
    log(project, [99.0], backend="openai")
    took = per_call(project, EMBEDDED, ("synth",))
    assert took.calls == 4 and took.low_s == pytest.approx(8.0) and took.high_s == pytest.approx(12.5)


def test_calls_of_other_purposes_stand_in_when_none_match(project: Project) -> None:
    log(project, [2.0, 2.0, 2.0], purpose="route")
    took = per_call(project, EMBEDDED, ("synth",))
    assert took.calls == 3 and took.basis == "from 3 earlier calls of other kinds"
    log(project, [20.0], purpose="synth")
    assert per_call(project, EMBEDDED, ("synth",)).calls == 1  # the same purpose wins once it exists


def test_only_recent_calls_count(project: Project) -> None:
    log(project, [100.0] * 60)
    log(project, [1.0] * 50)  # newer
    assert per_call(project, EMBEDDED, ("synth",)).high_s == pytest.approx(1.25)


def test_a_run_scales_by_the_calls_that_run_at_once(project: Project) -> None:
    log(project, [4.0] * 8)
    alone = estimate_time(project, EMBEDDED, ("synth",), 10)
    assert (alone.low_s, alone.high_s) == pytest.approx((32.0, 50.0))  # 10 calls one at a time
    endpoint = BackendSettings(backend="openai", model="m", base_url="http://127.0.0.1:9/v1", concurrency=16)
    log(project, [4.0] * 8, backend="openai", model="m")
    parallel = estimate_time(project, endpoint, ("synth",), 10)
    assert (parallel.low_s, parallel.high_s) == pytest.approx((6.4, 10.0))  # 8 at once: two rounds
    assert estimate_time(project, EMBEDDED, ("synth",), 0).high_s == 0


def test_ranges_read_as_words() -> None:
    assert TimeRange(180, 300, "from 12 earlier calls", 12).text() == "3\u20135 min, from 12 earlier calls"
    assert TimeRange(50, 120, "x").span() == "50 s\u20132 min"
    assert TimeRange(40, 40.2, "x").span() == "about 40 s"
    assert call_time([5.0], "embedded").basis == "from 1 earlier call"


def test_captions_count_calls_and_gap_filling_counts_its_candidate_calls() -> None:
    from treesynth_core.generate.gap_options import GapOptions

    took = TimeRange(180, 300, "from 12 earlier calls", 12)
    assert calls_text(12, took) == "About 12 LLM calls: 3\u20135 min, from 12 earlier calls."
    assert calls_text(1, took, at_most=True).startswith("Up to 1 LLM call:")
    assert GapOptions(rounds=3, per_round=20, per_call=5).candidate_calls() == 12
    assert GapOptions(rounds=1, per_round=21, per_call=5).candidate_calls() == 5


def test_time_left_follows_the_runs_own_pace(project: Project) -> None:
    from treesynth_core.llm.timing import time_left

    log(project, [10.0] * 8, purpose="route")
    left = time_left(project, EMBEDDED, "route", calls=30, done=10, total=40)  # 3 calls a sample, 30 to go
    assert left is not None and (left.low_s, left.high_s) == pytest.approx((720.0, 1125.0))
    assert time_left(project, EMBEDDED, "route", calls=0, done=0, total=40) is None  # no pace yet
    assert time_left(project, EMBEDDED, "route", calls=30, done=40, total=40) is None  # nothing left
    assert time_left(project, EMBEDDED, "import", calls=30, done=10, total=40) is None  # no LLM calls
