"""Background jobs on the app's pages: start one, show it while it runs, and say how it ended.

A job belongs to the page that started it (its ``origin``; a command's job, or an older one, belongs
to the page of its kind: :func:`page_of`). That page shows its progress bar and Stop button while it
runs and its outcome after; every other page shows at most one line naming it, with a link to its
page (:func:`elsewhere_line`). How a job ended comes from its stored outcome
(:func:`~treesynth_core.jobs.outcome.job_end`), never from its last progress line.

A job this browser tab started (its ``starter`` is the tab's token, kept across reloads: see
:mod:`studio.browser_tab`) stays the tab's own after a reload; one another tab started reads so, and a
start button pressed meanwhile starts nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import streamlit as st

from studio import security
from studio.state import AppState, NoticeKind, get_state
from studio.widgets import (
    PAGE_CONCEPTS,
    PAGE_COVERAGE,
    PAGE_DATA,
    PAGE_PROJECT,
    PAGE_SYNTH,
    PAGE_TREE,
    POLL_S,
    md,
    show_notices,
    still_open,
)
from treesynth_core.errors import TreeSynthError
from treesynth_core.jobs import background as jobs
from treesynth_core.jobs.lease import ago, refusal
from treesynth_core.jobs.outcome import job_end
from treesynth_core.llm import timing
from treesynth_core.llm.pricing import duration
from treesynth_core.progress import plural
from treesynth_core.store import Project
from treesynth_core.store.runs import HOST, RunCounts

#: The pages that start jobs, by title.
PAGE_TITLES = {
    PAGE_TREE: "Tree",
    PAGE_SYNTH: "Synthesize",
    PAGE_CONCEPTS: "Concepts",
    PAGE_COVERAGE: "Coverage",
    PAGE_DATA: "Data",
}
#: The page of each job kind, for a job that does not name the page that started it (a command's).
KIND_PAGES = {
    "grow": PAGE_TREE,
    "synth": PAGE_SYNTH,
    "features": PAGE_COVERAGE,
    "baseline": PAGE_COVERAGE,
    "fill-gaps": PAGE_COVERAGE,
    "import": PAGE_DATA,
    "route": PAGE_DATA,
    "balance": PAGE_DATA,
    "decontaminate": PAGE_DATA,
    "concepts-extract": PAGE_CONCEPTS,
    "concepts-synth": PAGE_CONCEPTS,
}
#: A job's kind in words.
JOB_WORDS = {
    "grow": "growth",
    "synth": "synthesis",
    "features": "features",
    "baseline": "baseline run",
    "fill-gaps": "gap filling",
    "import": "import",
    "route": "routing",
    "balance": "rebalancing",
    "decontaminate": "decontamination",
    "concepts-extract": "concept extraction",
    "concepts-synth": "question generation",
}


def origin_of(page: str) -> str:
    """What a job records as the page that started it: ``data`` for ``app_pages/data.py``."""
    return Path(page).stem


def page_of(job: jobs.JobState) -> str:
    """The page a job belongs to: the one that started it, else its kind's (growth from a dataset's
    samples is the Data page's)."""
    named = f"app_pages/{job.origin}.py"
    if named in PAGE_TITLES:
        return named
    if job.kind == "grow" and job.params.get("pivots_from"):
        return PAGE_DATA
    return KIND_PAGES.get(job.kind, PAGE_PROJECT)


def job_word(kind: str) -> str:
    return JOB_WORDS.get(kind, f"{kind} job")


def held_elsewhere(job: jobs.JobState) -> bool:
    """Whether a job runs in another process (a ``treesynth`` command, another app)."""
    return job.pid != os.getpid() or job.host != HOST


def other_tab_refusal(job: jobs.JobState, now: float | None = None) -> str:
    """``A growth started in another tab is running (started 12 s ago); Stop it there or wait.``"""
    try:
        started = datetime.fromisoformat(job.started).timestamp()
        since = f" (started {ago((time.time() if now is None else now) - started)} ago)"
    except ValueError:
        since = ""
    return f"A {job_word(job.kind)} started in another tab is running{since}; Stop it there or wait."


def started_here(state: AppState, job: jobs.JobState) -> bool:
    """Whether this browser tab started ``job`` (before a reload too)."""
    return bool(state.tab) and job.starter == state.tab


# -- a running job ----------------------------------------------------------------------------------


def job_status_line(job: jobs.JobState, *, message: bool = True) -> str:
    """``3 of 24 leaves done — 37 samples`` (the job's message only with ``message``; a leaf is done when
    its filling ended, with or without the samples it wanted)."""
    done = f"{job.done} of {job.total}" if job.total else f"{job.done}"
    what = "nodes expanded" if job.kind == "grow" else "leaves done"
    return f"{done} {what}" + (f" \u2014 {job.message}" if job.message and message else "")


def run_counts_line(counts: RunCounts | None) -> str:
    """What a job's run has made so far: ``12 calls, 37 samples`` ("" before its first reply, and for
    a job without a run of LLM calls)."""
    if counts is None or not counts.calls:
        return ""
    return plural(counts.calls, "call") + (f", {plural(counts.samples, 'sample')}" if counts.samples else "")


def waited_s(job: jobs.JobState, made: RunCounts | None = None, now: float | None = None) -> float:
    """Seconds the job has waited for its next reply: since its run's last reply (``made``), else
    since the job started."""
    since = made.last_reply if made is not None and made.last_reply else job.started
    try:
        return max(0.0, (time.time() if now is None else now) - datetime.fromisoformat(since).timestamp())
    except ValueError:
        return 0.0


def time_line(project: Project, job: jobs.JobState, made: RunCounts | None, calls_left: timing.CallsLeft | None) -> str:
    """``about 2–5 min left``, counted down by the wait for the next reply, and what it waits on when
    that is worth saying: ``about 2–5 min left, first reply pending 40 s`` while the first reply is out,
    ``…, next reply pending 4 min`` once a reply is later than one call takes ("" where nothing says)."""
    settings = get_state().settings()
    first = made is not None and not made.calls
    waited = waited_s(job, made) if made is not None else None
    left: timing.TimeRange | None = None
    if calls_left is not None and calls_left.calls > 0:
        left = timing.run_left(
            project, settings, calls_left.purposes, calls_left.calls, run_id=job.run_id, waited_s=waited, first=first
        )
    elif made is not None and job.total:  # from the run's own pace: calls per unit done
        left = timing.time_left(
            project,
            settings,
            job.kind,
            calls=made.calls,
            done=job.done,
            total=job.total,
            run_id=job.run_id,
            waited_s=waited,
        )
    span = left.span() if left is not None and left.high_s > 0 else ""
    remaining = (span if span.startswith("about") else f"about {span}") + " left" if span else ""
    if first and waited is not None:
        waiting = f"first reply pending {duration(waited)}"
    else:
        waiting = left.pending if left is not None else ""
    return ", ".join(part for part in (remaining, waiting) if part)


def job_progress(
    project: Project,
    job: jobs.JobState,
    *,
    key: str,
    label: str | None = None,
    status: str | None = None,
    calls_left: timing.CallsLeft | None = None,
) -> None:
    """A running job: progress bar, what it is doing (``label``; the calls and samples of its run so
    far, then ``status``: defaults for growth and synthesis; then the time left, from ``calls_left``
    when the page knows the calls still to make, else from the run's pace), and a Stop button keyed
    ``{key}.stop``."""
    label = label or ("Growing the tree" if job.kind == "grow" else "Synthesizing samples")
    made = jobs.run_counts(project, job)
    counts = run_counts_line(made)
    if status is None:  # synthesis's message counts its samples: the run's counts say it already
        status = job_status_line(job, message=not (counts and job.kind == "synth"))
    counts = "" if " call" in status else counts  # unless the job counts its calls itself
    status = " \u00b7 ".join(part for part in (counts, status, time_line(project, job, made, calls_left)) if part)
    if held_elsewhere(job):  # the CLI or another app holds the project's run lease: nothing starts here
        st.info(md(refusal(job).replace(" (--wait)", "") + "."), icon=":material/lock_clock:")
    elif not started_here(get_state(), job):  # another tab of this app started it
        st.info(md(other_tab_refusal(job)), icon=":material/lock_clock:")
    with st.container(border=True):
        bar, stop = st.columns([5, 1], vertical_alignment="center")
        with bar:
            text = f"**{label}**" + (f" \u2014 {md(status)}" if status else "")
            st.progress(job.fraction if job.fraction is not None else 0.0, text=text)
        with stop:
            if job.cancel_requested:
                st.button("Stopping\u2026", key=f"{key}.stopping", disabled=True, width="stretch")
            elif st.button("Stop", key=f"{key}.stop", icon=":material/stop_circle:", width="stretch"):
                jobs.cancel_job(project, job.id)
                st.rerun()


def elsewhere_line(job: jobs.JobState) -> None:
    """Another page's running job, in one line with a link to its page: ``A routing job is running —
    open Data``."""
    page = page_of(job)
    word = job_word(job.kind)
    article = "An" if word[0] in "aeiou" else "A"
    title = PAGE_TITLES.get(page, "Project")
    st.page_link(page, label=f"{article} {word} job is running \u2014 open {title}", icon=":material/hourglass_top:")


# -- how a job ended --------------------------------------------------------------------------------


def ended(project: Project, job: jobs.JobState | None, label: str, *, after_stop: str = "") -> None:
    """How ``job`` ended, under ``label`` (``Synthesis finished in 3 min 10 s: added 120 samples …``),
    from its stored outcome; nothing while it runs. ``after_stop`` follows a stop's message."""
    if job is None or job.active:
        return
    end = job_end(job, jobs.run_counts(project, job))
    if end is None:
        return
    text = f"{label} {md(end.text)}"
    if end.status == "done":
        st.success(text, icon=":material/check_circle:")
    elif end.status == "partial":  # finished, but part of what it was asked for is missing: say so in amber
        st.warning(text, icon=":material/rule:")
    elif end.status == "cancelled":
        st.warning(text + after_stop, icon=":material/pause_circle:")
    elif end.status == "interrupted":
        st.warning(text, icon=":material/restart_alt:")
    else:
        st.error(text, icon=":material/error:")


def job_outcome(project: Project, job: jobs.JobState | None) -> None:
    """How the latest growth or synthesis ended (once it is no longer running)."""
    if job is not None:
        ended(project, job, "Growth" if job.kind == "grow" else "Synthesis")


#: The notice kind a job's ending toasts as, by :class:`~treesynth_core.jobs.outcome.JobEnd` status.
END_KINDS: dict[str, NoticeKind] = {"done": "success", "failed": "error"}


def toast_end(state: AppState, project: Project, page: str) -> None:
    """How the ``page``'s job this tab started just ended, as a toast for the page's next run: the
    outcome's banner sits where the job's progress was, often out of view (under a form's button)."""
    job = jobs.latest_job(project)
    if job is None or page_of(job) != page or not started_here(state, job):
        return
    end = job_end(job, jobs.run_counts(project, job))
    if end is not None:
        word = job_word(job.kind)
        state.notify(END_KINDS.get(end.status, "warning"), f"{word[0].upper()}{word[1:]} {end.text}", toast=True)


def live_job(state: AppState, project: Project, *, busy: bool, page: str) -> jobs.JobState | None:
    """For a page's polling fragment, first thing after :func:`still_open`: the running job. When a
    job started or ended since the page ran (``busy``: whether one ran then), the whole page reruns,
    with a toast of how the ``page``'s job this tab started ended."""
    live = jobs.active_job(project)
    if (live is not None) != busy:
        if live is None:
            toast_end(state, project, page)
        st.rerun()
    return live


# -- a page's job status ----------------------------------------------------------------------------


def job_status(
    project: Project,
    live: jobs.JobState | None,
    *,
    page: str,
    progress: Callable[[Project, jobs.JobState], None],
    outcome: Callable[[Project, jobs.JobState | None], None],
) -> None:
    """A page's job status: the running job's progress when it is the ``page``'s, one line naming
    another page's running job, else the page's latest job's outcome (``outcome`` shows only its own)."""
    if live is None:
        outcome(project, jobs.latest_job(project))
    elif page_of(live) == page:
        progress(project, live)
    else:
        elsewhere_line(live)


def job_status_fragment(
    state: AppState,
    busy: bool,
    *,
    page: str,
    progress: Callable[[Project, jobs.JobState], None],
    outcome: Callable[[Project, jobs.JobState | None], None],
) -> None:
    """The notices and :func:`job_status` in a fragment that polls while a job runs (``busy``, as the
    page started) and reruns the whole page when a job starts or ends."""

    @st.fragment(run_every=POLL_S if busy else None)
    def status() -> None:
        current = still_open(state)  # the page's project, unless its folder went since the page ran
        live = live_job(state, current, busy=busy, page=page)
        show_notices(state)
        job_status(current, live, page=page, progress=progress, outcome=outcome)

    status()


# -- starting a job ---------------------------------------------------------------------------------


def start_job(state: AppState, kind: jobs.Kind, params: dict, *, page: str) -> jobs.JobState | None:
    """Start a background job for the open project from ``page`` (or get the one already running);
    while another run holds the project (the CLI, another app, another tab's job, a job of another
    kind) say so and start nothing."""
    project = state.project()
    if project is None:
        return None
    if security.read_only():
        state.notify("warning", "This app is shared read-only: jobs are off.")
        return None
    problem = security.endpoint_problem(state)
    if problem is not None:
        state.notify("error", problem)
        return None
    running = jobs.active_job(project)
    if running is not None and not held_elsewhere(running) and not started_here(state, running):
        state.notify("warning", other_tab_refusal(running))  # another tab of this app started it
        return None
    try:
        job = jobs.start_job(
            project.path,
            kind,
            params,
            settings=state.settings(),
            owner=state.owner,
            starter=state.tab,
            origin=origin_of(page),
        )
    except (TreeSynthError, ValueError) as exc:
        state.notify("error", str(exc))
        return None
    if job.kind != kind or held_elsewhere(job):  # another run holds the project's run lease
        state.notify("warning", refusal(job).replace(" (--wait)", "") + ".")
        return None
    return job
