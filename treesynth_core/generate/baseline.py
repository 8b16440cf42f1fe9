"""The flat baseline: the same number of samples from the task description alone.

This is the TreeSynth paper's "Temp. Sampling" baseline: the same generator is asked repeatedly for
samples of the task (and its style) with no path, at a high temperature. The samples are stored in
the sample set ``"baseline"`` under the root's id, beside the tree's samples, so every diversity
figure can be shown for both at equal n (:mod:`treesynth_core.coverage.report`).

The requests are exactly those leaf synthesis would send for a tree that is only its root
(:class:`~treesynth_core.generate.synth.LeafSynthesizer` builds them, with an empty path), so the prompt is
``prompts.templates.samples_prompt`` with no attributes. As in leaf synthesis, call ``i`` has a seed
derived from ``i`` and samples are stored under ``"<call>:<item>"``: a rerun is served from the
cache and adds no duplicates; exact and near duplicates are dropped, and a bounded number of extra
calls makes up for them. It is filled by the same :meth:`LeafSynthesizer.fill` as a leaf: calls in
concurrent waves, their replies taken in call order, so the result does not depend on timing.
"""

from __future__ import annotations

import asyncio
import math
import threading
from dataclasses import dataclass

from ..errors import Cancelled, TreeSynthError
from ..llm.base import LLM, useful_concurrency
from ..progress import Progress
from ..store.samples import BASELINE_SET
from .shortfall import Shortfall
from .synth import PER_CALL, LeafPlan, LeafSynthesizer, SampleStore, SynthOptions, SynthReport

#: The flat baseline samples hot, as the paper's Temp baseline.
BASELINE_TEMPERATURE = 1.0


@dataclass(frozen=True)
class BaselineOptions:
    """The flat baseline: ``n`` samples from the task description alone (usually the number of tree
    samples), ``per_call`` a call (the same default as leaf synthesis, so the two are compared on equal
    terms), sampled hot like the paper's Temp baseline."""

    n: int = 0
    per_call: int = PER_CALL
    temperature: float = BASELINE_TEMPERATURE
    seed: int = 0
    #: Answer each instruction too; ``None``: as the tree's samples.
    responses: bool | None = None
    #: Calls allowed beyond ``ceil(n / per_call)``; ``None``: :func:`default_extra_calls`.
    extra_calls: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise TreeSynthError("the flat baseline needs n >= 1 samples")


@dataclass
class BaselineReport:
    """What a baseline run did. ``total`` counts the baseline samples stored after it."""

    requested: int
    added: int = 0
    duplicates: int = 0
    failed_calls: int = 0
    calls: int = 0
    total: int = 0
    #: Responses cut off by ``max_tokens`` (not stored; their samples have no response).
    responses_cut_off: int = 0
    #: Samples the run set out to make (``requested`` less those stored before it).
    wanted: int = 0
    #: The last problem of the replies that were unusable, when they left the baseline short.
    last_problem: str = ""

    @property
    def short(self) -> int:
        """How many samples the baseline lacks of ``requested`` (duplicates or unusable replies)."""
        return max(0, self.requested - self.total)

    def shortfall(self) -> Shortfall | None:
        """What unusable replies cost this run: None unless they left the baseline short."""
        if not self.last_problem:
            return None
        return Shortfall(
            "baseline samples made",
            self.added,
            self.wanted,
            "calls",
            self.failed_calls,
            self.last_problem,
            "make the baseline again",
        )


def default_extra_calls(n: int, per_call: int) -> int:
    """Calls allowed beyond ``ceil(n / per_call)`` to replace duplicates: half as many again, plus 2.

    Temperature sampling from one prompt repeats itself far more than a leaf does, so the baseline
    gets a larger allowance than leaf synthesis; the cap keeps a collapsing generator from
    looping.
    """
    return math.ceil(math.ceil(n / per_call) / 2) + 2


async def synthesize_baseline(
    store: SampleStore,
    llm: LLM,
    options: BaselineOptions,
    *,
    concurrency: int = 8,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> BaselineReport:
    """Fill the flat baseline up to ``options.n`` samples (nothing is asked if it has them already).

    Parameters
    ----------
    store
        The project.
    llm
        The generator (the same one the tree's samples came from, for a fair comparison).
    options
        The target size, samples per call, temperature, seed, responses and extra calls
        (:class:`BaselineOptions`).
    concurrency
        Generation calls in flight at once.
    """
    n, per_call, responses = options.n, options.per_call, options.responses
    tree = store.tree()
    root = tree.root_id
    if responses is None:
        responses = any(s.response for s in store.samples())
    if per_call < 1:
        raise TreeSynthError("--per-call must be at least 1")
    try:
        synth = SynthOptions(
            per_leaf=n,
            per_call=per_call,
            temperature=options.temperature,
            seed=options.seed,
            responses=responses,
            extra_calls=default_extra_calls(n, per_call) if options.extra_calls is None else options.extra_calls,
            sample_set=BASELINE_SET,
        )
    except ValueError as exc:
        raise TreeSynthError(str(exc)) from None
    synthesizer = LeafSynthesizer(llm, tree, synth)
    report = BaselineReport(requested=n)
    synth_report = SynthReport()
    calls = 0

    def on_call(have: int) -> None:
        nonlocal calls
        calls += 1
        if progress:
            progress(min(have, n), n, f"samples ({calls} calls)")
        if cancel is not None and cancel.is_set():
            raise Cancelled("baseline stopped; samples made so far are saved")

    report.wanted = max(0, n - store.sample_counts(sample_set=BASELINE_SET).get(root, 0))
    root_leaf = LeafPlan(root, [], 0, n, 0, target=n)
    try:
        gate = asyncio.Semaphore(useful_concurrency(llm, concurrency))
        report.added = await synthesizer.fill(store, root_leaf, synth_report, gate=gate, on_call=on_call)
    finally:
        report.calls, report.duplicates, report.failed_calls = calls, synth_report.duplicates, synth_report.failed_calls
        report.responses_cut_off = synth_report.responses_cut_off
        report.last_problem = synth_report.last_problem if synth_report.failed_leaves else ""
    report.total = store.sample_counts(sample_set=BASELINE_SET).get(root, 0)
    return report
