"""Background jobs: growth and synthesis running beside the app, persisted in the project store.

A job runs in a daemon thread with its own project connection and event loop. Its progress,
status and cancel flag live in the store's ``jobs`` table, so any page, browser tab or process
can poll it, and a browser reload loses nothing. At most one job runs per project: starting one
while another is live returns the live one. A job whose heartbeat stops (the process died) reads
as ``interrupted``; starting it again resumes, because growth and synthesis are idempotent (the
reply cache and the sample keys).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ..errors import Cancelled, TreeSynthError
from ..generate.synth import PER_CALL
from ..llm.base import LLM
from ..llm.settings import BackendSettings, merge_settings
from ..store import Project
from .runs import LLMFactory, run_llm_work

Kind = Literal["grow", "synth", "features", "baseline", "fill-gaps", "import", "route", "balance"]
#: Job kinds of the Coverage page (features and maps need no LLM; the others do).
COVERAGE_KINDS = ("features", "baseline", "fill-gaps")
#: Job kinds of the Data page (import needs no LLM; route with the embedding router alone neither).
DATA_KINDS = ("import", "route", "balance")
SPACES = ("embeddings", "gradients")
#: The space of each coverage job when its params name none: gap filling in gradient space, as the paper.
DEFAULT_SPACE = {"features": "embeddings", "fill-gaps": "gradients"}
HEARTBEAT_S = 1.0
STALE_AFTER_S = 20.0

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


def space_key(space: str) -> str:
    """The blob under which a finished features job records the feature kind of ``space``."""
    return f"coverage.space.{space}"


@dataclass(frozen=True)
class JobState:
    """A job as the store records it."""

    id: str
    kind: str
    params: dict[str, Any]
    status: str  # running | done | failed | cancelled | interrupted
    done: int
    total: int | None
    message: str
    error: str | None
    started: str
    finished: str | None
    run_id: str | None
    heartbeat: float = 0.0
    cancel_requested: bool = False

    @property
    def active(self) -> bool:
        return self.status == "running" and time.time() - self.heartbeat < STALE_AFTER_S

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobState:
        names = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in row.items() if k in names})
        if state.status == "running" and not state.active:
            return cls(**{**{f.name: getattr(state, f.name) for f in fields(cls)}, "status": "interrupted"})
        return state


def _options(kind: Kind, params: dict[str, Any]) -> Any:
    if kind in COVERAGE_KINDS:
        if kind in DEFAULT_SPACE and params.get("space", DEFAULT_SPACE[kind]) not in SPACES:
            raise TreeSynthError(f"unknown feature space {params.get('space')!r}")
        if kind == "baseline" and int(params.get("n") or 0) < 1:
            raise TreeSynthError("the flat baseline needs n >= 1 samples")
        return dict(params)
    if kind in DATA_KINDS:
        return _data_options(kind, params)
    if kind not in ("grow", "synth"):
        raise TreeSynthError(f"unknown job kind {kind!r}")
    from ..generate.grow import GrowOptions
    from ..generate.synth import SynthOptions

    cls: type[GrowOptions] | type[SynthOptions] = GrowOptions if kind == "grow" else SynthOptions
    known = {f.name for f in fields(cls)}
    clean: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items() if k in known}
    unknown = set(params) - known - {"max_calls"}
    if unknown:
        raise TreeSynthError(f"unknown {kind} options: {', '.join(sorted(unknown))}")
    return cls(**clean)


def _data_options(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    if kind == "import":
        for key in ("file", "map", "sample_set"):
            if not params.get(key):
                raise TreeSynthError(f"an import needs {key!r}")
    if kind == "route":
        from ..data.routing import require_router

        require_router(str(params.get("router", "llm")))
    if kind == "balance" and int(params.get("per_leaf") or 0) < 1:
        raise TreeSynthError("the per-leaf target must be at least 1")
    return dict(params)


def _needs_llm(kind: str, options: Any) -> bool:
    if kind in ("features", "import"):
        return False
    if kind == "route":
        from ..data.pipeline import needs_llm

        return needs_llm(options.get("router", "llm"), int(options.get("agreement_n", 0)))
    return True


def start_job(
    project_path: Path | str, kind: Kind, params: dict[str, Any], *, settings: BackendSettings | None = None
) -> JobState:
    """Start a grow or synth job in the background, or return the job already running."""
    options = _options(kind, params)  # fail fast on bad options, before any thread starts
    with Project.open(project_path) as project:
        row, created = project.claim_job(kind, params, stale_after_s=STALE_AFTER_S)
        state = JobState.from_row(row)
        resolved = merge_settings(project.settings(), settings.model_dump() if settings else {})
    if created:
        thread = threading.Thread(
            target=_run,
            args=(Path(project_path), state.id, kind, options, params, resolved, _factory),
            name=f"treesynth-{kind}-{state.id}",
            daemon=True,
        )
        thread.start()
    return state


def _run(
    path: Path,
    job_id: str,
    kind: Kind,
    options: Any,
    params: dict[str, Any],
    settings: BackendSettings,
    factory: LLMFactory | None,
) -> None:
    project = Project.open(path)
    cancel = threading.Event()
    stop = threading.Event()
    progress = {"done": 0, "total": None, "message": ""}

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                project.update_job(job_id, **progress)
                if project.job(job_id)["cancel_requested"]:
                    cancel.set()
            except TreeSynthError:
                pass  # a busy database only delays the next beat

    def on_progress(done: int, total: int, message: str) -> None:
        progress.update(done=done, total=total, message=message)
        project.update_job(job_id, **progress)
        if project.job(job_id)["cancel_requested"]:
            cancel.set()

    async def work(llm: LLM | None, cancel: threading.Event) -> Any:
        if kind == "route":
            from ..data.pipeline import route_dataset

            embedder = (
                featurizer("embeddings") if options.get("router") == "embedding" or options.get("agreement_n") else None
            )
            return await route_dataset(
                project,
                sample_set=options["sample_set"],
                router=options.get("router", "llm"),
                llm=llm,
                embedder=embedder,
                agreement_n=int(options.get("agreement_n", 0)),
                seed=int(options.get("seed", 0)),
                concurrency=settings.concurrency,
                progress=on_progress,
                cancel=cancel,
            )
        assert llm is not None
        if kind == "balance":
            from ..data.pipeline import balance_dataset

            return await balance_dataset(
                project,
                llm,
                source_set=options["sample_set"],
                per_leaf=int(options["per_leaf"]),
                target_set=options.get("target_set", "balanced"),
                seed=int(options.get("seed", 0)),
                responses=bool(options.get("responses", False)),
                concurrency=settings.concurrency,
                embedder=featurizer("embeddings"),
                progress=on_progress,
                cancel=cancel,
            )
        if kind == "grow":
            from ..generate.grow import grow

            source = None
            if options.pivots_from:
                from ..data.pipeline import data_pivots

                source = data_pivots(project, options.pivots_from, featurizer("embeddings"), seed=options.seed)
            return await grow(project, llm, options, progress=on_progress, cancel=cancel, pivot_source=source)
        if kind == "baseline":
            from ..generate.baseline import synthesize_baseline

            return await synthesize_baseline(
                project,
                llm,
                n=int(options["n"]),
                per_call=int(options.get("per_call", PER_CALL)),
                temperature=float(options.get("temperature", 1.0)),
                seed=int(options.get("seed", 0)),
                responses=options.get("responses"),
                concurrency=settings.concurrency,
                progress=on_progress,
                cancel=cancel,
            )
        if kind == "fill-gaps":
            return await _fill_gaps(project, llm, options, on_progress, cancel)
        from ..generate.synth import synthesize

        return await synthesize(
            project, llm, options, progress=on_progress, cancel=cancel, concurrency=settings.concurrency
        )

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    status, error, message = "done", None, ""
    try:
        if kind == "features":
            message = _features(project, options, on_progress, cancel)
            raise _Finished
        if kind == "import":
            message = _import(project, options, on_progress, cancel)
            raise _Finished
        if not _needs_llm(kind, options):
            import asyncio

            message = _summary(kind, asyncio.run(work(None, cancel)), None)
            raise _Finished
        result, stats = run_llm_work(
            project,
            kind,
            params,
            settings,
            work,
            cancel=cancel,
            max_calls=params.get("max_calls"),
            llm_factory=factory,
            on_start=lambda run_id: project.update_job(job_id, run_id=run_id),
        )
        message = _summary(kind, result, stats)
    except _Finished:
        pass
    except Cancelled as exc:
        status, message = "cancelled", str(exc)
    except TreeSynthError as exc:
        status, error = "failed", str(exc)
    except Exception as exc:  # a bug: keep the job record honest rather than silently dead
        status, error = "failed", f"unexpected error: {exc!r}"
    finally:
        stop.set()
        beater.join()
        from ..store.schema import now

        project.update_job(job_id, status=status, error=error, message=message or progress["message"], finished=now())
        project.close()


class _Finished(Exception):
    """A job without an LLM (features) ended normally."""


def _features(
    project: Project, options: dict[str, Any], progress: Any, cancel: threading.Event, feats: Any = None
) -> str:
    """Compute (and store) the features of the tree's and the baseline's samples, then their map
    (with ``feats`` when the caller has the space's featurizer loaded already)."""
    from ..coverage.features.embeddings import ensure_features
    from ..coverage.maps import map_points
    from ..store.samples import BASELINE_SET

    space = options.get("space", DEFAULT_SPACE["features"])
    samples = project.samples() + project.samples(sample_set=BASELINE_SET)
    if not samples:
        raise TreeSynthError("the project has no samples yet: synthesize first")
    if feats is None:
        progress(0, len(samples), f"samples; loading the {space} model")
        feats = featurizer(space, project)

    def report(done: int, total: int, note: str = "") -> None:
        progress(done, total, f"samples; {space}: {note}")

    X = ensure_features(project, samples, feats, progress=report)
    if cancel.is_set():
        raise Cancelled("stopped before the map")
    progress(len(samples), len(samples), "samples; laying out the map (UMAP)")
    map_points(project, samples, X, feats.name, seed=int(options.get("seed", 0)))
    project.put_blob(space_key(space), feats.name.encode())
    return f"{space} of {len(samples)} samples ({feats.name}) and their map are ready"


def _import(project: Project, options: dict[str, Any], progress: Any, cancel: threading.Event) -> str:
    """Import a dataset file as a new sample set; a Stop rolls the whole import back."""
    from ..data.ingest import ColumnMap, import_file

    def on_rows(done: int) -> None:
        if cancel.is_set():
            raise Cancelled("import stopped: nothing was imported")
        progress(done, 0, f"{done:,} rows")

    summary = import_file(
        project,
        Path(options["file"]),
        ColumnMap(**options["map"]),
        sample_set=options["sample_set"],
        fmt=options.get("format"),
        encoding=options.get("encoding", "utf-8"),
        skip_empty=bool(options.get("skip_empty")),
        limit=options.get("limit"),
        progress=on_rows,
    )
    skipped = f", {summary.skipped_empty} empty rows skipped" if summary.skipped_empty else ""
    return f"imported {summary.imported:,} rows as {summary.sample_set!r}{skipped}"


async def _fill_gaps(
    project: Project, llm: LLM, options: dict[str, Any], progress: Any, cancel: threading.Event
) -> Any:
    from ..generate.gaps import StoreFeaturize, fill_gaps

    space = options.get("space", DEFAULT_SPACE["fill-gaps"])
    feats = featurizer(space, project)
    featurize = StoreFeaturize(project, feats, progress)
    result = await fill_gaps(
        project,
        llm,
        featurize,
        rounds=int(options.get("rounds", 1)),
        per_round=int(options.get("per_round", 20)),
        seed=int(options.get("seed", 0)),
        progress=progress,
        cancel=cancel,
        space=feats.name,
    )
    featurize.store_kept()  # kept samples are not featurized again for the map
    if result.accepted:  # the kept samples join the scores and the map at once
        if space != "embeddings":  # the page's scores need their embeddings too
            _features(project, {"space": "embeddings"}, progress, cancel)
        _features(project, {"space": space}, progress, cancel, feats)
    return result


def _summary(kind: str, result: Any, stats: dict[str, Any] | None) -> str:
    calls = f"{stats['calls']} LLM calls, {stats['cached']} cached" if stats else "no LLM calls"
    if kind == "route":
        agree = result.get("agreement")
        rate = (
            f"; agreement with the {agree['other']} router {agree['rate']:.0%} on {agree['n']}"
            if agree and agree["rate"] is not None
            else ""
        )
        return (
            f"routed {result['routed']} of {result['total']}: {result['leaf']} in leaves, {result['none_fits']} "
            f"fit no value, {result['errors']} errors{rate} ({calls})"
        )
    if kind == "balance":
        short = result["short_leaves"]
        shortfall = (
            f"; {len(short)} leaves stayed below {result['per_leaf']} (duplicates or unusable replies)" if short else ""
        )
        return (
            f"balanced into {result['target_set']!r}: kept {result['kept']}, synthesized {result['synthesized']} "
            f"of {result['to_synthesize']} planned{shortfall} ({calls})"
        )
    if kind == "baseline":
        short = (
            f"; {result.short} short (the model repeated itself or replied unusably): make it again to ask "
            "new questions"
            if result.short
            else ""
        )
        return (
            f"flat baseline: {result.total} of {result.requested} samples, added {result.added}{short}"
            f"{_cut(result)} ({calls})"
        )
    if kind == "fill-gaps":
        return (
            f"{result.accepted} of {result.candidates} candidates kept; diversity {result.before:.3f} -> "
            f"{result.after:.3f} at n = {result.n} ({calls})"
        )
    if kind == "grow":
        return f"expanded {result.expanded} nodes into {result.children} children ({calls})"
    short = (
        f"; {len(result.short_leaves)} leaves stayed below the target (duplicates or unusable replies): "
        "run again with another seed to ask new questions"
        if result.short_leaves
        else ""
    )
    return f"added {result.added} samples, {result.duplicates} duplicates dropped{short}{_cut(result)} ({calls})"


def _cut(result: Any) -> str:
    """The note on responses cut off by the token limit (not stored), or ""."""
    cut = getattr(result, "responses_cut_off", 0)
    return (
        f"; {cut} responses were cut off at the token limit and not stored (those samples have no response)"
        if cut
        else ""
    )


def get_job(project: Project, job_id: str) -> JobState:
    return JobState.from_row(project.job(job_id))


def latest_job(project: Project, kind: str | None = None) -> JobState | None:
    rows = project.jobs(kind=kind, limit=1)
    return JobState.from_row(rows[0]) if rows else None


def active_job(project: Project) -> JobState | None:
    job = latest_job(project)
    return job if job is not None and job.active else None


def cancel_job(project: Project, job_id: str) -> None:
    """Ask a job to stop; it stops between nodes (grow) or leaves (synth) and reads ``cancelled``."""
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
