"""The tree as rows, and its edit log: recording an edit, and undo and redo by replaying the log.

The tree lives in the ``nodes`` table (one row per node) plus its task, style and root id in
``meta``. Each edit writes the changed rows and appends one ``edits`` row holding what every changed
node was before and after, so undo writes the "before" side back and redo the "after" side. The
undo stack is the edits not undone; the redo stack the undone ones no later edit made stale. Every
function here runs inside a transaction the caller holds.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..tree.changes import NodeChange, apply_changes, diff, node_from_dict, node_to_dict
from ..tree.model import Node, Tree
from . import db, schema
from .schema import dumps, now

#: Who made an edit when no agent did.
HUMAN = "human"
#: The Tree fields kept in ``meta``.
TREE_META = ("task", "style", "root_id")

_UPSERT_NODE = f"INSERT OR REPLACE INTO nodes ({', '.join(schema.NODE_COLUMNS)}) VALUES " + (
    f"({db.marks(len(schema.NODE_COLUMNS))})"
)
_NEXT_UNDO = "SELECT id, changes, meta FROM edits WHERE undone = 0 ORDER BY id DESC LIMIT 1"
_NEXT_REDO = "SELECT id, changes, meta FROM edits WHERE undone = 1 AND redoable = 1 ORDER BY id LIMIT 1"


@dataclass(frozen=True)
class EditRecord:
    """One entry of the edit log, as :meth:`Project.history` shows it."""

    id: int
    ts: str
    kind: str
    args: dict[str, Any]
    actor: str
    undone: bool
    n_changes: int


def data_version(conn: sqlite3.Connection) -> int:
    """Changes whenever another connection commits; run first in a transaction, it names its snapshot."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def read_tree(conn: sqlite3.Connection) -> Tree:
    query = f"SELECT key, value FROM meta WHERE key IN ({db.marks(len(TREE_META))})"
    meta = dict(conn.execute(query, TREE_META).fetchall())
    rows = conn.execute(f"SELECT {', '.join(schema.NODE_COLUMNS)} FROM nodes")
    nodes = {node.id: node for node in map(schema.row_node, rows)}
    return Tree(task=meta.get("task", ""), style=meta.get("style", ""), nodes=nodes, root_id=meta["root_id"])


def write_nodes(conn: sqlite3.Connection, nodes: Iterable[Node]) -> None:
    """Insert or replace the rows of ``nodes``."""
    conn.executemany(_UPSERT_NODE, [schema.node_row(node) for node in nodes])


def record_edit(
    conn: sqlite3.Connection, old: Tree, new: Tree, *, kind: str, args: Mapping[str, Any], actor: str
) -> None:
    """Write what changed from ``old`` to ``new`` and log it as one edit; nothing if nothing did."""
    changes = diff(old, new)
    meta = {k: [getattr(old, k), getattr(new, k)] for k in TREE_META if getattr(old, k) != getattr(new, k)}
    if not changes and not meta:
        return
    _write(conn, changes, meta, undo=False)
    conn.execute("UPDATE edits SET redoable = 0 WHERE undone = 1 AND redoable = 1")
    encoded = [{"node_id": c.node_id, "before": _encode(c.before), "after": _encode(c.after)} for c in changes]
    conn.execute(
        "INSERT INTO edits (ts, kind, args, actor, changes, meta, n_changes) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            now(),
            kind,
            dumps(dict(args)),
            actor,
            dumps(encoded),
            dumps(meta) if meta else None,
            len(changes) + len(meta),
        ),
    )


def replay(conn: sqlite3.Connection, tree: Tree, *, undo: bool) -> Tree | None:
    """Undo the latest live edit, or redo the next undone one, and flip its flag; None if none."""
    row = conn.execute(_NEXT_UNDO if undo else _NEXT_REDO).fetchone()
    if row is None:
        return None
    edit_id, changes_json, meta_json = row
    changes = [NodeChange(c["node_id"], _decode(c["before"]), _decode(c["after"])) for c in json.loads(changes_json)]
    meta: dict[str, list[str]] = json.loads(meta_json) if meta_json else {}
    _write(conn, changes, meta, undo=undo)
    conn.execute("UPDATE edits SET undone = ? WHERE id = ?", (int(undo), edit_id))
    new = apply_changes(tree, changes, reverse=undo)
    values = {key: pair[0] if undo else pair[1] for key, pair in meta.items()}
    return Tree(
        task=values.get("task", new.task),
        style=values.get("style", new.style),
        nodes=new.nodes,
        root_id=values.get("root_id", new.root_id),
    )


def can_replay(conn: sqlite3.Connection, *, undo: bool) -> bool:
    """Whether :func:`replay` has an edit to undo (or redo)."""
    return conn.execute(_NEXT_UNDO if undo else _NEXT_REDO).fetchone() is not None


def edit_log(conn: sqlite3.Connection, limit: int | None = None) -> list[EditRecord]:
    """The edit log, newest first; undone edits are included and flagged."""
    sql = "SELECT id, ts, kind, args, actor, undone, n_changes FROM edits ORDER BY id DESC LIMIT ?"
    rows = conn.execute(sql, (-1 if limit is None else limit,)).fetchall()
    return [
        EditRecord(i, ts, kind, json.loads(args), actor, bool(undone), n)
        for i, ts, kind, args, actor, undone, n in rows
    ]


def _encode(node: Node | None) -> dict[str, Any] | None:
    return None if node is None else node_to_dict(node)


def _decode(data: Mapping[str, Any] | None) -> Node | None:
    return None if data is None else node_from_dict(data)


def _write(conn: sqlite3.Connection, changes: list[NodeChange], meta: Mapping[str, list[str]], *, undo: bool) -> None:
    """Write node rows (and task/style/root_id) as they are after the edit, or before it (undo)."""
    targets = [(c.node_id, c.before if undo else c.after) for c in changes]
    conn.executemany("DELETE FROM nodes WHERE id = ?", [(i,) for i, node in targets if node is None])
    write_nodes(conn, [node for _, node in targets if node is not None])
    for key, (before, after) in meta.items():
        db.set_meta(conn, key, before if undo else after)
