"""Rebalancing a routed dataset over the tree's leaves (TreeSynth-balance).

Given a sample set whose samples routing placed in leaves and a target ``per_leaf``, the balanced
set is a NEW sample set (the source is never changed):

* a leaf with more than ``per_leaf`` samples keeps a seeded random ``per_leaf`` of them;
* a leaf with fewer keeps all and has the shortfall synthesized in the leaf (conditioned on its
  path, exactly like leaf synthesis, near-duplicates of the kept originals dropped).

Every row says where it came from: ``extra["provenance"]`` is ``"original"`` (with
``extra["source_set"]`` and ``extra["source_id"]``) or ``"synthesized"``. Samples routing could
not place (``"none fits"``, errors) are not in any leaf; they are counted in the plan and left out.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import TreeSynthError
from ..generate.synth import PER_CALL, SampleStore, SynthOptions, SynthReport, synthesize
from ..llm.base import LLM
from ..progress import Progress
from ..store.samples import UNROUTED, NewSample, Sample, check_dataset_set
from ..tree import model as T

BALANCED_SET = "balanced"
#: The sample set an import goes to unless named (and the set routing and balancing read).
IMPORTED_SET = "imported"


@dataclass(frozen=True)
class BalanceOptions:
    """Rebalance a routed set into ``target_set`` at ``per_leaf`` samples a leaf, scored before and after
    (Vendi over embeddings with ``score``; G-Vendi too with ``gradients``). Free of numpy, like this
    module's imports, so the ``treesynth`` commands read the defaults cheaply."""

    sample_set: str = IMPORTED_SET
    per_leaf: int = 0
    target_set: str = BALANCED_SET
    seed: int = 0
    per_call: int = PER_CALL
    responses: bool = False
    score: bool = True
    gradients: bool = False

    def __post_init__(self) -> None:
        if self.per_leaf < 1:
            raise TreeSynthError("the per-leaf target must be at least 1")


class BalanceStore(SampleStore, Protocol):
    def sample_sets(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class LeafBalance:
    """One leaf's numbers: what routing put there, what is kept, dropped and to be synthesized."""

    leaf_id: str
    path: str
    before: int
    kept: int
    dropped: int
    synthesize: int
    approved: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class BalancePlan:
    source_set: str
    target_set: str
    per_leaf: int
    seed: int
    leaves: tuple[LeafBalance, ...]
    kept_ids: tuple[int, ...]
    unrouted: int

    @property
    def to_synthesize(self) -> int:
        return sum(leaf.synthesize for leaf in self.leaves)

    @property
    def dropped(self) -> int:
        return sum(leaf.dropped for leaf in self.leaves)

    @property
    def skipped_leaves(self) -> list[str]:
        """Leaves short of samples that will not be synthesized because they are not approved."""
        return [leaf.leaf_id for leaf in self.leaves if not leaf.approved and leaf.before < self.per_leaf]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_set": self.source_set,
            "target_set": self.target_set,
            "per_leaf": self.per_leaf,
            "seed": self.seed,
            "kept": len(self.kept_ids),
            "dropped": self.dropped,
            "to_synthesize": self.to_synthesize,
            "unrouted": self.unrouted,
            "skipped_leaves": self.skipped_leaves,
            "leaves": [leaf.to_dict() for leaf in self.leaves],
        }


def plan_balance(
    tree: T.Tree,
    samples: Sequence[Sample],
    *,
    per_leaf: int,
    seed: int = 0,
    source_set: str = "",
    target_set: str = BALANCED_SET,
) -> BalancePlan:
    """Which samples each leaf keeps (seeded) and how many it needs synthesized.

    Only approved leaves are synthesized into; an unapproved leaf keeps its originals (downsampled)
    and is listed in :attr:`BalancePlan.skipped_leaves` when it stays short.
    """
    if per_leaf < 1:
        raise TreeSynthError("the per-leaf target must be at least 1")
    from .routing import path_label  # routing needs numpy; BalanceOptions's importers (the CLI) must not

    by_leaf: dict[str, list[Sample]] = {}
    for sample in samples:
        by_leaf.setdefault(sample.leaf_id, []).append(sample)
    leaves, kept = [], []
    for leaf in tree.leaves():
        members = by_leaf.get(leaf.id, [])
        rng = random.Random(f"{seed}:{leaf.id}")
        keep = sorted(rng.sample(members, per_leaf), key=lambda s: s.id) if len(members) > per_leaf else members
        kept += [s.id for s in keep]
        approved = tree.is_approved_path(leaf.id)
        short = per_leaf - len(keep)
        leaves.append(
            LeafBalance(
                leaf.id,
                path_label(tree, leaf.id),
                len(members),
                len(keep),
                len(members) - len(keep),
                short if approved else 0,
                approved,
            )
        )
    leaf_ids = {leaf.id for leaf in tree.leaves()}
    unrouted = sum(1 for s in samples if s.leaf_id == UNROUTED or s.leaf_id not in leaf_ids)
    return BalancePlan(source_set, target_set, per_leaf, seed, tuple(leaves), tuple(kept), unrouted)


def original_rows(
    samples: Iterable[Sample], kept_ids: Iterable[int], *, source_set: str, target_set: str
) -> list[NewSample]:
    """The kept originals as rows of the balanced set, keyed by their source id (idempotent)."""
    wanted = set(kept_ids)
    return [
        NewSample(
            leaf_id=s.leaf_id,
            key=f"orig:{s.id}",
            instruction=s.instruction,
            response=s.response,
            path=s.path,
            model=s.model,
            sample_set=target_set,
            extra={**s.extra, "provenance": "original", "source_set": source_set, "source_id": s.id},
        )
        for s in samples
        if s.id in wanted
    ]


@dataclass
class BalanceReport:
    plan: BalancePlan
    copied: int = 0
    synth: SynthReport = field(default_factory=SynthReport)
    after: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        counts = {
            leaf.leaf_id: {"before": leaf.before, "after": self.after.get(leaf.leaf_id, 0)} for leaf in self.plan.leaves
        }
        return {
            **self.plan.to_dict(),
            "copied": self.copied,
            "synthesized": self.synth.added,
            "failed_calls": self.synth.failed_calls,
            "responses_cut_off": self.synth.responses_cut_off,
            "short_leaves": self.synth.short_leaves,
            "counts": counts,
            "wanted": self.synth.wanted,
            "failed_leaves": self.synth.failed_leaves,
            "last_problem": self.synth.last_problem,
        }


def shortfall_options(
    per_leaf: int,
    targets: Iterable[str],
    *,
    per_call: int = PER_CALL,
    responses: bool = False,
    seed: int = 0,
    target_set: str = BALANCED_SET,
) -> SynthOptions:
    """How the short leaves ``targets`` are synthesized up to ``per_leaf`` in the balanced set: in calls
    of leaf synthesis's :data:`~treesynth_core.generate.synth.PER_CALL` (the paper's balance fills in batches of
    10 too), every leaf to the same ``per_leaf`` (sampled nodes do not scale a balance target)."""
    return SynthOptions(
        per_leaf=per_leaf,
        per_call=min(per_call, per_leaf),
        responses=responses,
        seed=seed,
        leaf_ids=tuple(targets),
        sample_set=target_set,
        sampled_scale=1,
    )


async def balance(
    store: BalanceStore,
    llm: LLM,
    options: BalanceOptions,
    *,
    concurrency: int = 8,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> BalanceReport:
    """Build the balanced set ``options.target_set`` from ``options.sample_set``: copy the kept
    originals, then synthesize each approved leaf's shortfall. Idempotent: a rerun (after Ctrl-C, or
    with the same options) adds only what is missing, and cached LLM replies make it free."""
    source_set, target_set, per_leaf, seed = options.sample_set, options.target_set, options.per_leaf, options.seed
    check_dataset_set(target_set)
    if target_set == source_set:
        raise TreeSynthError("the balanced set must be a new sample set, not the source")
    sets = store.sample_sets()
    if not sets.get(source_set):
        raise TreeSynthError(f"the sample set {source_set!r} is empty or missing: import a dataset first")
    tree = store.tree()
    samples = store.samples(sample_set=source_set)
    plan = plan_balance(tree, samples, per_leaf=per_leaf, seed=seed, source_set=source_set, target_set=target_set)
    if not plan.kept_ids and not plan.to_synthesize:
        raise TreeSynthError("no sample is routed to a leaf and no leaf is approved: route the dataset first")
    report = BalanceReport(plan)
    report.copied = store.add_samples(
        original_rows(samples, plan.kept_ids, source_set=source_set, target_set=target_set)
    )
    targets = tuple(leaf.leaf_id for leaf in plan.leaves if leaf.synthesize > 0)
    if progress is not None:
        progress(0, len(targets), f"copied {report.copied:,} originals; synthesizing {plan.to_synthesize:,} samples")
    if targets:
        synth = shortfall_options(
            per_leaf, targets, per_call=options.per_call, responses=options.responses, seed=seed, target_set=target_set
        )
        report.synth = await synthesize(store, llm, synth, progress=progress, cancel=cancel, concurrency=concurrency)
    report.after = store.sample_counts(sample_set=target_set)
    return report
