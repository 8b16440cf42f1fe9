"""CLI commands for a project as a whole: ``new``, ``settings``, ``export``, ``stats``, ``save-tree`` and
``load-tree``.

Thin wrappers over :mod:`treesynth_core.store`, :mod:`~treesynth_core.tree.file`,
:mod:`~treesynth_core.data.export` and :mod:`~treesynth_core.llm.pricing`; :mod:`treesynth_core.cli.app`
adds them to the ``treesynth`` app.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import TreeSynthError
from ..llm.settings import merge_settings, settings_from_env
from .common import (
    NO_BACKEND_OPTIONS,
    BackendOptions,
    DirArg,
    GradTokensOpt,
    JsonOpt,
    ProxyOpt,
    call_line,
    emit,
    open_project,
    option_groups,
    out,
)

if TYPE_CHECKING:
    from ..store import CallCounts
    from ..tree.model import Tree


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
        tree = replace(tree, task=task or tree.task, style=style or tree.style)
        project = Project.create(directory, task=tree.task, style=tree.style, settings=settings, tree=tree)
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
            f"Next: {next_step(tree, directory)}",
        )


def next_step(tree: Tree, directory: Path) -> str:
    """What to run after ``new``: grow a tree that is just its root; review and synthesize a tree
    that came from a file (it is grown already)."""
    if len(tree.nodes) == 1:
        return f"treesynth grow {directory}"
    if tree.leaves(approved_only=True):
        return f"treesynth show {directory} to review it, then treesynth synth {directory}"
    return (
        f"treesynth show {directory} to review it, approve its leaves (treesynth edit {directory} approve "
        f"--level N), then treesynth synth {directory}"
    )


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
    exclude_contaminated: Annotated[
        bool,
        typer.Option(
            "--exclude-contaminated/--keep-contaminated",
            help="Leave out the samples treesynth decontaminate found in an eval set (the card says how many).",
        ),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Export the samples with the tree JSON and a dataset card beside them (which also says what the set
    was checked against for contamination)."""
    from ..data.export import export_set

    if fmt not in ("jsonl", "parquet", "hf"):
        raise TreeSynthError(f"unknown format {fmt!r}: use jsonl, parquet or hf")
    with open_project(directory) as project:
        if not project.sample_sets().get(sample_set) and sample_set != "tree":
            sets = ", ".join(f"{name} ({n})" for name, n in project.sample_sets().items()) or "none"
            raise TreeSynthError(f"the sample set {sample_set!r} has no samples; sets in {directory}: {sets}")
        result = export_set(project, sample_set, fmt, out_path, exclude_contaminated=exclude_contaminated)  # type: ignore[arg-type]
    left_out = f" ({result.excluded} contaminated samples left out)" if result.excluded else ""
    emit(
        as_json,
        {
            "data": str(result.data),
            "tree": str(result.tree),
            "card": str(result.card),
            "rows": result.rows,
            "left_out_pruned": result.left_out,
            "excluded_contaminated": result.excluded,
        },
        f"Wrote {result.rows} rows to {result.data}{left_out}\nTree: {result.tree}\nDataset card: {result.card}"
        + (f"\nLeft out {result.left_out} samples of pruned leaves." if result.left_out else ""),
    )


def stats(directory: DirArg, as_json: JsonOpt = False) -> None:
    """LLM calls made, served from cache and failed, with tokens, per command and per run; the HTTP
    requests sent (what the server saw), failed and retried."""
    from ..llm.pricing import spent

    with open_project(directory) as project:
        run_stats = project.stats()
        data = run_stats.to_json()
        data["cost_usd"] = spent(run_stats.by_model, project.settings())
        if data["cost_usd"]:  # calls sent in batches cost the batch price
            from ..batch.rounds import COLLECT_COMMAND
            from ..llm.pricing import batch_saving

            data["cost_usd"] -= batch_saving(project.batch_tokens(COLLECT_COMMAND), project.settings())
    cost = "unknown (no price for a model; set one with treesynth settings DIR --price MODEL=IN,OUT)"
    if data["cost_usd"] is not None:
        cost = f"${data['cost_usd']:.4f}"
    lines = [call_line(run_stats), request_line(run_stats), f"Estimated cost: {cost}", ""]
    for command, row in run_stats.by_command.items():
        lines.append(
            f"  {command:<8} {row.calls:>6} made {row.cached:>6} cached {row.failed:>5} failed "
            f"{row.requests:>6} requests {row.retries:>5} retries"
        )
    if run_stats.runs:
        lines += ["", "Recent runs:"]
        for run in run_stats.runs[:10]:
            lines.append(
                f"  {run.started} {run.command:<8} {run.status:<12} "
                f"{run.calls} made, {run.cached} cached, {run.failed} failed; "
                f"{run.requests} requests, {run.retries} retries"
            )
    emit(as_json, data, "\n".join(lines))


def request_line(stats: CallCounts) -> str:
    """The HTTP side of the calls: requests that reached the server, the failed ones, retries."""
    return f"Requests sent: {stats.requests} ({stats.failed_requests} failed); retries: {stats.retries}"


def save_tree(directory: DirArg, path: Annotated[Path, typer.Argument(help="The JSON file to write.")]) -> None:
    """Write the tree to a readable, diff-friendly JSON file (to keep it in git or share it)."""
    from ..tree.file import write_tree_file

    with open_project(directory) as project:
        write_tree_file(project.tree(), path)
    out.print(f"Wrote {path}")


def load_tree(directory: DirArg, path: Annotated[Path, typer.Argument(help="The tree JSON file to load.")]) -> None:
    """Replace the project's tree with one from a JSON file (undoable)."""
    from ..tree.file import read_tree_file

    tree = read_tree_file(path)
    with open_project(directory) as project:
        project.replace_tree(tree, kind="import")
    out.print(f"Loaded {path}: {len(tree.nodes)} nodes. Undo with: treesynth edit {directory} undo")


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
        f"{current.describe()}; {current.describe_prompts()}\nG-Vendi: {grads.describe()}"
        + endpoint_line(current, backend),
    )


def endpoint_line(current: Any, backend: BackendOptions) -> str:
    """For the openai backend: where requests go, and what a run must confirm first (as the project
    says, without this machine's TREESYNTH_* variables or flags)."""
    from rich.markup import escape

    from ..llm.settings import Endpoint

    if current.backend != "openai":
        return ""
    target = Endpoint.of(current, current, chosen=())
    problem = target.problem(
        allow_key_env=[backend.allow_key_env] if backend.allow_key_env else (), trust_endpoint=backend.trust_endpoint
    )
    return escape(f"\n{target.notice()}" + (f"\nBefore sending, runs need confirmation: {problem}" if problem else ""))
