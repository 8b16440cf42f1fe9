"""The tree as rows, and its edit log: recording an edit, and undo and redo by replaying the log.

The tree lives in the ``nodes`` table (one row per node) plus its task, style and root id in
``meta``. Each edit writes the changed rows and appends one ``edits`` row holding what every changed
node was before and after, so undo writes the "before" side back and redo the "after" side.

Every edit has an owner (an app session, ``cli:<user>`` or ``$TREESYNTH_OWNER``: see
:func:`default_owner`), and undo and redo act on one owner's edits unless asked for all owners'.
An owner's undo stack is its edits not undone; its redo stack its undone edits that no later edit
*of its own* made stale (edits recorded before owners existed count as everyone's). Since other
owners' edits come in between, an undo (or redo) first checks that no later edit still in force
touched the same nodes (``edit_touches``), that a redone edit finds its nodes as it found them
then, and that the tree it gives is valid; if not, it is refused with an
:class:`~treesynth_core.errors.EditConflict` naming the edit in the way, and nothing changes. So
the edits in force on each node always form one chain from the original tree, and undoing every
owner's edits, latest first, gives the original tree back. Every function here runs inside a
transaction the caller holds.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConflictError, EditConflict, TreeError
from ..tree.changes import NodeChange, apply_changes, diff, node_from_dict, node_to_dict
from ..tree.model import Node, Tree, validate
from . import db, schema
from .schema import dumps, now

#: Who made an edit (its ``actor``: a role) when no agent did.
HUMAN = "human"
#: The variable that names the owner of this process's edits (see :func:`default_owner`).
OWNER_ENV = "TREESYNTH_OWNER"
#: The owner of edits recorded before edits had owners: anyone's undo and redo may take them.
LEGACY_OWNER = "legacy"
#: The Tree fields kept in ``meta``.
TREE_META = ("task", "style", "root_id")

_UPSERT_NODE = f"INSERT OR REPLACE INTO nodes ({', '.join(schema.NODE_COLUMNS)}) VALUES " + (
    f"({db.marks(len(schema.NODE_COLUMNS))})"
)
_EDIT_COLUMNS = "id, kind, args, owner, changes, meta"
_RECORD_COLUMNS = "id, ts, kind, args, actor, owner, undone, n_changes"
#: The edits of the owner given as the one parameter: its own and those from before owners.
_MINE = f"owner IN (?, '{LEGACY_OWNER}')"


def default_owner() -> str:
    """The owner of the edits this process makes outside the app: ``$TREESYNTH_OWNER`` if set, else
    ``cli:<login name>``. Every CLI command is a new process, so a person's commands share one
    owner (their undo undoes their own latest edit, growth included); a script or a second person
    working on the same project sets ``TREESYNTH_OWNER`` to keep its edits apart."""
    explicit = os.environ.get(OWNER_ENV, "").strip()
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        user = "unknown"
    return f"cli:{user}"


@dataclass(frozen=True)
class EditRecord:
    """One entry of the edit log, as :meth:`Project.history` shows it. ``actor`` is the role that
    made it (``human`` or ``llm``), ``owner`` whose undo stack it is on."""

    id: int
    ts: str
    kind: str
    args: dict[str, Any]
    actor: str
    owner: str
    undone: bool
    n_changes: int
    #: The edit in a few words (``rename "x" → "y"``), where the reader asked for it.
    what: str = ""


@dataclass(frozen=True)
class UndoState:
    """What undo and redo can do for one owner, as the app shows it."""

    owner: str
    #: This owner's edits in force (its undo stack).
    undoable: int
    #: This owner's undone edits that can be redone (its redo stack).
    redoable: int
    #: Edits in force by other owners that came after this owner's latest one (all of them if it
    #: has none): the edits an undo of its own may have to wait for.
    others_since: int
    #: The latest edit in force by another owner.
    latest_other: EditRecord | None
    #: This owner's latest edit in force, as a person reads it (``rename "x" → "y"``): what Undo takes.
    latest_mine: str | None = None


@dataclass(frozen=True)
class Replayed:
    """What an undo or redo did: the tree after it, and the edit it took, as a person reads it."""

    tree: Tree
    #: The edit's id in the log.
    edit_id: int
    #: ``rename "Fractions" → "Ratios"``, ``prune "Geometry"``, ``grow`` (see :meth:`_Edit.describe`).
    what: str


@dataclass(frozen=True)
class _Edit:
    """One edit row, decoded for replay."""

    id: int
    kind: str
    args: dict[str, Any]
    owner: str
    changes: list[NodeChange]
    meta: dict[str, list[str]]

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> _Edit:
        edit_id, kind, args, owner, changes_json, meta_json = row
        changes = [
            NodeChange(c["node_id"], _decode(c["before"]), _decode(c["after"])) for c in json.loads(changes_json)
        ]
        return cls(edit_id, kind, json.loads(args), owner, changes, json.loads(meta_json) if meta_json else {})

    @property
    def touches(self) -> list[str]:
        return touched_keys(self.changes, self.meta)

    def label(self) -> str:
        """``'rename "Fractions"' (edit 12)``: the kind, the node it was about, its id."""
        target = next((self.args[k] for k in ("node_id", "keep_id", "parent_id") if k in self.args), None)
        if target is None and self.args.get("node_ids"):
            target = self.args["node_ids"][0]
        name = next((_name(c) for c in self.changes if c.node_id == target), None)
        return f"'{self.kind}{' ' + name if name else ''}' (edit {self.id})"

    def describe(self) -> str:
        """The edit in a few words: ``rename "Fractions" → "Ratios"`` for a rename (of a value or a
        criterion), else its kind and the node it was about (``prune "Geometry"``)."""
        field = {"rename": "value", "rename-criterion": "split_criterion"}.get(self.kind)
        node_id = self.args.get("node_id")
        change = next((c for c in self.changes if c.node_id == node_id), None)
        if field and change is not None and change.before is not None and change.after is not None:
            return f'{self.kind} "{getattr(change.before, field)}" \u2192 "{getattr(change.after, field)}"'
        target = next((self.args[k] for k in ("node_id", "keep_id", "parent_id") if k in self.args), None)
        if target is None and self.args.get("node_ids"):
            target = self.args["node_ids"][0]
        name = next((_name(c) for c in self.changes if c.node_id == target), None)
        return f"{self.kind} {name}" if name else self.kind


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
    conn: sqlite3.Connection,
    old: Tree,
    new: Tree,
    *,
    kind: str,
    args: Mapping[str, Any],
    actor: str,
    owner: str,
) -> None:
    """Write what changed from ``old`` to ``new`` and log it as one edit of ``owner``; nothing if
    nothing did. It empties ``owner``'s redo stack (and no one else's)."""
    changes = diff(old, new)
    meta = {k: [getattr(old, k), getattr(new, k)] for k in TREE_META if getattr(old, k) != getattr(new, k)}
    if not changes and not meta:
        return
    _write(conn, changes, meta, undo=False)
    conn.execute(f"UPDATE edits SET redoable = 0 WHERE {_MINE} AND undone = 1 AND redoable = 1", (owner,))
    encoded = [{"node_id": c.node_id, "before": _encode(c.before), "after": _encode(c.after)} for c in changes]
    cursor = conn.execute(
        "INSERT INTO edits (ts, kind, args, actor, owner, changes, meta, n_changes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            now(),
            kind,
            dumps(dict(args)),
            actor,
            owner,
            dumps(encoded),
            dumps(meta) if meta else None,
            len(changes) + len(meta),
        ),
    )
    conn.executemany(
        "INSERT INTO edit_touches (edit_id, node_id) VALUES (?, ?)",
        [(cursor.lastrowid, key) for key in touched_keys(changes, meta)],
    )


def touched_keys(changes: Iterable[NodeChange], meta: Mapping[str, Any]) -> list[str]:
    """The keys ``edit_touches`` holds for an edit: its node ids, and ``meta:<key>`` for task,
    style or root_id."""
    return [c.node_id for c in changes] + [f"meta:{key}" for key in meta]


def replay(conn: sqlite3.Connection, tree: Tree, *, undo: bool, owner: str | None) -> Replayed | None:
    """Undo ``owner``'s latest edit in force, or redo the one it undid last, and flip its flag;
    ``None`` if it has none. ``owner=None``: the latest edit of anyone (redo: the oldest undone one
    still redoable). Raises :class:`EditConflict`, changing nothing, when a later edit by another
    owner changed the same nodes or the tree would break."""
    edit = _next(conn, undo=undo, owner=owner)
    if edit is None:
        return None
    _check(conn, tree, edit, undo=undo)
    new = apply_changes(tree, edit.changes, reverse=undo)
    values = {key: pair[0] if undo else pair[1] for key, pair in edit.meta.items()}
    new = Tree(
        task=values.get("task", new.task),
        style=values.get("style", new.style),
        nodes=new.nodes,
        root_id=values.get("root_id", new.root_id),
    )
    try:
        validate(new)
    except TreeError as exc:
        verb = "undo" if undo else "redo"
        raise EditConflict(
            f"can't {verb} {edit.label()}: the tree would break ({exc}); {verb} the later edits first",
            exc.node_id,
        ) from None
    _write(conn, edit.changes, edit.meta, undo=undo)
    conn.execute("UPDATE edits SET undone = ? WHERE id = ?", (int(undo), edit.id))
    return Replayed(new, edit.id, edit.describe())


def can_replay(conn: sqlite3.Connection, *, undo: bool, owner: str | None) -> bool:
    """Whether :func:`replay` has an edit to undo (or redo); it may still refuse it."""
    return _next(conn, undo=undo, owner=owner) is not None


def undo_state(conn: sqlite3.Connection, owner: str) -> UndoState:
    """How many edits ``owner`` can undo and redo, and how many edits of others came since."""
    undoable, latest_mine = conn.execute(
        f"SELECT COUNT(*), COALESCE(MAX(id), 0) FROM edits WHERE {_MINE} AND undone = 0", (owner,)
    ).fetchone()
    (redoable,) = conn.execute(
        f"SELECT COUNT(*) FROM edits WHERE {_MINE} AND undone = 1 AND redoable = 1", (owner,)
    ).fetchone()
    (others,) = conn.execute(
        f"SELECT COUNT(*) FROM edits WHERE NOT {_MINE} AND undone = 0 AND id > ?", (owner, latest_mine)
    ).fetchone()
    row = conn.execute(
        f"SELECT {_RECORD_COLUMNS} FROM edits WHERE NOT {_MINE} AND undone = 0 ORDER BY id DESC LIMIT 1", (owner,)
    ).fetchone()
    mine = conn.execute(
        f"SELECT {_EDIT_COLUMNS} FROM edits WHERE {_MINE} AND undone = 0 ORDER BY id DESC LIMIT 1", (owner,)
    ).fetchone()
    what = _Edit.from_row(mine).describe() if mine else None
    return UndoState(owner, undoable, redoable, others, _record(row) if row else None, what)


def log_head(conn: sqlite3.Connection) -> int:
    """The id of the latest edit in the log (0 when there is none): what a reader saw up to."""
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM edits").fetchone()[0])


def others_after(conn: sqlite3.Connection, edit_id: int, owner: str) -> int:
    """How many edits of owners other than ``owner`` came after ``edit_id``."""
    return int(conn.execute("SELECT COUNT(*) FROM edits WHERE id > ? AND owner != ?", (edit_id, owner)).fetchone()[0])


def edits_after(conn: sqlite3.Connection, edit_id: int) -> list[EditRecord]:
    """The edits recorded after ``edit_id``, oldest first, with a few words on each (``what``)."""
    records = conn.execute(f"SELECT {_RECORD_COLUMNS} FROM edits WHERE id > ? ORDER BY id", (edit_id,)).fetchall()
    edits = conn.execute(f"SELECT {_EDIT_COLUMNS} FROM edits WHERE id > ? ORDER BY id", (edit_id,)).fetchall()
    return [
        dataclasses.replace(_record(record), what=_Edit.from_row(edit).describe())
        for record, edit in zip(records, edits, strict=True)
    ]


#: The arguments of a named edit that name the nodes it is about.
_TARGET_ARGS = ("node_id", "keep_id", "other_id", "parent_id")


def check_seen(
    conn: sqlite3.Connection,
    seen: Tree | None,
    current: Tree,
    new: Tree | None,
    *,
    kind: str,
    args: Mapping[str, Any],
) -> None:
    """Refuse (:class:`ConflictError`) an edit made on ``seen`` when a node it is about (named in
    ``args``) or changes (from ``current`` to ``new``) is not as ``seen`` had it: another owner
    changed it since the edit's maker read the tree. Edits elsewhere in the tree pass. ``new`` is
    ``None`` for an edit that failed on ``current``: only the nodes it names are checked."""
    if seen is None:
        return
    targets = [str(args[k]) for k in _TARGET_ARGS if isinstance(args.get(k), str)]
    targets += [str(i) for i in args.get("node_ids") or () if isinstance(i, str)]
    changed = [c.node_id for c in diff(current, new)] if new is not None else []
    for node_id in dict.fromkeys([*targets, *changed]):
        before, now_ = seen.nodes.get(node_id), current.nodes.get(node_id)
        if before == now_:
            continue
        name = _name(NodeChange(node_id, before, now_))
        row = conn.execute(
            f"SELECT {_EDIT_COLUMNS} FROM edits WHERE id = (SELECT MAX(edit_id) FROM edit_touches WHERE node_id = ?)",
            (node_id,),
        ).fetchone()
        by = ""
        if row is not None:
            other = _Edit.from_row(row)
            by = f" ({other.describe()} by {other.owner}, edit {other.id})"
        gone = "removed" if now_ is None else "changed"
        raise ConflictError(
            f"your {kind} was not made: {name} was {gone} since you looked{by}; the tree now shows its "
            "current state, so make the edit again if you still want it",
            node_id,
        )


def edit_log(conn: sqlite3.Connection, limit: int | None = None) -> list[EditRecord]:
    """The edit log, newest first; undone edits are included and flagged."""
    sql = f"SELECT {_RECORD_COLUMNS} FROM edits ORDER BY id DESC LIMIT ?"
    return [_record(row) for row in conn.execute(sql, (-1 if limit is None else limit,))]


def _record(row: tuple[Any, ...]) -> EditRecord:
    edit_id, ts, kind, args, actor, owner, undone, n = row
    return EditRecord(edit_id, ts, kind, json.loads(args), actor, owner, bool(undone), n)


def _next(conn: sqlite3.Connection, *, undo: bool, owner: str | None) -> _Edit | None:
    """The edit an undo (the latest in force) or a redo (the oldest undone, still redoable) takes."""
    where = "undone = 0" if undo else "undone = 1 AND redoable = 1"
    params: tuple[str, ...] = ()
    if owner is not None:
        where, params = f"{where} AND {_MINE}", (owner,)
    order = "DESC" if undo else "ASC"
    row = conn.execute(f"SELECT {_EDIT_COLUMNS} FROM edits WHERE {where} ORDER BY id {order} LIMIT 1", params)
    found = row.fetchone()
    return None if found is None else _Edit.from_row(found)


def _check(conn: sqlite3.Connection, tree: Tree, edit: _Edit, *, undo: bool) -> None:
    """Refuse (:class:`EditConflict`) to undo or redo ``edit`` when a later edit in force touched
    one of its nodes, or (redo) a node is not as the edit found it: an earlier edit it followed was
    undone since. (An undo needs no such check: the edits in force on a node form one chain, so
    with no later one in force the node is as ``edit`` left it.)"""
    keys = dumps(edit.touches)
    later = conn.execute(
        "SELECT e.id, e.owner, t.node_id FROM edit_touches t JOIN edits e ON e.id = t.edit_id "
        "WHERE t.node_id IN (SELECT value FROM json_each(?)) AND t.edit_id > ? AND e.undone = 0 "
        "ORDER BY e.id LIMIT 1",
        (keys, edit.id),
    ).fetchone()
    if later is None:
        key = None if undo else _first_mismatch(tree, edit)
        if key is None:
            return
        later = conn.execute(
            "SELECT e.id, e.owner, t.node_id FROM edit_touches t JOIN edits e ON e.id = t.edit_id "
            "WHERE t.node_id = ? AND t.edit_id != ? ORDER BY e.id DESC LIMIT 1",
            (key, edit.id),
        ).fetchone() or (None, None, key)
    other_id, other_owner, key = later
    verb = "undo" if undo else "redo"
    what = next((_name(c) for c in edit.changes if c.node_id == key), key.removeprefix("meta:"))
    by = f" by {other_owner} (edit {other_id})" if other_id is not None else ""
    hint = "undo that first, or undo across all owners" if undo else "it can be redone once that is undone"
    raise EditConflict(f"can't {verb} {edit.label()}: {what} was changed since{by}; {hint}", key)


def _first_mismatch(tree: Tree, edit: _Edit) -> str | None:
    """The first node (or ``meta:<key>``) of ``edit`` that is not as the edit found it."""
    for change in edit.changes:
        if tree.nodes.get(change.node_id) != change.before:
            return change.node_id
    for key, (before, _after) in edit.meta.items():
        if getattr(tree, key) != before:
            return f"meta:{key}"
    return None


def _name(change: NodeChange) -> str:
    """A node as a message names it: its value in quotes, or ``the root``, or its id."""
    node = change.before or change.after
    if node is None or node.parent_id is None:
        return "the root" if node is not None else change.node_id
    return f'"{node.value}"' if node.value else change.node_id


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
