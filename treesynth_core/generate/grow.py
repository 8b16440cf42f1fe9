"""Growing the partition tree: pivots -> criterion determination -> subspace coverage -> children.

This is TreeSynth's algorithm (arXiv 2503.17195, Algorithm 1), one level at a time with the nodes
of a level expanded concurrently. For each growable node:

1. **Pivots**: ``pivots`` samples conditioned on the node's path (temperature 0.7).
2. **Criterion**: ONE criterion not used by an ancestor, and each pivot's value of it
   (temperature 1.0). The reply is re-asked (bounded) when it repeats an ancestor's criterion or
   assigns a vague ("other") value. A value that glues two of the reply's other values together
   ("Addition and subtraction" beside "Addition" and "Subtraction") is dropped and noted; the rest
   of the reply stands. A value that only may combine two is kept and *flagged* for a person's
   review (:mod:`~treesynth_core.prompts.labels`).
3. **Coverage**: the values the pivots did not show are added until the LLM says the list is
   complete (``complete: true``, or no new values), or ``coverage_rounds`` rounds of
   ``coverage_batch`` values have passed (temperature 0.7). Duplicates, overlaps, vague values and
   values glued from existing ones are dropped, and the node's note says so.
4. **Children**: one proposed child per value.

**The "infinite" dimension rule** (the paper's, with its threshold N = 50). A criterion collapses
into ONE *sampled* child only when it is open-ended: it has more than ``max_values`` values, or the
LLM still says the list is incomplete when the coverage cap is reached. Once the list is open-ended,
coverage keeps asking (within the cap) until it holds more than ``max_values`` values, as the
paper's loop does; the pool keeps at most ``pool_cap``. Each prompt along that path draws one value
at random (seeded). A complete list of up to ``max_values`` values never collapses.

A node whose pivots or criterion get no usable reply (every attempt failed to parse or validate) is
no leaf: its expansion *failed*; its note says why and it stays growable, so the next ``grow``
retries it (the unusable replies were not cached, so it asks again). A node kept as a leaf for a
reason (too few dataset samples in its subspace, a criterion already used above) is settled. With
review on (the default) only approved nodes grow and new children arrive as *proposed*;
``auto_approve`` reproduces the paper's unattended run.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..errors import Cancelled, ParseError
from ..llm.base import LLM, ChatRequest, in_completion_order
from ..progress import Progress
from ..prompts import templates as P
from ..prompts.labels import judge_all
from ..prompts.labels import key as value_key
from ..prompts.replies import (
    CoverageReply,
    CriterionReply,
    SamplesReply,
    ask_json,
    is_placeholder,
    label_problem,
    overlaps,
)
from ..seeding import stable_seed
from ..tree import model as T
from .shortfall import Shortfall


class TreeStore(Protocol):
    """What growth needs from a project: the current tree and a way to commit an edit."""

    def tree(self) -> T.Tree: ...

    def apply(
        self, kind: str, fn: Callable[[T.Tree], T.Tree], *, args: dict | None = None, actor: str = "human"
    ) -> T.Tree: ...


@dataclass(frozen=True)
class GrowOptions:
    """The knobs of growth.

    These defaults are the paper's (arXiv 2503.17195, reference ``config.py``): 10 pivots at
    temperature 0.7, the criterion at 1.0 with 5 attempts, coverage at 0.7 asking for 10 values at a
    time, and more than ``max_values`` = 50 values make one sampled child. Four differ:

    - ``max_depth`` is 2 (paper 4), so a person reviews the first levels before paying for more;
    - ``auto_approve`` is off (the paper runs unattended); :func:`paper_options` (``treesynth grow
      --paper``) sets depth 4 and auto-approve;
    - ``coverage_rounds`` caps coverage at 8 rounds of ``coverage_batch`` values (the paper asks
      until the model says complete, without a bound); 8 x 10 new values is enough to pass the
      threshold of 50 when a list is open-ended;
    - ``pool_cap``: a sampled child's pool keeps at most 200 values (the paper keeps all, and stops
      asking once it holds more than 50, as we do).
    """

    max_depth: int = 2
    #: More values than this make one sampled child (the paper's "infinite" threshold N).
    max_values: int = 50
    pivots: int = 10
    pivot_temperature: float = 0.7
    criterion_temperature: float = 1.0
    coverage_temperature: float = 0.7
    criterion_attempts: int = 5
    #: Coverage asks at most this many times (each for up to ``coverage_batch`` new values).
    coverage_rounds: int = 8
    coverage_batch: int = 10
    pool_cap: int = 200
    max_tokens: int = 1024
    auto_approve: bool = False
    seed: int = 0
    only: tuple[str, ...] = ()
    #: Grow from a dataset: the pivots of each node are drawn from this sample set's samples that
    #: fall in the node's subspace, instead of being generated (see :class:`PivotSource`).
    pivots_from: str = ""

    def __post_init__(self) -> None:
        for name in ("max_depth", "max_values", "pivots", "criterion_attempts", "coverage_rounds", "coverage_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_depth > 8:
            raise ValueError("max_depth above 8 makes trees no one can review; the paper uses 4")


#: What the paper preset changes from :class:`GrowOptions`' defaults: the paper's depth and its
#: unattended run (the threshold of 50 and coverage until complete are the defaults already).
PAPER_PRESET: dict[str, Any] = {"max_depth": 4, "auto_approve": True}


def paper_options(**given: Any) -> GrowOptions:
    """The paper's unattended run (``treesynth grow --paper``): depth 4, auto-approve, more than 50
    values make a sampled child, coverage until the model says complete (within the cap). Options
    in ``given`` (the ones a person set explicitly) win over the preset."""
    return GrowOptions(**{**PAPER_PRESET, **given})


@dataclass
class GrowReport:
    """What a growth run did."""

    expanded: int = 0
    children: int = 0
    leaves: int = 0
    sampled: int = 0
    failed: list[str] = field(default_factory=list)
    levels: int = 0
    #: Children kept but flagged for a person's review (values that may combine two).
    flagged: int = 0
    #: Why the last failed expansion failed (see ``failed``: those nodes stay growable).
    last_problem: str = ""

    def shortfall(self) -> Shortfall | None:
        """The expansions that failed for want of a usable reply (None when none did)."""
        if not self.failed:
            return None
        done = self.expanded - len(self.failed)
        return Shortfall(
            "nodes expanded", done, self.expanded, "nodes", len(self.failed), self.last_problem, "run grow again"
        )


#: How the note of a node whose expansion failed begins (the node stays growable).
FAILED_NOTE = "expansion failed: "
#: How such a node's note began before failed expansions stayed growable (it was marked expanded).
_LEGACY_FAILED_NOTE = "kept as a leaf: the model gave no usable "


def expansion_failed(node: T.Node) -> bool:
    """True for a node whose last expansion failed for want of a usable reply: it is no settled
    leaf and grows again (also one a project marked as a leaf before failures stayed growable)."""
    return node.note.startswith(FAILED_NOTE) or (node.expanded and node.note.startswith(_LEGACY_FAILED_NOTE))


def render_path(path: Sequence[T.PathStep], rng: random.Random) -> list[tuple[str, str]]:
    """A path as (criterion, value) pairs, drawing a value for each sampled step."""
    return [(s.criterion, rng.choice(s.pool) if s.pool else s.value) for s in path]


def growable(tree: T.Tree, options: GrowOptions) -> list[T.Node]:
    """The nodes to expand now: active, unexpanded (or whose expansion failed), unlocked, childless,
    shallower than the cap, approved (unless auto-approving), and inside ``options.only`` subtrees
    when given."""
    scope: set[str] | None = None
    if options.only:
        scope = {n.id for node_id in options.only for n in tree.subtree(node_id)}
    out = []
    for node in tree.nodes.values():
        if scope is not None and node.id not in scope:
            continue
        if (node.expanded and not expansion_failed(node)) or node.locked or node.depth >= options.max_depth:
            continue
        if tree.children(node.id) or not tree.is_active(node.id):
            continue
        if not options.auto_approve and not tree.is_approved_path(node.id):
            continue
        out.append(node)
    out.sort(key=lambda n: (n.depth, n.id))
    return out


@dataclass(frozen=True)
class Split:
    """The outcome of expanding one node, before it is committed to the tree."""

    pivots: tuple[str, ...]
    criterion: str | None
    values: tuple[str, ...] = ()
    pool: tuple[str, ...] = ()
    note: str = ""
    call_id: str | None = None
    #: (value, reason) for each value kept but flagged for a person's review.
    flags: tuple[tuple[str, str], ...] = ()
    #: Why the expansion failed (no usable reply), or "": the node then stays growable.
    problem: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.problem)

    @staticmethod
    def failure(error: ParseError, pivots: Sequence[str] = ()) -> Split:
        note = f"{FAILED_NOTE}{error}; grow again to retry"
        return Split(pivots=tuple(pivots), criterion=None, note=note, problem=str(error) or "no usable reply")


class PivotSource(Protocol):
    """Gives a node's pivots from existing data: up to ``n`` samples of the node's subspace."""

    def __call__(self, tree: T.Tree, node: T.Node, n: int) -> list[str]: ...


class Grower:
    """Expands nodes with an LLM. Stateless apart from the task text and options."""

    def __init__(
        self, llm: LLM, task: str, style: str, options: GrowOptions, pivot_source: PivotSource | None = None
    ) -> None:
        self.llm, self.task, self.style, self.options = llm, task, style, options
        self.pivot_source = pivot_source
        self.profile = P.profile_for(llm)

    def _request(
        self,
        prompt: str,
        schema: dict,
        name: str,
        temperature: float,
        seed: int,
        node: T.Node,
        purpose: str,
        max_tokens: int,
    ) -> ChatRequest:
        return ChatRequest.chat(
            None,
            prompt,
            temperature=temperature,
            max_tokens=min(max_tokens, self.options.max_tokens),
            seed=seed,
            schema=schema,
            schema_name=name,
            meta={"purpose": purpose, "node_id": node.id},
        )

    async def expand(self, tree: T.Tree, node: T.Node) -> Split:
        path_steps = tree.path(node.id)
        key = [(s.criterion, s.value, len(s.pool)) for s in path_steps]
        rng = random.Random(stable_seed(self.options.seed, "path", key))
        path = render_path(path_steps, rng)
        if self.pivot_source is not None:
            pivots = self.pivot_source(tree, node, self.options.pivots)
            if len(pivots) < 2:
                note = f"kept as a leaf: only {len(pivots)} dataset sample(s) fall in this subspace"
                return Split(pivots=tuple(pivots), criterion=None, note=note)
        else:
            try:
                pivots = await self._pivots(node, path, key)
            except ParseError as exc:
                return Split.failure(exc)
        excluded = [s.criterion for s in path_steps]
        try:
            criterion, assigned, call_id = await self._criterion(node, path, pivots, excluded, key)
        except ParseError as exc:
            return Split.failure(exc, pivots)
        values, flags, dropped = _distinct(assigned)
        cover = await self._coverage(node, path, criterion, values, key)
        notes = dropped + cover.dropped
        note = f"dropped {len(notes)}: " + "; ".join(notes[:5]) if notes else ""
        threshold = self.options.max_values
        if len(cover.values) > threshold or cover.open_ended:
            pool = tuple(cover.values[: self.options.pool_cap])
            why = (
                f"{len(cover.values)} values exceed the threshold of {threshold}"
                if len(cover.values) > threshold
                else f"the LLM still saw missing values after {self.options.coverage_rounds} coverage rounds"
            )
            sampled = f"{why}: one sampled child draws a value from {len(pool)} at random per prompt"
            note = f"{note}; {sampled}" if note else sampled
            return Split(tuple(pivots), criterion, pool=pool, note=note, call_id=call_id)
        flags.update(cover.flags)
        kept = tuple((v, flags[v]) for v in cover.values if v in flags)
        return Split(tuple(pivots), criterion, values=tuple(cover.values), note=note, call_id=call_id, flags=kept)

    async def _pivots(self, node: T.Node, path: list[tuple[str, str]], key: object) -> list[str]:
        n = self.options.pivots
        request = self._request(
            P.samples_prompt(self.task, self.style, path, n, profile=self.profile),
            P.samples_schema(n),
            "samples",
            self.options.pivot_temperature,
            stable_seed(self.options.seed, "pivots", key),
            node,
            "pivots",
            P.samples_budget(n),
        )

        def check(reply: SamplesReply) -> str | None:
            real = {T.normalize(s) for s in reply.samples if not is_placeholder(s)}
            return None if len(real) >= min(2, n) else f"write {n} different, complete samples"

        reply, _ = await ask_json(self.llm, request, SamplesReply, attempts=3, check=check, what="pivot samples")
        unique: dict[str, str] = {}
        for sample in reply.samples[:n]:
            if not is_placeholder(sample):
                unique.setdefault(T.normalize(sample), sample)
        return list(unique.values())

    async def _criterion(
        self, node: T.Node, path: list[tuple[str, str]], pivots: list[str], excluded: list[str], key: object
    ) -> tuple[str, list[str], str | None]:
        used = {T.normalize(c) for c in excluded}
        request = self._request(
            P.criterion_prompt(self.task, self.style, path, pivots, excluded, profile=self.profile),
            P.criterion_schema(len(pivots)),
            "criterion",
            self.options.criterion_temperature,
            stable_seed(self.options.seed, "criterion", key),
            node,
            "criterion",
            P.labels_budget(len(pivots) + 1),
        )

        def check(reply: CriterionReply) -> str | None:
            name = T.clean_label(reply.criterion)
            if not name:
                return "the criterion is empty"
            if T.normalize(name) == T.normalize(self.task):
                return "the criterion must be one dimension of the task, not the task itself"
            if T.normalize(name) in used:
                return f'the criterion "{name}" is already used above; choose a different one'
            if len(reply.values) != len(pivots):
                return f"give exactly {len(pivots)} values, one per sample"
            for value in reply.values:  # a glued value is dropped later, not re-asked
                problem = label_problem(value)
                if problem:
                    return f"{problem} is not allowed"
            return None

        reply, result = await ask_json(
            self.llm,
            request,
            CriterionReply,
            attempts=self.options.criterion_attempts,
            check=check,
            what="criterion",
        )
        return T.clean_label(reply.criterion), [T.clean_label(v) for v in reply.values], result.call_id

    async def _coverage(
        self, node: T.Node, path: list[tuple[str, str]], criterion: str, assigned: list[str], key: object
    ) -> Coverage:
        values = list(assigned)
        flags: dict[str, str] = {}
        dropped: list[str] = []
        open_ended = False
        batch = self.options.coverage_batch
        for round_no in range(self.options.coverage_rounds):
            request = self._request(
                P.coverage_prompt(self.task, self.style, path, criterion, values, batch, profile=self.profile),
                P.coverage_schema(batch),
                "coverage",
                self.options.coverage_temperature,
                stable_seed(self.options.seed, "coverage", key, criterion, round_no),
                node,
                "coverage",
                P.labels_budget(batch),
            )
            try:
                reply, _ = await ask_json(self.llm, request, CoverageReply, attempts=2, what="value list")
            except ParseError as exc:
                dropped.append(f"coverage round {round_no + 1} failed ({exc})")
                open_ended = False
                break
            new = [T.clean_label(raw) for raw in reply.new_values]
            judged = judge_all(new, values)
            added = 0
            for value in new:
                problem = label_problem(value)
                if problem is None and any(value_key(value) == value_key(v) for v in values):
                    problem = f'"{value}" (repeats an existing value)'
                if problem is None and judged[value].verdict == "combined":
                    problem = judged[value].reason
                if problem is None and any(overlaps(value, v) for v in values):
                    problem = f'"{value}" (overlaps an existing value)'
                if problem:
                    dropped.append(problem)
                    continue
                values.append(value)
                if judged[value].verdict == "flagged":
                    flags[value] = judged[value].reason
                added += 1
            open_ended = not reply.complete and added > 0
            if not open_ended or len(values) > self.options.max_values:
                break
        return Coverage(values, flags, dropped, open_ended)


@dataclass
class Coverage:
    """What the coverage rounds gave: the values (the assigned ones first), the flagged ones, what
    was dropped and why, and whether the LLM still called the list incomplete when it stopped."""

    values: list[str]
    flags: dict[str, str]
    dropped: list[str]
    open_ended: bool


def _distinct(assigned: Sequence[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """The criterion reply's distinct values with glued ones dropped: (values, flags, notes)."""
    values: list[str] = []
    for value in assigned:
        if not any(value_key(value) == value_key(v) for v in values):
            values.append(value)
    judged = judge_all(values)
    notes = [judged[v].reason + " (the pivot keeps the split)" for v in values if judged[v].verdict == "combined"]
    flags = {v: judged[v].reason for v in values if judged[v].verdict == "flagged"}
    return [v for v in values if judged[v].verdict != "combined"], flags, notes


def commit_split(store: TreeStore, node: T.Node, split: Split, llm: LLM, auto_approve: bool) -> T.Tree:
    """Write one node's expansion into the store as a single undoable ``grow`` edit."""
    provenance = T.Provenance("llm", model=llm.model, call_id=split.call_id)

    def edit(current: T.Tree) -> T.Tree:
        if node.id not in current.nodes or current.children(node.id):
            return current  # removed or split by someone else meanwhile: leave it alone
        if split.failed:  # not a leaf: it stays growable, its note says why
            return T.with_nodes(current, [replace(current.node(node.id), expanded=False, note=split.note)])
        if split.criterion is None:
            return T.mark_leaf(current, node.id, pivots=split.pivots, note=split.note)
        siblings_ok = _fits(current, node.id, split.criterion)
        if not siblings_ok:
            return T.mark_leaf(
                current,
                node.id,
                pivots=split.pivots,
                note=f'kept as a leaf: criterion "{split.criterion}" is already used above',
            )
        grown = T.attach_split(
            current,
            node.id,
            criterion=split.criterion,
            values=list(split.values),
            pivots=split.pivots,
            provenance=provenance,
            pool=split.pool,
            note=split.note,
            flags=dict(split.flags),
        )
        if auto_approve:
            grown = T.approve(grown, [k.id for k in grown.children(node.id)], clear_flags=False)
        return grown

    args = {"node_id": node.id, "criterion": split.criterion, "values": list(split.values or split.pool)}
    return store.apply("grow", edit, args=args, actor="llm")


def _fits(tree: T.Tree, node_id: str, criterion: str) -> bool:
    used = {T.normalize(a.split_criterion or "") for a in tree.ancestors(node_id)}
    return T.normalize(criterion) not in used


async def grow(
    store: TreeStore,
    llm: LLM,
    options: GrowOptions,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    pivot_source: PivotSource | None = None,
) -> GrowReport:
    """Grow the stored tree level by level until nothing is growable. Each node's result is
    committed as soon as it arrives, so an interrupted run keeps all finished nodes. With
    ``pivot_source`` (a tree for data that has none), pivots come from the data, not the LLM."""
    report = GrowReport()
    done = 0
    failed: set[str] = set()  # expansions that failed in this run are retried by the next run only
    while True:
        tree = store.tree()
        frontier = [n for n in growable(tree, options) if n.id not in failed]
        if not frontier:
            break
        depth = frontier[0].depth
        level = [n for n in frontier if n.depth == depth]
        total = done + len(frontier)
        grower = Grower(llm, tree.task, tree.style, options, pivot_source)

        async def run(node: T.Node, tree: T.Tree = tree, grower: Grower = grower) -> tuple[T.Node, Split]:
            if cancel is not None and cancel.is_set():
                raise Cancelled("growth stopped; finished nodes are saved")
            return node, await grower.expand(tree, node)

        async with in_completion_order(run(node) for node in level) as finished:
            for next_done in finished:
                node, split = await next_done
                commit_split(store, node, split, llm, options.auto_approve)
                done += 1
                report.expanded += 1
                if split.failed:
                    failed.add(node.id)
                    report.failed.append(node.id)
                    report.last_problem = split.problem
                elif split.criterion is None:
                    report.leaves += 1
                else:
                    report.children += len(split.values) or 1
                    report.flagged += len(split.flags)
                    report.sampled += bool(split.pool)
                if progress:
                    progress(done, total, f"level {depth + 1}: {node.value or 'root'} -> {split.criterion or 'leaf'}")
                if cancel is not None and cancel.is_set():
                    raise Cancelled("growth stopped; finished nodes are saved")
        report.levels = max(report.levels, depth + 1)
    return report
