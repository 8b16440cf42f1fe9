"""Deleted samples kept for an undo (table ``trashed_samples``, migration m020).

Deleting samples by hand moves their rows here, one numbered batch per deletion, beside the
deletion marks that keep a rerun from making them again; :func:`restore` puts a batch back (under
its old ids where they are free) and lifts its marks. Only the latest :data:`KEEP` deletions are
kept. Values and the SQL over one connection; :class:`~treesynth_core.store.project.Project` wraps
them in transactions.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from .db import chunks, marks, set_meta
from .schema import SAMPLE_COLUMNS, now

#: How many deletions can be undone (the latest ones).
KEEP = 20
_COLUMNS = ", ".join(SAMPLE_COLUMNS)
_LAST = "trash_batch"  # the meta key holding the latest batch number


@dataclass(frozen=True)
class Deletion:
    """One deletion of samples by hand: ``count`` samples (of ``sample_sets``), undoable by its
    ``batch`` number."""

    batch: int
    count: int
    sample_sets: tuple[str, ...]
    deleted: str


def keep(conn: sqlite3.Connection, ids: list[int]) -> int:
    """Copy the samples ``ids`` into a new batch (before they are deleted); return its number."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_LAST,)).fetchone()
    batch = int(row[0]) + 1 if row else 1  # never reused, so an old batch number never means a new one
    set_meta(conn, _LAST, str(batch))
    stamp = now()
    for chunk in chunks(ids):
        conn.execute(
            f"INSERT INTO trashed_samples (batch, id, {_COLUMNS}, deleted) "
            f"SELECT ?, id, {_COLUMNS}, ? FROM samples WHERE id IN ({marks(len(chunk))})",
            (batch, stamp, *chunk),
        )
    conn.execute("DELETE FROM trashed_samples WHERE batch <= ?", (batch - KEEP,))
    return batch


def deletion(conn: sqlite3.Connection, batch: int) -> Deletion | None:
    """The deletion kept as ``batch``, or None (restored already, or too old)."""
    rows = conn.execute(
        "SELECT sample_set, COUNT(*), MAX(deleted) FROM trashed_samples WHERE batch = ? GROUP BY sample_set",
        (batch,),
    ).fetchall()
    if not rows:
        return None
    return Deletion(batch, sum(n for _, n, _ in rows), tuple(name for name, _, _ in rows), max(d for _, _, d in rows))


def restore(conn: sqlite3.Connection, batch: int) -> int:
    """Put the samples of ``batch`` back (a new id where another sample took the old one since),
    lift their deletion marks, and forget the batch; return how many came back."""
    rows = conn.execute(f"SELECT id, {_COLUMNS} FROM trashed_samples WHERE batch = ? ORDER BY id", (batch,)).fetchall()
    insert_with_id = f"INSERT OR IGNORE INTO samples (id, {_COLUMNS}) VALUES ({marks(len(SAMPLE_COLUMNS) + 1)})"
    insert_new = f"INSERT OR IGNORE INTO samples ({_COLUMNS}) VALUES ({marks(len(SAMPLE_COLUMNS))})"
    back = 0
    for row in rows:
        taken = conn.execute("SELECT 1 FROM samples WHERE id = ?", (row[0],)).fetchone()
        back += conn.execute(insert_new, row[1:]).rowcount if taken else conn.execute(insert_with_id, row).rowcount
        sample_set, leaf_id, key = row[1:4]
        conn.execute(
            "DELETE FROM deleted_samples WHERE sample_set = ? AND leaf_id = ? AND key = ?", (sample_set, leaf_id, key)
        )
    conn.execute("DELETE FROM trashed_samples WHERE batch = ?", (batch,))
    return back


def forget_set(conn: sqlite3.Connection, sample_set: str) -> None:
    """Drop what is kept of a sample set deleted as a whole."""
    conn.execute("DELETE FROM trashed_samples WHERE sample_set = ?", (sample_set,))
