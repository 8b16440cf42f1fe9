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
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import statistics
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol, TypeVar

from ..errors import BudgetError, Cancelled, Deferred, ParseError
from ..llm.base import LLM, ChatRequest, ChatResult, in_completion_order, useful_concurrency
from ..llm.pricing import batch_price, price_for
from ..llm.pricing import cost as pricing_cost
from ..llm.settings import BackendSettings
from ..progress import Progress
from ..prompts import templates as P
from ..prompts.replies import (
    BUDGET_RETRIES,
    MAX_TOKENS_CAP,
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
from .gap_options import check_verify
from .grow import render_path
from .shortfall import Shortfall
from .verify import Verified, VerifyCounts, verify

R = TypeVar("R")


class SampleStore(Protocol):
    def tree(self) -> T.Tree: ...

    def add_samples(self, samples: Iterable[NewSample]) -> int: ...

    def samples(self, *, sample_set: str = TREE_SET, leaf_id: str | None = None) -> list[Sample]: ...

    def sample_counts(self, *, sample_set: str = TREE_SET) -> dict[str, int]: ...

    def sample_keys(self, leaf_id: str, *, sample_set: str = TREE_SET) -> set[str]: ...

    def skip_keys(self, leaf_id: str, keys: Iterable[str], *, sample_set: str = TREE_SET) -> None: ...


#: Samples asked for in one call: the paper's 10 (one default for the CLI, jobs, the app, the
#: flat baseline and rebalancing).
PER_CALL = 10
#: A leaf with k sampled nodes on its path gets ``per_leaf * SAMPLED_SCALE ** k`` samples: the
#: paper's 10^k calls of 10 samples (``infinite_path_samples`` in its code).
SAMPLED_SCALE = 10
#: How many of a leaf's most recent samples a samples prompt lists (see ``templates.held_lines``).
HELD_SAMPLES = 10


@dataclass(frozen=True)
class SynthOptions:
    """What a synthesis run does.

    ``max_tokens`` is the most any call may be given: the budget sized from the leaf's pivots and
    the larger budgets of retries after a reply cut off by ``max_tokens`` stop there.
    ``response_max_tokens`` is a response's first budget (doubled, up to ``max_tokens``, when cut
    off). ``sampled_scale``: see :data:`SAMPLED_SCALE` (1 gives every leaf ``per_leaf``).
    """

    per_leaf: int = 10
    per_call: int = PER_CALL
    responses: bool = False
    temperature: float = 0.7
    response_temperature: float = 0.7
    max_tokens: int = MAX_TOKENS_CAP
    response_max_tokens: int = 1024
    extra_calls: int = 2
    near_duplicate: float = 0.85
    seed: int = 0
    leaf_ids: tuple[str, ...] = ()
    max_calls: int | None = None
    max_cost: float | None = None
    #: Where the samples go: the tree's own set, or e.g. a rebalanced copy of an imported dataset.
    sample_set: str = TREE_SET
    sampled_scale: int = SAMPLED_SCALE
    #: Majority-vote verification of responses (:mod:`~treesynth_core.generate.verify`): 0 is off;
    #: k draws per sample, kept only when a strict majority agree on the ``answer`` extractor's final answer.
    verify: int = 0
    answer: str = "last-number"

    def __post_init__(self) -> None:
        check_verify(self.verify, self.answer)
        if self.verify and not self.responses:
            raise ValueError("verify checks responses: add responses (--responses)")
        if self.per_leaf < 1 or self.per_call < 1:
            raise ValueError("per_leaf and per_call must be at least 1")
        if self.per_call > 20:
            raise ValueError("per_call above 20 makes replies long and fragile; use 10 or fewer")
        if self.sampled_scale < 1:
            raise ValueError("sampled_scale must be at least 1")
        if self.max_tokens < 64 or self.response_max_tokens < 16:
            raise ValueError("max_tokens must be at least 64 and response_max_tokens at least 16")


def sampled_steps(path: Sequence[T.PathStep]) -> int:
    """k: how many sampled ("infinite") nodes a path has."""
    return sum(1 for step in path if step.pool)


def leaf_target(path: Sequence[T.PathStep], options: SynthOptions) -> int:
    """The samples a leaf is filled up to: ``per_leaf * sampled_scale ** k``."""
    return options.per_leaf * options.sampled_scale ** sampled_steps(path)


def subspace_examples(tree: T.Tree, node_id: str) -> tuple[str, ...]:
    """Samples the model wrote for this subspace: the pivots of the node, else of its nearest
    ancestor that has pivots (none for a tree that was never grown)."""
    for node in [tree.node(node_id), *reversed(tree.ancestors(node_id))]:
        if node.pivots:
            return node.pivots
    return ()


def call_budget(tree: T.Tree, node_id: str, options: SynthOptions) -> int:
    """``max_tokens`` of one samples call for this leaf: sized from its pivots, at most ``max_tokens``."""
    return min(options.max_tokens, P.samples_budget(options.per_call, subspace_examples(tree, node_id)))


def key_prefix(seed: int) -> str:
    """Sample keys are ``"<call>:<item>"`` under seed 0 and ``"s<seed>.<call>:<item>"`` under any
    other: another seed's calls are new questions, so they can top up a leaf left short."""
    return "" if seed == 0 else f"s{seed}."


#: One ask for samples plus one re-ask when the reply does not parse.
SAMPLE_ATTEMPTS = 2
#: The most calls one numbered samples call can take: its attempts and the larger-budget retries
#: of replies cut off by ``max_tokens``.
CALLS_PER_SAMPLES_CALL = SAMPLE_ATTEMPTS + BUDGET_RETRIES
#: The same for a response.
CALLS_PER_RESPONSE = 1 + BUDGET_RETRIES


def spent_key(prefix: str, call_no: int) -> str:
    """The key that marks call ``call_no`` as answered though it kept no sample (all duplicates): a
    rerun does not ask it again, as it would not with its samples stored. A call that got no usable
    reply is not marked: its replies were not cached, and a rerun asks it again."""
    return f"{prefix}{call_no}:-"


# -- planning and estimates -----------------------------------------------------------------------


@dataclass
class LeafPlan:
    leaf_id: str
    path: list[T.PathStep]
    have: int
    need: int
    calls: int
    #: What the leaf is filled up to (:func:`leaf_target`); 0 means ``per_leaf``.
    target: int = 0


@dataclass
class SynthPlan:
    """What a run would do, before it starts."""

    leaves: list[LeafPlan]
    calls: int  # when every reply is usable and new
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    model: str
    calls_max: int  # with every extra call, re-ask and larger-budget retry a leaf may use
    sampled_scale: int = SAMPLED_SCALE

    @property
    def samples(self) -> int:
        return sum(leaf.need for leaf in self.leaves)

    @property
    def scaled_leaves(self) -> int:
        """Leaves whose target is scaled up by the sampled nodes on their path."""
        return sum(1 for leaf in self.leaves if sampled_steps(leaf.path))

    def scaling_note(self) -> str:
        """How sampled nodes scale the targets, or "" when no leaf has one on its path."""
        if not self.scaled_leaves:
            return ""
        return (
            f"{self.scaled_leaves} leaves under sampled nodes get x{self.sampled_scale} samples per sampled node "
            "on their path, each sample with its own draw"
        )

    def summary(self) -> str:
        cost = "unknown price" if self.cost_usd is None else f"~${self.cost_usd:.2f}"
        note = self.scaling_note()
        return (
            f"{len(self.leaves)} leaves, {self.samples} samples to make: about {self.calls} calls "
            f"(at most {self.calls_max}), "
            f"~{self.prompt_tokens + self.completion_tokens:,} tokens, {cost} on {self.model}"
            + (f"; {note}" if note else "")
        )


def target_leaves(tree: T.Tree, leaf_ids: Sequence[str] = ()) -> list[T.Node]:
    """The leaves to fill: the given ones (or leaves under given nodes), else all approved leaves."""
    approved = tree.leaves(approved_only=True)
    if not leaf_ids:
        return approved
    wanted = {n.id for node_id in leaf_ids for n in tree.subtree(node_id)}
    return [leaf for leaf in approved if leaf.id in wanted]


#: Tokens a sample is assumed to take when the leaf has no pivots to measure (and a response).
DEFAULT_SAMPLE_TOKENS, DEFAULT_RESPONSE_TOKENS = 60, 300


def plan_synthesis(
    tree: T.Tree,
    counts: dict[str, int],
    options: SynthOptions,
    *,
    model: str,
    settings: BackendSettings | None = None,
    batch: bool = False,
) -> SynthPlan:
    """Estimate calls, tokens and cost for filling each target leaf up to its :func:`leaf_target`;
    ``batch`` prices the calls as sent in batches (``treesynth batch``: half price on OpenAI).

    Completion tokens follow the leaf's pivots (their median length a sample), prompt tokens the
    prompt a call sends (with the list of what the leaf holds, when it holds anything)."""
    leaves = []
    prompt_tokens = completion_tokens = calls = calls_max = 0
    profile = settings.prompt_profile() if settings is not None else "paper"
    n = options.per_call
    for leaf in target_leaves(tree, options.leaf_ids):
        path = tree.path(leaf.id)
        have, target = counts.get(leaf.id, 0), leaf_target(path, options)
        need = max(0, target - have)
        n_calls = math.ceil(need / n) if need else 0
        leaves.append(LeafPlan(leaf.id, path, have, need, n_calls, target))
        if not need:
            continue
        examples = subspace_examples(tree, leaf.id)
        fixed = [(s.criterion, s.value) for s in path if not s.pool]
        each = [[(s.criterion, s.pool[0]) for s in path if s.pool]] * n if sampled_steps(path) else []
        held = ["x" * P.HELD_CHARS] * min(have, HELD_SAMPLES)
        prompt = P.samples_prompt(tree.task, tree.style, fixed, n, profile=profile, each=each, held=held)
        typical = statistics.median(P.approx_tokens(e) for e in examples) if examples else DEFAULT_SAMPLE_TOKENS
        prompt_tokens += n_calls * len(prompt) // 4
        completion_tokens += n_calls * round(n * (typical + P.JSON_TOKENS_PER_SAMPLE) + P.JSON_TOKENS_PER_REPLY)
        calls += n_calls
        calls_max += (n_calls + options.extra_calls) * CALLS_PER_SAMPLES_CALL
        if options.responses:
            draws = options.verify or 1
            calls += need * draws
            calls_max += need * (draws if options.verify else CALLS_PER_RESPONSE)
            prompt_tokens += need * draws * (round(typical) + 120)
            completion_tokens += need * draws * DEFAULT_RESPONSE_TOKENS
    price = batch_price(model, settings) if batch else price_for(model, settings)
    cost = None if price is None else pricing_cost(prompt_tokens, completion_tokens, price)
    return SynthPlan(leaves, calls, prompt_tokens, completion_tokens, cost, model, calls_max, options.sampled_scale)


def check_budget(plan: SynthPlan, options: SynthOptions) -> None:
    if options.max_calls is not None and plan.calls > options.max_calls:
        raise BudgetError(
            f"this run needs about {plan.calls} LLM calls, above your cap of {options.max_calls}; "
            "raise --max-calls or make fewer samples"
        )
    if options.max_cost is not None and plan.cost_usd is not None and plan.cost_usd > options.max_cost:
        raise BudgetError(f"this run is estimated at ${plan.cost_usd:.2f}, above your cap of ${options.max_cost:.2f}")


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
    #: With ``verify``: per leaf, the samples whose draws agreed on a final answer and those rejected.
    verification: dict[str, VerifyCounts] = field(default_factory=dict)

    @property
    def verified(self) -> int:
        return sum(c.verified for c in self.verification.values())

    @property
    def rejected(self) -> int:
        return sum(c.rejected for c in self.verification.values())

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
        list. Each call's samples are stored as soon as they are taken; ``on_call(have)``
        runs after each call (it may raise :class:`Cancelled`).

        A reply that is :class:`Deferred` (its request is out in a batch: ``batch prepare`` runs
        this with a model that writes requests down instead of sending them) ends the leaf after
        its wave, the wave's other requests made; samples waiting on deferred responses are not stored.
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
                            inserted = store.add_samples(self._rows(leaf.leaf_id, admitted, answers, result))
                            if dropped := getattr(inserted, "dropped", 0):  # the leaf was pruned meanwhile
                                report.dropped_pruned += dropped
                                pending = []
                                break
                            if not inserted:
                                store.skip_keys(leaf.leaf_id, [spent_key(prefix, call_no)], sample_set=sample_set)
                            have += inserted
                            added += inserted
                    if on_call is not None:
                        on_call(have)
                    if have >= target:
                        break
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if deferred:
                break
        if failed and have < target:
            report.failed_leaves.append(leaf.leaf_id)
        return added

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
