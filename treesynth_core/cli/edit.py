"""The ``treesynth edit DIR COMMAND`` group: edits of the tree by hand, each one undoable.

Thin wrappers over :func:`treesynth_core.tree.edits.run_edit` and the project's undo log;
:mod:`treesynth_core.cli.app` adds the group as ``edit``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..errors import EditConflict, TreeSynthError
from ..tree.edits import resolve_node, run_edit
from .common import (
    DirArg,
    JsonOpt,
    emit,
    handle_errors,
    open_project,
    out,
)

edit_app = typer.Typer(
    help="Edit the tree by hand: treesynth edit DIR COMMAND ... Every edit can be undone (treesynth edit DIR undo).",
    no_args_is_help=True,
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


def _edit_node(ctx: typer.Context, name: str, node: str) -> None:
    """The edit ``name`` of one node (id or value path)."""
    directory = _dir(ctx)
    _edit(directory, name, node_id=_ref(directory, node))


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
    if level is not None:
        _edit(_dir(ctx), "prune-level", depth=level)
    elif node:
        _edit_node(ctx, "prune", node)
    else:
        raise TreeSynthError("name a node to prune, or use --level N")


@edit_app.command("restore")
@handle_errors
def edit_restore(ctx: typer.Context, node: NodeArg) -> None:
    """Restore a pruned node."""
    _edit_node(ctx, "restore", node)


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
    _edit_node(ctx, "remove-value", node)


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
    _edit_node(ctx, "unlock" if unlock else "lock", node)


AllOwnersOpt = Annotated[
    bool,
    typer.Option("--all", help="Act on the latest edit of any owner (app sessions, other users), not only yours."),
]


def _replay(ctx: typer.Context, redo: bool, all_owners: bool) -> None:
    """Undo this owner's latest edit, or redo the one it undid last (``all_owners``: anyone's),
    and say what the tree is then."""
    word, done = ("redo", "Redone") if redo else ("undo", "Undone")
    with open_project(_dir(ctx)) as project:
        try:
            replayed = project.replay(undo=not redo, all_owners=all_owners)
        except EditConflict as exc:
            raise EditConflict(f"{exc}{'' if redo or all_owners else ' (--all)'}", exc.node_id) from None
        if replayed is not None:
            out.print(escape(f"{done}: {replayed.what}. Tree: {len(replayed.tree.nodes)} nodes."))
            return
        if all_owners:
            out.print(f"Nothing to {word}.")
            return
        state = project.undo_state()
    others = state.others_since and not redo
    hint = f"; {state.others_since} later edits by others can be undone with --all" if others else ""
    out.print(escape(f"Nothing of yours ({state.owner}) to {word}{hint}."))


@edit_app.command("undo")
@handle_errors
def edit_undo(ctx: typer.Context, all_owners: AllOwnersOpt = False) -> None:
    """Undo your latest edit (growth included); --all: the latest edit of anyone.

    Your edits are those made as the same owner: $TREESYNTH_OWNER if set, else cli:<your user>. An
    undo that a later edit by someone else would conflict with is refused, naming that edit."""
    _replay(ctx, redo=False, all_owners=all_owners)


@edit_app.command("redo")
@handle_errors
def edit_redo(ctx: typer.Context, all_owners: AllOwnersOpt = False) -> None:
    """Redo the edit you undid last (--all: the oldest undone edit of anyone)."""
    _replay(ctx, redo=True, all_owners=all_owners)


@edit_app.command("history")
@handle_errors
def edit_history(
    ctx: typer.Context, limit: Annotated[int, typer.Option("--limit")] = 20, as_json: JsonOpt = False
) -> None:
    """List recent edits, newest first, with who made them (role and owner)."""
    directory = _dir(ctx)
    with open_project(directory) as project:
        records = project.history(limit)
    rows = [
        {
            "id": r.id,
            "ts": r.ts,
            "kind": r.kind,
            "actor": r.actor,
            "owner": r.owner,
            "undone": r.undone,
            "changes": r.n_changes,
            "args": r.args,
        }
        for r in records
    ]
    text = "\n".join(
        f"{r['id']:>4} {r['ts']} {r['actor']:<5} {r['owner']:<16} {r['kind']:<18} {r['changes']} nodes"
        + ("  (undone)" if r["undone"] else "")
        for r in rows
    )
    emit(as_json, rows, text or "No edits yet.")
