"""One :class:`JobSpec` per job kind: its options (defaults defined once, here or in the stage's own
options class), whether it needs an LLM, its run function and the one-line summary of its report.

The background job runner (:mod:`treesynth_core.jobs.background`) and the ``treesynth`` commands build
the same options dataclass and call the same run function, so a default lives in one place. Job params
stay plain JSON in the project's ``jobs`` table; :meth:`JobSpec.parse` turns them into options.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from ..concepts.extract import ExtractOptions
from ..concepts.questions import QuestionOptions
from ..data.balance import IMPORTED_SET, BalanceOptions
from ..data.decontam_options import DecontamOptions
from ..errors import Cancelled, TreeSynthError
from ..generate.baseline import BaselineOptions
from ..generate.gap_options import GapOptions, check_space
from ..generate.grow import GrowOptions
from ..generate.synth import SynthOptions
from ..llm.base import LLM
from ..progress import Progress, plural
from ..store import Project, RunStats

if TYPE_CHECKING:
    from ..data.decontam_run import DecontamReport
    from ..data.pipeline import BalanceResult, RouteReport

Kind = Literal[
    "grow",
    "synth",
    "features",
    "baseline",
    "fill-gaps",
    "import",
    "route",
    "balance",
    "decontaminate",
    "concepts-extract",
    "concepts-synth",
]

Opts = TypeVar("Opts")
R = TypeVar("R")


def space_key(space: str) -> str:
    """The blob under which a finished features job records the feature kind of ``space``."""
    return f"coverage.space.{space}"


# -- options ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeaturesOptions:
    """Features of the tree's and the baseline's samples in ``space``, then their map."""

    space: str = "embeddings"
    seed: int = 0

    def __post_init__(self) -> None:
        check_space(self.space)


@dataclass(frozen=True)
class ImportOptions:
    """Import a dataset file as a new sample set (``map``: the fields of a
    :class:`~treesynth_core.data.ingest.ColumnMap`)."""

    file: str = ""
    map: dict[str, str] = field(default_factory=dict)
    sample_set: str = ""
    format: str | None = None
    encoding: str = "utf-8"
    skip_empty: bool = False
    limit: int | None = None

    def __post_init__(self) -> None:
        for key in ("file", "map", "sample_set"):
            if not getattr(self, key):
                raise TreeSynthError(f"an import needs {key!r}")


@dataclass(frozen=True)
class RouteOptions:
    """Route a sample set to the tree's leaves; ``agreement_n`` > 0 also measures the other router."""

    sample_set: str = IMPORTED_SET
    router: str = "llm"
    agreement_n: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        from ..data.routing import require_router

        require_router(self.router)


# -- run context ------------------------------------------------------------------------------------


def _no_progress(done: int, total: int, note: str) -> None:
    return None


@dataclass
class JobContext:
    """What a run function needs besides its LLM and options: the project, a progress callback, the
    cancel flag, the backend's concurrency and ``featurizer(space)`` (the CLI's and the jobs' own)."""

    project: Project
    featurizer: Callable[[str], Any]
    progress: Progress = _no_progress
    cancel: threading.Event = field(default_factory=threading.Event)
    concurrency: int = 8


# -- run functions ----------------------------------------------------------------------------------


async def run_grow(ctx: JobContext, llm: LLM | None, options: GrowOptions, pivot_source: Any = None) -> Any:
    """Grow the tree (from ``options.pivots_from``'s samples when set: the CLI passes the ``pivot_source``
    it built before the run)."""
    from ..generate.grow import grow

    assert llm is not None
    source = pivot_source
    if source is None and options.pivots_from:
        from ..data.pipeline import data_pivots

        source = data_pivots(ctx.project, options.pivots_from, ctx.featurizer("embeddings"), seed=options.seed)
    return await grow(ctx.project, llm, options, progress=ctx.progress, cancel=ctx.cancel, pivot_source=source)


async def run_synth(ctx: JobContext, llm: LLM | None, options: SynthOptions, plan: Any = None) -> Any:
    from ..generate.synth import synthesize

    assert llm is not None
    report = await synthesize(
        ctx.project, llm, options, plan=plan, progress=ctx.progress, cancel=ctx.cancel, concurrency=ctx.concurrency
    )
    if options.verify:
        from ..generate.agreement import record_agreement

        record_agreement(ctx.project, report.verification)
    return report


@dataclass(frozen=True)
class FeaturesReport:
    space: str
    samples: int
    featurizer: str


def compute_features(ctx: JobContext, space: str, seed: int = 0, feats: Any = None) -> FeaturesReport:
    """Compute (and store) the features of the tree's and the baseline's samples, then their map
    (with ``feats`` when the caller has the space's featurizer loaded already)."""
    from ..coverage.features.embeddings import ensure_features
    from ..coverage.maps import MapOptions, map_points
    from ..store.samples import BASELINE_SET

    project, progress = ctx.project, ctx.progress
    samples = project.samples() + project.samples(sample_set=BASELINE_SET)
    if not samples:
        raise TreeSynthError("the project has no samples yet: synthesize first")
    if feats is None:
        progress(0, len(samples), f"samples; loading the {space} model")
        feats = ctx.featurizer(space)

    def report(done: int, total: int, note: str = "") -> None:
        progress(done, total, f"samples; {space}: {note}")

    X = ensure_features(project, samples, feats, progress=report)
    if ctx.cancel.is_set():
        raise Cancelled("stopped before the map")
    progress(len(samples), len(samples), "samples; laying out the map (UMAP)")
    map_points(project, samples, X, feats.name, MapOptions(seed=seed))
    project.put_blob(space_key(space), feats.name.encode())
    return FeaturesReport(space=space, samples=len(samples), featurizer=feats.name)


async def run_features(ctx: JobContext, llm: LLM | None, options: FeaturesOptions) -> FeaturesReport:
    return compute_features(ctx, options.space, options.seed)


async def run_baseline(ctx: JobContext, llm: LLM | None, options: BaselineOptions) -> Any:
    from ..generate.baseline import synthesize_baseline

    assert llm is not None
    return await synthesize_baseline(
        ctx.project, llm, options, concurrency=ctx.concurrency, progress=ctx.progress, cancel=ctx.cancel
    )


async def run_fill_gaps(ctx: JobContext, llm: LLM | None, options: GapOptions, feats: Any = None) -> Any:
    """Fill gaps with ``feats`` (default: ``ctx.featurizer(options.space)``); the kept samples' features
    are stored, so they are not featurized again for the map."""
    try:
        from ..generate.gaps import StoreFeaturize, fill_gaps
    except ImportError as exc:
        raise TreeSynthError(f"gap filling is not available in this install ({exc})") from None

    assert llm is not None
    feats = feats if feats is not None else ctx.featurizer(options.space)
    featurize = StoreFeaturize(ctx.project, feats, ctx.progress)
    result = await fill_gaps(ctx.project, llm, featurize, options, progress=ctx.progress, cancel=ctx.cancel)
    featurize.store_kept()
    save_gap_report(ctx.project, result)
    return result


def save_gap_report(project: Any, report: Any) -> None:
    """Keep a gap-filling run's report in the project (the app's Coverage page and the dataset card
    read it), and add its verification votes to the per-leaf agreement totals."""
    from ..generate.agreement import LeafAgreement, record_agreement
    from ..generate.gap_report import LAST_REPORT_KEY, report_json

    project.put_blob(LAST_REPORT_KEY, report_json(report).encode())
    if report.verify:
        verified, rejected = report.verified_by_leaf(), report.rejected_by_leaf()
        votes = {leaf: LeafAgreement(verified.get(leaf, 0), rejected.get(leaf, 0)) for leaf in {*verified, *rejected}}
        record_agreement(project, votes)


def refresh_gap_features(ctx: JobContext, options: GapOptions, result: Any) -> None:
    """After a gap-filling job: the kept samples join the scores and the map at once (the page's scores
    need their embeddings too)."""
    if not result.accepted:
        return
    if options.space != "embeddings":
        compute_features(ctx, "embeddings")
    compute_features(ctx, options.space)


async def run_import(ctx: JobContext, llm: LLM | None, options: ImportOptions) -> Any:
    return import_dataset(ctx, options)


def import_dataset(ctx: JobContext, options: ImportOptions) -> Any:
    """Import a dataset file as a new sample set; a Stop rolls the whole import back."""
    from ..data.ingest import ColumnMap, import_file

    def on_rows(done: int) -> None:
        if ctx.cancel.is_set():
            raise Cancelled("import stopped: nothing was imported")
        ctx.progress(done, 0, f"{done:,} rows")

    return import_file(
        ctx.project,
        Path(options.file),
        ColumnMap(**options.map),
        sample_set=options.sample_set,
        fmt=options.format,
        encoding=options.encoding,
        skip_empty=options.skip_empty,
        limit=options.limit,
        progress=on_rows,
    )


def route_needs_llm(options: RouteOptions) -> bool:
    from ..data.pipeline import needs_llm

    return needs_llm(options.router, options.agreement_n)


async def run_route(ctx: JobContext, llm: LLM | None, options: RouteOptions) -> RouteReport:
    from ..data.pipeline import route_dataset

    wants_embeddings = options.router == "embedding" or options.agreement_n > 0
    return await route_dataset(
        ctx.project,
        sample_set=options.sample_set,
        router=options.router,
        llm=llm,
        embedder=ctx.featurizer("embeddings") if wants_embeddings else None,
        agreement_n=options.agreement_n,
        seed=options.seed,
        concurrency=ctx.concurrency,
        progress=ctx.progress,
        cancel=ctx.cancel,
    )


async def run_balance(ctx: JobContext, llm: LLM | None, options: BalanceOptions) -> BalanceResult:
    from ..data.pipeline import balance_dataset

    assert llm is not None
    return await balance_dataset(
        ctx.project,
        llm,
        options,
        concurrency=ctx.concurrency,
        embedder=ctx.featurizer("embeddings") if options.score else None,
        gradient_featurizer=ctx.featurizer("gradients") if options.score and options.gradients else None,
        progress=ctx.progress,
        cancel=ctx.cancel,
    )


async def run_concepts_extract(ctx: JobContext, llm: LLM | None, options: ExtractOptions) -> Any:
    from ..concepts.extract import extract_concepts

    assert llm is not None
    return await extract_concepts(
        ctx.project, llm, options, progress=ctx.progress, cancel=ctx.cancel, concurrency=ctx.concurrency
    )


async def run_concepts_synth(ctx: JobContext, llm: LLM | None, options: QuestionOptions) -> Any:
    from ..concepts.questions import make_questions

    assert llm is not None
    return await make_questions(
        ctx.project, llm, options, progress=ctx.progress, cancel=ctx.cancel, concurrency=ctx.concurrency
    )


# -- summaries --------------------------------------------------------------------------------------

Stats = RunStats | None


async def run_decontaminate(ctx: JobContext, llm: LLM | None, options: DecontamOptions) -> DecontamReport:
    """Decontaminate a sample set; a Stop before the end records and drops nothing."""
    from ..data.decontam_run import decontaminate

    def progress(done: int, total: int, note: str) -> None:
        if ctx.cancel.is_set():
            raise Cancelled("decontamination stopped: nothing was recorded or dropped")
        ctx.progress(done, total, note)

    return decontaminate(ctx.project, options, progress=progress)


def _calls(stats: Stats) -> str:
    return f"{plural(stats.calls, 'LLM call')}, {stats.cached:,} cached" if stats else "no LLM calls"


def cut_note(result: Any) -> str:
    """The note on responses cut off by the token limit (not stored), or ""."""
    cut = getattr(result, "responses_cut_off", 0)
    return (
        f"; {cut} responses were cut off at the token limit and not stored (those samples have no response)"
        if cut
        else ""
    )


def short_note(result: Any) -> str:
    """The note on work that got no usable reply (it stays to do: run again to retry it), or ""."""
    from ..generate.shortfall import shortfall_of

    short = shortfall_of(result)
    return f"; partly failed: {short.message()}" if short else ""


def grow_summary(result: Any, stats: Stats) -> str:
    children = plural(result.children, "child", "children")
    return f"expanded {plural(result.expanded, 'node')} into {children}{short_note(result)} ({_calls(stats)})"


def verify_note(result: Any) -> str:
    """ "; V verified, R rejected by majority vote" when the run verified answers, else ""."""
    verified, rejected = getattr(result, "verified", 0), getattr(result, "rejected", 0)
    return f"; {verified} verified, {rejected} rejected by majority vote" if verified or rejected else ""


def synth_summary(result: Any, stats: Stats) -> str:
    repeated = len(result.repeated_leaves)
    short = (
        f"; {plural(repeated, 'leaf', 'leaves')} stayed below the target (the model repeated itself): "
        "run again with another seed to ask new questions"
        if repeated
        else ""
    )
    return (
        f"added {plural(result.added, 'sample')}, {plural(result.duplicates, 'duplicate')} dropped"
        f"{verify_note(result)}{short}"
        f"{cut_note(result)}{short_note(result)} "
        f"({_calls(stats)})"
    )


def features_summary(result: FeaturesReport, stats: Stats) -> str:
    return f"{result.space} of {result.samples} samples ({result.featurizer}) and their map are ready"


def baseline_summary(result: Any, stats: Stats) -> str:
    short = (
        f"; {result.short} short (the model repeated itself or replied unusably): make it again to ask new questions"
        if result.short
        else ""
    )
    return (
        f"flat baseline: {result.total} of {result.requested} samples, added {result.added}{short}"
        f"{cut_note(result)}{short_note(result)} ({_calls(stats)})"
    )


def gaps_summary(result: Any, stats: Stats) -> str:
    return (
        f"{result.accepted} of {result.candidates} candidates kept{verify_note(result)}; "
        f"diversity {result.before:.3f} -> {result.after:.3f} at n = {result.n}{short_note(result)} ({_calls(stats)})"
    )


def import_summary(result: Any, stats: Stats) -> str:
    skipped = f", {result.skipped_empty} empty rows skipped" if result.skipped_empty else ""
    return f"imported {result.imported:,} rows as {result.sample_set!r}{skipped}"


def route_summary(result: RouteReport, stats: Stats) -> str:
    agree = result.agreement
    rate = (
        f"; agreement with the {agree['other']} router {agree['rate']:.0%} on {agree['n']}"
        if agree and agree["rate"] is not None
        else ""
    )
    return (
        f"routed {result.routed} of {result.total}: {result.leaf} in leaves, {result.none_fits} "
        f"fit no value, {result.errors} errors{rate}{short_note(result)} ({_calls(stats)})"
    )


def balance_summary(result: BalanceResult, stats: Stats) -> str:
    short = result.short_leaves
    shortfall = (
        f"; {len(short)} leaves stayed below {result.per_leaf} (duplicates or unusable replies)" if short else ""
    )
    return (
        f"balanced into {result.target_set!r}: kept {result.kept}, synthesized {result.synthesized} "
        f"of {result.to_synthesize} planned{shortfall}{short_note(result)} ({_calls(stats)})"
    )


def concepts_extract_summary(result: Any, stats: Stats) -> str:
    failed = f", {len(result.failed)} failed (rerun with another --seed)" if result.failed else ""
    return (
        f"concepts of {result.extracted} documents extracted, {result.already} already done{failed}"
        f"{short_note(result)} ({_calls(stats)})"
    )


def concepts_synth_summary(result: Any, stats: Stats) -> str:
    short = f"; {result.short} short of the target (duplicates or unusable replies)" if result.short else ""
    return (
        f"level {result.level}: added {result.added} questions to {result.sample_set!r} ({result.total} in all), "
        f"{result.duplicates} duplicates dropped{verify_note(result)}{short}{cut_note(result)}{short_note(result)} "
        f"({_calls(stats)})"
    )


def decontam_summary(result: DecontamReport, stats: Stats) -> str:
    against = ", ".join(f"{s.source} ({s.flagged:,})" for s in result.sources)
    dropped = f", {result.dropped:,} dropped" if result.dropped else ""
    return (
        f"checked {result.checked:,} samples of {result.sample_set!r}: {result.flagged:,} contaminated{dropped} "
        f"(by eval set: {against})"
    )


# -- the specs --------------------------------------------------------------------------------------


def _always(options: Any) -> bool:
    return True


def _never(options: Any) -> bool:
    return False


def _coerce(annotation: Any, value: Any) -> Any:
    """Params are JSON (lists for tuples; numbers from number inputs): back to the field's type."""
    if isinstance(value, list) and "tuple" in str(annotation):
        return tuple(value)
    if value is None:
        return None
    simple: dict[str, Callable[[Any], Any]] = {"int": int, "float": float, "bool": bool, "str": str}
    name = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    kind = name.removesuffix(" | None")
    return simple[kind](value) if kind in simple else value


@dataclass(frozen=True)
class JobSpec(Generic[Opts, R]):
    """A job kind: its options dataclass, whether it needs an LLM, its run function, the one-line
    summary of its report, and (for background jobs only) what follows a finished run."""

    kind: Kind
    options: type[Opts]
    run: Callable[[JobContext, LLM | None, Opts], Awaitable[R]]
    summary: Callable[[R, Stats], str]
    needs_llm: Callable[[Opts], bool] = _always
    #: Unknown params are refused (growth and synthesis, whose options are many) or ignored.
    strict: bool = False
    then: Callable[[JobContext, Opts, R], None] | None = None

    def parse(self, params: dict[str, Any]) -> Opts:
        """The options of stored job params (JSON), checked; a :class:`TreeSynthError` if they are wrong."""
        known = {f.name: f.type for f in fields(self.options)}  # type: ignore[arg-type]
        if self.strict:
            unknown = set(params) - set(known) - {"max_calls"}
            if unknown:
                raise TreeSynthError(f"unknown {self.kind} options: {', '.join(sorted(unknown))}")
        try:
            clean = {k: _coerce(known[k], v) for k, v in params.items() if k in known}
            return self.options(**clean)
        except (TypeError, ValueError) as exc:
            raise TreeSynthError(f"bad {self.kind} options: {exc}") from None


SPECS: dict[str, JobSpec[Any, Any]] = {
    spec.kind: spec
    for spec in (
        JobSpec("grow", GrowOptions, run_grow, grow_summary, strict=True),
        JobSpec("synth", SynthOptions, run_synth, synth_summary, strict=True),
        JobSpec("features", FeaturesOptions, run_features, features_summary, needs_llm=_never),
        JobSpec("baseline", BaselineOptions, run_baseline, baseline_summary),
        JobSpec("fill-gaps", GapOptions, run_fill_gaps, gaps_summary, then=refresh_gap_features),
        JobSpec("import", ImportOptions, run_import, import_summary, needs_llm=_never),
        JobSpec("route", RouteOptions, run_route, route_summary, needs_llm=route_needs_llm),
        JobSpec("balance", BalanceOptions, run_balance, balance_summary),
        JobSpec("decontaminate", DecontamOptions, run_decontaminate, decontam_summary, needs_llm=_never),
        JobSpec("concepts-extract", ExtractOptions, run_concepts_extract, concepts_extract_summary, strict=True),
        JobSpec("concepts-synth", QuestionOptions, run_concepts_synth, concepts_synth_summary, strict=True),
    )
}


def job_spec(kind: str) -> JobSpec[Any, Any]:
    """The spec of ``kind``; a :class:`TreeSynthError` for an unknown kind."""
    try:
        return SPECS[kind]
    except KeyError:
        raise TreeSynthError(f"unknown job kind {kind!r}") from None
