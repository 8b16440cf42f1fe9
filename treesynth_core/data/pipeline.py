"""Bring your own data: the steps the CLI and the app's Data page share.

Import (:mod:`treesynth_core.data.ingest`) puts a dataset in its own sample set; then

* :func:`route_dataset` places every sample in a leaf with the chosen router, compares the two
  routers on a seeded sample, and reports "none fits" and errors by node;
* :func:`data_pivots` lets growth draw pivots from the dataset (a tree for data that has none);
* :func:`balance_dataset` builds the rebalanced set and scores it against the source at equal n.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..coverage.features.embeddings import Featurizer, ensure_features
from ..coverage.report import compare_sets
from ..errors import TreeSynthError
from ..generate.shortfall import Shortfall
from ..llm.base import LLM
from ..progress import Progress
from ..store import Project
from ..store.samples import Route, Sample
from .balance import BalanceOptions, balance
from .routing import (
    DataPivots,
    agreement,
    assign,
    current_routes,
    pick,
    require_router,
    route_with_embeddings,
    route_with_llm,
)

#: Samples the other router routes to measure agreement, by default.
AGREEMENT_N = 50


@dataclass(frozen=True)
class RouteReport:
    """What routing a sample set did (``--json`` prints these fields, in this order)."""

    total: int
    routed: int
    not_routed: int
    leaf: int
    none_fits: int
    errors: int
    #: Samples per leaf id (every leaf of the tree, 0 for the empty ones).
    per_leaf: dict[str, int]
    #: Where "none fits" stopped: ``{"node_id", "path", "count"}`` rows, most frequent first.
    none_fits_at: list[dict[str, Any]]
    router: str
    sample_set: str
    #: The other router on a seeded sample (see :func:`~treesynth_core.data.routing.agreement`) and
    #: ``"other"`` (its name); None when not measured.
    agreement: dict[str, Any] | None
    #: Samples the LLM router was asked to route in this run (with ``router == "llm"``), and those of
    #: them it got no usable reply for (they stay to route: a rerun asks again).
    asked: int = 0
    failed: int = 0
    #: Why the last of those failed.
    last_problem: str = ""
    #: Leaves holding more than a quarter of the samples in leaves: ``{"leaf_id", "path", "count"}``.
    crowded: list[dict[str, Any]] = field(default_factory=list)

    def shortfall(self) -> Shortfall | None:
        """The samples the LLM router got no usable reply for (None when it got one for every sample)."""
        if not self.failed:
            return None
        return Shortfall(
            "samples routed",
            self.asked - self.failed,
            self.asked,
            "samples",
            self.failed,
            self.last_problem,
            "run route again",
        )


@dataclass(frozen=True)
class BalanceResult:
    """A balanced set and, with an embedder, its scores against the source at equal n (``--json`` prints
    these fields, in this order; see :meth:`treesynth_core.data.balance.BalanceReport.to_dict`)."""

    source_set: str
    target_set: str
    per_leaf: int
    seed: int
    kept: int
    dropped: int
    to_synthesize: int
    unrouted: int
    skipped_leaves: list[str]
    leaves: list[dict[str, Any]]
    copied: int
    synthesized: int
    failed_calls: int
    responses_cut_off: int
    short_leaves: list[str]
    #: ``{leaf_id: {"before": n, "after": n}}``.
    counts: dict[str, dict[str, int]]
    #: :func:`~treesynth_core.coverage.report.compare_sets` of ``before`` and ``after``; None without an embedder.
    scores: dict[str, Any] | None
    #: Samples the run set out to synthesize, the leaves left short by unusable replies, and why the
    #: last of those replies was unusable.
    wanted: int = 0
    failed_leaves: list[str] = field(default_factory=list)
    last_problem: str = ""

    def shortfall(self) -> Shortfall | None:
        """What unusable replies cost the synthesis of short leaves (None when they cost nothing)."""
        if not self.failed_leaves:
            return None
        return Shortfall(
            "samples synthesized",
            self.synthesized,
            self.wanted,
            "leaves",
            len(self.failed_leaves),
            self.last_problem,
            "run balance again",
        )


def _embed_fn(embedder: Any) -> Callable[[list[str]], np.ndarray]:
    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(embedder.embed(texts), dtype=np.float32)

    return embed


def _features_fn(project: Project, embedder: Featurizer, progress: Progress | None) -> Callable[[list[Sample]], Any]:
    def report(done: int, total: int, _note: str = "") -> None:
        if progress:
            progress(done, total, "embedding the samples (stored for next time)")

    def features(samples: list[Sample]) -> np.ndarray:
        return ensure_features(project, samples, embedder, progress=report)

    return features


def default_router(backend: str) -> str:
    """The paper's LLM router, except on the embedded 135M model, which answers "none of these" to
    almost everything: the embedding router there."""
    return "embedding" if backend == "embedded" else "llm"


def needs_llm(router: str, agreement_n: int) -> bool:
    """Whether routing needs an LLM: the LLM router, or agreement measured against it."""
    return require_router(router) == "llm" or agreement_n > 0


async def route_dataset(
    project: Project,
    *,
    sample_set: str,
    router: str,
    llm: LLM | None = None,
    embedder: Any = None,
    agreement_n: int = AGREEMENT_N,
    seed: int = 0,
    concurrency: int = 8,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> RouteReport:
    """Route every sample of ``sample_set`` with ``router`` and place it (a leaf, or unrouted with the
    reason); with ``agreement_n`` > 0 the other router routes a seeded sample of that size and the
    agreement is reported. Returns the routing summary with ``"agreement"``."""
    require_router(router)
    samples = project.samples(sample_set=sample_set)
    if not samples:
        raise TreeSynthError(f"the sample set {sample_set!r} is empty or missing: import a dataset first")
    if needs_llm(router, agreement_n) and llm is None:
        raise TreeSynthError("LLM routing (or measuring agreement against it) needs an LLM")
    if (router == "embedding" or agreement_n > 0) and embedder is None:
        raise TreeSynthError("embedding routing (or measuring agreement against it) needs an embedder")

    async def with_llm(ids: Sequence[int] | None) -> list[Route]:
        assert llm is not None
        return await route_with_llm(
            project,
            llm,
            sample_set=sample_set,
            sample_ids=ids,
            seed=seed,
            concurrency=concurrency,
            progress=progress,
            cancel=cancel,
        )

    def with_embeddings() -> None:
        if progress:
            progress(0, len(samples), "embedding the samples")
        route_with_embeddings(
            project, _embed_fn(embedder), _features_fn(project, embedder, progress), sample_set=sample_set
        )

    ids = [s.id for s in samples]
    routed: list[Route] = []
    if router == "llm":
        routed = await with_llm(None)
        if agreement_n > 0:
            with_embeddings()
    else:
        with_embeddings()
        if agreement_n > 0:
            await with_llm(pick(ids, agreement_n, seed))
    counts = assign(project, router, sample_set=sample_set)
    other = "embedding" if router == "llm" else "llm"
    agree = None
    if agreement_n > 0:
        mine = current_routes(project, router, sample_set=sample_set)
        theirs = current_routes(project, other, sample_set=sample_set)
        agree = {**agreement(mine, theirs), "other": other}
    failed = [r for r in routed if r.status == "error"]
    return RouteReport(
        **counts,
        router=router,
        sample_set=sample_set,
        agreement=agree,
        asked=len(routed),
        failed=len(failed),
        last_problem=failed[-1].detail if failed else "",
    )


def data_pivots(
    project: Project, sample_set: str, embedder: Any, *, seed: int = 0, progress: Progress | None = None
) -> DataPivots:
    """Pivots from the dataset in ``sample_set`` for growing a tree (``grow --pivots-from``)."""
    samples = project.samples(sample_set=sample_set)
    if len(samples) < 2:
        raise TreeSynthError(f"the sample set {sample_set!r} has {len(samples)} samples: import a dataset first")
    X = ensure_features(project, samples, embedder, progress=progress)
    return DataPivots([s.instruction for s in samples], X, _embed_fn(embedder), seed=seed)


async def balance_dataset(
    project: Project,
    llm: LLM,
    options: BalanceOptions,
    *,
    concurrency: int = 8,
    embedder: Any = None,
    gradient_featurizer: Any = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> BalanceResult:
    """Build the balanced set (see :mod:`treesynth_core.data.balance`) and, with an embedder, score the
    source and the balanced set at equal n (Vendi; G-Vendi with a gradient featurizer)."""
    report = await balance(project, llm, options, concurrency=concurrency, progress=progress, cancel=cancel)
    scores = None
    if embedder is not None:
        sets = {
            "before": project.samples(sample_set=options.sample_set),
            "after": project.samples(sample_set=options.target_set),
        }
        scores = compare_sets(
            project,
            sets,
            embedder=embedder,
            gradient_featurizer=gradient_featurizer,
            seed=options.seed,
            progress=progress,
        )
    return BalanceResult(**report.to_dict(), scores=scores)
