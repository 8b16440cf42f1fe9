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


def test_cached_other_model_and_other_backend_calls_are_left_out(project: Project) -> None:
    log(project, [10.0, 10.0, 10.0, 10.0])
    log(project, [0.0, 0.0], cached=True)
    log(project, [99.0], error="invalid reply: no JSON")  # the newest: no usable reply after it yet
    log(project, [99.0], model="another-model")
    log(project, [99.0], backend="openai")
    took = per_call(project, EMBEDDED, ("synth",))
    assert took.calls == 4 and took.low_s == pytest.approx(8.0) and took.high_s == pytest.approx(12.5)


def test_failed_calls_count_toward_the_next_usable_reply(project: Project) -> None:
    """A call cut off at its token limit (or refused) took time the run spends before it has a reply
    it keeps: the estimate counts it, so a model that fails half its calls is not estimated at its
    good calls' pace (walking the app: 2-9 s calls between 30-50 s cut-off ones)."""
    log(project, [3.0])
    log(project, [35.0, 40.0], error="reply cut off at the token limit")
    log(project, [5.0])
    log(project, [20.0], error="cancelled")  # stopped by a person: not the model's time
    log(project, [4.0])
    assert project.call_latencies("embedded", MODEL, ("synth",)) == [4.0, 80.0, 3.0]  # newest first


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


def test_while_the_first_reply_is_out_the_estimate_counts_down_from_the_wait() -> None:
    from treesynth_core.llm.timing import waiting_reply

    guess = TimeRange(6.0, 15.0, "no calls yet: a guess")

    def left(waited: float) -> tuple[float, float]:
        took = waiting_reply(guess, 10, 1, waited)
        return took.low_s, took.high_s

    assert left(0) == pytest.approx((60.0, 150.0))  # ten calls one at a time: the plain estimate
    assert left(4) == pytest.approx((56.0, 146.0))  # counted down by the wait
    assert left(10) == pytest.approx((54.0, 140.0))  # the low end stops at the nine calls still to come
    assert left(40) == pytest.approx((54.0, 360.0))  # a wait past one call's upper end: calls are slower
    assert waiting_reply(guess, 10, 1, 40).basis == "first reply pending 40 s"
    assert waiting_reply(guess, 16, 8, 0).high_s == pytest.approx(30.0)  # two rounds of 8 at once
    assert waiting_reply(guess, 0, 1, 5).high_s == 0


def test_once_a_run_has_replies_its_own_call_times_set_the_pace(project: Project) -> None:
    from treesynth_core.llm.timing import run_left

    log(project, [2.0] * 20)  # earlier runs: fast
    run_id = project.start_run("synth", {})
    assert run_left(project, EMBEDDED, ("synth",), 10, run_id=run_id).basis == "from 20 earlier synth calls"
    log(project, [30.0], run_id=run_id)  # this run's first reply took 30 s
    took = run_left(project, EMBEDDED, ("synth",), 10, run_id=run_id)
    assert took.basis == "from this run's 1 call" and (took.low_s, took.high_s) == pytest.approx((240.0, 375.0))
    waiting = run_left(project, EMBEDDED, ("synth",), 10, run_id=run_id, waited_s=1.0)
    assert waiting.basis == "first reply pending 1 s"


def test_a_late_reply_stretches_the_estimate_and_says_so() -> None:
    """Between replies the estimate counts down by the wait since the last one; a reply later than
    one call's upper end says so and stretches the upper end, so "13–41 s left" cannot stand still
    for four minutes while a call runs long."""
    from treesynth_core.llm.timing import waiting_reply

    pace = TimeRange(6.0, 15.0, "from this run's 8 calls", calls=8)
    soon = waiting_reply(pace, 4, 1, 5.0, first=False)
    assert (soon.low_s, soon.high_s) == pytest.approx((19.0, 55.0)) and soon.pending == ""
    assert soon.basis == "from this run's 8 calls"  # not late: the run's own pace, nothing to add
    late = waiting_reply(pace, 4, 1, 240.0, first=False)
    assert late.pending == "next reply pending 4 min" and late.high_s == pytest.approx(3 * 240.0)
    assert waiting_reply(pace, 4, 1, 1.0).pending == "first reply pending 1 s"  # the first always says


def test_a_metric_card_gets_the_range_in_one_short_unit() -> None:
    assert TimeRange(360, 840, "x").short() == "6\u201314 min"
    assert TimeRange(72, 180, "x").short() == "1\u20133 min"  # "72 s–3 min" does not fit a card
    assert TimeRange(20, 100, "x").short() == "<2 min"
    assert TimeRange(40, 40.2, "x").short() == "~40 s"
    assert TimeRange(50 * 60, 2 * 3600, "x").short() == "0.8\u20132.0 h"
    assert TimeRange(12, 45, "x").short() == "12\u201345 s"
    assert TimeRange(88 * 60, 5400, "x").short() == "~1.5 h"
