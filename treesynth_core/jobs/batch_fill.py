"""``batch collect``'s second step: the samples the collected replies bring, written into the project
once.

The normal synthesis run (the ``synth`` job's own run function, options as the round was prepared
with them) goes against the project with :class:`~treesynth_core.batch.replay.DeferringLLM` as its backend behind the
usual model stack (:func:`~.runs.run_llm_work`): a request a collected batch
answered is served from its reply, logged and cached (so it counts as used:
``Project.unused_batch_replies``); any other sends nothing, it waits for a batch
(:class:`~treesynth_core.errors.Deferred`: not an error, not logged, not cached, not a failed call),
and its leaf stops at the wave that needs it, storing nothing of that wave (the replies that wave
took count as unused again: the cache forgets them, the next run takes them from the batch). So each leaf's stored
samples are those the online run would have stored up to that wave, the next ``prepare`` starts from
them (its dry run covers only the leaves still short), and the last ``synth`` finds nothing to do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..batch.replay import DeferringLLM
from ..generate.synth import SynthOptions, SynthReport
from ..llm.settings import BackendSettings

#: The kind of round whose replies ``collect`` turns into samples.
SYNTH_ROUND = "synth"


def round_params(options: SynthOptions) -> dict[str, Any]:
    """The options a ``synth`` round is recorded with (JSON; read back by the ``synth`` job's parser)."""
    params = dataclasses.asdict(options)
    params["leaf_ids"] = list(options.leaf_ids)
    return params


@dataclass
class Filled:
    """What the collected replies made: samples stored, leaves still waiting for replies (the next
    round's), and replies the run could not use (unusable: the next round asks again)."""

    added: int = 0
    waiting: int = 0
    unusable: int = 0
    #: Replies collected that no run has used yet (unusable or cut off ones, or another round's).
    unused: int = 0
    reports: list[SynthReport] = field(default_factory=list)


def fill_from_replies(project: Any, settings: BackendSettings, round_ids: list[str]) -> Filled | None:
    """Run the synthesis of each ``synth`` round among ``round_ids`` (once per distinct options) from
    the collected replies only; None when none of them is a recorded ``synth`` round (rounds prepared
    before rounds were recorded, routing rounds: the next run uses their replies as before)."""
    from .lease import run_lease
    from .runs import run_llm_work
    from .specs import JobContext, job_spec

    recorded = project.batch_rounds(round_ids)
    distinct = {repr(sorted(params.items())): params for kind, params in recorded.values() if kind == SYNTH_ROUND}
    if not distinct:
        return None
    spec = job_spec("synth")
    filled = Filled()
    for params in distinct.values():
        options = spec.parse(params)
        with run_lease(project, "synth", params) as beat:

            async def work(llm: Any, cancel: Any, options: SynthOptions = options) -> Any:
                ctx = JobContext(project, lambda _space: None, cancel=cancel, concurrency=settings.concurrency)
                return await spec.run(ctx, llm, options)

            report, stats = run_llm_work(
                project,
                "synth",
                {**params, "from_batches": True},
                settings,
                work,
                cancel=beat.cancel,
                llm_factory=DeferringLLM,
                job_id=beat.job_id,
            )
            beat.result = f"made {report.added} samples from collected batch replies"
        if report.waiting_calls:  # their waves stored nothing: the replies they took wait too
            project.release_batch_replies(report.waiting_calls)
        filled.reports.append(report)
        filled.added += report.added
        filled.waiting += len(report.waiting_leaves)
        filled.unusable += stats.failed
    filled.unused = project.unused_batch_replies()
    return filled
