"""The ``batch`` group: a run's calls as OpenAI Batch JSONL files, sent and brought back.

``treesynth batch DIR prepare --synth ...`` writes the calls ``synth`` would make next; ``submit``,
``status`` and ``collect`` run them through the Files and Batches endpoints of the configured base
URL; ``collect --from OUT`` reads ``vllm run-batch`` output instead. Thin wrappers over
:mod:`treesynth_core.batch`; :mod:`treesynth_core.cli.app` adds the group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..data.balance import IMPORTED_SET
from ..errors import ConfigError, TreeSynthError
from ..generate.synth import SynthOptions
from ..tree.edits import resolve_node
from .common import (
    NO_BACKEND_OPTIONS,
    AnswerOpt,
    BackendOptions,
    DirArg,
    JsonOpt,
    VerifyOpt,
    emit,
    handle_errors,
    open_project,
    option_groups,
)

batch_app = typer.Typer(
    help=(
        "Batch generation: treesynth batch DIR COMMAND ... Write the calls a synth run would make as OpenAI "
        "Batch JSONL files (prepare --synth), send them to the Batch API of the configured base URL (submit), "
        "follow them (status) and bring the replies into the project (collect: a synth round's replies become "
        "samples there and then, with the options it was prepared with); or run the files with "
        "`vllm run-batch -i FILE -o OUT --model M` and `collect --from OUT`. Synthesis runs in rounds (responses "
        "follow their samples; short leaves and cut-off replies ask again): after collect, prepare again writes "
        "the next round's calls, until it finds none; then `treesynth synth` with the same options sends nothing."
    ),
    no_args_is_help=True,
)


@batch_app.callback()
def _batch_group(ctx: typer.Context, directory: DirArg) -> None:
    ctx.obj = directory


def _dir(ctx: typer.Context) -> Path:
    return Path(ctx.obj)


def _settings(project: Any, backend: BackendOptions) -> Any:
    settings = backend.resolve(project)
    if settings.backend != "openai" or not settings.model:
        raise ConfigError(
            "batch files are chat completions for an OpenAI-compatible model: pass --llm openai --model M "
            "(the model the batch endpoint or `vllm run-batch` serves)"
        )
    return settings


def _batches_json(records: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "id": b.id,
            "shard": b.shard,
            "requests": b.requests,
            "status": b.status,
            "remote_id": b.remote_id,
            "counts": dict(b.counts),
        }
        for b in records
    ]


def _batches_text(records: list[Any]) -> str:
    from ..batch.rounds import progress_text

    if not records:
        return "No batches: run `treesynth batch DIR prepare --synth` first."
    return "\n".join(
        f"{b.id}  {b.status:<11} {b.requests:>6} requests"
        + (f"  {b.remote_id}" if b.remote_id else "")
        + progress_text(b)
        for b in records
    )


@batch_app.command("prepare")
@handle_errors
@option_groups
def prepare(
    ctx: typer.Context,
    synth: Annotated[bool, typer.Option("--synth", help="The calls of `treesynth synth` with these options.")] = False,
    route: Annotated[
        bool,
        typer.Option("--route", help="The calls of `treesynth route --router llm` (with --set and --seed)."),
    ] = False,
    sample_set: Annotated[str, typer.Option("--set", help="With --route: the sample set to route.")] = IMPORTED_SET,
    per_leaf: Annotated[int, typer.Option("--per-leaf", help="Samples per approved leaf.")] = SynthOptions.per_leaf,
    per_call: Annotated[
        int, typer.Option("--per-call", help="Samples asked for in one LLM call.")
    ] = SynthOptions.per_call,
    responses: Annotated[bool, typer.Option("--responses", help="Also answer each instruction.")] = False,
    sampled_scale: Annotated[
        int, typer.Option("--sampled-scale", help="As synth's --sampled-scale.")
    ] = SynthOptions.sampled_scale,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="The most tokens one call may use.")
    ] = SynthOptions.max_tokens,
    verify: VerifyOpt = SynthOptions.verify,
    answer: AnswerOpt = SynthOptions.answer,
    node: Annotated[list[str] | None, typer.Option("--node", help="Only leaves under this node; repeatable.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="As synth's (or route's) --seed: use the same one there.")] = 0,
    max_lines: Annotated[
        int, typer.Option("--max-lines", help="Requests per shard file at most (OpenAI: 50,000).")
    ] = 50_000,
    backend: BackendOptions = NO_BACKEND_OPTIONS,
    as_json: JsonOpt = False,
) -> None:
    """Write the calls a run would make next as Batch JSONL shards in DIR/batches/ROUND/.

    Each line's custom_id is the call's cache key, its body exactly what the online run would send.
    Run synth afterwards with the same options (and --llm openai --model M) to use the replies.
    """
    from ..batch.prepare import route_requests, synth_requests
    from ..batch.rounds import write_round
    from ..jobs.batch_fill import SYNTH_ROUND, round_params

    if synth == route:
        raise TreeSynthError("say which run's calls to prepare: --synth or --route")
    with open_project(_dir(ctx)) as project:
        settings = _settings(project, backend)
        if route:
            prepared = route_requests(project, settings, sample_set=sample_set, seed=seed)
            written = write_round(project, prepared.requests, max_lines=max_lines)
            _print_round(as_json, ctx, written, prepared, settings.model)
            return
        try:
            options = SynthOptions(
                per_leaf=per_leaf,
                per_call=per_call,
                responses=responses,
                seed=seed,
                sampled_scale=sampled_scale,
                max_tokens=max_tokens,
                verify=verify,
                answer=answer,
                leaf_ids=tuple(resolve_node(project.tree(), ref).id for ref in node or []),
            )
        except ValueError as exc:
            raise TreeSynthError(str(exc)) from None
        prepared = synth_requests(project, settings, options)
        written = write_round(
            project, prepared.requests, max_lines=max_lines, kind=SYNTH_ROUND, params=round_params(options)
        )
    _print_round(as_json, ctx, written, prepared, settings.model)


def _print_round(as_json: bool, ctx: typer.Context, written: Any, prepared: Any, model: str) -> None:
    from ..llm.pricing import usd as _usd

    cost = "unknown price" if prepared.cost_usd is None else f"at most ~{_usd(prepared.cost_usd)} at the batch price"
    if prepared.cost_usd is not None and prepared.run_cost_usd is not None:
        cost += f"; the whole run ~{_usd(prepared.run_cost_usd)}"
    out = (
        f"{written.already_out} requests are out in batches not yet collected and were left out "
        f"(treesynth batch {_dir(ctx)} status; collect, then prepare again)"
    )
    if written.shards:
        text = (
            f"Wrote {written.requests} requests in {len(written.shards)} files to {written.folder} ({cost}); "
            f"next: treesynth batch {_dir(ctx)} submit (or vllm run-batch -i FILE -o OUT --model {model})"
        )
        text += f"\n{out}." if written.already_out else ""
    elif written.already_out:
        text = f"Nothing new to prepare: {out}."
    else:
        text = "Nothing to prepare: every call this run makes has its reply. Run it with the same options."
    emit(
        as_json,
        {
            "round": written.id if written.shards else None,
            "requests": written.requests,
            "already_out": written.already_out,
            "files": [str(s.path) for s in written.shards],
            "cost_usd": prepared.cost_usd,
            "run_cost_usd": prepared.run_cost_usd,
            "model": model,
        },
        text,
    )


def _client(settings: Any) -> Any:
    from ..batch.client import client_for

    return client_for(settings)


@batch_app.command("submit")
@handle_errors
@option_groups
def submit(ctx: typer.Context, backend: BackendOptions = NO_BACKEND_OPTIONS, as_json: JsonOpt = False) -> None:
    """Upload every prepared shard to the configured base URL and start a batch on each."""
    from ..batch.rounds import submit as submit_all

    with open_project(_dir(ctx)) as project:
        settings = _settings(project, backend)
        if not any(b.status == "prepared" for b in project.batches()):
            emit(as_json, {"submitted": []}, "Nothing to submit: no prepared shards (treesynth batch DIR prepare).")
            return
        with _client(settings) as client:
            sent = submit_all(project, client)
    emit(
        as_json,
        {"base_url": client.base_url, "submitted": _batches_json(sent)},
        f"Submitted {len(sent)} batches to {client.base_url}.\n{_batches_text(sent)}",
    )


@batch_app.command("status")
@handle_errors
@option_groups
def status(ctx: typer.Context, backend: BackendOptions = NO_BACKEND_OPTIONS, as_json: JsonOpt = False) -> None:
    """Ask the provider how each sent batch stands; list every batch."""
    from ..batch.rounds import refresh

    with open_project(_dir(ctx)) as project:
        if any(b.remote_id for b in project.batches()):
            with _client(_settings(project, backend)) as client:
                records = refresh(project, client)
        else:
            records = project.batches()
    emit(as_json, {"batches": _batches_json(records)}, _batches_text(records))


@batch_app.command("collect")
@handle_errors
@option_groups
def collect(
    ctx: typer.Context,
    from_files: Annotated[
        list[Path] | None,
        typer.Option("--from", help="Read these output files (vllm run-batch -o OUT) instead; repeatable."),
    ] = None,
    backend: BackendOptions = NO_BACKEND_OPTIONS,
    as_json: JsonOpt = False,
) -> None:
    """Bring finished batches' replies into the project (idempotent); a failed or expired batch's
    finished requests are kept, the rest are prepared again by the next `prepare`. The replies of a
    synth round then become samples, with the options the round was prepared with (nothing is sent)."""
    from ..batch.rounds import collect_files, collect_remote
    from ..jobs.batch_fill import fill_from_replies

    with open_project(_dir(ctx)) as project:
        settings = _settings(project, backend)
        if from_files:
            report = collect_files(project, from_files, settings.model)
        else:
            with _client(settings) as client:
                report = collect_remote(project, client, settings.model)
        filled = fill_from_replies(project, settings, report.rounds) if report.rounds else None
    got = report.collected
    waiting = f"; {len(report.waiting)} batches still running (collect again later)" if report.waiting else ""
    made = ""
    if filled is not None:
        made = (
            f"\nMade {filled.added} samples from the replies; {filled.waiting} leaves wait for the next round"
            + (f"; {filled.unusable} replies were unusable (the next round asks again)" if filled.unusable else "")
            + "."
        )
    emit(
        as_json,
        {
            "replies": got.replies,
            "already_collected": got.known,
            "failed": got.failed,
            "errors": got.errors,
            "read": report.batches,
            "waiting": report.waiting,
            "failed_batches": report.failed_batches,
            "samples_added": None if filled is None else filled.added,
            "leaves_waiting": None if filled is None else filled.waiting,
            "unusable_replies": None if filled is None else filled.unusable,
            "unused_replies": None if filled is None else filled.unused,
        },
        f"Collected {got.replies} replies ({got.known} already in the project), {got.failed} failed requests "
        f"from {len(report.batches)} {'files' if from_files else 'batches'}{waiting}.{made}\nNext: prepare "
        "again for the next round; when it finds nothing, run synth with the same options (it sends nothing)."
        + "".join(f"\nBatch {bid} failed: {why}" for bid, why in report.failed_batches.items()),
    )
    if (got.failed or report.failed_batches) and not got.replies:
        raise typer.Exit(1)
