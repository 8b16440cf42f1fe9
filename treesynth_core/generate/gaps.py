"""Gap filling (Prismatic Synthesis): generate where the pool is sparse, keep what lands there.

Prismatic Synthesis (Jung et al., arXiv 2505.20161; ``shared/research/prismatic_synthllm.md``, A3)
grows a dataset where a feature space, normally the G-Vendi gradient features of
:mod:`treesynth_core.coverage.features.gradients`, is thinly covered. Each round of :func:`fill_gaps`:

1. clusters the pool (the tree's samples, plus what earlier rounds kept) with
   :func:`spherical_kmeans`, k = max(2, round(n / 10));
2. calls a cluster *sparse* when its size is below the size at index ⌊k · sparse_fraction⌋ of the
   ascending sizes (every cluster, when none is);
3. for each call, takes one sparse cluster, one of its samples' leaf, and up to five few-shot
   examples of that leaf from sparse clusters, and asks the generator for new samples of the same
   kind but different (:func:`~treesynth_core.prompts.templates.gap_prompt`, with the leaf's path);
4. featurizes the candidates, keeps those whose nearest centroid (cosine) is a sparse cluster and
   that are no near-duplicate of their leaf, and stores them in the ``"tree"`` set under the
   examples' leaf, key ``"gap:<round>:<call>:<item>"``, ``extra={"origin": "fill-gaps", "round": r}``.

With ``verify`` = k (:mod:`~treesynth_core.generate.verify`), each candidate is answered k times
before step 4 and kept only when a strict majority agree on the final answer (the released code's
solution step); the kept candidate carries the first majority answer as its response, and the
report counts verified and rejected candidates per round and per leaf (:class:`GapRound`).

The report (:mod:`~treesynth_core.generate.gap_report`) also gives each round's cluster-size histogram
and the Vendi-vs-n curve of the pool against a random-acceptance baseline that keeps as many of each
round's (verified) candidates at random (:mod:`~treesynth_core.generate.gap_curves`), as the paper
compares.

Cluster sizes are not updated within a round, as in the released code. The totals give the
candidates, the kept ones, and the diversity (Vendi of the features: G-Vendi for gradient features)
before and after, at equal n: the grown pool is subsampled (seeded) to the original size.

Requests are deterministic (seeds from :func:`~treesynth_core.generate.grow.stable_seed`), so rerunning the
same command on the same project is served from the LLM cache. Round numbers continue after the
highest round stored, so a later run asks new questions, unless the last round kept nothing: then
the pool is unchanged and a rerun repeats it; change the seed for other candidates.

``featurize`` receives the pool (stored samples, with ids) and the candidates, which are not stored
yet and have ``id == 0``: a featurizer that caches by sample id must compute those afresh.
:class:`StoreFeaturize` is that function over a project's feature store; it keeps the candidates'
vectors so that the kept ones are stored once they have ids (gradient features are slow: a kept
sample is never featurized twice).
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from ..coverage.diversity import subsample_indices, vendi_score
from ..errors import Cancelled, ParseError, TreeSynthError
from ..llm.base import LLM, ChatRequest, ChatResult, useful_concurrency
from ..progress import Progress
from ..prompts import templates as P
from ..prompts.replies import SamplesReply, ask_json, cut_off_problem, is_cut_off, is_placeholder
from ..prompts.templates import EXAMPLE_CHARS, gap_prompt
from ..seeding import stable_seed
from ..store.samples import TREE_SET, NewSample, Sample
from ..tree import model as T
from .duplicates import DuplicateFilter
from .gap_clusters import assign_nearest, smallest_clusters, sparse_clusters, spherical_kmeans, unit_rows
from .gap_curves import cluster_size_histogram, random_acceptance, vendi_curve
from .gap_options import GapOptions
from .gap_report import CurvePoint, GapReport, GapRound
from .verify import VerifyCounts, verify

R = TypeVar("R")
Featurize = Callable[[list[Sample]], np.ndarray]

ORIGIN = "fill-gaps"
#: Characters of each few-shot example shown in the prompt (keeps prompts inside small contexts).
MIN_POOL = 4


class StoreFeaturize:
    """``featurize`` for :func:`fill_gaps` over a project's feature store: stored samples use (and
    fill) the store through :func:`~treesynth_core.coverage.features.embeddings.ensure_features`; unsaved
    candidates are computed afresh and remembered by text, and :meth:`store_kept` stores the
    vectors of those that were kept (and saved) after the run."""

    def __init__(self, project: Any, featurizer: Any, progress: Progress | None = None) -> None:
        self.project, self.featurizer, self.progress = project, featurizer, progress
        self.name: str = featurizer.name
        self._fresh: dict[tuple[str, str | None], np.ndarray] = {}

    def __call__(self, samples: list[Sample]) -> np.ndarray:
        from ..coverage.features.embeddings import ensure_features

        if all(sample.id for sample in samples):
            return ensure_features(self.project, samples, self.featurizer, progress=self._progress)
        X = np.asarray(self.featurizer.features(samples), dtype=np.float32)
        for sample, row in zip(samples, X, strict=False):
            self._fresh[(sample.instruction, sample.response)] = row
        return X

    def _progress(self, done: int, total: int, note: str = "") -> None:
        if self.progress:
            self.progress(done, total, f"samples: features of the pool ({note})")

    def store_kept(self) -> int:
        """Store the vectors of the candidates fill gaps kept (found by their text among the
        project's gap-filling samples that have none yet); the number stored."""
        kept = [
            s
            for s in self.project.samples(sample_set=TREE_SET)
            if s.extra.get("origin") == ORIGIN and (s.instruction, s.response) in self._fresh
        ]
        have = self.project.get_features(self.name, [s.id for s in kept])
        rows = {
            s.id: np.ascontiguousarray(self._fresh[(s.instruction, s.response)]).tobytes()
            for s in kept
            if s.id not in have
        }
        if rows:
            self.project.put_features(self.name, rows)
        return len(rows)


class GapStore(Protocol):
    def tree(self) -> T.Tree: ...

    def samples(self, *, sample_set: str = TREE_SET, leaf_id: str | None = None) -> list[Sample]: ...

    def add_samples(self, samples: Iterable[NewSample]) -> int: ...


# -- the loop -------------------------------------------------------------------------------------


@dataclass
class _Call:
    """One generation call of a round: its examples' leaf and path, and what came back."""

    number: int
    leaf_id: str
    path: list[dict[str, str]]
    request: ChatRequest
    texts: list[str]
    result: ChatResult | None = None


def _round_note(r: int, rounds: int, kept: int) -> str:
    return f"calls; round {r}/{rounds}: {kept} kept"


def _candidate(sample: NewSample) -> Sample:
    fields = {f: getattr(sample, f) for f in NewSample.__dataclass_fields__}
    return Sample(**fields)  # id 0: not stored


def _space(featurize: Any) -> str:
    for owner in (featurize, getattr(featurize, "__self__", None)):
        name = getattr(owner, "name", None)
        if isinstance(name, str):
            return name
    return "features"


async def fill_gaps(
    project: GapStore,
    llm: LLM,
    featurize: Featurize,
    options: GapOptions,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    concurrency: int = 4,
) -> GapReport:
    """Run ``options.rounds`` rounds of Prismatic gap filling on the tree's samples (see the module
    doc and :class:`~treesynth_core.generate.gap_options.GapOptions`). Samples kept in a round are
    stored when the round ends."""
    o = options
    tree = project.tree()
    pool = project.samples(sample_set=TREE_SET)
    if len(pool) < MIN_POOL:
        raise TreeSynthError(f"fill gaps needs at least {MIN_POOL} samples in the tree; it has {len(pool)}")
    responses = o.responses
    if responses is None:
        responses = sum(s.response is not None for s in pool) * 2 > len(pool)
    X = unit_rows(await asyncio.to_thread(featurize, list(pool)))
    if X.shape[0] != len(pool):
        raise TreeSynthError(f"featurize returned {X.shape[0]} rows for {len(pool)} samples")
    n0, before_X = len(pool), X
    first = _next_round(pool)
    report = GapReport(o.rounds, 0, 0, 0.0, 0.0, 0.0, n0, _space(featurize))
    report.verify, report.answer, report.shots_from = o.verify, o.answer if o.verify else "", o.shots_from
    kept_batches: list[np.ndarray] = []  # each round's kept features, and as many drawn at random
    random_batches: list[np.ndarray] = []
    filters: dict[str, DuplicateFilter] = {}
    calls_per_round = math.ceil(o.per_round / o.per_call)
    gate = asyncio.Semaphore(useful_concurrency(llm, concurrency))
    done = 0

    def stop() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("gap filling stopped; rounds finished so far are saved")

    rounds, seed = o.rounds, o.seed
    for r in range(first, first + rounds):
        stop()
        k = min(len(pool), max(2, round(len(pool) / 10)))
        centroids, labels = spherical_kmeans(X, k, seed=stable_seed(seed, "gaps-kmeans", r))
        sparse = sparse_clusters(labels, k, o.sparse_fraction)
        calls = _plan_round(
            tree,
            pool,
            labels,
            sparse,
            r,
            calls_per_round,
            o.per_round,
            o.per_call,
            o.shots,
            seed,
            o.temperature,
            P.profile_for(llm),
            o.shots_from,
        )

        def called(r: int = r) -> None:
            nonlocal done
            done += 1
            if progress:
                progress(done, rounds * calls_per_round, _round_note(r - first + 1, rounds, report.accepted))

        await _ask_round(llm, calls, gate, stop, report, each=called)

        asked = report.candidates
        candidates = _round_candidates(calls, r, llm.model, report)
        by_leaf: dict[str, VerifyCounts] = {}
        if o.verify:
            candidates = await _verified(llm, tree, candidates, o, gate, stop, by_leaf)
        elif responses:
            candidates = await _with_responses(llm, tree, candidates, seed, gate, stop)
        this_round = _start_round(report, r, report.candidates - asked, by_leaf, labels, sparse)
        if not candidates:
            kept_batches.append(X[:0])
            random_batches.append(X[:0])
            continue
        stop()
        Y = unit_rows(await asyncio.to_thread(featurize, [_candidate(c) for c in candidates]))
        _check_candidate_features(Y, candidates)
        nearest, _ = assign_nearest(Y, centroids)
        in_sparse = [bool(sparse[cluster]) for cluster in nearest]
        kept, kept_rows = _keep_new_in_sparse(candidates, in_sparse, pool, filters, o.near_duplicate, report)
        added = project.add_samples(kept)
        report.accepted += added
        this_round.kept = int(added)
        report.dropped_pruned += getattr(added, "dropped", 0)
        pool += [_candidate(c) for c in kept]
        X = np.concatenate([X, Y[kept_rows]]) if kept_rows else X
        kept_batches.append(Y[kept_rows])
        random_batches.append(Y[random_acceptance(len(Y), len(kept_rows), stable_seed(seed, "gaps-random", r))])
        if progress:
            progress(done, rounds * calls_per_round, _round_note(r - first + 1, rounds, report.accepted))

    report.acceptance_rate = report.accepted / report.candidates if report.candidates else 0.0
    report.before = vendi_score(before_X)
    report.after = vendi_score(X[subsample_indices(len(X), n0, seed=stable_seed(seed, "gaps-vendi"))])
    points = vendi_curve(before_X, kept_batches, random_batches)
    report.curve = [CurvePoint(first - 1 + i, n, ours, theirs) for i, (n, ours, theirs) in enumerate(points)]
    return report


def _start_round(
    report: GapReport,
    r: int,
    candidates: int,
    by_leaf: dict[str, VerifyCounts],
    labels: np.ndarray,
    sparse: np.ndarray,
) -> GapRound:
    """Round ``r``'s row of the report (kept filled in later), with its vote per leaf and its
    cluster-size histogram; the vote also adds to the run's totals."""
    this_round = GapRound(
        r,
        candidates,
        sum(c.verified for c in by_leaf.values()),
        sum(c.rejected for c in by_leaf.values()),
        0,
        verified_by_leaf={leaf: c.verified for leaf, c in sorted(by_leaf.items()) if c.verified},
        rejected_by_leaf={leaf: c.rejected for leaf, c in sorted(by_leaf.items()) if c.rejected},
        clusters=len(sparse),
        sparse=int(sparse.sum()),
        cluster_sizes=cluster_size_histogram(labels, len(sparse)),
    )
    report.verified += this_round.verified
    report.rejected += this_round.rejected
    for counts in by_leaf.values():
        for reason, n in counts.reasons.items():
            report.rejected_reasons[reason] = report.rejected_reasons.get(reason, 0) + n
    report.per_round.append(this_round)
    return this_round


def _next_round(pool: Sequence[Sample]) -> int:
    """The number of the next round: one after the last round whose samples are in the pool."""
    return 1 + max((int(s.extra.get("round", -1)) for s in pool if s.extra.get("origin") == ORIGIN), default=-1)


async def _ask_round(
    llm: LLM,
    calls: Sequence[_Call],
    gate: asyncio.Semaphore,
    stop: Callable[[], None],
    report: GapReport,
    *,
    each: Callable[[], None],
) -> None:
    """Make a round's calls (``gate`` bounds how many run at once), filling each call's ``texts``;
    a reply that does not parse twice counts as a failed call."""

    async def generate(call: _Call) -> None:
        async with gate:
            stop()
            try:
                reply, call.result = await ask_json(llm, call.request, SamplesReply, attempts=2, what="samples")
            except ParseError as exc:
                report.failed_calls += 1
                report.last_problem = str(exc)
                return
            call.texts = reply.samples[: _wanted(call.request)]

    report.calls += len(calls)
    await _all([generate(call) for call in calls], each=each)


def _round_candidates(calls: Sequence[_Call], r: int, model: str, report: GapReport) -> list[NewSample]:
    """Round ``r``'s replies as samples (placeholders dropped), each keyed by round, call and item."""
    candidates: list[NewSample] = []
    for call in calls:
        for item, text in enumerate(call.texts):
            report.candidates += 1
            if is_placeholder(text):
                continue
            candidates.append(
                NewSample(
                    leaf_id=call.leaf_id,
                    key=f"gap:{r}:{call.number}:{item}",
                    instruction=text,
                    path=call.path,
                    model=model,
                    call_id=call.result.call_id if call.result else None,
                    extra={"origin": ORIGIN, "round": r},
                )
            )
    return candidates


def _keep_new_in_sparse(
    candidates: Sequence[NewSample],
    in_sparse: Sequence[bool],
    pool: Sequence[Sample],
    filters: dict[str, DuplicateFilter],
    near_duplicate: float,
    report: GapReport,
) -> tuple[list[NewSample], list[int]]:
    """The candidates that land in a sparse cluster and are no near-duplicate of their leaf's samples
    (those kept earlier in the round included), with their row numbers; counts the duplicates."""
    kept, kept_rows = [], []
    for i, candidate in enumerate(candidates):
        if not in_sparse[i]:
            continue
        leaf = candidate.leaf_id
        if leaf not in filters:
            filters[leaf] = DuplicateFilter(near_duplicate, (s.instruction for s in pool if s.leaf_id == leaf))
        if not filters[leaf].admit(candidate.instruction):
            report.duplicates += 1
            continue
        kept.append(candidate)
        kept_rows.append(i)
    return kept, kept_rows


def _check_candidate_features(Y: np.ndarray, candidates: Sequence[NewSample]) -> None:
    if Y.shape[0] != len(candidates):
        raise TreeSynthError(f"featurize returned {Y.shape[0]} rows for {len(candidates)} candidates")
    if len(candidates) > 1 and len({c.instruction for c in candidates}) > 1 and (Y == Y[0]).all():
        raise TreeSynthError(
            "featurize returned one vector for different candidates: a featurizer that caches by sample id "
            "must compute samples that are not stored yet (id 0) afresh"
        )


def _wanted(request: ChatRequest) -> int:
    items = (request.schema or {}).get("properties", {}).get("samples", {})
    return int(items.get("maxItems", 1_000_000))


def _plan_round(
    tree: T.Tree,
    pool: Sequence[Sample],
    labels: np.ndarray,
    sparse: np.ndarray,
    r: int,
    calls: int,
    per_round: int,
    per_call: int,
    shots: int,
    seed: int,
    temperature: float,
    profile: P.Profile,
    shots_from: str = "sparse",
) -> list[_Call]:
    """The calls of round ``r``: each on one source cluster (cycling through them in a seeded
    order), with examples of one leaf taken from that cluster first, then other source ones. The
    source clusters are the sparse ones (``shots_from="sparse"``) or the smallest 10%
    (``"smallest"``, the paper's text); with ``"levels"`` (the released ``generate_problem.py``)
    the anchor is drawn from the whole pool and the examples from its leaf, each with probability
    proportional to its ``level`` (``extra["level"]``; 1 when missing)."""
    source = smallest_clusters(labels, len(sparse)) if shots_from == "smallest" else sparse
    members: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        if source[label]:
            members.setdefault(int(label), []).append(i)
    if not members:  # only empty clusters are sparse: draw from all of them
        for i, label in enumerate(labels):
            members.setdefault(int(label), []).append(i)
    order = sorted(members)
    random.Random(stable_seed(seed, "gaps-clusters", r)).shuffle(order)
    planned = []
    for c in range(calls):
        rng = random.Random(stable_seed(seed, "gaps-call", r, c))
        if shots_from == "levels":
            [first] = _by_level(pool, range(len(pool)), 1, rng)
            anchor = pool[first]
            leaf = [i for i in range(len(pool)) if pool[i].leaf_id == anchor.leaf_id and i != first]
            picked = _by_level(pool, leaf, shots - 1, rng)
        else:
            cluster = order[c % len(order)]
            anchor = pool[rng.choice(members[cluster])]
            same_leaf = [i for i in members[cluster] if pool[i].leaf_id == anchor.leaf_id and pool[i] is not anchor]
            others = [
                i for label in order if label != cluster for i in members[label] if pool[i].leaf_id == anchor.leaf_id
            ]
            rng.shuffle(same_leaf)
            rng.shuffle(others)
            picked = (same_leaf + others)[: shots - 1]
        examples = [anchor.instruction] + [pool[i].instruction for i in picked]
        n = min(per_call, per_round - c * per_call)
        path = [(str(step.get("criterion", "")), str(step.get("value", ""))) for step in anchor.path]
        longest = max(len(e) for e in examples)
        request = ChatRequest.chat(
            None,
            gap_prompt(tree.task, tree.style, path, examples, n, profile=profile),
            temperature=temperature,
            max_tokens=min(4096, max(P.samples_budget(n), n * (min(longest, EXAMPLE_CHARS) // 3 + 24))),
            seed=stable_seed(seed, "gaps", r, c),
            schema=P.samples_schema(n),
            schema_name="samples",
            meta={"purpose": "gaps", "node_id": anchor.leaf_id},
        )
        planned.append(_Call(c, anchor.leaf_id, list(anchor.path), request, []))
    return planned


def sample_level(sample: Sample) -> float:
    """A sample's difficulty weight: its positive numeric ``extra["level"]``, else 1 (the released code)."""
    try:
        level = float(sample.extra.get("level", 1))
    except (TypeError, ValueError):
        return 1.0
    return level if math.isfinite(level) and level > 0 else 1.0


def _by_level(pool: Sequence[Sample], indices: Iterable[int], n: int, rng: random.Random) -> list[int]:
    """``n`` of ``indices`` drawn without replacement with probability proportional to the level
    (Efraimidis-Spirakis keys), in a shuffled order."""
    keyed = sorted(((rng.random() ** (1.0 / sample_level(pool[i])), i) for i in indices), reverse=True)
    picked = [i for _, i in keyed[:n]]
    rng.shuffle(picked)
    return picked


async def _with_responses(
    llm: LLM,
    tree: T.Tree,
    candidates: list[NewSample],
    seed: int,
    gate: asyncio.Semaphore,
    stop: Callable[[], None],
) -> list[NewSample]:
    """The candidates with a response each (one call per candidate, as leaf synthesis does); a
    response cut off at the token limit is none (and, as in leaf synthesis, never cached)."""

    async def one(candidate: NewSample) -> NewSample:
        async with gate:
            stop()
            request = ChatRequest.chat(
                None,
                P.response_prompt(tree.task, tree.style, candidate.instruction, profile=P.profile_for(llm)),
                temperature=0.7,
                max_tokens=512,
                seed=stable_seed(seed, "gaps-response", candidate.leaf_id, candidate.key, candidate.instruction),
                meta={"purpose": "response", "node_id": candidate.leaf_id},
                validate=cut_off_problem,
            )
            result = await llm.complete(request)
        fields = {f: getattr(candidate, f) for f in NewSample.__dataclass_fields__}
        response = None if is_cut_off(result) else result.text.strip()
        return NewSample(**{**fields, "response": response, "response_call_id": result.call_id})

    return await _all([one(c) for c in candidates])


async def _verified(
    llm: LLM,
    tree: T.Tree,
    candidates: list[NewSample],
    options: GapOptions,
    gate: asyncio.Semaphore,
    stop: Callable[[], None],
    by_leaf: dict[str, VerifyCounts],
) -> list[NewSample]:
    """The candidates a majority of ``options.verify`` draws agree on (:func:`~.verify.verify`), each
    with the kept draw as its response; ``by_leaf`` gets the verified and rejected ones per leaf."""
    profile = P.profile_for(llm)

    async def one(candidate: NewSample) -> NewSample | None:
        stop()
        result = await verify(
            llm,
            P.response_prompt(tree.task, tree.style, candidate.instruction, profile=profile),
            draws=options.verify,
            extractor=options.answer,
            seed=options.seed,
            key=("gaps", candidate.leaf_id, candidate.key, candidate.instruction),
            max_tokens=1024,
            node_id=candidate.leaf_id,
            gate=gate,
        )
        by_leaf.setdefault(candidate.leaf_id, VerifyCounts()).add(result.vote)
        if result.response is None:
            return None
        fields = {f: getattr(candidate, f) for f in NewSample.__dataclass_fields__}
        extra = {**candidate.extra, "verified": f"{result.vote.answers.count(result.vote.answer)}/{options.verify}"}
        return NewSample(**{**fields, "response": result.response, "response_call_id": result.call_id, "extra": extra})

    return [c for c in await _all([one(c) for c in candidates]) if c is not None]


async def _all(coroutines: Sequence[Coroutine[Any, Any, R]], *, each: Callable[[], None] | None = None) -> list[R]:
    """Run the coroutines concurrently; their results in order. The first error cancels the rest."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        for next_done in asyncio.as_completed(tasks):
            await next_done
            if each:
                each()
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
