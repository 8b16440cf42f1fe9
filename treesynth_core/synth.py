"""Leaf synthesis: K samples per approved leaf, conditioned on the full root-to-leaf path.

Each leaf's samples come from numbered calls (call ``i`` asks for ``per_call`` samples with a seed
derived from the leaf's path and ``i``), so the same run asks the same questions: a rerun is
served from the cache, and samples are stored under the key ``"<call>:<item>"``, so a rerun after
Ctrl-C adds no duplicates. Exact and near-duplicates within a leaf are dropped; when that leaves a
shortfall, up to ``extra_calls`` more calls are made. A leaf still short after that stays short on a
rerun (the same questions get the same answers); another ``seed`` asks new questions and tops it
up. Optional responses come from a second call per sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from . import tree as T
from .config import BackendSettings
from .errors import BudgetError, Cancelled, ParseError
from .grow import render_path, stable_seed
from .llm.base import LLM, ChatRequest, ChatResult, useful_concurrency
from .pricing import cost as pricing_cost
from .pricing import price_for
from .prompts import templates as P
from .prompts.replies import SamplesReply, ask_json, is_placeholder
from .samples import TREE_SET, NewSample, Sample

Progress = Callable[[int, int, str], None]


class SampleStore(Protocol):
    def tree(self) -> T.Tree: ...

    def add_samples(self, samples: Iterable[NewSample]) -> int: ...

    def samples(self, *, sample_set: str = TREE_SET, leaf_id: str | None = None) -> list[Sample]: ...

    def sample_counts(self, *, sample_set: str = TREE_SET) -> dict[str, int]: ...

    def sample_keys(self, leaf_id: str, *, sample_set: str = TREE_SET) -> set[str]: ...


@dataclass(frozen=True)
class SynthOptions:
    per_leaf: int = 10
    per_call: int = 5
    responses: bool = False
    temperature: float = 0.7
    response_temperature: float = 0.7
    max_tokens: int = 1024
    response_max_tokens: int = 512
    extra_calls: int = 2
    near_duplicate: float = 0.85
    seed: int = 0
    leaf_ids: tuple[str, ...] = ()
    max_calls: int | None = None
    max_cost: float | None = None
    #: Where the samples go: the tree's own set, or e.g. a rebalanced copy of an imported dataset.
    sample_set: str = TREE_SET

    def __post_init__(self) -> None:
        if self.per_leaf < 1 or self.per_call < 1:
            raise ValueError("per_leaf and per_call must be at least 1")
        if self.per_call > 20:
            raise ValueError("per_call above 20 makes replies long and fragile; use 10 or fewer")


def key_prefix(seed: int) -> str:
    """Sample keys are ``"<call>:<item>"`` under seed 0 and ``"s<seed>.<call>:<item>"`` under any
    other: another seed's calls are new questions, so they can top up a leaf left short."""
    return "" if seed == 0 else f"s{seed}."


#: One ask for samples plus one re-ask when the reply does not parse.
SAMPLE_ATTEMPTS = 2


# -- duplicates -----------------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_NONWORD = re.compile(r"[^\w\s]")


def text_key(text: str) -> str:
    """Exact-duplicate key: case, punctuation and whitespace ignored."""
    return _WS.sub(" ", _NONWORD.sub(" ", text.casefold())).strip()


def shingles(text: str, k: int = 5) -> frozenset[str]:
    key = text_key(text)
    if len(key) <= k:
        return frozenset([key])
    return frozenset(key[i : i + k] for i in range(len(key) - k + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class DuplicateFilter:
    """Remembers a leaf's texts; ``admit`` says whether a new text is neither an exact nor a
    near duplicate (character 5-gram Jaccard >= threshold) of any text seen so far."""

    def __init__(self, threshold: float, seen: Iterable[str] = ()) -> None:
        self.threshold = threshold
        self.keys: set[str] = set()
        self.sets: list[frozenset[str]] = []
        for text in seen:
            self._add(text)

    def _add(self, text: str) -> None:
        self.keys.add(text_key(text))
        self.sets.append(shingles(text))

    def admit(self, text: str) -> bool:
        key = text_key(text)
        if not key or key in self.keys:
            return False
        grams = shingles(text)
        if any(jaccard(grams, other) >= self.threshold for other in self.sets):
            return False
        self._add(text)
        return True


# -- planning and estimates -----------------------------------------------------------------------


@dataclass
class LeafPlan:
    leaf_id: str
    path: list[T.PathStep]
    have: int
    need: int
    calls: int


@dataclass
class SynthPlan:
    """What a run would do, before it starts."""

    leaves: list[LeafPlan]
    calls: int  # when every reply is usable and new
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    model: str
    calls_max: int  # with every extra call and re-ask a leaf may use

    @property
    def samples(self) -> int:
        return sum(leaf.need for leaf in self.leaves)

    def summary(self) -> str:
        cost = "unknown price" if self.cost_usd is None else f"~${self.cost_usd:.2f}"
        return (
            f"{len(self.leaves)} leaves, {self.samples} samples to make: about {self.calls} calls "
            f"(at most {self.calls_max}), "
            f"~{self.prompt_tokens + self.completion_tokens:,} tokens, {cost} on {self.model}"
        )


def target_leaves(tree: T.Tree, leaf_ids: Sequence[str] = ()) -> list[T.Node]:
    """The leaves to fill: the given ones (or leaves under given nodes), else all approved leaves."""
    approved = tree.leaves(approved_only=True)
    if not leaf_ids:
        return approved
    wanted = {n.id for node_id in leaf_ids for n in tree.subtree(node_id)}
    return [leaf for leaf in approved if leaf.id in wanted]


def plan_synthesis(
    tree: T.Tree,
    counts: dict[str, int],
    options: SynthOptions,
    *,
    model: str,
    settings: BackendSettings | None = None,
) -> SynthPlan:
    """Estimate calls, tokens and cost for filling each target leaf up to ``per_leaf`` samples."""
    leaves = []
    prompt_tokens = completion_tokens = calls = calls_max = 0
    profile = settings.prompt_profile() if settings is not None else "paper"
    for leaf in target_leaves(tree, options.leaf_ids):
        have = counts.get(leaf.id, 0)
        need = max(0, options.per_leaf - have)
        n_calls = math.ceil(need / options.per_call) if need else 0
        path = tree.path(leaf.id)
        leaves.append(LeafPlan(leaf.id, path, have, need, n_calls))
        prompt = P.samples_prompt(
            tree.task, tree.style, [(s.criterion, s.value) for s in path], options.per_call, profile=profile
        )
        prompt_tokens += n_calls * len(prompt) // 4
        completion_tokens += n_calls * options.per_call * 60
        calls += n_calls
        calls_max += (n_calls + options.extra_calls) * SAMPLE_ATTEMPTS if need else 0
        if options.responses:
            calls += need
            calls_max += need
            prompt_tokens += need * 120
            completion_tokens += need * 300
    price = price_for(model, settings)
    cost = None if price is None else pricing_cost(prompt_tokens, completion_tokens, price)
    return SynthPlan(leaves, calls, prompt_tokens, completion_tokens, cost, model, calls_max)


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


class LeafSynthesizer:
    """Fills one leaf, call by call."""

    def __init__(self, llm: LLM, tree: T.Tree, options: SynthOptions) -> None:
        self.llm, self.tree, self.options = llm, tree, options
        self.profile = P.profile_for(llm)

    def generation_request(self, leaf_id: str, path: list[T.PathStep], call_no: int) -> tuple[ChatRequest, list[dict]]:
        key = [(s.criterion, s.value, len(s.pool)) for s in path]
        rng = random.Random(stable_seed(self.options.seed, "synth-path", key, call_no))
        drawn = render_path(path, rng)
        n = self.options.per_call
        request = ChatRequest.chat(
            None,
            P.samples_prompt(self.tree.task, self.tree.style, drawn, n, profile=self.profile),
            temperature=self.options.temperature,
            max_tokens=min(self.options.max_tokens, P.samples_budget(n)),
            seed=stable_seed(self.options.seed, "synth", key, call_no),
            schema=P.samples_schema(n),
            schema_name="samples",
            meta={"purpose": "synth", "node_id": leaf_id},
        )
        return request, [{"criterion": c, "value": v} for c, v in drawn]

    async def answer(self, leaf_id: str, instruction: str, key: str) -> tuple[str, str | None]:
        request = ChatRequest.chat(
            None,
            P.response_prompt(self.tree.task, self.tree.style, instruction, profile=self.profile),
            temperature=self.options.response_temperature,
            max_tokens=self.options.response_max_tokens,
            seed=stable_seed(self.options.seed, "response", leaf_id, key, instruction),
            meta={"purpose": "response", "node_id": leaf_id},
        )
        result = await self.llm.complete(request)
        return result.text.strip(), result.call_id

    def call_numbers(self, existing: int, used_keys: set[str]) -> range:
        """The call numbers a leaf may use. They depend only on the options and on how many of the
        leaf's samples were deleted, so rerunning the same command asks nothing new."""
        per_call = self.options.per_call
        deleted = max(0, len(used_keys) - existing)
        count = math.ceil(self.options.per_leaf / per_call) + self.options.extra_calls
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
        """Fill one leaf up to ``per_leaf`` samples; return how many were added.

        Calls go in waves of as many as the shortfall needs, run concurrently (each through
        ``gate``, when given), and their replies are taken in call order, so which samples are kept
        does not depend on timing; a wave short of samples (duplicates, unusable replies) is followed
        by another, within :meth:`call_numbers`. Each call's samples are stored as soon as they are
        taken; ``on_call(have)`` runs after each call (it may raise :class:`Cancelled`).
        """
        sample_set, per_leaf, per_call = self.options.sample_set, self.options.per_leaf, self.options.per_call
        existing = store.samples(sample_set=sample_set, leaf_id=leaf.leaf_id)
        used_keys = store.sample_keys(leaf.leaf_id, sample_set=sample_set)
        dupes = DuplicateFilter(self.options.near_duplicate, (s.instruction for s in existing))
        prefix = key_prefix(self.options.seed)
        used_calls = {k[len(prefix) :].split(":", 1)[0] for k in used_keys if k.startswith(prefix)}
        have, added = len(existing), 0
        pending = [c for c in self.call_numbers(have, used_keys) if str(c) not in used_calls]

        async def generate(call_no: int) -> tuple[SamplesReply, ChatResult, list[dict]] | None:
            request, path = self.generation_request(leaf.leaf_id, leaf.path, call_no)
            async with gate or contextlib.nullcontext():
                try:
                    reply, result = await ask_json(
                        self.llm, request, SamplesReply, attempts=SAMPLE_ATTEMPTS, what="samples"
                    )
                except ParseError:
                    return None
            return reply, result, path

        async def answer(text: str, key: str) -> tuple[str | None, str | None]:
            async with gate or contextlib.nullcontext():
                return await self.answer(leaf.leaf_id, text, key)

        while have < per_leaf and pending:
            size = math.ceil((per_leaf - have) / per_call)
            wave, pending = pending[:size], pending[size:]
            tasks = [asyncio.ensure_future(generate(call_no)) for call_no in wave]
            try:
                for call_no, task in zip(wave, tasks, strict=True):  # replies taken in call order
                    outcome = await task
                    if outcome is None:
                        report.failed_calls += 1
                    else:
                        reply, result, path = outcome
                        admitted: list[tuple[str, str]] = []
                        for item_no, text in enumerate(reply.samples):
                            if have + len(admitted) >= per_leaf:
                                break
                            if is_placeholder(text) or not dupes.admit(text):
                                report.duplicates += 1
                                continue
                            admitted.append((f"{prefix}{call_no}:{item_no}", text))
                        answers: list[tuple[str | None, str | None]] = [(None, None)] * len(admitted)
                        if self.options.responses and admitted:
                            answers = list(await asyncio.gather(*(answer(text, key) for key, text in admitted)))
                        rows = [
                            NewSample(
                                leaf_id=leaf.leaf_id,
                                key=key,
                                instruction=text,
                                response=response,
                                path=path,
                                model=self.llm.model,
                                call_id=result.call_id,
                                response_call_id=response_call,
                                sample_set=sample_set,
                                extra={"provenance": "synthesized"},
                            )  # fmt: skip
                            for (key, text), (response, response_call) in zip(admitted, answers, strict=True)
                        ]
                        inserted = store.add_samples(rows)
                        have += inserted
                        added += inserted
                    if on_call is not None:
                        on_call(have)
                    if have >= per_leaf:
                        break
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return added


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
    """Fill every target leaf up to ``per_leaf`` samples; each call's samples are saved as soon as
    they arrive. Leaves run concurrently (bounded by ``concurrency`` and the backend's own limit)."""
    tree = store.tree()
    plan = plan or plan_synthesis(tree, store.sample_counts(sample_set=options.sample_set), options, model=llm.model)
    todo = [leaf for leaf in plan.leaves if leaf.need > 0]
    report = SynthReport(leaves=len(todo))
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

    tasks = [asyncio.ensure_future(one(leaf)) for leaf in todo]
    try:
        for next_done in asyncio.as_completed(tasks):
            added = await next_done
            report.added += added
            done += 1
            if progress:
                progress(done, len(todo), f"{report.added} samples")
            if cancel is not None and cancel.is_set():
                raise Cancelled("synthesis stopped; samples made so far are saved")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    counts = store.sample_counts(sample_set=options.sample_set)
    report.short_leaves = [leaf.leaf_id for leaf in todo if counts.get(leaf.leaf_id, 0) < options.per_leaf]
    return report
