"""``treesynth report``: the stakeholder report, one self-contained HTML file (thin wrapper over
:mod:`treesynth_core.report`). :func:`register` adds it to the ``treesynth`` app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..report.model import SAMPLES_PER_LEAF
from .common import (
    CallbackBar,
    DirArg,
    EmbedderOpt,
    JsonOpt,
    QuietOpt,
    SeedOpt,
    emit,
    load_embedder,
    open_project,
    progress_bar,
    register_commands,
)


def report(
    directory: DirArg,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="The HTML file to write (default: <project-name>-report.html in the current folder).",
            show_default=False,
        ),
    ] = None,
    samples_per_leaf: Annotated[
        int, typer.Option("--samples-per-leaf", help="Samples shown under each leaf (0: none).", min=0)
    ] = SAMPLES_PER_LEAF,
    scores: Annotated[
        bool,
        typer.Option(
            "--scores/--no-scores",
            help="Score the tree's samples against the flat baseline (embeddings missing from the project are "
            "computed with --embedder and stored) and show the last coverage map laid out.",
        ),
    ] = True,
    seed: SeedOpt = 0,
    embedder: EmbedderOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """A report for stakeholders: ONE self-contained HTML file that opens offline (no network, the graph
    library inlined) with the task, the tree (interactive, with sample counts), the diversity score card
    against the flat baseline with Vendi against n, the coverage map, a few samples per leaf, the routed
    and rebalanced datasets, and the dataset card."""
    from ..report.collect import collect_report
    from ..report.render import check_out_path, render_html, write_html

    directory = Path(directory)
    name = directory.resolve().name
    target = check_out_path(out_file if out_file is not None else Path.cwd() / f"{name}-report.html")
    with open_project(directory) as project:
        featurizer = load_embedder(project, embedder) if scores else None
        with progress_bar(quiet or as_json) as bar:
            collected = collect_report(
                project,
                embedder=featurizer,
                samples_per_leaf=samples_per_leaf,
                seed=seed,
                name=name,
                progress=CallbackBar(bar, "Features"),
            )
    page = render_html(collected)
    path = write_html(page, target)
    size = len(page.encode("utf-8"))
    summary = {
        "out": str(path),
        "bytes": size,
        "nodes": len(collected.nodes),
        "leaves": collected.leaf_count,
        "samples": collected.samples,
        "baseline_samples": collected.baseline_samples,
        "scores": collected.scores is not None,
        "map_points": len(collected.map_dots),
        "sample_sets": [s.name for s in collected.sets],
    }
    lines = [f"Wrote the report of {name} to {path} ({size / 1e6:.1f} MB, opens offline)"]
    for note in (collected.scores_note, collected.map_note if scores and not collected.map_dots else ""):
        if note:
            lines.append(note)
    emit(as_json, summary, "\n".join(lines))


def register(app: typer.Typer) -> None:
    register_commands(app, {"report": report})
