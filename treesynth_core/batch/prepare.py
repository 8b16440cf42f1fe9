"""``batch prepare``: the requests a run would send next, found by running it without sending.

The run (synthesis here) goes against a throwaway copy of the project, through the normal model
stack (cache, call log, collected batch replies) with :class:`~.replay.DeferringLLM` as its backend:
every request the cache and the collected batches cannot answer is written down and deferred, and
the work stops where the online run would wait for those replies. So the files hold exactly the
requests the online run would send, with the same messages, seeds, sampling and schema.

Synthesis is sequential in places (a leaf's responses follow its samples; a short leaf asks more;
a cut-off reply is asked again with a larger budget): one round holds the calls that can go now,
and after ``collect``, ``prepare`` again writes the next round's, until none remain.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..generate.synth import SynthOptions, plan_synthesis, synthesize
from ..llm.base import LLM, ChatResult
from ..llm.pricing import batch_price, cost
from ..llm.recording import CallRecord
from ..llm.settings import BackendSettings
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


class _Unlogged:
    """The dry run's call store: the copy's cache, and no call log (a deferred call is no call;
    writing a log row per request would be most of the dry run's time)."""

    def __init__(self, project: Any) -> None:
        self.project = project
        self.calls = 0

    def cache_get(self, key: str) -> ChatResult | None:
        return self.project.cache_get(key)  # type: ignore[no-any-return]

    def cache_put(self, key: str, result: ChatResult) -> None:
        self.project.cache_put(key, result)

    def cache_evict(self, key: str) -> None:
        self.project.cache_evict(key)

    def log_call(self, record: CallRecord) -> str:
        self.calls += 1
        return f"dry-{self.calls}"


def _dry_llm(scratch: Any, deferring: DeferringLLM) -> LLM:
    return batch_first(deferring, scratch.batch_reply, _Unlogged(scratch), None)


def synth_requests(project: Any, settings: BackendSettings, options: SynthOptions) -> PreparedCalls:
    """The requests a ``synth`` run with ``options`` would send next (see the module docstring)."""
    counts = project.sample_counts(sample_set=options.sample_set)
    plan = plan_synthesis(project.tree(), counts, options, model=settings.model or "", settings=settings, batch=True)
    todo = [leaf for leaf in plan.leaves if leaf.need]
    deferring = DeferringLLM(settings)
    with tempfile.TemporaryDirectory(prefix="treesynth-batch-") as scratch_dir:
        scratch = project.copy_to(Path(scratch_dir) / "project")
        try:
            asyncio.run(synthesize(scratch, _dry_llm(scratch, deferring), options, plan=plan))
        finally:
            scratch.close()
    requests = list(deferring.requests.values())
    return PreparedCalls(requests, len(todo), plan.samples, estimate_cost(requests, settings), plan.cost_usd)


def route_requests(project: Any, settings: BackendSettings, *, sample_set: str, seed: int = 0) -> PreparedCalls:
    """The requests LLM routing of ``sample_set`` (``treesynth route --router llm``) would send next:
    one level of the tree a round (a sample's next level follows its reply)."""
    from ..data.routing import route_with_llm

    deferring = DeferringLLM(settings)
    samples = len(project.samples(sample_set=sample_set))
    with tempfile.TemporaryDirectory(prefix="treesynth-batch-") as scratch_dir:
        scratch = project.copy_to(Path(scratch_dir) / "project")
        try:
            asyncio.run(route_with_llm(scratch, _dry_llm(scratch, deferring), sample_set=sample_set, seed=seed))
        finally:
            scratch.close()
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
