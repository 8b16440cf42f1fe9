"""The ``treesynth`` command line: thin wrappers over the core, with progress bars and ``--json``.

This module assembles the ``treesynth`` group; the commands live by family: :mod:`.project` (new,
settings, export, stats, save-tree, load-tree), :mod:`.tree` (grow, show), :mod:`.edit` (the ``edit``
group), :mod:`.synth`, :mod:`.coverage`, :mod:`.data`, :mod:`.scale`, :mod:`.report` and :mod:`.concepts` (the
``concepts`` group).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import __version__
from .batch import batch_app
from .common import STATE, out, register_commands
from .concepts import concepts_app
from .coverage import register as register_coverage
from .data import register as register_data
from .edit import edit_app
from .models import models
from .project import export, load_tree, new, save_tree, settings, stats
from .report import register as register_report
from .scale import register as register_scale
from .synth import synth
from .tree import grow, show

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


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    STATE["debug"] = debug
    if version:
        out.print(f"treesynth {__version__}")
        raise typer.Exit()


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


#: The top-level commands other than coverage's, data's and scale's, in the order ``treesynth --help``
#: lists them; the ``edit`` group comes after every command.
COMMANDS: dict[str, Callable[..., Any]] = {
    "new": new,
    "grow": grow,
    "show": show,
    "synth": synth,
    "export": export,
    "stats": stats,
    "save-tree": save_tree,
    "load-tree": load_tree,
    "settings": settings,
    "demo": demo,
    "models": models,
}
register_commands(app, COMMANDS)
register_coverage(app)
register_data(app)
register_scale(app)
register_report(app)
app.add_typer(edit_app, name="edit")
app.add_typer(concepts_app, name="concepts")
app.add_typer(batch_app, name="batch")


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
