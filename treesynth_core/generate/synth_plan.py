"""Planning leaf synthesis (:mod:`~treesynth_core.generate.synth`): its options, each leaf's target
(``per_leaf``, scaled by the sampled nodes on its path), the numbered calls' keys and token budgets,
and the estimate of calls, tokens and cost a run makes before it starts (with the budget check).

Pure functions over the tree and the stored counts: the CLI, the jobs and the app plan with them
without running anything.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import BudgetError
from ..llm.pricing import batch_price, price_for, usd
from ..llm.pricing import cost as pricing_cost
from ..llm.settings import BackendSettings
from ..prompts import templates as P
from ..prompts.replies import BUDGET_RETRIES, MAX_TOKENS_CAP
from ..store.samples import TREE_SET
from ..tree import model as T
from .gap_options import check_verify

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
        check_verify(self.verify, self.answer, responses=self.responses)
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


def check_budget(plan: SynthPlan, options: SynthOptions, *, answered: int = 0) -> None:
    """Refuse a run the plan says goes over ``options``' caps. ``answered``: replies collected
    batches brought back that no run has used yet; they were paid for, so neither cap counts them:
    the call cap counts the calls sent online (the run itself counts exactly: see
    :func:`~treesynth_core.batch.replay.batch_first`), the cost cap their share of the plan's cost."""
    online = max(0, plan.calls - answered)
    if options.max_calls is not None and online > options.max_calls:
        raise BudgetError(
            f"this run needs about {online} LLM calls, above your cap of {options.max_calls}; "
            "raise --max-calls or make fewer samples"
        )
    cost = online_cost(plan, answered)
    if options.max_cost is not None and cost is not None and cost > options.max_cost:
        sent = f" for the {online} calls sent online" if answered else ""
        raise BudgetError(f"this run is estimated at {usd(cost)}{sent}, above your cap of {usd(options.max_cost)}")


def online_cost(plan: SynthPlan, answered: int = 0) -> float | None:
    """The plan's cost less the share of its calls that ``answered`` collected batch replies serve
    (paid for when their batch ran); None when the price is unknown."""
    if plan.cost_usd is None or not plan.calls:
        return plan.cost_usd
    return plan.cost_usd * max(0, plan.calls - answered) / plan.calls
