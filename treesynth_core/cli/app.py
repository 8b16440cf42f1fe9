"""The ``treesynth`` command line: thin wrappers over the core, with progress bars and ``--json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.tree import Tree as RichTree

from .. import __version__
from ..errors import TreeSynthError
from ..generate.synth import SynthOptions
from ..llm.settings import merge_settings, settings_from_env
from ..tree import model as T
from ..tree.edits import resolve_node, run_edit
from .common import (
    NO_BACKEND_OPTIONS,
    NO_LLM_RUN_OPTIONS,
    STATE,
    BackendOptions,
    DirArg,
    GradTokensOpt,
    JsonOpt,
    LlmRunOptions,
    ProxyOpt,
    call_line,
    emit,
    err,
    handle_errors,
    open_project,
    option_groups,
    out,
    run_job,
)
from .coverage import register as register_coverage
from .data import register as register_data
from .scale import register as register_scale

app = typer.Typer(
    help=(
        "TreeSynth Studio: grow a tree that splits a task's data space into mutually exclusive "
        "subspaces, review it, then synthesize a diverse dataset leaf by leaf.\n\n"
        "Typical run: treesynth new my-proj --task '...' ; treesynth grow my-proj --auto-approve ; "
        "treesynth synth my-proj --per-leaf 10 ; treesynth export my-proj --format jsonl --out data.jsonl"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
edit_app = typer.Typer(
    help="Edit the tree by hand: treesynth edit DIR COMMAND ... Every edit can be undone (treesynth edit DIR undo).",
    no_args_is_help=True,
)
app.add_typer(edit_app, name="edit")

# -- commands ---------------------------------------------------------------------------------------


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    STATE["debug"] = debug
    if version:
        out.print(f"treesynth {__version__}")
        raise typer.Exit()


@app.command()
@handle_errors
@option_groups
def new(
    directory: DirArg,
    task: Annotated[str, typer.Option("--task", help="One line saying what data you want.")] = "",
    style: Annotated[str, typer.Option("--style", help="Free-text style, e.g. 'GSM8K-style word problems'.")] = "",
    from_tree: Annotated[
        Path | None, typer.Option("--from-tree", help="Start from a tree JSON file (e.g. assets/trees/*.json).")
    ] = None,
    backend: BackendOptions = NO_BACKEND_OPTIONS,
    as_json: JsonOpt = False,
) -> None:
    """Create a project folder for a task (or from a tree file), with its backend settings."""
    from ..store import Project
    from ..tree.file import read_tree_file

    settings = merge_settings(None, settings_from_env(), backend.overrides())
    if from_tree is not None:
        tree = read_tree_file(from_tree)
        project = Project.create(directory, task=task or tree.task, style=style or tree.style, settings=settings)
        project.replace_tree(tree, kind="import")
    else:
        project = Project.create(directory, task=task, style=style, settings=settings)
    with project:
        tree = project.tree()
        emit(
            as_json,
            {
                "project": str(directory),
                "task": tree.task,
                "style": tree.style,
                "nodes": len(tree.nodes),
                "backend": settings.describe(),
            },
            f"Created project {directory} for: {tree.task}\nBackend: {settings.describe()}\n"
            f"Next: treesynth grow {directory}",
        )


@app.command()
@handle_errors
@option_groups
def grow(
    directory: DirArg,
    paper: Annotated[
        bool,
        typer.Option(
            "--paper",
            help="The paper's unattended run: depth 4, auto-approve, more than 50 values make one sampled "
            "child, coverage until the model says the list is complete (within --coverage-rounds). Options "
            "given explicitly win over the preset (e.g. --paper --review --depth 3).",
        ),
    ] = False,
    depth: Annotated[
        int | None, typer.Option("--depth", help="Maximum depth of the tree [default: 2; 4 with --paper].")
    ] = None,
    max_values: Annotated[
        int | None,
        typer.Option(
            "--max-values",
            help="More values than this make one sampled child, which draws one value per prompt (the paper's "
            "'infinite' threshold) [default: 50].",
        ),
    ] = None,
    coverage_rounds: Annotated[
        int | None,
        typer.Option(
            "--coverage-rounds",
            help="Coverage asks for missing values (10 at a time) until the model says the list is complete, "
            "at most this many times; a list still incomplete then is open-ended and makes one sampled "
            "child [default: 8].",
        ),
    ] = None,
    pivots: Annotated[
        int | None, typer.Option("--pivots", help="Pivot samples generated per node [default: 10].")
    ] = None,
    pivots_from: Annotated[
        str | None,
        typer.Option(
            "--pivots-from",
            help="Grow a tree for an imported dataset: draw each node's pivots from this sample set (the samples that fall in the node's subspace) instead of generating them.",
        ),
    ] = None,
    auto_approve: Annotated[
        bool | None,
        typer.Option(
            "--auto-approve/--review",
            help="Approve every proposed node and keep growing (the paper's unattended run), or grow only "
            "approved nodes and propose new ones for review [default: --review; --auto-approve with --paper].",
        ),
    ] = None,
    node: Annotated[
        list[str] | None, typer.Option("--node", help="Grow only under this node (id or value path); repeatable.")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed for all sampling (same seed, same tree, served from cache).")
    ] = 0,
    llm_run: LlmRunOptions = NO_LLM_RUN_OPTIONS,
    as_json: JsonOpt = False,
) -> None:
    """Grow the tree: pivots -> one criterion -> complete the values -> proposed children.

    With review on (the default) only approved nodes grow, so a person approves or prunes each new
    level before growing again. --auto-approve grows unattended down to --depth; --paper is the
    paper's unattended run.
    """
    from ..generate.grow import GrowOptions, paper_options

    with open_project(directory) as project:
        settings = llm_run.backend.resolve(project)
        tree = project.tree()
        only = tuple(resolve_node(tree, ref).id for ref in node or [])
        given: dict[str, Any] = {
            "max_depth": depth,
            "max_values": max_values,
            "coverage_rounds": coverage_rounds,
            "pivots": pivots,
            "auto_approve": auto_approve,
        }
        explicit = {k: v for k, v in given.items() if v is not None}
        fixed: dict[str, Any] = {"seed": seed, "only": only, "pivots_from": pivots_from or ""}
        try:
            options = paper_options(**explicit, **fixed) if paper else GrowOptions(**explicit, **fixed)
        except ValueError as exc:
            raise TreeSynthError(str(exc)) from None
        params = {
            "paper": paper,
            "depth": options.max_depth,
            "max_values": options.max_values,
            "coverage_rounds": options.coverage_rounds,
            "pivots": options.pivots,
            "auto_approve": options.auto_approve,
            "seed": seed,
            "only": list(only),
            "pivots_from": pivots_from,
        }
        source = None
        if pivots_from:
            from ..data.pipeline import data_pivots
            from .common import load_embedder

            source = data_pivots(project, pivots_from, load_embedder(project, None), seed=seed)
        report, stats = run_job(
            project,
            "grow",
            options,
            params,
            settings,
            llm_run,
            as_json,
            description="Growing",
            eager=True,
            pivot_source=source,
        )
        tree = project.tree()
        proposed = sum(1 for n in tree.nodes.values() if n.status == "proposed")
        data = {
            "expanded": report.expanded,
            "children": report.children,
            "kept_as_leaf": report.leaves,
            "sampled": report.sampled,
            "flagged": report.flagged,
            "nodes": len(tree.nodes),
            "proposed": proposed,
            "leaves": len(tree.leaves()),
            "llm": stats,
        }
        hint = (
            f"\n{proposed} nodes await review: treesynth show {directory}; treesynth edit {directory} approve NODE ..."
            if proposed
            else ""
        )
        if report.flagged:
            are = "value is" if report.flagged == 1 else "values are"
            hint += f"\n{report.flagged} {are} flagged for review (⚑ in treesynth show): approve, rename or merge them"
        if report.expanded == 0 and not as_json:
            hint += "\nNothing to grow: approve proposed nodes first, or raise --depth."
        emit(
            as_json,
            data,
            f"Expanded {report.expanded} nodes into {report.children} children "
            f"({report.leaves} kept as leaves). Tree: {len(tree.nodes)} nodes, {len(tree.leaves())} leaves.\n"
            f"{call_line(stats)}{hint}",
        )


FLAG_MARK = "\u2691"  # ⚑: the node is flagged for a person's review


def _status_mark(node: T.Node) -> str:
    marks = {"approved": "[green]✓[/]", "proposed": "[yellow]?[/]", "pruned": "[red]✗[/]"}
    return marks[node.status] + (" [blue]🔒[/]" if node.locked else "")


@app.command()
@handle_errors
def show(
    directory: DirArg,
    as_json: JsonOpt = False,
    pivots: Annotated[bool, typer.Option("--pivots", help="Also list each node's pivot samples.")] = False,
) -> None:
    """Show the tree with each node's status, criterion and sample count."""
    from rich.markup import escape

    from ..tree.file import tree_to_json

    with open_project(directory) as project:
        tree = project.tree()
        counts = project.sample_counts()
    if as_json:
        data = json.loads(tree_to_json(tree))
        data["sample_counts"] = counts
        data["leaves"] = [n.id for n in tree.leaves()]
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return

    def label(node: T.Node) -> str:
        text = f"{_status_mark(node)} {escape(node.label if not node.is_root else tree.task)} [dim]{node.id}[/]"
        if node.split_criterion:
            text += f"  [cyan]split by {escape(node.split_criterion)}[/]"
        if counts.get(node.id):
            text += f"  [magenta]{counts[node.id]} samples[/]"
        if node.flag:
            text += f"  [bold yellow]{FLAG_MARK} {escape(node.flag[:100])}[/]"
        if node.note:
            text += f"  [dim]({escape(node.note[:80])})[/]"
        return text

    def add(branch: RichTree, node: T.Node) -> None:
        if pivots:
            for p in node.pivots:
                branch.add(f"[dim]pivot: {escape(p[:100])}[/]")
        for kid in tree.children(node.id):
            add(branch.add(label(kid)), kid)

    root = RichTree(label(tree.root))
    add(root, tree.root)
    out.print(root, soft_wrap=False)  # a tree wraps its own long labels
    leaves = tree.leaves()
    out.print(
        f"{len(tree.nodes)} nodes, {len(leaves)} leaves "
        f"({len(tree.leaves(approved_only=True))} approved), {sum(counts.values())} samples.  "
        f"✓ approved  ? proposed  ✗ pruned  🔒 locked  {FLAG_MARK} flagged for review"
    )


NodeArg = Annotated[
    str, typer.Argument(help="Node id (or unique prefix), or a value path like 'addition > fruit'.", metavar="NODE")
]


@edit_app.callback()
def _edit_group(ctx: typer.Context, directory: DirArg) -> None:
    ctx.obj = directory


def _dir(ctx: typer.Context) -> Path:
    return Path(ctx.obj)


def _edit(directory: Path, name: str, **args: Any) -> None:
    with open_project(directory) as project:
        tree = run_edit(project, name, **args)
        out.print(
            f"{name}: done. Tree: {len(tree.nodes)} nodes, {len(tree.leaves())} leaves. "
            f"Undo with: treesynth edit {directory} undo"
        )


def _ref(directory: Path, ref: str) -> str:
    with open_project(directory) as project:
        return resolve_node(project.tree(), ref).id


@edit_app.command("approve")
@handle_errors
def edit_approve(
    ctx: typer.Context,
    nodes: Annotated[
        list[str] | None, typer.Argument(help="Nodes to approve (their ancestors are approved too).")
    ] = None,
    level: Annotated[
        int | None, typer.Option("--level", help="Approve every node at this depth (1 = first split).")
    ] = None,
) -> None:
    """Approve nodes (or a whole level), so they grow and give leaves for synthesis."""
    directory = _dir(ctx)
    if level is not None:
        _edit(directory, "approve-level", depth=level)
    elif nodes:
        _edit(directory, "approve", node_ids=[_ref(directory, n) for n in nodes])
    else:
        raise TreeSynthError("name nodes to approve, or use --level N")


@edit_app.command("prune")
@handle_errors
def edit_prune(
    ctx: typer.Context,
    node: Annotated[str | None, typer.Argument(help="Node to prune (id or value path).")] = None,
    level: Annotated[int | None, typer.Option("--level", help="Prune every unlocked node at this depth.")] = None,
) -> None:
    """Prune a node (soft: it and its subtree stop giving leaves; `restore` brings it back)."""
    directory = _dir(ctx)
    if level is not None:
        _edit(directory, "prune-level", depth=level)
    elif node:
        _edit(directory, "prune", node_id=_ref(directory, node))
    else:
        raise TreeSynthError("name a node to prune, or use --level N")


@edit_app.command("restore")
@handle_errors
def edit_restore(ctx: typer.Context, node: NodeArg) -> None:
    """Restore a pruned node."""
    directory = _dir(ctx)
    _edit(directory, "restore", node_id=_ref(directory, node))


@edit_app.command("rename")
@handle_errors
def edit_rename(
    ctx: typer.Context,
    node: NodeArg,
    new_name: Annotated[str, typer.Argument(help="The new text.")],
    criterion: Annotated[
        bool, typer.Option("--criterion", help="Rename the criterion that splits NODE instead of its value.")
    ] = False,
) -> None:
    """Rename a node's value, or (with --criterion) the criterion that splits it."""
    directory = _dir(ctx)
    node_id = _ref(directory, node)
    if criterion:
        _edit(directory, "rename-criterion", node_id=node_id, new_criterion=new_name)
    else:
        _edit(directory, "rename", node_id=node_id, new_value=new_name)


@edit_app.command("add-value")
@handle_errors
def edit_add_value(
    ctx: typer.Context,
    parent: NodeArg,
    value: Annotated[str, typer.Argument(help="The value to add under PARENT.")],
    criterion: Annotated[
        str | None, typer.Option("--criterion", help="Criterion, when PARENT is not split yet.")
    ] = None,
) -> None:
    """Add a value by hand under a node (approved, written by a person)."""
    directory = _dir(ctx)
    _edit(directory, "add-value", parent_id=_ref(directory, parent), value=value, criterion=criterion)


@edit_app.command("remove-value")
@handle_errors
def edit_remove_value(ctx: typer.Context, node: NodeArg) -> None:
    """Remove a value and its subtree (undo brings it back)."""
    directory = _dir(ctx)
    _edit(directory, "remove-value", node_id=_ref(directory, node))


@edit_app.command("merge")
@handle_errors
def edit_merge(
    ctx: typer.Context,
    keep: NodeArg,
    other: Annotated[str, typer.Argument(help="The sibling merged into KEEP.")],
    value: Annotated[str | None, typer.Option("--value", help="New text for the merged value.")] = None,
) -> None:
    """Merge two sibling values into one."""
    directory = _dir(ctx)
    _edit(directory, "merge", keep_id=_ref(directory, keep), other_id=_ref(directory, other), new_value=value)


@edit_app.command("replace-criterion")
@handle_errors
def edit_replace_criterion(
    ctx: typer.Context,
    node: NodeArg,
    criterion: Annotated[str, typer.Argument(help="The new criterion.")],
    values: Annotated[list[str], typer.Argument(help="Its values.")],
) -> None:
    """Split a node on a new criterion with the given values (the old subtree is dropped; undo restores it)."""
    directory = _dir(ctx)
    _edit(directory, "replace-criterion", node_id=_ref(directory, node), criterion=criterion, values=values)


@edit_app.command("lock")
@handle_errors
def edit_lock(
    ctx: typer.Context,
    node: NodeArg,
    unlock: Annotated[bool, typer.Option("--unlock", help="Unlock instead.")] = False,
) -> None:
    """Lock a node against edits and regrowth (or --unlock it)."""
    directory = _dir(ctx)
    _edit(directory, "unlock" if unlock else "lock", node_id=_ref(directory, node))


@edit_app.command("undo")
@handle_errors
def edit_undo(ctx: typer.Context) -> None:
    """Undo the latest edit (growth included)."""
    directory = _dir(ctx)
    with open_project(directory) as project:
        tree = project.undo()
        out.print("Nothing to undo." if tree is None else f"Undone. Tree: {len(tree.nodes)} nodes.")


@edit_app.command("redo")
@handle_errors
def edit_redo(ctx: typer.Context) -> None:
    """Redo the latest undone edit."""
    directory = _dir(ctx)
    with open_project(directory) as project:
        tree = project.redo()
        out.print("Nothing to redo." if tree is None else f"Redone. Tree: {len(tree.nodes)} nodes.")


@edit_app.command("history")
@handle_errors
def edit_history(
    ctx: typer.Context, limit: Annotated[int, typer.Option("--limit")] = 20, as_json: JsonOpt = False
) -> None:
    """List recent edits, newest first."""
    directory = _dir(ctx)
    with open_project(directory) as project:
        records = project.history(limit)
    rows = [
        {
            "id": r.id,
            "ts": r.ts,
            "kind": r.kind,
            "actor": r.actor,
            "undone": r.undone,
            "changes": r.n_changes,
            "args": r.args,
        }
        for r in records
    ]
    text = "\n".join(
        f"{r['id']:>4} {r['ts']} {r['actor']:<5} {r['kind']:<18} {r['changes']} nodes"
        + ("  (undone)" if r["undone"] else "")
        for r in rows
    )
    emit(as_json, rows, text or "No edits yet.")


@app.command()
@handle_errors
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
        int | None, typer.Option("--max-calls", help="Refuse to start (and stop) above this many LLM calls.")
    ] = None,
    max_cost: Annotated[
        float | None, typer.Option("--max-cost", help="Refuse to start above this estimated cost in USD.")
    ] = None,
    estimate: Annotated[
        bool, typer.Option("--estimate", help="Only print the estimate of calls, tokens and cost.")
    ] = False,
    backend: BackendOptions = NO_BACKEND_OPTIONS,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Synthesize samples for every approved leaf, conditioned on its root-to-leaf path."""
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
            )
        except ValueError as exc:
            raise TreeSynthError(str(exc)) from None
        model_name = settings.model or (
            Path(settings.gguf_path).stem if settings.gguf_path else "SmolLM2-135M-Instruct.Q4_1"
        )
        plan = plan_synthesis(tree, project.sample_counts(), options, model=model_name, settings=settings)
        if not plan.leaves:
            raise TreeSynthError("no approved leaves to fill: approve nodes first (treesynth edit DIR approve ...)")
        if estimate:
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
                },
                "Estimate: " + plan.summary(),
            )
            return
        check_budget(plan, options)
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
        todo = sum(1 for leaf in plan.leaves if leaf.need)
        llm_run = LlmRunOptions(max_calls=max_calls, backend=backend, quiet=quiet)
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
            "responses_cut_off": report.responses_cut_off,
            "total_samples": total,
            "llm": stats,
        }
        short = (
            f"\n{len(report.short_leaves)} leaves have fewer samples than their target (duplicates dropped or "
            f"replies unusable); --seed {seed + 1} asks new questions to top them up."
            if report.short_leaves
            else ""
        )
        if report.responses_cut_off:
            short += (
                f"\n{report.responses_cut_off} responses were cut off at the token limit even with a larger "
                f"budget and were not stored (those samples have no response); raise --max-tokens."
            )
        emit(
            as_json,
            data,
            f"Added {report.added} samples ({report.duplicates} duplicates dropped); "
            f"{total} samples in the project.{short}\n{call_line(stats)}",
        )


@app.command()
@handle_errors
def export(
    directory: DirArg,
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl (chat messages), parquet, or hf (datasets.save_to_disk folder).")
    ] = "jsonl",
    out_path: Annotated[Path, typer.Option("--out", help="Output file (jsonl/parquet) or folder (hf).")] = Path(
        "dataset.jsonl"
    ),
    sample_set: Annotated[
        str,
        typer.Option(
            "--set",
            help="Which sample set: tree (leaf synthesis), baseline, an imported dataset, or a balanced set (see treesynth sets DIR).",
        ),
    ] = "tree",
    as_json: JsonOpt = False,
) -> None:
    """Export the samples with the tree JSON and a dataset card beside them."""
    from ..data.export import export_samples

    if fmt not in ("jsonl", "parquet", "hf"):
        raise TreeSynthError(f"unknown format {fmt!r}: use jsonl, parquet or hf")
    with open_project(directory) as project:
        samples = project.samples(sample_set=sample_set)
        if not samples and sample_set != "tree":
            sets = ", ".join(f"{name} ({n})" for name, n in project.sample_sets().items()) or "none"
            raise TreeSynthError(f"the sample set {sample_set!r} has no samples; sets in {directory}: {sets}")
        result = export_samples(project.tree(), samples, fmt, out_path)  # type: ignore[arg-type]
    emit(
        as_json,
        {"data": str(result.data), "tree": str(result.tree), "card": str(result.card), "rows": result.rows},
        f"Wrote {result.rows} rows to {result.data}\nTree: {result.tree}\nDataset card: {result.card}",
    )


@app.command()
@handle_errors
def stats(directory: DirArg, as_json: JsonOpt = False) -> None:
    """LLM calls made, served from cache and failed, with tokens, per command and per run."""
    from ..llm.pricing import spent

    with open_project(directory) as project:
        data = project.stats()
        data["cost_usd"] = spent(data["by_model"], project.settings())
    cost = "unknown (no price for a model; set one with treesynth settings DIR --price MODEL=IN,OUT)"
    if data["cost_usd"] is not None:
        cost = f"${data['cost_usd']:.4f}"
    lines = [call_line(data), f"Estimated cost: {cost}", ""]
    for command, row in data["by_command"].items():
        lines.append(f"  {command:<8} {row['calls']:>6} made {row['cached']:>6} cached {row['failed']:>5} failed")
    if data["runs"]:
        lines += ["", "Recent runs:"]
        for run in data["runs"][:10]:
            lines.append(
                f"  {run['started']} {run['command']:<8} {run['status']:<12} "
                f"{run['calls']} made, {run['cached']} cached, {run['failed']} failed"
            )
    emit(as_json, data, "\n".join(lines))


@app.command("save-tree")
@handle_errors
def save_tree(directory: DirArg, path: Annotated[Path, typer.Argument(help="The JSON file to write.")]) -> None:
    """Write the tree to a readable, diff-friendly JSON file (to keep it in git or share it)."""
    from ..tree.file import write_tree_file

    with open_project(directory) as project:
        write_tree_file(project.tree(), path)
    out.print(f"Wrote {path}")


@app.command("load-tree")
@handle_errors
def load_tree(directory: DirArg, path: Annotated[Path, typer.Argument(help="The tree JSON file to load.")]) -> None:
    """Replace the project's tree with one from a JSON file (undoable)."""
    from ..tree.file import read_tree_file

    tree = read_tree_file(path)
    with open_project(directory) as project:
        project.replace_tree(tree, kind="import")
    out.print(f"Loaded {path}: {len(tree.nodes)} nodes. Undo with: treesynth edit {directory} undo")


@app.command()
@handle_errors
@option_groups
def settings(
    directory: DirArg,
    backend: BackendOptions = NO_BACKEND_OPTIONS,
    price: Annotated[
        list[str] | None,
        typer.Option(
            "--price", help="Token price for a model, MODEL=INPUT,OUTPUT in USD per million tokens; repeatable."
        ),
    ] = None,
    prompts: Annotated[
        str | None,
        typer.Option(
            "--prompts",
            help="Prompt profile: 'paper' (the reference prompts, for capable models), 'small' (short prompts for the embedded 135M model) or 'auto' (small for the embedded default model, paper for everything else).",
        ),
    ] = None,
    proxy: ProxyOpt = None,
    grad_max_tokens: GradTokensOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the project's backend settings, or change them with the options. --proxy and
    --grad-max-tokens save the gradient proxy the Coverage page and every --gradients command use
    (--proxy "" goes back to the embedded SmolLM2-135M)."""
    from ..coverage.features.proxy import gradient_settings, save_gradient_settings
    from ..llm.pricing import parse_price

    overrides: dict[str, Any] = backend.overrides()
    with open_project(directory) as project:
        current = project.settings()
        if prompts is not None:
            overrides["prompts"] = prompts
        if price:
            overrides["prices"] = {**current.prices, **dict(parse_price(p) for p in price)}
        if any(v is not None for v in overrides.values()):
            current = merge_settings(current, overrides)
            project.save_settings(current)
        grads = gradient_settings(project, proxy=proxy, max_tokens=grad_max_tokens, check=False)
        if proxy is not None or grad_max_tokens is not None:
            save_gradient_settings(project, grads)
    emit(
        as_json,
        {**current.model_dump(), "gradients": grads.model_dump()},
        f"{current.describe()}; {current.describe_prompts()}\nG-Vendi: {grads.describe()}",
    )


@app.command()
@handle_errors
def demo(
    directory: Annotated[Path, typer.Argument(help="Where to create the demo project.")] = Path("projects/demo"),
) -> None:
    """Offline end-to-end demo on the embedded model: new -> grow -> synth -> export."""
    from ..store import Project

    if not (directory / "treesynth.db").exists():
        Project.create(directory, task="Grade-school math word problems", style="GSM8K-style word problems").close()
    # every other option at its default: one place says what a default is
    grow(directory, depth=2, max_values=6, coverage_rounds=3, pivots=6, auto_approve=True)
    synth(directory, per_leaf=3, per_call=3)
    export(directory, out_path=directory / "dataset.jsonl")
    show(directory)


register_coverage(app)
register_data(app)
register_scale(app)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
