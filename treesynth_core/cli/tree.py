"""CLI commands for growing and reading the tree: ``grow`` and ``show``.

Thin wrappers over :mod:`treesynth_core.generate.grow` (run as the ``grow`` job); :mod:`treesynth_core.cli.app`
adds them to the ``treesynth`` app.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.tree import Tree as RichTree

from ..errors import TreeSynthError
from ..tree import model as T
from ..tree.edits import resolve_node
from .common import (
    NO_LLM_RUN_OPTIONS,
    DirArg,
    JsonOpt,
    LlmRunOptions,
    call_line,
    emit,
    exit_if_short,
    llm_json,
    open_project,
    option_groups,
    out,
    run_job,
)


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

    A node that got no usable reply stays growable; grow again to retry it. Exit status: 0 done,
    1 an error or no node expanded (every reply unusable), 3 some nodes failed to expand.
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
            "failed": len(report.failed),
            "sampled": report.sampled,
            "flagged": report.flagged,
            "nodes": len(tree.nodes),
            "proposed": proposed,
            "leaves": len(tree.leaves()),
            "llm": llm_json(stats),
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
        exit_if_short(report)


FLAG_MARK = "\u2691"  # ⚑: the node is flagged for a person's review


def _status_mark(node: T.Node) -> str:
    marks = {"approved": "[green]✓[/]", "proposed": "[yellow]?[/]", "pruned": "[red]✗[/]"}
    return marks[node.status] + (" [blue]🔒[/]" if node.locked else "")


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
