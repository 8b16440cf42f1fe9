"""The ``synth`` command: estimate, then fill every approved leaf with samples.

A thin wrapper over :mod:`treesynth_core.generate.synth` (run as the ``synth`` job);
:mod:`treesynth_core.cli.app` adds it to the ``treesynth`` app.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..errors import TreeSynthError
from ..generate.synth import SynthOptions, SynthReport
from ..llm.timing import estimate_time, logged_model, synth_purposes
from ..progress import plural
from ..tree.edits import resolve_node
from .common import (
    NO_BACKEND_OPTIONS,
    AnswerOpt,
    BackendOptions,
    DirArg,
    JsonOpt,
    LlmRunOptions,
    VerifyOpt,
    WaitOpt,
    call_line,
    emit,
    err,
    exit_if_short,
    llm_json,
    open_project,
    option_groups,
    run_job,
)


@option_groups
def synth(
    directory: DirArg,
    per_leaf: Annotated[int, typer.Option("--per-leaf", help="Samples per approved leaf.")] = SynthOptions.per_leaf,
    per_call: Annotated[
        int, typer.Option("--per-call", help="Samples asked for in one LLM call (the paper's 10).")
    ] = SynthOptions.per_call,
    responses: Annotated[
        bool,
        typer.Option(
            "--responses",
            help="Also answer each instruction (a second call per sample); a response cut off by the token limit is asked again with a larger budget, and is not stored if it is still cut off.",
        ),
    ] = False,
    sampled_scale: Annotated[
        int,
        typer.Option(
            "--sampled-scale",
            help="A leaf with k sampled nodes on its path gets --per-leaf times this to the power k samples, each with its own draw (the paper: 10).",
        ),
    ] = SynthOptions.sampled_scale,
    verify: VerifyOpt = SynthOptions.verify,
    answer: AnswerOpt = SynthOptions.answer,
    max_tokens: Annotated[
        int,
        typer.Option(
            "--max-tokens",
            help="The most tokens one call may use: the budget sized from the leaf's pivots, and the larger budgets of retries after a reply is cut off, stop here.",
        ),
    ] = SynthOptions.max_tokens,
    node: Annotated[list[str] | None, typer.Option("--node", help="Only leaves under this node; repeatable.")] = None,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            help="Seed for sampling: the same seed asks the same questions (served from the cache); another tops up leaves a run left short.",
        ),
    ] = 0,
    max_calls: Annotated[
        int | None,
        typer.Option(
            "--max-calls",
            help="Refuse to start (and stop) above this many LLM calls sent (cached and collected batch replies are free).",
        ),
    ] = None,
    max_cost: Annotated[
        float | None, typer.Option("--max-cost", help="Refuse to start above this estimated cost in USD.")
    ] = None,
    estimate: Annotated[
        bool, typer.Option("--estimate", help="Only print the estimate of calls, tokens, cost and time.")
    ] = False,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch", help="Price the estimate as calls sent in batches (treesynth batch; half price on OpenAI)."
        ),
    ] = False,
    backend: BackendOptions = NO_BACKEND_OPTIONS,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Synthesize samples for every approved leaf, conditioned on its root-to-leaf path.

    Unusable replies are never cached; rerun to retry the leaves they left short. Exit status:
    0 done, 1 an error or no sample made (every reply unusable), 3 some leaves left short by
    unusable replies.
    """
    from ..generate.synth import SynthOptions, check_budget, plan_synthesis

    with open_project(directory) as project:
        settings = backend.resolve(project)
        tree = project.tree()
        leaf_ids = tuple(resolve_node(tree, ref).id for ref in node or [])
        try:
            options = SynthOptions(
                per_leaf=per_leaf,
                per_call=per_call,
                responses=responses,
                seed=seed,
                leaf_ids=leaf_ids,
                max_calls=max_calls,
                max_cost=max_cost,
                sampled_scale=sampled_scale,
                max_tokens=max_tokens,
                verify=verify,
                answer=answer,
            )
        except ValueError as exc:
            raise TreeSynthError(str(exc)) from None
        model_name = logged_model(settings)
        plan = plan_synthesis(tree, project.sample_counts(), options, model=model_name, settings=settings, batch=batch)
        if not plan.leaves:
            raise TreeSynthError("no approved leaves to fill: approve nodes first (treesynth edit DIR approve ...)")
        if estimate:
            took = estimate_time(project, settings, synth_purposes(responses), plan.calls)
            emit(
                as_json,
                {
                    "leaves": len(plan.leaves),
                    "samples": plan.samples,
                    "calls": plan.calls,
                    "calls_max": plan.calls_max,
                    "prompt_tokens": plan.prompt_tokens,
                    "completion_tokens": plan.completion_tokens,
                    "cost_usd": plan.cost_usd,
                    "sampled_scale": sampled_scale,
                    "scaled_leaves": plan.scaled_leaves,
                    "time": took.to_json(),
                },
                f"Estimate: {plan.summary()}; time {took.text()}",
            )
            return
        check_budget(plan, options, answered=project.unused_batch_replies())
        if not as_json:
            err.print("Plan: " + plan.summary(), highlight=False)
        params = {
            "per_leaf": per_leaf,
            "per_call": per_call,
            "responses": responses,
            "seed": seed,
            "leaf_ids": list(leaf_ids),
            "sampled_scale": sampled_scale,
            "max_tokens": max_tokens,
        }
        if verify:
            params |= {"verify": verify, "answer": answer}
        todo = sum(1 for leaf in plan.leaves if leaf.need)
        llm_run = LlmRunOptions(max_calls=max_calls, backend=backend, quiet=quiet, wait=wait)
        report, stats = run_job(
            project,
            "synth",
            options,
            params,
            settings,
            llm_run,
            as_json,
            description="Synthesizing leaves",
            eager=True,
            total=todo,
            plan=plan,
        )
        total = sum(project.sample_counts().values())
        data = {
            "leaves": report.leaves,
            "added": report.added,
            "duplicates_dropped": report.duplicates,
            "failed_calls": report.failed_calls,
            "short_leaves": report.short_leaves,
            "failed_leaves": report.failed_leaves,
            "responses_cut_off": report.responses_cut_off,
            "dropped_pruned": report.dropped_pruned,
            "total_samples": total,
            **_verification_json(report, verify),
            "llm": llm_json(stats),
        }
        short = (
            f"\n{plural(len(report.repeated_leaves), 'leaf has', 'leaves have')} fewer samples than their target "
            f"(the model repeated itself); --seed {seed + 1} asks new questions to top them up."
            if report.repeated_leaves
            else ""
        )
        if report.dropped_pruned:
            short += (
                f"\n{report.dropped_pruned} samples were not stored: their leaves were pruned or deleted while "
                "the run made them."
            )
        if report.responses_cut_off:
            short += (
                f"\n{report.responses_cut_off} responses were cut off at the token limit even with a larger "
                f"budget and were not stored (those samples have no response); raise --max-tokens."
            )
        emit(
            as_json,
            data,
            f"Added {plural(report.added, 'sample')} ({plural(report.duplicates, 'duplicate')} dropped); "
            f"{total} samples in the project.{short}{_verification_line(report, verify)}\n{call_line(stats)}",
        )
        exit_if_short(report)


def _verification_json(report: SynthReport, draws: int) -> dict[str, Any]:
    """The verification part of ``--json`` (nothing when it was off): totals, acceptance rate, and per leaf."""
    if not draws:
        return {}
    return {
        "verify": draws,
        "verified": report.verified,
        "rejected": report.rejected,
        "acceptance_rate": _rate(report.verified, report.rejected),
        "verification": {
            leaf: {
                "verified": c.verified,
                "rejected": c.rejected,
                "acceptance_rate": c.acceptance_rate,
                "rejected_reasons": c.reasons,
            }
            for leaf, c in report.verification.items()
        },
    }


def _verification_line(report: SynthReport, draws: int) -> str:
    if not draws:
        return ""
    leaves = sum(1 for c in report.verification.values() if c.rejected)
    return (
        f"\nVerification ({draws} draws, majority vote): {report.verified} verified, {report.rejected} rejected "
        f"({_rate(report.verified, report.rejected):.0%} accepted); {leaves} leaves had rejections "
        "(per leaf: --json)."
    )


def _rate(verified: int, rejected: int) -> float:
    return verified / (verified + rejected) if verified + rejected else 0.0
