"""``batch prepare``: the requests a run would send next, found by running it without sending.

The run (synthesis, or LLM routing) goes against the project through a
:class:`~.dry_run.DryRunStore`, which reads the project and keeps every write in memory (so nothing
is written to the project, and nothing copied: preparing costs what the run reads), and through the
normal model stack (cache, call log, collected batch replies) with :class:`~.replay.DeferringLLM` as
its backend: every request the cache and the collected batches cannot answer is written down and
deferred, and the work stops where the online run would wait for those replies. So the files hold
exactly the requests the online run would send, with the same messages, seeds, sampling and schema.

Synthesis is sequential in places (a leaf's responses follow its samples; a short leaf asks more;
a cut-off reply is asked again with a larger budget): one round holds the calls that can go now,
and after ``collect``, ``prepare`` again writes the next round's, until none remain.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..generate.synth import SynthOptions, plan_synthesis, synthesize
from ..llm.base import LLM
from ..llm.pricing import batch_price, cost
from ..llm.settings import BackendSettings
from .dry_run import DryRunStore
from .replay import BatchRequest, DeferringLLM, batch_first


@dataclass(frozen=True)
class PreparedCalls:
    """The requests of the next round, and what the plan estimates for the whole run."""

    requests: list[BatchRequest]
    leaves: int
    samples: int
    #: Estimated USD of these requests at the batch price, replies at their ``max_tokens`` (None: price unknown).
    cost_usd: float | None
    #: The plan's estimate of the whole run at the batch price (every round; None: price unknown).
    run_cost_usd: float | None = None


def _dry_llm(store: DryRunStore, deferring: DeferringLLM) -> LLM:
    return batch_first(deferring, store.batch_reply, store, None)


def synth_requests(project: Any, settings: BackendSettings, options: SynthOptions) -> PreparedCalls:
    """The requests a ``synth`` run with ``options`` would send next (see the module docstring)."""
    counts = project.sample_counts(sample_set=options.sample_set)
    plan = plan_synthesis(project.tree(), counts, options, model=settings.model or "", settings=settings, batch=True)
    todo = [leaf for leaf in plan.leaves if leaf.need]
    deferring = DeferringLLM(settings)
    store = DryRunStore(project)
    asyncio.run(synthesize(store, _dry_llm(store, deferring), options, plan=plan))
    requests = list(deferring.requests.values())
    return PreparedCalls(requests, len(todo), plan.samples, estimate_cost(requests, settings), plan.cost_usd)


def route_requests(project: Any, settings: BackendSettings, *, sample_set: str, seed: int = 0) -> PreparedCalls:
    """The requests LLM routing of ``sample_set`` (``treesynth route --router llm``) would send next:
    one level of the tree a round (a sample's next level follows its reply)."""
    from ..data.routing import route_with_llm

    deferring = DeferringLLM(settings)
    samples = sum(project.sample_counts(sample_set=sample_set).values())
    store = DryRunStore(project)
    asyncio.run(route_with_llm(store, _dry_llm(store, deferring), sample_set=sample_set, seed=seed))
    requests = list(deferring.requests.values())
    return PreparedCalls(requests, 0, samples, estimate_cost(requests, settings))


def estimate_cost(requests: list[BatchRequest], settings: BackendSettings) -> float | None:
    """USD the requests cost at the batch price: prompts at about 4 characters a token, each reply
    at its ``max_tokens`` (an upper bound); None when the model's price is unknown."""
    price = batch_price(settings.model or "", settings)
    if price is None:
        return None
    prompt = sum(len(str(r.body.get("messages", ""))) // 4 for r in requests)
    completion = sum(int(r.body.get("max_tokens") or 0) for r in requests)
    return cost(prompt, completion, price)
