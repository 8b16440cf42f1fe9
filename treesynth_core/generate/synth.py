"""Leaf synthesis: samples per approved leaf, conditioned on the full root-to-leaf path.

Each leaf's samples come from numbered calls (call ``i`` asks for ``per_call`` samples, the paper's
10 by default, with a seed derived from the leaf's path and ``i``), so the same run asks the same
questions: a rerun is served from the cache, and samples are stored under the key
``"<call>:<item>"``, so a rerun after Ctrl-C adds no duplicates. Calls go in waves; every call of a
wave is shown what the leaf holds when the wave starts (the most recent few samples), so later
calls do not repeat earlier ones, and the list depends only on what is stored. Exact and
near-duplicates within a leaf are dropped; when that leaves a shortfall, up to ``extra_calls`` more
calls are made. A leaf still short after that stays short on a rerun (calls already answered are not
asked again); another ``seed`` asks new questions and tops it up.

As in the paper, a leaf whose path has ``k`` sampled ("infinite") nodes gets ``sampled_scale ** k``
times ``per_leaf`` samples (10^k calls of 10 in the paper), and every sample gets its own draw of the
sampled values: the prompt lists each sample's attributes and each stored sample's ``path`` records
its own draw.

Each call's ``max_tokens`` is sized from the data: the leaf's pivots (or its nearest ancestor's) give
the typical length of a sample in this subspace (:func:`~treesynth_core.prompts.templates.samples_budget`),
bounded by ``max_tokens``. A reply cut off by ``max_tokens`` is never taken as whole: it is asked again
with a larger budget, and samples or responses still cut off are not stored. Optional responses come
from a second call per sample.

The options, each leaf's target and the estimate made before a run are in
:mod:`~treesynth_core.generate.synth_plan`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol, TypeVar

from ..errors import Cancelled, Deferred, ParseError
from ..llm.base import LLM, ChatRequest, ChatResult, in_completion_order, useful_concurrency
from ..progress import Progress
from ..prompts import templates as P
from ..prompts.replies import (
    BUDGET_RETRIES,
    SamplesReply,
    ask_json,
    cut_off_problem,
    is_cut_off,
    is_placeholder,
    retry_budget,
)
from ..seeding import stable_seed
from ..store.samples import TREE_SET, NewSample, Sample
from ..tree import model as T
from .duplicates import DuplicateFilter
from .grow import render_path
from .shortfall import Shortfall
from .synth_plan import (
    HELD_SAMPLES,
    SAMPLE_ATTEMPTS,
    LeafPlan,
    SynthOptions,
    SynthPlan,
    call_budget,
    key_prefix,
    plan_synthesis,
    sampled_steps,
    spent_key,
)

# Planning moved to synth_plan; these names are still importable from here.
from .synth_plan import PER_CALL as PER_CALL
from .synth_plan import SAMPLED_SCALE as SAMPLED_SCALE
from .synth_plan import check_budget as check_budget
from .synth_plan import leaf_target as leaf_target
from .synth_plan import target_leaves as target_leaves
from .verify import Verified, VerifyCounts, verify

R = TypeVar("R")


class SampleStore(Protocol):
    def tree(self) -> T.Tree: ...

    def add_samples(self, samples: Iterable[NewSample]) -> int: ...

    def samples(self, *, sample_set: str = TREE_SET, leaf_id: str | None = None) -> list[Sample]: ...

    def sample_counts(self, *, sample_set: str = TREE_SET) -> dict[str, int]: ...

    def sample_keys(self, leaf_id: str, *, sample_set: str = TREE_SET) -> set[str]: ...

    def skip_keys(self, leaf_id: str, keys: Iterable[str], *, sample_set: str = TREE_SET) -> None: ...


# -- the run --------------------------------------------------------------------------------------


@dataclass
class SynthReport:
    leaves: int = 0
    added: int = 0
    duplicates: int = 0
    failed_calls: int = 0
    short_leaves: list[str] = field(default_factory=list)
    #: Responses still cut off by ``max_tokens`` after the larger-budget retries: their samples are
    #: stored without a response.
    responses_cut_off: int = 0
    #: Samples made for leaves pruned or deleted while the run went on: not stored (the leaf stops).
    dropped_pruned: int = 0
    #: Samples the run set out to make (the plan's shortfall over its leaves).
    wanted: int = 0
    #: Leaves left short with calls that got no usable reply, and the last problem of those replies.
    failed_leaves: list[str] = field(default_factory=list)
    last_problem: str = ""
    #: Leaves that stopped at a wave waiting for replies out in a batch (:class:`Deferred`), and the
    #: call-log ids of the samples replies those waves took (stored nothing: they wait too).
    waiting_leaves: list[str] = field(default_factory=list)
    waiting_calls: list[str] = field(default_factory=list)
    #: With ``verify``: per leaf, the samples whose draws agreed on a final answer and those rejected.
    verification: dict[str, VerifyCounts] = field(default_factory=dict)

    @property
    def verified(self) -> int:
        return sum(c.verified for c in self.verification.values())

    @property
    def rejected(self) -> int:
        return sum(c.rejected for c in self.verification.values())

    @property
    def repeated_leaves(self) -> list[str]:
        """Leaves left short though none of their calls failed: the model repeated itself, and another
        seed asks new questions (leaves short for unusable replies are the :meth:`shortfall`'s: a rerun
        retries them)."""
        failed = set(self.failed_leaves)
        return [leaf for leaf in self.short_leaves if leaf not in failed]

    def shortfall(self) -> Shortfall | None:
        """What the unusable replies cost this run (None when every call got a usable reply, or
        the leaves they hit were filled anyway)."""
        if not self.failed_leaves:
            return None
        return Shortfall(
            "samples made", self.added, self.wanted, "leaves", len(self.failed_leaves), self.last_problem, "rerun"
        )


class Answer(NamedTuple):
    """A response: its text (None when it was cut off by ``max_tokens`` even after the retries) and
    the call that wrote it."""

    text: str | None
    call_id: str | None
    #: With verification: how many draws gave the kept answer, e.g. "2/3".
    agreement: str = ""

    @property
    def cut_off(self) -> bool:
        return self.text is None


class LeafSynthesizer:
    """Fills one leaf, call by call."""

    def __init__(self, llm: LLM, tree: T.Tree, options: SynthOptions) -> None:
        self.llm, self.tree, self.options = llm, tree, options
        self.profile = P.profile_for(llm)

    def generation_request(
        self,
        leaf_id: str,
        path: list[T.PathStep],
        call_no: int,
        *,
        held: Sequence[str] = (),
        budget: int | None = None,
    ) -> tuple[ChatRequest, list[list[dict]]]:
        """Call ``call_no``'s request and each of its samples' path (a fresh draw of the sampled
        values for every sample; the same path for all when the path has no sampled node)."""
        key = [(s.criterion, s.value, len(s.pool)) for s in path]
        rng = random.Random(stable_seed(self.options.seed, "synth-path", key, call_no))
        n = self.options.per_call
        fixed = [(s.criterion, s.value) for s in path if not s.pool]
        draws = [render_path(path, rng) for _ in range(n)] if sampled_steps(path) else [fixed] * n
        each = (
            [[pair for pair, s in zip(draw, path, strict=True) if s.pool] for draw in draws]
            if sampled_steps(path)
            else []
        )
        request = ChatRequest.chat(
            None,
            P.samples_prompt(self.tree.task, self.tree.style, fixed, n, profile=self.profile, held=held, each=each),
            temperature=self.options.temperature,
            max_tokens=budget or call_budget(self.tree, leaf_id, self.options),
            seed=stable_seed(self.options.seed, "synth", key, call_no),
            schema=P.samples_schema(n),
            schema_name="samples",
            meta={"purpose": "synth", "node_id": leaf_id},
        )
        return request, [[{"criterion": c, "value": v} for c, v in draw] for draw in draws]

    async def answer(self, leaf_id: str, instruction: str, key: str) -> Answer:
        """The response to one instruction. One cut off by ``max_tokens`` is asked again with twice
        the budget (up to ``max_tokens``, at most ``BUDGET_RETRIES`` times, not when it loops); one
        still cut off is not a response (its text is None)."""
        budget = min(self.options.response_max_tokens, self.options.max_tokens)
        request = ChatRequest.chat(
            None,
            P.response_prompt(self.tree.task, self.tree.style, instruction, profile=self.profile),
            temperature=self.options.response_temperature,
            max_tokens=budget,
            seed=stable_seed(self.options.seed, "response", leaf_id, key, instruction),
            meta={"purpose": "response", "node_id": leaf_id},
            validate=cut_off_problem,
        )
        result = await self.llm.complete(request)
        retries = BUDGET_RETRIES
        while retries and (bigger := retry_budget(result, budget, self.options.max_tokens)):
            budget, retries = bigger, retries - 1
            result = await self.llm.complete(replace(request, max_tokens=budget))
        return Answer(None if is_cut_off(result) else result.text.strip(), result.call_id)

    async def verified_answer(
        self, leaf_id: str, instruction: str, key: str, gate: asyncio.Semaphore | None = None
    ) -> Verified:
        """``options.verify`` draws of the response to one instruction and their majority vote
        (:func:`~treesynth_core.generate.verify.verify`); a draw cut off at ``response_max_tokens``
        has no final answer (no larger-budget retry: it simply does not vote)."""
        return await verify(
            self.llm,
            P.response_prompt(self.tree.task, self.tree.style, instruction, profile=self.profile),
            draws=self.options.verify,
            extractor=self.options.answer,
            seed=self.options.seed,
            key=("synth", leaf_id, key, instruction),
            max_tokens=min(self.options.response_max_tokens, self.options.max_tokens),
            node_id=leaf_id,
            gate=gate,
        )

    def call_numbers(self, existing: int, used_keys: set[str], target: int | None = None) -> range:
        """The call numbers a leaf may use. They depend only on the options and on how many of the
        leaf's samples were deleted, so rerunning the same command asks nothing new."""
        per_call = self.options.per_call
        deleted = max(0, sum(1 for key in used_keys if not key.endswith(":-")) - existing)
        count = math.ceil((target or self.options.per_leaf) / per_call) + self.options.extra_calls
        return range(count + math.ceil(deleted / per_call))

    async def fill(
        self,
        store: SampleStore,
        leaf: LeafPlan,
        report: SynthReport,
        *,
        gate: asyncio.Semaphore | None = None,
        on_call: Callable[[int], None] | None = None,
    ) -> int:
        """Fill one leaf up to its target (``leaf.target``, else ``per_leaf``); return how many
        samples were added.

        Calls go in waves of as many as the shortfall needs, run concurrently (each through
        ``gate``, when given), and their replies are taken in call order, so which samples are kept
        does not depend on timing; a wave short of samples (duplicates, unusable replies) is followed
        by another, within :meth:`call_numbers`. Every call of a wave lists the leaf's most recent
        :data:`HELD_SAMPLES` samples as stored when the wave starts. A call answered without a
        sample kept is marked (:func:`spent_key`), so a rerun does not ask it again with another
        list. Each call's samples are stored as soon as they are taken, except on a model that may
        defer (``defers``, batch generation): there a wave's samples are stored, call by call, when
        the wave ends (or when it stops on an error or :class:`Cancelled`, which ``on_call(have)``,
        run after each call, may raise).

        A reply that is :class:`Deferred` (its request is out in a batch, or waits for one:
        ``batch prepare`` runs this with a model that writes requests down instead of sending them,
        ``batch collect`` with one that answers from collected replies only) ends the leaf after its
        wave, the wave's other requests made, and stores nothing of that wave: the next run starts the
        wave again from the same stored samples, so it asks exactly the same requests.
        """
        sample_set, per_call = self.options.sample_set, self.options.per_call
        target = leaf.target or self.options.per_leaf
        existing = store.samples(sample_set=sample_set, leaf_id=leaf.leaf_id)
        used_keys = store.sample_keys(leaf.leaf_id, sample_set=sample_set)
        dupes = DuplicateFilter(self.options.near_duplicate, (s.instruction for s in existing))
        prefix = key_prefix(self.options.seed)
        used_calls = {k[len(prefix) :].split(":", 1)[0] for k in used_keys if k.startswith(prefix)}
        have, added = len(existing), 0
        pending = [c for c in self.call_numbers(have, used_keys, target) if str(c) not in used_calls]
        budget = call_budget(self.tree, leaf.leaf_id, self.options)
        sampled = sampled_steps(leaf.path) > 0

        failed = 0
        deferred = False  # a reply is out in a batch (``batch prepare``'s dry run): stop after this wave
        # A model that may defer (batch generation) stores a wave's samples when the whole wave is
        # answered; any other stores each call's samples as soon as they are taken (a killed run
        # loses none of them).
        whole_waves = bool(getattr(self.llm, "defers", False))

        async def generate(
            call_no: int, held: list[str]
        ) -> tuple[SamplesReply, ChatResult, list[list[dict]]] | Deferred | None:
            request, paths = self.generation_request(leaf.leaf_id, leaf.path, call_no, held=held, budget=budget)
            async with gate or contextlib.nullcontext():
                try:
                    reply, result = await ask_json(
                        self.llm,
                        request,
                        SamplesReply,
                        attempts=SAMPLE_ATTEMPTS,
                        what="samples",
                        max_tokens_cap=max(budget, self.options.max_tokens),
                    )
                except ParseError as exc:
                    report.last_problem = str(exc)
                    return None
                except Deferred as exc:
                    return exc
            return reply, result, paths

        async def answer(text: str, key: str) -> Answer:
            async with gate or contextlib.nullcontext():
                return await self.answer(leaf.leaf_id, text, key)

        while have < target and pending:
            size = math.ceil((target - have) / per_call)
            wave, pending = pending[:size], pending[size:]
            held = [s.instruction for s in store.samples(sample_set=sample_set, leaf_id=leaf.leaf_id)][-HELD_SAMPLES:]
            tasks = [asyncio.ensure_future(generate(call_no, held)) for call_no in wave]
            taken: list[tuple[int, list[NewSample]]] = []  # the wave's samples, call by call, stored when it ends
            wave_calls: list[str] = []
            try:
                for call_no, task in zip(wave, tasks, strict=True):  # replies taken in call order
                    outcome = await task
                    if isinstance(outcome, Deferred):
                        deferred = True
                    elif outcome is None:  # not marked spent: a rerun asks it again
                        report.failed_calls += 1
                        failed += 1
                    else:
                        reply, result, paths = outcome
                        if result.call_id:
                            wave_calls.append(result.call_id)
                        room = target - have
                        admitted = _admit(reply.samples, paths, f"{prefix}{call_no}:", room, sampled, dupes, report)
                        answers = [Answer(None, None)] * len(admitted)
                        try:
                            if self.options.verify and admitted:
                                admitted, answers = await self._vote(leaf.leaf_id, admitted, report, gate)
                            elif self.options.responses and admitted:
                                answers = await gather_all(answer(text, key) for key, text, _ in admitted)
                                report.responses_cut_off += sum(1 for a in answers if a.cut_off)
                        except Deferred:  # its responses are out in a batch: its samples wait for them
                            deferred = True
                            have += len(admitted)  # counted as the online run would, for the room of later calls
                        else:
                            taken.append((call_no, self._rows(leaf.leaf_id, admitted, answers, result)))
                            have += len(admitted)
                            if not whole_waves:  # online: a call's samples are stored as soon as taken
                                inserted, pruned = self._keep(store, leaf.leaf_id, taken, report)
                                taken.clear()
                                added += inserted
                                have = len(existing) + added
                                if pruned:
                                    pending = []
                                    break
                    if on_call is not None:
                        on_call(have)
                    if have >= target:
                        break
            except BaseException:  # stopped, the endpoint failed: what the calls before brought is kept
                if not deferred:
                    self._keep(store, leaf.leaf_id, taken, report)
                raise
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if deferred:  # the wave waits whole: its next run asks the same requests, held list included
                report.waiting_calls += wave_calls
                break
            inserted, pruned = self._keep(store, leaf.leaf_id, taken, report)
            added += inserted
            have = len(existing) + added
            if pruned:
                break
        if failed and have < target:
            report.failed_leaves.append(leaf.leaf_id)
        if deferred:
            report.waiting_leaves.append(leaf.leaf_id)
        return added

    def _keep(
        self, store: SampleStore, leaf_id: str, taken: Sequence[tuple[int, list[NewSample]]], report: SynthReport
    ) -> tuple[int, bool]:
        """Store a wave's samples, call by call (a call that brought none is marked spent); returns
        how many were stored and whether the leaf was pruned meanwhile (its samples are dropped)."""
        prefix, sample_set, added = key_prefix(self.options.seed), self.options.sample_set, 0
        for call_no, rows in taken:
            inserted = store.add_samples(rows)
            if dropped := getattr(inserted, "dropped", 0):
                report.dropped_pruned += dropped
                return added, True
            if not inserted:
                store.skip_keys(leaf_id, [spent_key(prefix, call_no)], sample_set=sample_set)
            added += inserted
        return added, False

    async def _vote(
        self, leaf_id: str, admitted: Sequence[_Admitted], report: SynthReport, gate: asyncio.Semaphore | None
    ) -> tuple[list[_Admitted], list[Answer]]:
        """The admitted samples a majority of draws agree on, with the kept draw as their response;
        the leaf's verified and rejected counts in ``report``."""
        outcomes = await gather_all(self.verified_answer(leaf_id, text, key, gate) for key, text, _ in admitted)
        counts = report.verification.setdefault(leaf_id, VerifyCounts())
        kept: list[_Admitted] = []
        answers: list[Answer] = []
        for sample, outcome in zip(admitted, outcomes, strict=True):
            counts.add(outcome.vote)
            if outcome.response is not None:
                agree = outcome.vote.answers.count(outcome.vote.answer)
                kept.append(sample)
                answers.append(Answer(outcome.response, outcome.call_id, f"{agree}/{self.options.verify}"))
        return kept, answers

    def _rows(
        self, leaf_id: str, admitted: Sequence[_Admitted], answers: Sequence[Answer], result: ChatResult
    ) -> list[NewSample]:
        """The samples one call adds to the leaf: its admitted texts with their responses and provenance."""
        return [
            NewSample(
                leaf_id=leaf_id,
                key=key,
                instruction=text,
                response=response.text,
                path=path,
                model=self.llm.model,
                call_id=result.call_id,
                response_call_id=response.call_id,
                sample_set=self.options.sample_set,
                extra={"provenance": "synthesized", **({"verified": response.agreement} if response.agreement else {})},
            )
            for (key, text, path), response in zip(admitted, answers, strict=True)
        ]


async def gather_all(coroutines: Iterable[Coroutine[Any, Any, R]]) -> list[R]:
    """Run the coroutines concurrently and return their results in order. Unlike a plain
    ``asyncio.gather``, a :class:`Deferred` reply does not end the others early: every request is
    made (so ``batch prepare`` writes them all) before it is raised; any other error is raised as is."""
    results = await asyncio.gather(*coroutines, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise next((e for e in errors if not isinstance(e, Deferred)), errors[0])
    return results  # type: ignore[return-value]


#: A sample a call's reply brings to its leaf: (key, text, the path it was drawn under).
_Admitted = tuple[str, str, list[dict]]


def _admit(
    texts: Sequence[str],
    paths: Sequence[list[dict]],
    key_stem: str,
    room: int,
    sampled: bool,
    dupes: DuplicateFilter,
    report: SynthReport,
) -> list[_Admitted]:
    """The texts of one reply the leaf takes, in order, at most ``room`` of them: placeholders and
    near-duplicates are counted in ``report.duplicates`` and skipped; on a path with sampled steps a
    text beyond those asked for is dropped (it has no draw of its own). Keys are ``key_stem + item``."""
    admitted: list[_Admitted] = []
    for item_no, text in enumerate(texts):
        if len(admitted) >= room or (sampled and item_no >= len(paths)):
            break  # full, or a sample beyond those asked for has no draw of its own
        if is_placeholder(text) or not dupes.admit(text):
            report.duplicates += 1
            continue
        admitted.append((f"{key_stem}{item_no}", text, paths[min(item_no, len(paths) - 1)]))
    return admitted


async def synthesize(
    store: SampleStore,
    llm: LLM,
    options: SynthOptions,
    *,
    plan: SynthPlan | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    concurrency: int = 8,
) -> SynthReport:
    """Fill every target leaf up to its target (:func:`leaf_target`); each call's samples are saved
    as soon as they arrive. Leaves run concurrently (bounded by ``concurrency`` and the backend's own limit)."""
    tree = store.tree()
    plan = plan or plan_synthesis(tree, store.sample_counts(sample_set=options.sample_set), options, model=llm.model)
    todo = [leaf for leaf in plan.leaves if leaf.need > 0]
    report = SynthReport(leaves=len(todo), wanted=sum(leaf.need for leaf in todo))
    synthesizer = LeafSynthesizer(llm, tree, options)
    gate = asyncio.Semaphore(useful_concurrency(llm, concurrency))
    done = 0

    def check_cancel(_have: int) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("synthesis stopped; samples made so far are saved")

    async def one(leaf: LeafPlan) -> int:
        check_cancel(0)
        async with gate:  # leaves in flight; a leaf's own calls are bounded by its wave and the backend
            return await synthesizer.fill(store, leaf, report, on_call=check_cancel)

    async with in_completion_order(one(leaf) for leaf in todo) as finished:
        for next_done in finished:
            added = await next_done
            report.added += added
            done += 1
            if progress:
                progress(done, len(todo), f"{report.added} samples")
            if cancel is not None and cancel.is_set():
                raise Cancelled("synthesis stopped; samples made so far are saved")
    counts = store.sample_counts(sample_set=options.sample_set)
    report.short_leaves = [
        leaf.leaf_id for leaf in todo if counts.get(leaf.leaf_id, 0) < (leaf.target or options.per_leaf)
    ]
    return report
