"""Background jobs: every job kind (see :mod:`treesynth_core.jobs.specs`) running beside the app,
persisted in the project store.

A job runs in a daemon thread with its own project connection and event loop. Its progress,
status and cancel flag live in the store's ``jobs`` table, so any page, browser tab or process
can poll it, and a browser reload loses nothing. At most one job runs per project, and a job holds
the project's run lease (:mod:`.lease`) that CLI runs take too: starting one while another is live
returns the live one. A job whose heartbeat stops (the process died) reads as ``interrupted``;
starting it again resumes, because growth and synthesis are idempotent (the reply cache and the
sample keys).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..errors import Cancelled, ProjectGone, TreeSynthError
from ..generate.gap_options import SPACES, GapOptions
from ..llm.base import LLM
from ..llm.settings import BackendSettings, merge_settings
from ..store import JobRecord, Project
from ..store.runs import LEASE_STALE_S, RunCounts, holder_alive
from .lease import Heartbeat, release
from .runs import LLMFactory, run_llm_work
from .specs import FeaturesOptions, JobContext, JobSpec, Kind, job_spec, space_key

__all__ = ["SPACES", "Kind", "space_key"]  # re-exported: the app's pages and panels read them here

#: Job kinds of the Coverage page (features and maps need no LLM; the others do).
COVERAGE_KINDS = ("features", "baseline", "fill-gaps")
#: Job kinds of the Data page (import needs no LLM; route with the embedding router alone neither).
DATA_KINDS = ("import", "route", "balance", "decontaminate")
#: The space of each coverage job when its params name none: gap filling in gradient space, as the paper.
DEFAULT_SPACE = {"features": FeaturesOptions.space, "fill-gaps": GapOptions.space}
#: Seconds without a heartbeat after which a job reads ``interrupted`` (see :mod:`.lease`).
STALE_AFTER_S = LEASE_STALE_S

_factory: LLMFactory | None = None
_featurizer_factory: Callable[[str], Any] | None = None


def set_llm_factory(factory: LLMFactory | None) -> None:
    """Test hook: the backend jobs use (``None`` restores the real one from the settings)."""
    global _factory
    _factory = factory


def set_featurizer_factory(factory: Callable[[str], Any] | None) -> None:
    """Test hook: ``factory(space)`` returns the featurizer of ``"embeddings"`` or ``"gradients"``
    (``None`` restores the embedded MiniLM embedder and SmolLM2 gradient proxy)."""
    global _featurizer_factory
    _featurizer_factory = factory


def featurizer(space: str, project: Project | None = None) -> Any:
    """The featurizer coverage jobs use for ``space`` (``"embeddings"`` or ``"gradients"``); for
    gradients, the ``project``'s saved proxy and token cut, timed in the project (its runs make the
    time estimates of :mod:`treesynth_core.coverage.features.proxy`)."""
    if space not in SPACES:
        raise TreeSynthError(f"unknown feature space {space!r}: choose embeddings or gradients")
    if _featurizer_factory is not None:
        return _featurizer_factory(space)
    if space == "embeddings":
        from ..coverage.features.embeddings import make_embedder

        return make_embedder(None)
    try:
        from ..coverage.features.gradients import default_featurizer
        from ..coverage.features.proxy import TimedFeaturizer, gradient_settings, load_gradients
    except ImportError as exc:
        raise TreeSynthError(f"gradient features are not available in this install ({exc})") from None
    if project is None:
        return default_featurizer()
    return TimedFeaturizer(load_gradients(gradient_settings(project)), project)


@dataclass(frozen=True)
class JobState(JobRecord):
    """A job as the store records it, read as the app shows it: a running job whose heartbeat
    stopped is ``interrupted``."""

    @property
    def active(self) -> bool:
        return holder_alive(self)

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    @classmethod
    def from_record(cls, record: JobRecord) -> JobState:
        state = cls(**{f.name: getattr(record, f.name) for f in fields(JobRecord)})
        return replace(state, status="interrupted") if state.status == "running" and not state.active else state


def start_job(
    project_path: Path | str,
    kind: Kind,
    params: dict[str, Any],
    *,
    settings: BackendSettings | None = None,
    owner: str | None = None,
    starter: str = "",
    origin: str = "",
) -> JobState:
    """Start a job of ``kind`` in the background, or return the job already running. The tree
    edits it makes (growth) are ``owner``'s (an app session's; default: this process's); the job
    records who started it where (``starter``: a browser tab's token, ``origin``: an app page)."""
    spec = job_spec(kind)
    options = spec.parse(params)  # fail fast on bad options, before any thread starts
    with Project.open(project_path) as project:
        record, created = project.claim_job(kind, params, starter=starter, origin=origin)
        state = JobState.from_record(record)
        resolved = merge_settings(project.settings(), settings.model_dump() if settings else {})
    if created:
        thread = threading.Thread(
            target=_run,
            args=(Path(project_path), _Launch(state.id, spec, options, params, resolved, _factory, owner)),
            name=f"treesynth-{kind}-{state.id}",
            daemon=True,
        )
        thread.start()
    return state


@dataclass(frozen=True)
class _Launch:
    """What a job's thread runs: the claimed job, its spec and parsed options, the params as given
    (logged with the run), the resolved backend settings, the LLM factory and the owner of its edits."""

    job_id: str
    spec: JobSpec[Any, Any]
    options: Any
    params: dict[str, Any]
    settings: BackendSettings
    factory: LLMFactory | None
    owner: str | None = None


def _run(path: Path, launch: _Launch) -> None:
    """The job's thread: run the spec with a heartbeat, then record how it ended."""
    project = Project.open(path, owner=launch.owner)
    job_id = launch.job_id
    status, error = "done", None
    beat = Heartbeat(project, job_id)
    try:
        with beat:
            beat.result = _execute(project, launch, beat)
    except Cancelled as exc:
        status, beat.result = "cancelled", str(exc)
    except TreeSynthError as exc:
        status, error = "failed", str(exc)
    except Exception as exc:  # a bug: keep the job record honest rather than silently dead
        status, error = "failed", f"unexpected error: {exc!r}"
    finally:  # the heartbeat has stopped: this is the last write
        try:
            release(project, job_id, status, error, beat.progress["message"], beat.result)
        except ProjectGone:
            pass  # the project folder was deleted under the job: no record is left to write
        finally:
            project.close()


def _execute(project: Project, launch: _Launch, beat: Heartbeat) -> str:
    """Run the spec (as one logged run when it needs an LLM) and return its summary line."""
    spec, options, params, settings = launch.spec, launch.options, launch.params, launch.settings
    ctx = JobContext(
        project,
        featurizer=lambda space: featurizer(space, project),
        progress=beat.report,
        cancel=beat.cancel,
        concurrency=settings.concurrency,
    )

    async def work(llm: LLM | None, cancel: threading.Event) -> Any:
        report = await spec.run(ctx, llm, options)
        if spec.then is not None:
            spec.then(ctx, options, report)
        return report

    if not spec.needs_llm(options):
        import asyncio

        return spec.summary(asyncio.run(work(None, beat.cancel)), None)
    report, stats = run_llm_work(
        project,
        spec.kind,
        params,
        settings,
        work,
        cancel=beat.cancel,
        max_calls=params.get("max_calls"),
        llm_factory=launch.factory,
        job_id=launch.job_id,
    )
    return spec.summary(report, stats)


def get_job(project: Project, job_id: str) -> JobState:
    return JobState.from_record(project.job(job_id))


def latest_job(project: Project, kind: str | None = None) -> JobState | None:
    records = project.jobs(kind=kind, limit=1)
    return JobState.from_record(records[0]) if records else None


def active_job(project: Project) -> JobState | None:
    job = latest_job(project)
    return job if job is not None and job.active else None


def run_counts(project: Project, job: JobRecord) -> RunCounts | None:
    """The calls answered and samples written by ``job``'s run so far (None before its run starts,
    and for jobs that make no LLM calls)."""
    return project.run_counts(job.run_id) if job.run_id else None


def cancel_job(project: Project, job_id: str) -> None:
    """Ask a job to stop: its heartbeat reads the request within a beat, its LLM calls in flight are
    abandoned (see :mod:`~treesynth_core.llm.stop`) and it sends no more; it reads ``cancelled``."""
    project.request_cancel(job_id)


def wait_job(project_path: Path | str, job_id: str, timeout: float = 60.0, poll: float = 0.05) -> JobState:
    """Block until the job is no longer running (for tests and scripts)."""
    deadline = time.monotonic() + timeout
    with Project.open(project_path) as project:
        while True:
            state = get_job(project, job_id)
            if state.status != "running":
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still running after {timeout} s ({state.message})")
            time.sleep(poll)
