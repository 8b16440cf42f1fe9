"""Small pieces shared by the pages: the project guard, notices, job progress, safe text."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from studio import security
from studio.state import AppState, get_state
from treesynth_core.errors import TreeSynthError
from treesynth_core.jobs import background as jobs
from treesynth_core.jobs.lease import ago, refusal
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.llm.timing import TimeRange, logged_model, time_left
from treesynth_core.progress import plural
from treesynth_core.store import Project
from treesynth_core.store.runs import HOST, RunCounts
from treesynth_core.text import escape_markdown

PAGE_PROJECT = "app_pages/project.py"
PAGE_TREE = "app_pages/tree.py"
PAGE_SYNTH = "app_pages/synthesize.py"
PAGE_EXPORT = "app_pages/export.py"
PAGE_DATA = "app_pages/data.py"
PAGE_CONCEPTS = "app_pages/concepts.py"
PAGE_COVERAGE = "app_pages/coverage.py"

#: Seconds between polls of a running job (the graph and the counts refresh this often).
POLL_S = 1.0

EMBEDDED_WARNING = (
    "The embedded model (SmolLM2-135M) runs offline on this machine, but it is tiny: the criteria and "
    "values it proposes are weak. Use it to try the workflow; for a real dataset, open an example tree "
    "or point TreeSynth at a capable OpenAI-compatible model."
)


def md(text: str) -> str:
    """Escape text (values, criteria, samples, paths, LLM replies, server errors) for Streamlit markdown,
    so it shows literally: see :func:`~treesynth_core.text.escape_markdown`."""
    return escape_markdown(text)


def form_error(text: str) -> None:
    """Why a form's button did nothing: an error right where it is drawn (call it just under the
    button), and the same as a toast, which is in view even when the button sits at the bottom of
    the window. ``text`` shows literally."""
    st.error(md(text), icon=":material/error:")
    st.toast(md(text), icon=":material/error:")


def show_notices(state: AppState) -> None:
    """Show and forget the notices callbacks left for this rerun (their text is shown literally)."""
    for notice in state.pop_notices():
        text = md(notice.text)
        if notice.kind == "error":
            st.error(text, icon=":material/error:")
        elif notice.kind == "warning":
            st.warning(text, icon=":material/warning:")
        elif notice.kind == "info":
            st.info(text, icon=":material/info:")
        else:
            st.toast(text, icon=":material/check_circle:")


def require_project(state: AppState) -> Project:
    """The open project; otherwise a pointer to the Project page, and the page stops."""
    project = state.project()
    if project is None:
        show_notices(state)
        st.info(
            "No project is open yet. Create one, or open an example tree, on the Project page.",
            icon=":material/folder_open:",
        )
        st.page_link(PAGE_PROJECT, label="Go to the Project page", icon=":material/arrow_forward:")
        st.stop()
    return project


def model_name(settings: BackendSettings) -> str:
    """The model name samples and estimates are recorded under (as the CLI names it)."""
    return logged_model(settings)


def job_status_line(job: jobs.JobState, *, message: bool = True) -> str:
    """``3 of 24 leaves filled — 37 samples`` (the job's message only with ``message``)."""
    done = f"{job.done} of {job.total}" if job.total else f"{job.done}"
    what = "nodes expanded" if job.kind == "grow" else "leaves filled"
    return f"{done} {what}" + (f" \u2014 {job.message}" if job.message and message else "")


def run_counts_line(counts: RunCounts | None) -> str:
    """What a job's run has done so far, from its first call: ``12 calls, 37 samples`` (``waiting
    for the first reply`` before it; "" for a job without a run of LLM calls)."""
    if counts is None:
        return ""
    if not counts.calls:  # the embedded model may take a minute to load and answer first
        return "waiting for the first reply"
    return plural(counts.calls, "call") + (f", {plural(counts.samples, 'sample')}" if counts.samples else "")


def job_progress(
    project: Project,
    job: jobs.JobState,
    *,
    key: str,
    label: str | None = None,
    status: str | None = None,
    left: TimeRange | None = None,
) -> None:
    """A running job: progress bar, what it is doing (``label``; the calls and samples of its run so
    far, then ``status``: defaults for growth and synthesis; then the time ``left``), and a Stop
    button keyed ``{key}.stop``."""
    label = label or ("Growing the tree" if job.kind == "grow" else "Synthesizing samples")
    made = jobs.run_counts(project, job)
    counts = run_counts_line(made)
    if left is None and made is not None and job.total:  # from the run's own pace: calls per unit done
        left = time_left(project, project.settings(), job.kind, calls=made.calls, done=job.done, total=job.total)
    if status is None:  # synthesis's message counts its samples: the run's counts say it already
        status = job_status_line(job, message=not (counts and job.kind == "synth"))
    span = left.span() if left is not None and left.high_s > 0 else ""
    remaining = (span if span.startswith("about") else f"about {span}") + " left" if span else ""
    counts = "" if " call" in status else counts  # unless the job counts its calls itself
    status = " \u00b7 ".join(part for part in (counts, status, remaining) if part)
    if held_elsewhere(job):  # the CLI or another app holds the project's run lease: nothing starts here
        st.info(md(refusal(job).replace(" (--wait)", "") + "."), icon=":material/lock_clock:")
    elif job.id not in get_state().jobs_started:  # another tab of this app started it
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


def job_status(
    project: Project,
    live: jobs.JobState | None,
    *,
    mine: Callable[[jobs.JobState], bool],
    progress: Callable[[Project, jobs.JobState], None],
    outcome: Callable[[jobs.JobState | None], None],
    what: str,
) -> None:
    """A page's job status: the running job's progress when it is one of the page's (``mine``), a notice
    that ``what`` waits when another job holds the project, else the last job's outcome."""
    if live is None:
        outcome(jobs.latest_job(project))
    elif mine(live):
        progress(project, live)
    else:
        st.info(
            f"Another job is running on this project; {what} can start when it ends.",
            icon=":material/hourglass_top:",
        )


def job_status_fragment(
    state: AppState,
    project: Project,
    busy: bool,
    *,
    mine: Callable[[jobs.JobState], bool],
    progress: Callable[[Project, jobs.JobState], None],
    outcome: Callable[[jobs.JobState | None], None],
    what: str,
) -> None:
    """The notices and :func:`job_status` in a fragment that polls while a job runs (``busy``, as the
    page started) and reruns the whole page when a job starts or ends."""

    @st.fragment(run_every=POLL_S if busy else None)
    def status() -> None:
        live = jobs.active_job(project)
        if (live is not None) != busy:
            st.rerun()
        show_notices(state)
        job_status(project, live, mine=mine, progress=progress, outcome=outcome, what=what)

    status()


def held_elsewhere(job: jobs.JobState) -> bool:
    """Whether a job runs in another process (a ``treesynth`` command, another app)."""
    return job.pid != os.getpid() or job.host != HOST


#: A job's kind as a refusal names it.
JOB_WORDS = {"grow": "growth", "synth": "synthesis", "baseline": "baseline run", "fill-gaps": "gap filling"}


def other_tab_refusal(job: jobs.JobState, now: float | None = None) -> str:
    """``A growth started in another tab is running (started 12 s ago); Stop it there or wait.``"""
    what = JOB_WORDS.get(job.kind, f"{job.kind} job")
    try:
        started = datetime.fromisoformat(job.started).timestamp()
        since = f" (started {ago((time.time() if now is None else now) - started)} ago)"
    except ValueError:
        since = ""
    return f"A {what} started in another tab is running{since}; Stop it there or wait."


def job_outcome(job: jobs.JobState | None) -> None:
    """How the latest job ended (once it is no longer running)."""
    if job is None or job.active:
        return
    what = "Growth" if job.kind == "grow" else "Synthesis"
    if job.status == "done":
        st.success(f"{what} finished: {md(job.message)}", icon=":material/check_circle:")
    elif job.status == "cancelled":
        st.warning(
            f"{what} stopped. Everything finished so far is saved; start it again to go on.",
            icon=":material/pause_circle:",
        )
    elif job.status == "interrupted":
        st.warning(
            f"{what} was interrupted (the app stopped). Everything finished so far is saved; start it again to resume.",
            icon=":material/restart_alt:",
        )
    elif job.status == "failed":
        st.error(f"{what} failed: {md(job.error or job.message)}", icon=":material/error:")


def labelled_outcome(job: jobs.JobState, label: str, *, after_stop: str = "") -> None:
    """How a finished job of a page ended, under the job kind's ``label`` (``after_stop`` follows the
    stop message)."""
    if job.status == "done":
        st.success(f"{label}: done \u2014 {md(job.message)}", icon=":material/check_circle:")
    elif job.status == "cancelled":
        st.warning(f"{label} stopped: {md(job.message)}{after_stop}", icon=":material/pause_circle:")
    elif job.status == "interrupted":
        st.warning(f"{label} was interrupted (the app stopped); start it again.", icon=":material/restart_alt:")
    elif job.status == "failed":
        st.error(f"{label} failed: {md(job.error or job.message)}", icon=":material/error:")


def start_job(state: AppState, kind: jobs.Kind, params: dict) -> jobs.JobState | None:
    """Start a background job for the open project (or get the one already running); while another run
    holds the project (the CLI, another app, a job of another kind) say so and start nothing."""
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
    if running is not None and not held_elsewhere(running) and running.id not in state.jobs_started:
        state.notify("warning", other_tab_refusal(running))  # another tab of this app started it
        return None
    try:
        job = jobs.start_job(project.path, kind, params, settings=state.settings(), owner=state.owner)
    except (TreeSynthError, ValueError) as exc:
        state.notify("error", str(exc))
        return None
    if job.kind != kind or held_elsewhere(job):  # another run holds the project's run lease
        state.notify("warning", refusal(job).replace(" (--wait)", "") + ".")
        return None
    if running is None or running.id == job.id:
        state.jobs_started |= {job.id}
    return job


def button_row() -> DeltaGenerator:
    """A row for buttons side by side that wraps onto two lines when the panel is too narrow for
    their labels (columns would cut the labels off instead)."""
    return st.container(horizontal=True, gap="small")
