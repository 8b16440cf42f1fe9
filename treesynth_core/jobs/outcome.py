"""How a job ended, in one line: from its stored outcome (the job's ``result``: a finished run's
summary, what a stopped one kept), its error, its run's counts and its start and end; never from its
progress line, which says what the job was doing, not what it did.

``finished in 3 min 10 s: added 120 samples, 2 duplicates dropped (130 LLM calls, 0 cached)``;
``stopped after 12 LLM calls, 37 samples (2 min 5 s): samples made so far are saved``;
``failed: no API key for https://api.example.com/v1``. The caller names the job in front (``Synthesis``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..progress import plural
from ..store.runs import JobRecord, RunCounts


@dataclass(frozen=True)
class JobEnd:
    """How a job ended: its ``status`` (done; partial: done, but its run made only part of what it was
    asked for; cancelled, interrupted, failed) and the line that says so."""

    status: str
    text: str


def took(seconds: float) -> str:
    """A time taken, in words: ``56 s``, ``3 min 10 s``, ``2 h 5 min``."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(whole // 60, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _stamp(iso: str | None) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp() if iso else None
    except ValueError:
        return None


def run_time(job: JobRecord) -> float | None:
    """Seconds from the job's start to its end (to its last heartbeat when it never recorded one, as
    an interrupted job); None when its times do not say."""
    start = _stamp(job.started)
    end = _stamp(job.finished) or (job.heartbeat or None)
    return None if start is None or end is None else max(0.0, end - start)


def made_text(counts: RunCounts | None) -> str:
    """``12 LLM calls, 37 samples`` ("" without a run)."""
    if counts is None:
        return ""
    return plural(counts.calls, "LLM call") + (f", {plural(counts.samples, 'sample')}" if counts.samples else "")


def kept_text(result: str) -> str:
    """What a stop message says was kept: ``samples made so far are saved`` of ``synthesis stopped;
    samples made so far are saved`` (the message as it is when it says no more)."""
    for mark in ("stopped; ", "stopped: "):
        if mark in result:
            return result.split(mark, 1)[1]
    return result


def job_end(job: JobRecord, counts: RunCounts | None = None) -> JobEnd | None:
    """How ``job`` ended (None while it runs): its outcome, how long it took and, for a job that did
    not finish, how far its run got (``counts``, None for a job without LLM calls)."""
    if job.status == "running":
        return None
    seconds = run_time(job)
    spent = f" ({took(seconds)})" if seconds is not None else ""
    made = made_text(counts)
    if job.status == "done":
        after = f" in {took(seconds)}" if seconds is not None else ""
        status = "partial" if counts is not None and counts.status == "partial" else "done"
        return JobEnd(status, f"finished{after}: {job.result}" if job.result else f"finished{after}.")
    if counts is not None and not counts.calls:
        where = f" before its first reply{spent}"
    elif made:
        where = f" after {made}{spent}"
    else:
        where = f" after {took(seconds)}" if seconds is not None else ""
    if job.status == "cancelled":
        kept = kept_text(job.result) if job.result else "what finished before the stop is saved"
        return JobEnd("cancelled", f"stopped{where}: {kept.rstrip('.')}.")
    if job.status == "interrupted":
        return JobEnd(
            "interrupted",
            f"was interrupted{where}: the app or command running it stopped. What finished is saved; "
            "start it again to resume.",
        )
    return JobEnd("failed", f"failed: {job.error or 'unknown error'}")
