"""CLI commands for bringing your own data: ``import``, ``sets``, ``route`` and ``balance``.

Thin wrappers over :mod:`treesynth_core.data.ingest`, :mod:`~treesynth_core.data.pipeline`,
:mod:`~treesynth_core.data.routing` and :mod:`~treesynth_core.data.balance`. :func:`register` adds them to
the ``treesynth`` app (:mod:`treesynth_core.cli.app` does).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import TreeSynthError
from ..jobs.specs import (
    IMPORTED_SET,
    BalanceOptions,
    DecontamOptions,
    ImportOptions,
    JobContext,
    RouteOptions,
    import_dataset,
    route_needs_llm,
    run_decontaminate,
)
from .common import (
    NO_FEATURE_OPTIONS,
    NO_LLM_RUN_OPTIONS,
    DirArg,
    EmbedderOpt,
    FeatureOptions,
    JsonOpt,
    LlmRunOptions,
    PerCallOpt,
    QuietOpt,
    SeedOpt,
    WaitOpt,
    call_line,
    emit,
    exit_if_short,
    fmt_value,
    lease,
    llm_json,
    load_embedder,
    no_featurizer,
    open_project,
    option_groups,
    progress_bar,
    register_commands,
    run_job,
)

if TYPE_CHECKING:
    from ..data.decontam_run import DecontamReport
    from ..data.pipeline import BalanceResult, RouteReport

SetOpt = Annotated[str, typer.Option("--set", help="The sample set holding the imported dataset.")]


def loaded(embeddings: Any = None, gradients: Any = None) -> Any:
    """The run context's ``featurizer(space)`` over the featurizers a command loaded before its run."""

    def featurizer(space: str) -> Any:
        feats = {"embeddings": embeddings, "gradients": gradients}.get(space)
        return feats if feats is not None else no_featurizer(space)

    return featurizer


def _sets_line(project: Any) -> str:
    sets = project.sample_sets()
    return ", ".join(f"{name} ({n})" for name, n in sets.items()) or "none"


# -- import ---------------------------------------------------------------------------------------


def import_cmd(
    directory: DirArg,
    file: Annotated[
        str,
        typer.Argument(
            help="A .jsonl/.json/.csv/.tsv/.parquet file (.gz allowed for jsonl and csv), a Hugging Face "
            "datasets folder (save_to_disk), or example:humaneval (OpenAI's HumanEval, 164 Python problems, MIT, "
            "shipped with TreeSynth).",
            show_default=False,
            metavar="FILE",
        ),
    ],
    mapping: Annotated[
        str | None,
        typer.Option(
            "--map",
            help="Which columns feed a sample, e.g. 'instruction=question,output=answer', "
            "'instruction=instruction,input=input,output=output' (Alpaca) or 'messages=messages' (chat). "
            "Default: the mapping suggested from the column names (printed).",
        ),
    ] = None,
    sample_set: Annotated[str, typer.Option("--set", help="Name of the new sample set.")] = IMPORTED_SET,
    fmt: Annotated[
        str | None, typer.Option("--format", help="jsonl, json, csv, parquet or hf (default: from the file name).")
    ] = None,
    encoding: Annotated[str, typer.Option("--encoding", help="Text encoding of jsonl/csv files.")] = "utf-8",
    skip_empty: Annotated[
        bool, typer.Option("--skip-empty", help="Skip (and count) rows whose instruction is empty instead of stopping.")
    ] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="Import only the first N rows.")] = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="Show the columns, first rows and suggested mapping; import nothing.")
    ] = False,
    quiet: QuietOpt = False,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Import a dataset as a new sample set, streaming: all rows or none (a bad row, an error or Ctrl-C
    leaves nothing half-imported). Then: treesynth route DIR --set NAME."""
    from ..data import ingest
    from ..data.examples import resolve

    path, example = resolve(file)
    if example is not None and mapping is None:
        mapping = ",".join(f"{k}={v}" for k, v in example.mapping.items())
    if preview:
        seen = ingest.preview(path, fmt=fmt, encoding=encoding)
        suggested = {k: v for k, v in seen.suggested.__dict__.items() if v}
        lines = [
            f"{file}: {seen.format}, {seen.total_bytes:,} bytes; columns: {', '.join(seen.columns)}",
            "Suggested --map " + (",".join(f"{k}={v}" for k, v in suggested.items()) or "(none: pass --map)"),
        ]
        for row in seen.rows:
            lines.append("  " + "; ".join(f"{k}={str(v)[:40]!r}" for k, v in list(row.items())[:6]))
        emit(
            as_json,
            {
                "format": seen.format,
                "columns": seen.columns,
                "rows": seen.rows,
                "suggested": suggested,
                "bytes": seen.total_bytes,
            },
            "\n".join(lines),
        )
        return
    if mapping:
        cmap = ingest.ColumnMap.parse(mapping)
    else:
        cmap = ingest.preview(path, fmt=fmt, encoding=encoding).suggested
        if not (cmap.instruction or cmap.messages):
            raise TreeSynthError(
                f"no column of {file} looks like an instruction: pass --map instruction=COLUMN,"
                "output=COLUMN (see --preview)"
            )
    used = ",".join(f"{k}={v}" for k, v in cmap.__dict__.items() if v)
    options = ImportOptions(
        file=str(path),
        map=dict(cmap.__dict__),
        sample_set=sample_set,
        format=fmt,
        encoding=encoding,
        skip_empty=skip_empty,
        limit=limit,
    )
    with (
        open_project(directory) as project,
        lease(project, "import", dataclasses.asdict(options), wait) as beat,
        progress_bar(quiet or as_json) as bar,
    ):
        task = bar.add_task(f"Importing {path.name}", total=None, note=used)

        def progress(done: int, total: int, note: str) -> None:
            bar.update(task, completed=done)
            beat.report(done, total, note)

        summary = import_dataset(JobContext(project, no_featurizer, progress, beat.cancel), options)
    skipped = f", {summary.skipped_empty} empty rows skipped" if summary.skipped_empty else ""
    emit(
        as_json,
        {**summary.__dict__, "map": used},
        f"Imported {summary.imported} rows of {file} ({summary.format}; --map {used}) as the sample set "
        f"{summary.sample_set!r}{skipped}.\nNext: treesynth route {directory} --set {summary.sample_set}",
    )


def sets(
    directory: DirArg,
    delete: Annotated[
        str | None, typer.Option("--delete", help="Delete this sample set (its samples, features and routes).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the project's sample sets (tree, baseline, imported datasets, balanced sets) with their sizes."""
    with open_project(directory) as project:
        if delete:
            if delete not in project.sample_sets():
                raise TreeSynthError(f"no sample set {delete!r} in {directory}; sets: {_sets_line(project)}")
            gone = project.delete_sample_set(delete)
            emit(as_json, {"deleted": delete, "samples": gone}, f"Deleted the sample set {delete!r} ({gone} samples)")
            return
        data = project.sample_sets()
    emit(as_json, data, "\n".join(f"{name:24} {n:>8}" for name, n in data.items()) or "No samples yet.")


# -- route ----------------------------------------------------------------------------------------


def _route_text(report: RouteReport) -> str:
    lines = [
        f"Routed {report.routed} of {report.total} samples of {report.sample_set!r} with the "
        f"{report.router} router: {report.leaf} in a leaf, {report.none_fits} fit no value, "
        f"{report.errors} could not be classified."
    ]
    for row in report.none_fits_at[:8]:
        lines.append(f"  none fits at {row['path'][:70]}: {row['count']}")
    counts = sorted(report.per_leaf.values())
    if counts:
        lines.append(
            f"Per leaf: min {counts[0]}, median {counts[len(counts) // 2]}, max {counts[-1]} "
            f"({sum(1 for c in counts if c == 0)} empty leaves of {len(counts)})"
        )
    for row in report.crowded:
        lines.append(
            f"Crowded: {row['count']} of {report.leaf} samples in leaves are in {row['path'][:90]}; a router "
            "that piles a set into one leaf is more likely wrong than the data"
        )
    agree = report.agreement
    if agree:
        other = "LLM" if agree["other"] == "llm" else agree["other"]
        did = agree.get("other_status") or {}
        lines.append(
            f"Agreement with the {other} router on {agree['n']} samples: same leaf "
            f"{fmt_value(agree['rate'], 2)}, same first level {fmt_value(agree['first_level_rate'], 2)} (the {other} "
            f"router: {did.get('leaf', 0)} in a leaf, {did.get('none', 0)} none fits, "
            f"{did.get('error', 0)} errors)"
        )
    return "\n".join(lines)


@option_groups
def route(
    directory: DirArg,
    sample_set: SetOpt = RouteOptions.sample_set,
    router: Annotated[
        str | None,
        typer.Option(
            "--router",
            help="llm: the paper's top-down classifier (temperature 0.3, one call per level, 'none of these' "
            "allowed); embedding: the nearest leaf, described by its whole path, fast. Default: llm, except on the embedded 135M "
            "model, whose LLM router answers 'none of these' to almost everything: embedding there.",
            show_default=False,
        ),
    ] = None,
    agreement_n: Annotated[
        int,
        typer.Option(
            "--agreement",
            help="Also route a seeded sample of this many with the other router and report agreement (0: off).",
        ),
    ] = 0,
    seed: SeedOpt = 0,
    embedder: EmbedderOpt = None,
    llm_run: LlmRunOptions = NO_LLM_RUN_OPTIONS,
    as_json: JsonOpt = False,
) -> None:
    """Route every sample of a set (an imported dataset, or the questions of concepts synth) to a leaf of
    the tree, one level at a time. Samples that fit no value are counted per node and stay unrouted, never
    dropped. A rerun routes only what is new or was routed on an older tree.

    Exit status: 0 done, 1 an error or no sample routed by the LLM router (every reply unusable), 3 some
    samples got no usable reply (they stay to route: run route again to retry them).
    """
    from ..data.pipeline import default_router

    with open_project(directory) as project:
        if not project.sample_sets().get(sample_set):
            raise TreeSynthError(
                f"no samples in the set {sample_set!r}; sets: {_sets_line(project)}. "
                f"Import first: treesynth import {directory} FILE"
            )
        resolved = llm_run.backend.resolve(project)
        options = RouteOptions(
            sample_set=sample_set,
            router=router or default_router(resolved.backend),
            agreement_n=agreement_n,
            seed=seed,
        )
        wants_embeddings = options.router == "embedding" or agreement_n > 0
        embed = load_embedder(project, embedder) if wants_embeddings else None
        settings = resolved if route_needs_llm(options) else None
        params = {"set": sample_set, "router": options.router, "agreement": agreement_n, "seed": seed}
        report, stats = run_job(
            project,
            "route",
            options,
            params,
            settings,
            llm_run,
            as_json,
            description="Routing",
            featurizer=loaded(embed),
        )
    emit(
        as_json,
        {**dataclasses.asdict(report), "llm": llm_json(stats) or None},
        _route_text(report)
        + (f"\n{call_line(stats)}" if stats else "")
        + f"\nNext: treesynth balance {directory} --set {sample_set} --per-leaf N",
    )
    exit_if_short(report)


# -- balance --------------------------------------------------------------------------------------


def _balance_text(report: BalanceResult) -> str:
    lines = [
        f"Balanced {report.source_set!r} into {report.target_set!r} at {report.per_leaf} per leaf: kept "
        f"{report.kept} originals (dropped {report.dropped} from crowded leaves), synthesized "
        f"{report.synthesized} in short leaves; {report.unrouted} unrouted samples left out."
    ]
    if report.skipped_leaves:
        lines.append(
            f"{len(report.skipped_leaves)} short leaves are not approved, so nothing was synthesized "
            "there: approve them and rerun."
        )
    if report.short_leaves:
        lines.append(f"{len(report.short_leaves)} leaves stayed short (duplicates or unusable replies).")
    lines.append(f"{'leaf':60} {'before':>7} {'after':>7}")
    for leaf in report.leaves[:40]:
        after = report.counts[leaf["leaf_id"]]["after"]
        lines.append(f"{leaf['path'][:60]:60} {leaf['before']:>7} {after:>7}")
    if len(report.leaves) > 40:
        lines.append(f"... {len(report.leaves) - 40} more leaves (--json for all)")
    scores = report.scores
    if scores:
        before, after = scores["sets"].get("before", {}), scores["sets"].get("after", {})
        for key, label in (("vendi", "Vendi"), ("g_vendi", "G-Vendi"), ("mean_cosine", "mean cosine")):
            if before.get(key) is not None or after.get(key) is not None:
                lines.append(
                    f"{label:12} before {fmt_value(before.get(key))}  after {fmt_value(after.get(key))}  "
                    f"(equal n = {scores['n']})"
                )
    return "\n".join(lines)


@option_groups
def balance(
    directory: DirArg,
    per_leaf: Annotated[int, typer.Option("--per-leaf", help="Target samples per leaf.", show_default=False)],
    sample_set: SetOpt = BalanceOptions.sample_set,
    into: Annotated[
        str, typer.Option("--into", help="Name of the new, balanced sample set.")
    ] = BalanceOptions.target_set,
    per_call: PerCallOpt = BalanceOptions.per_call,
    responses: Annotated[bool, typer.Option("--responses", help="Also answer each synthesized instruction.")] = False,
    score: Annotated[
        bool, typer.Option("--score/--no-score", help="Score before and after at equal n (Vendi over embeddings).")
    ] = True,
    gradients: Annotated[
        bool, typer.Option("--gradients", help="Also G-Vendi (gradient features of the project's proxy; slow on CPU).")
    ] = False,
    seed: SeedOpt = 0,
    features: FeatureOptions = NO_FEATURE_OPTIONS,
    llm_run: LlmRunOptions = NO_LLM_RUN_OPTIONS,
    as_json: JsonOpt = False,
) -> None:
    """Rebalance a routed dataset into a new sample set: crowded leaves are downsampled (seeded), short
    approved leaves get the shortfall synthesized in the leaf; every row keeps its provenance (original or
    synthesized). The source set is never changed. Export with: treesynth export DIR --set NAME.

    Exit status: 0 done, 1 an error or no sample synthesized (every reply unusable), 3 some leaves left
    short by unusable replies (run balance again to retry them).
    """
    features.check(score and gradients)
    with open_project(directory) as project:
        settings = llm_run.backend.resolve(project)
        embed = features.embeddings(project) if score else None
        grads = features.gradients(project) if score and gradients else None
        options = BalanceOptions(
            sample_set=sample_set,
            per_leaf=per_leaf,
            target_set=into,
            seed=seed,
            per_call=per_call,
            responses=responses,
            score=score,
            gradients=score and gradients,
        )
        params = {"set": sample_set, "into": into, "per_leaf": per_leaf, "seed": seed}
        report, stats = run_job(
            project,
            "balance",
            options,
            params,
            settings,
            llm_run,
            as_json,
            description="Balancing",
            featurizer=loaded(embed, grads),
        )
    emit(
        as_json,
        {**dataclasses.asdict(report), "llm": llm_json(stats)},
        _balance_text(report) + f"\n{call_line(stats)}\n"
        f"Export: treesynth export {directory} --set {into} --format jsonl --out {into}.jsonl",
    )
    exit_if_short(report)


# -- decontaminate --------------------------------------------------------------------------------


def _decontam_text(report: DecontamReport, drop: bool) -> str:
    lines = [
        f"Checked {report.checked:,} samples of {report.sample_set!r} with word {report.n}-grams "
        f"({report.short_n}-grams for eval items under {2 * report.n} words, shorter items matched whole):"
    ]
    for src in report.sources:
        short = f", {src.skipped_items} too short to check" if src.skipped_items else ""
        lines.append(f"  {src.source} ({src.items:,} items{short}): contaminated {src.flagged:,}")
    if drop:
        lines.append(f"Dropped {report.dropped:,} contaminated samples from {report.sample_set!r}.")
    elif report.flagged:
        lines.append(
            f"{report.flagged:,} contaminated samples recorded in the project: export leaves them out "
            "(--keep-contaminated keeps them); --drop deletes them."
        )
    else:
        lines.append("No contaminated samples.")
    for hit in report.examples:
        lines.append(f"  sample {hit.sample_id} ~ {hit.source} {hit.item}: '{hit.ngram[:100]}'")  # words only
    if report.flagged > len(report.examples):
        lines.append(f"  ... {report.flagged - len(report.examples):,} more (--json for the examples shown)")
    return "\n".join(lines)


def decontaminate(
    directory: DirArg,
    against: Annotated[
        list[str],
        typer.Option(
            "--against",
            help="An eval set: a .jsonl/.csv/.parquet/... file (its instruction/input/output columns, as import "
            "would map them, or --field), example:humaneval, or another sample set (set:NAME or its bare name). "
            "Repeat for several.",
            show_default=False,
            metavar="EVAL",
        ),
    ],
    sample_set: Annotated[
        str, typer.Option("--set", help="The sample set to check (tree, baseline, an imported or balanced set).")
    ] = "tree",
    n: Annotated[
        int,
        typer.Option(
            "--n", help="N-gram length in words; eval items under 2n words use min(8, n), shorter ones whole."
        ),
    ] = DecontamOptions.n,
    field_name: Annotated[
        str | None, typer.Option("--field", help="The column of the eval files to check against (default: as import).")
    ] = None,
    drop: Annotated[
        bool,
        typer.Option("--drop", help="Delete the contaminated samples (counted and shown; kept as deletion marks)."),
    ] = False,
    quiet: QuietOpt = False,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Find the samples that share a word n-gram with an eval set's item (normalized: NFKC, lowercase, no
    punctuation), record them in the project (export leaves them out) and, with --drop, delete them."""
    options = DecontamOptions(sample_set=sample_set, against=tuple(against), n=n, field=field_name, drop=drop)
    with (
        open_project(directory) as project,
        lease(project, "decontaminate", dataclasses.asdict(options), wait) as beat,
        progress_bar(quiet or as_json) as bar,
    ):
        tasks: list[Any] = []  # the bar appears once the eval sets are read and the scan starts

        def progress(done: int, total: int, note: str) -> None:
            if not tasks:
                tasks.append(bar.add_task("Decontaminating", total=total, note=""))
            bar.update(tasks[0], completed=done, total=total, note=note)
            beat.report(done, total, note)

        ctx = JobContext(project, no_featurizer, progress, beat.cancel)
        report = asyncio.run(run_decontaminate(ctx, None, options))  # the job's run function
    emit(as_json, dataclasses.asdict(report), _decontam_text(report, drop))


COMMANDS: dict[str, Callable[..., Any]] = {
    "import": import_cmd,
    "sets": sets,
    "route": route,
    "balance": balance,
    "decontaminate": decontaminate,
}


def register(app: typer.Typer) -> None:
    """Add ``import``, ``sets``, ``route``, ``balance`` and ``decontaminate`` to ``app`` (once; calling again
    is a no-op)."""
    register_commands(app, COMMANDS)
