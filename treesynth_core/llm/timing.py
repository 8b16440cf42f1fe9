"""How long LLM calls take, from evidence: the project's own call log.

Every estimate of time the app and the CLI show comes from :func:`estimate_time`: the median and
inter-quartile range of this project's recent real calls (not cached, not failed) of the same
purpose on the same backend and model, times the calls of the run, divided by the calls that
usefully run at once. With no such calls it falls back to the same backend and model's calls of
other purposes, and with none at all to a prior per backend, which it calls a guess. Estimates are
ranges (:class:`TimeRange`), never points: ``3–5 min, from 12 earlier calls``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .pricing import duration
from .settings import BackendSettings

#: Seconds per call (low, high) assumed when the project has no calls on this backend and model:
#: the embedded SmolLM2-135M on a 2-core CPU writes a sample call in 6–15 s (issue 13); an
#: endpoint answers in seconds.
PRIOR_CALL_S: dict[str, tuple[float, float]] = {"embedded": (6.0, 15.0), "openai": (1.0, 6.0)}
#: Recent calls the statistics read (newer calls say more about the machine and model now).
RECENT_CALLS = 50
#: Calls an endpoint usefully runs at once, at most (more mostly queue at the server).
MAX_USEFUL_PARALLEL = 8
#: With few calls the quartiles say little: the range spans at least this factor around the median.
MIN_SPREAD = (0.8, 1.25)

#: The purposes (``ChatRequest.meta["purpose"]``) whose calls predict each kind of work.
SYNTH_PURPOSES = ("synth",)
RESPONSE_PURPOSES = ("response",)
GAP_PURPOSES = ("gaps",)
ROUTE_PURPOSES = ("route",)
CONCEPT_PURPOSES = ("concepts",)
QUESTION_PURPOSES = ("questions",)

#: The calls each job kind makes, by purpose (jobs not named here make none, or too many kinds to say).
JOB_PURPOSES: dict[str, tuple[str, ...]] = {
    "synth": SYNTH_PURPOSES + RESPONSE_PURPOSES,
    "baseline": SYNTH_PURPOSES + RESPONSE_PURPOSES,
    "balance": SYNTH_PURPOSES + RESPONSE_PURPOSES,
    "fill-gaps": GAP_PURPOSES + RESPONSE_PURPOSES,
    "route": ROUTE_PURPOSES,
    "concepts-extract": CONCEPT_PURPOSES,
    "concepts-synth": QUESTION_PURPOSES + RESPONSE_PURPOSES,
}


@dataclass(frozen=True)
class CallsLeft:
    """The calls a running run still has to make, and their purposes (what its page knows of them)."""

    purposes: tuple[str, ...]
    calls: int


def synth_purposes(responses: bool) -> tuple[str, ...]:
    """The call purposes a synthesis makes: instructions, and responses when it writes pairs."""
    return SYNTH_PURPOSES + (RESPONSE_PURPOSES if responses else ())


class CallLog(Protocol):
    """What the estimate reads from a store (the project implements it)."""

    def call_latencies(
        self,
        backend: str,
        model: str,
        purposes: Sequence[str] | None = None,
        limit: int = RECENT_CALLS,
        run_id: str | None = None,
    ) -> list[float]: ...


@dataclass(frozen=True)
class TimeRange:
    """A time between ``low_s`` and ``high_s`` seconds, and what it rests on (``basis``: ``from 12
    earlier calls``, ``no calls yet: a guess``). ``calls`` counts the logged calls behind it (0 for
    a guess)."""

    low_s: float
    high_s: float
    basis: str
    calls: int = 0
    #: What a running estimate waits on, when it is worth saying: ``first reply pending 40 s``, or
    #: ``next reply pending 4 min`` once a reply is later than one call takes ("" otherwise).
    pending: str = ""

    @property
    def guess(self) -> bool:
        return self.calls == 0

    def times(self, factor: float) -> TimeRange:
        """This range scaled by ``factor`` (calls of a run over the calls that run at once)."""
        return TimeRange(self.low_s * factor, self.high_s * factor, self.basis, self.calls, self.pending)

    def span(self) -> str:
        """The range in words: ``3–5 min``, ``50 s–2 min``, ``about 40 s`` when both ends read alike."""
        low, high = duration(self.low_s), duration(self.high_s)
        if low == high:
            return f"about {low}"
        low_value, low_unit = low.split(" ")
        high_value, high_unit = high.split(" ")
        return f"{low_value}\u2013{high_value} {high_unit}" if low_unit == high_unit else f"{low}\u2013{high}"

    def short(self) -> str:
        """The range short enough for a metric card, in one unit: ``6–14 min``; ``1–3 min`` for 72 s to
        3 min; ``<2 min`` when the low end rounds to nothing in the high end's unit; ``~40 s``."""
        low, high = duration(self.low_s), duration(self.high_s)
        if low == high:
            return f"~{low}"
        low_value, low_unit = low.split(" ")
        high_value, high_unit = high.split(" ")
        if low_unit != high_unit:
            scaled = self.low_s / (3600 if high_unit == "h" else 60)
            low_value = f"{scaled:.1f}" if high_unit == "h" else f"{round(scaled)}"
            if float(low_value) == 0:
                return f"<{high}"
            if low_value == high_value:
                return f"~{high}"
        return f"{low_value}\u2013{high_value} {high_unit}"

    def text(self) -> str:
        """``3–5 min, from 12 earlier calls``."""
        return f"{self.span()}, {self.basis}"

    def to_json(self) -> dict[str, float | int | str]:
        """The range as the CLI's ``--json`` prints it."""
        return {
            "low_s": round(self.low_s, 1),
            "high_s": round(self.high_s, 1),
            "basis": self.basis,
            "calls": self.calls,
        }


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """The first quartile, median and third quartile of ``values`` (one value: itself three times)."""
    if not values:
        raise ValueError("quartiles of no values")
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def call_time(latencies: Sequence[float], backend: str, *, what: str = "") -> TimeRange:
    """The time of one call: the inter-quartile range of ``latencies`` (widened to at least
    :data:`MIN_SPREAD` around the median), or the backend's prior when there are none. ``what``
    names the calls in the basis (``synth`` → ``from 12 earlier synth calls``)."""
    real = [s for s in latencies if s > 0]
    if not real:
        low, high = PRIOR_CALL_S.get(backend, PRIOR_CALL_S["openai"])
        return TimeRange(low, high, "no calls yet: a guess")
    q1, median, q3 = quartiles(real)
    low, high = min(q1, median * MIN_SPREAD[0]), max(q3, median * MIN_SPREAD[1])
    noun = "call" if len(real) == 1 else "calls"
    return TimeRange(low, high, f"from {len(real)} earlier {what + ' ' if what else ''}{noun}", len(real))


def useful_parallel(settings: BackendSettings) -> int:
    """Calls that usefully run at once: one on the embedded model, up to
    :data:`MAX_USEFUL_PARALLEL` at an endpoint (its ``concurrency`` setting)."""
    return 1 if settings.backend == "embedded" else max(1, min(settings.concurrency, MAX_USEFUL_PARALLEL))


def logged_model(settings: BackendSettings) -> str:
    """The model name the call log records calls of ``settings`` under."""
    if settings.backend == "embedded":
        return Path(settings.gguf_path).stem if settings.gguf_path else "SmolLM2-135M-Instruct.Q4_1"
    return settings.model or "unknown model"


def per_call(
    log: CallLog, settings: BackendSettings, purposes: Sequence[str], *, run_id: str | None = None
) -> TimeRange:
    """The time of one call of ``purposes`` on ``settings``' backend and model: from the calls of the
    running run ``run_id`` when it has made some (its own pace, from its first reply on), else from
    the recent calls of those purposes, else of any purpose on the same backend and model, else the
    prior."""
    model = logged_model(settings)
    if run_id is not None:
        own = log.call_latencies(settings.backend, model, purposes, RECENT_CALLS, run_id)
        if own:
            found = call_time(own, settings.backend)
            noun = "call" if found.calls == 1 else "calls"
            return TimeRange(found.low_s, found.high_s, f"from this run's {found.calls} {noun}", found.calls)
    same = log.call_latencies(settings.backend, model, purposes)
    if same:
        return call_time(same, settings.backend, what="/".join(purposes))
    other = log.call_latencies(settings.backend, model, None)
    if other:
        found = call_time(other, settings.backend)
        return TimeRange(found.low_s, found.high_s, found.basis + " of other kinds", found.calls)
    return call_time([], settings.backend)


def calls_text(calls: int, took: TimeRange, *, at_most: bool = False) -> str:
    """One line for a caption: ``About 12 LLM calls: 3–5 min, from 12 earlier calls.``"""
    noun = "LLM call" if calls == 1 else "LLM calls"
    return f"{'Up to' if at_most else 'About'} {calls:,} {noun}: {took.text()}."


def estimate_time(log: CallLog, settings: BackendSettings, purposes: Sequence[str], calls: int) -> TimeRange:
    """About how long ``calls`` calls of ``purposes`` take on ``settings``: the per-call range
    (:func:`per_call`) times the rounds of calls that usefully run at once."""
    return per_call(log, settings, purposes).times(rounds(settings, calls))


def rounds(settings: BackendSettings, calls: int) -> int:
    """The rounds ``calls`` calls take, :func:`useful_parallel` at once."""
    return math.ceil(max(0, calls) / useful_parallel(settings))


def waiting_reply(per: TimeRange, calls: int, parallel: int, waited_s: float, *, first: bool = True) -> TimeRange:
    """How long a run of ``calls`` calls (``parallel`` at once, ``per`` each) still takes while its
    next reply is out after ``waited_s`` seconds (since the run started when it is the ``first``,
    else since its last reply): the estimate counted down by the wait, the low end down to the calls
    still to come. A wait past the upper end of one call says calls take longer than that: the upper
    end then grows with the wait instead of reaching zero, and :attr:`TimeRange.pending` says so
    (for the first reply it always does)."""
    steps = math.ceil(max(0, calls) / max(1, parallel))
    waited = max(0.0, waited_s)
    late = first or waited > per.high_s
    pending = f"{'first' if first else 'next'} reply pending {duration(waited)}" if late else ""
    basis = pending if first else per.basis
    if steps == 0:
        return TimeRange(0.0, 0.0, basis, per.calls, pending)
    high = max(per.high_s, waited)
    low_s = (steps - 1) * per.low_s + max(0.0, per.low_s - waited)
    return TimeRange(low_s, (steps - 1) * high + high - waited, basis, per.calls, pending)


def run_left(
    log: CallLog,
    settings: BackendSettings,
    purposes: Sequence[str],
    calls: int,
    *,
    run_id: str | None = None,
    waited_s: float | None = None,
    first: bool = True,
) -> TimeRange:
    """About how long a running run's ``calls`` calls still to make take, at the run's own call
    times once it has some (else this project's). ``waited_s``: how long its next reply has been
    out (since the run started while its ``first`` reply is out, else since its last reply): the
    estimate then counts down by the wait (:func:`waiting_reply`)."""
    if waited_s is not None and first:
        return waiting_reply(per_call(log, settings, purposes), calls, useful_parallel(settings), waited_s)
    per = per_call(log, settings, purposes, run_id=run_id)
    if waited_s is None:
        return per.times(rounds(settings, calls))
    return waiting_reply(per, calls, useful_parallel(settings), waited_s, first=False)


def time_left(
    log: CallLog,
    settings: BackendSettings,
    kind: str,
    *,
    calls: int,
    done: int,
    total: int,
    run_id: str | None = None,
    waited_s: float | None = None,
) -> TimeRange | None:
    """About how long a running job of ``kind`` still takes: its calls so far per unit done (leaf,
    sample, document) times the units left, at its run's (``run_id``) own call times, else this
    project's, counted down by ``waited_s`` since its last reply (see :func:`run_left`). None until
    a unit is done, when nothing is left, or for a kind whose calls :data:`JOB_PURPOSES` does not
    name."""
    purposes = JOB_PURPOSES.get(kind)
    if purposes is None or done <= 0 or total <= done or calls <= 0:
        return None
    left = math.ceil(calls / done * (total - done))
    return run_left(log, settings, purposes, left, run_id=run_id, waited_s=waited_s, first=False)
