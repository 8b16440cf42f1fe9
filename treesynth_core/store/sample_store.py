"""The samples' side of a project: samples and sample sets, deletion and its undo, imports,
decontamination records, routes and feature vectors. :class:`SampleStore` is a part of
:class:`~.project.Project` (its base class), which stays the one public entry; it uses the
project's database and its current tree."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ProjectError
from ..tree.model import Tree
from . import contamination, schema, trash
from .db import Database, chunks, marks
from .samples import STAGING_PREFIX, TREE_SET, NewSample, Route, Sample, SamplesAdded, check_dataset_set
from .schema import dumps, now
from .trash import Deletion

if TYPE_CHECKING:
    from .columns import SampleColumns


class SampleStore:
    """The samples' methods of :class:`~.project.Project`."""

    _db: Database
    #: The last :meth:`sample_columns` answer, with the database version and the sets it was for.
    _columns_memo: tuple[tuple[int, int, tuple[str, ...]], SampleColumns] | None = None

    def _tree_in(self, conn: sqlite3.Connection) -> Tree:
        """The tree as the transaction on ``conn`` sees it (:class:`~.project.Project` has it)."""
        raise NotImplementedError

    # -- samples ----------------------------------------------------------------------------------
    def add_samples(self, samples: Iterable[NewSample]) -> SamplesAdded:
        """Store samples in one transaction, skipping any (sample_set, leaf_id, key) already
        stored; return how many were added.

        Samples of the tree set whose leaf is gone or pruned (a person pruned it while a run was
        making them) are not stored: the same transaction reads the tree, and the result counts
        them as ``dropped``.
        """
        created = now()
        pending = [(sample, schema.sample_row(sample, created)) for sample in samples]
        if not pending:
            return SamplesAdded(0)
        columns = schema.SAMPLE_COLUMNS
        sql = f"INSERT OR IGNORE INTO samples ({', '.join(columns)}) VALUES ({marks(len(columns))})"
        with self._db.tx() as conn:
            live: set[str] | None = None
            rows: list[tuple[Any, ...]] = []
            for sample, row in pending:
                if sample.sample_set == TREE_SET:
                    if live is None:
                        tree = self._tree_in(conn)
                        live = {node_id for node_id in tree.nodes if tree.is_active(node_id)}
                    if sample.leaf_id not in live:
                        continue
                rows.append(row)
            added = conn.executemany(sql, rows).rowcount if rows else 0
        return SamplesAdded(added, len(pending) - len(rows))

    def samples(
        self, *, sample_set: str = TREE_SET, leaf_id: str | None = None, leaf_ids: Iterable[str] | None = None
    ) -> list[Sample]:
        """The samples of one set, oldest first; only those of ``leaf_id`` / ``leaf_ids`` if given."""
        sql = f"SELECT id, {', '.join(schema.SAMPLE_COLUMNS)} FROM samples WHERE sample_set = ?"
        params: list[Any] = [sample_set]
        if leaf_id is not None:
            sql, params = sql + " AND leaf_id = ?", [*params, leaf_id]
        rows = []
        with self._db.read() as conn:
            if leaf_ids is None:
                rows = conn.execute(sql, params).fetchall()
            for chunk in chunks(list(dict.fromkeys(leaf_ids or ()))):
                rows += conn.execute(f"{sql} AND leaf_id IN ({marks(len(chunk))})", [*params, *chunk])
        return [schema.row_sample(row) for row in sorted(rows, key=lambda r: int(r[0]))]

    def sample_counts(self, *, sample_set: str = TREE_SET) -> dict[str, int]:
        """How many samples each leaf has in ``sample_set``."""
        sql = "SELECT leaf_id, COUNT(*) FROM samples WHERE sample_set = ? GROUP BY leaf_id"
        with self._db.read() as conn:
            return dict(conn.execute(sql, (sample_set,)).fetchall())

    def sample_columns(self, sample_sets: Iterable[str] = (TREE_SET,)) -> SampleColumns:
        """The samples of ``sample_sets`` as columns (ids, and each one's sample set, leaf and path
        as a row of a small table): SQL groups them, so a million samples make no million objects.
        The last answer is kept until a connection changes the database (a page drawn again reads
        nothing)."""
        sets = tuple(dict.fromkeys(sample_sets))
        sql = (
            "SELECT sample_set, leaf_id, path, group_concat(id) FROM samples "
            f"WHERE sample_set IN ({marks(len(sets))}) GROUP BY sample_set, leaf_id, path"
        )
        with self._db.read() as conn:
            version = (int(conn.execute("PRAGMA data_version").fetchone()[0]), conn.total_changes, sets)
            memo = self._columns_memo
            if memo is not None and memo[0] == version:
                return memo[1]
            groups = conn.execute(sql, sets).fetchall() if sets else []
        from .columns import SampleColumns  # numpy: only for those who read columns

        columns = SampleColumns.from_groups(groups)
        self._columns_memo = (version, columns)
        return columns

    def sample_moves_seq(self) -> int:
        """The last seq of the journal of samples deleted or moved (migration m025; 0 before any)."""
        with self._db.read() as conn:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'sample_moves'").fetchone()
        return int(row[0]) if row else 0

    def sample_moves(self, since: int) -> list[int]:
        """The ids of the samples deleted or moved (another set, leaf or path) after journal seq
        ``since``: what a map written at ``since`` looks up again."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT DISTINCT sample_id FROM sample_moves WHERE seq > ?", (since,)).fetchall()
        return [i for (i,) in rows]

    def forget_sample_moves(self, through: int) -> None:
        """Drop the journal's rows up to seq ``through`` (no map needs them any more)."""
        with self._db.tx() as conn:
            conn.execute("DELETE FROM sample_moves WHERE seq <= ?", (through,))

    def sample_origins(self, sample_ids: Iterable[int]) -> dict[int, tuple[str, str, str]]:
        """``id -> (sample set, leaf id, path JSON)`` of those of ``sample_ids`` still stored (one query)."""
        wanted = dumps(list(dict.fromkeys(int(i) for i in sample_ids)))
        sql = "SELECT id, sample_set, leaf_id, path FROM samples WHERE id IN (SELECT value FROM json_each(?))"
        with self._db.read() as conn:
            return {sid: (sample_set, leaf, path) for sid, sample_set, leaf, path in conn.execute(sql, (wanted,))}

    def instructions(self, sample_ids: Iterable[int]) -> dict[int, str]:
        """The instruction of each of ``sample_ids`` still stored."""
        found: dict[int, str] = {}
        with self._db.read() as conn:
            for chunk in chunks(list(dict.fromkeys(int(i) for i in sample_ids))):
                rows = conn.execute(f"SELECT id, instruction FROM samples WHERE id IN ({marks(len(chunk))})", chunk)
                found.update(rows)
        return found

    def sample_keys(self, leaf_id: str, *, sample_set: str = TREE_SET) -> set[str]:
        """The keys stored for one leaf, and those of deleted samples: what a rerun must skip."""
        sql = (
            "SELECT key FROM samples WHERE sample_set = ? AND leaf_id = ? "
            "UNION SELECT key FROM deleted_samples WHERE sample_set = ? AND leaf_id = ?"
        )
        with self._db.read() as conn:
            return {key for (key,) in conn.execute(sql, (sample_set, leaf_id, sample_set, leaf_id))}

    def skip_keys(self, leaf_id: str, keys: Iterable[str], *, sample_set: str = TREE_SET) -> None:
        """Record keys a rerun must skip though no sample holds them (a synthesis call that was
        answered but kept nothing); kept beside the deletion marks, returned by :meth:`sample_keys`."""
        with self._db.tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO deleted_samples (sample_set, leaf_id, key) VALUES (?, ?, ?)",
                [(sample_set, leaf_id, key) for key in keys],
            )

    def delete_samples(self, ids: Iterable[int]) -> int:
        """Delete samples by row id, in one transaction; return how many were deleted. The delete can
        be undone (see :meth:`trash_samples`)."""
        return self.trash_samples(ids).count

    def trash_samples(self, ids: Iterable[int]) -> Deletion:
        """Delete samples by row id, in one transaction, keeping them so :meth:`restore_samples` can
        bring them back (the latest :data:`~.trash.KEEP` deletions are kept)."""
        wanted = list(dict.fromkeys(int(i) for i in ids))
        with self._db.tx() as conn:
            batch = trash.keep(conn, wanted)
            count = delete_samples_by_id(conn, wanted)
            return trash.deletion(conn, batch) or Deletion(batch, count, (), now())

    def restore_samples(self, batch: int) -> int:
        """Undo the deletion ``batch`` (from :meth:`trash_samples`): its samples come back, and a
        rerun may count them again; 0 if it was restored already or is too old."""
        with self._db.tx() as conn:
            return trash.restore(conn, batch)

    def sample_texts(self, sample_set: str, *, batch: int = 5_000) -> Iterator[tuple[int, str, str | None]]:
        """``(id, instruction, response)`` of every sample of the set, oldest first, read ``batch`` rows
        at a time (each batch its own read), so a million samples stream in flat memory."""
        sql = "SELECT id, instruction, response FROM samples WHERE sample_set = ? AND id > ? ORDER BY id LIMIT ?"
        last = -1
        while True:
            with self._db.read() as conn:
                rows = conn.execute(sql, (sample_set, last, batch)).fetchall()
            yield from rows
            if len(rows) < batch:
                return
            last = rows[-1][0]

    # -- decontamination ----------------------------------------------------------------------------
    def record_contamination(
        self, checks: list[contamination.Check], hits: list[contamination.Hit], *, drop: bool = False
    ) -> int:
        """Record checks of a sample set against eval sets and the contaminated samples found, replacing
        earlier checks against the same eval sets; with ``drop``, delete those samples (kept as deletion
        marks, like any deleted sample) in the same transaction. Returns how many were deleted."""
        dropped = sorted({hit.sample_id for hit in hits}) if drop else []
        with self._db.tx() as conn:
            contamination.record(conn, checks, hits, set(dropped))
            return delete_samples_by_id(conn, dropped)

    def contamination_checks(self, sample_set: str) -> list[contamination.Check]:
        """What the set was checked against, with the counts (see :class:`~.contamination.Check`)."""
        with self._db.read() as conn:
            return contamination.checks(conn, sample_set)

    def contamination(self, sample_set: str) -> list[contamination.Hit]:
        """The set's samples recorded as contaminated (one hit per sample and eval set)."""
        with self._db.read() as conn:
            return contamination.hits(conn, sample_set)

    def import_samples(
        self,
        samples: Iterable[NewSample],
        *,
        sample_set: str,
        progress: Callable[[int], None] | None = None,
        batch: int = 2_000,
    ) -> int:
        """Store a whole dataset as a new sample set, all or nothing.

        ``samples`` may be a lazy stream (a file read row by row). Rows go in batches of ``batch``,
        each committed, into a hidden staging set (``~importing:NAME``) that becomes ``sample_set``
        in one final transaction; a bad row, an error or Ctrl-C half way deletes the staging rows, so
        no half-imported set is ever visible, while other writers (a job's heartbeat, its progress)
        are never blocked for longer than one batch. ``progress`` gets the running count after
        each batch, outside any transaction. Refuses a set name that already holds samples, and the
        names no dataset may take (:func:`~treesynth_core.store.samples.check_dataset_set`).
        """
        check_dataset_set(sample_set)
        with self._db.read() as conn:
            refuse_taken(conn, sample_set)
        staging = STAGING_PREFIX + sample_set
        self.delete_sample_set(staging)  # left behind by a process killed during an earlier import
        columns = schema.SAMPLE_COLUMNS
        sql = f"INSERT OR IGNORE INTO samples ({', '.join(columns)}) VALUES ({marks(len(columns))})"
        created, added = now(), 0
        pending: list[tuple[Any, ...]] = []

        def flush() -> None:
            nonlocal added, pending
            with self._db.tx() as conn:
                added += conn.executemany(sql, pending).rowcount
            pending = []
            if progress is not None:
                progress(added)

        try:
            for sample in samples:
                pending.append(schema.sample_row(dataclasses.replace(sample, sample_set=staging), created))
                if len(pending) >= batch:
                    flush()
            flush()
            with self._db.tx() as conn:
                refuse_taken(conn, sample_set)
                conn.execute("UPDATE samples SET sample_set = ? WHERE sample_set = ?", (sample_set, staging))
        except BaseException:
            self.delete_sample_set(staging)
            raise
        return added

    def sample_sets(self) -> dict[str, int]:
        """Every sample set in the project with its number of samples (imports still running, which
        are staged under a hidden name, are not listed)."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT sample_set, COUNT(*) FROM samples GROUP BY sample_set ORDER BY 1")
            return {name: n for name, n in rows if not name.startswith(STAGING_PREFIX)}

    def delete_sample_set(self, sample_set: str) -> int:
        """Delete a whole sample set with its features, routes and deletion marks; one transaction."""
        with self._db.tx() as conn:
            return delete_set(conn, sample_set)

    # -- routes -----------------------------------------------------------------------------------
    def put_routes(self, routes: Iterable[Route]) -> None:
        """Store routes (replacing a router's earlier route of the same sample); one transaction."""
        created = now()
        rows = [
            (r.sample_id, r.router, r.tree_digest, r.status, r.leaf_id, r.stopped_at, dumps(r.path), r.detail, created)
            for r in routes
        ]
        with self._db.tx() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO routes (sample_id, router, tree_digest, status, leaf_id, stopped_at, path, "
                f"detail, created) VALUES ({marks(9)})",
                rows,
            )

    def routes(self, router: str, *, sample_set: str) -> dict[int, Route]:
        """The routes ``router`` made for the samples of ``sample_set``, by sample id."""
        sql = (
            "SELECT r.sample_id, r.router, r.status, r.stopped_at, r.leaf_id, r.path, r.detail, r.tree_digest "
            "FROM routes r JOIN samples s ON s.id = r.sample_id WHERE r.router = ? AND s.sample_set = ?"
        )
        with self._db.read() as conn:
            rows = conn.execute(sql, (router, sample_set)).fetchall()
        return {
            int(sid): Route(int(sid), rtr, status, stopped, leaf, json.loads(path), detail, digest)
            for sid, rtr, status, stopped, leaf, path, detail, digest in rows
        }

    def assign_leaves(self, assignments: Mapping[int, tuple[str, list[dict[str, str]]]]) -> None:
        """Set each sample's leaf and path (by sample id), as routing decided; one transaction."""
        with self._db.tx() as conn:
            conn.executemany(
                "UPDATE samples SET leaf_id = ?, path = ? WHERE id = ?",
                [(leaf, dumps(path), int(sid)) for sid, (leaf, path) in assignments.items()],
            )

    # -- feature vectors and cached arrays ----------------------------------------------------------
    def put_features(self, kind: str, vectors: Mapping[int, bytes]) -> None:
        """Store float32 feature vectors (as bytes) by sample id under ``kind``; one transaction."""
        with self._db.tx() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO features (kind, sample_id, vector) VALUES (?, ?, ?)",
                [(kind, int(sample_id), bytes(vector)) for sample_id, vector in vectors.items()],
            )

    def get_features(self, kind: str, sample_ids: Iterable[int]) -> dict[int, bytes]:
        """The stored vectors (float32 bytes) of ``kind`` for those sample ids that have one."""
        found: dict[int, bytes] = {}
        with self._db.read() as conn:
            for chunk in chunks(list(dict.fromkeys(int(i) for i in sample_ids))):
                rows = conn.execute(
                    f"SELECT sample_id, vector FROM features WHERE kind = ? AND sample_id IN ({marks(len(chunk))})",
                    (kind, *chunk),
                )
                found.update({sample_id: vector for sample_id, vector in rows})
        return found

    def put_blob(self, key: str, data: bytes) -> None:
        """Cache derived data (a map's coordinates, ...) under a content key."""
        with self._db.tx() as conn:
            conn.execute("INSERT OR REPLACE INTO blobs (key, created, data) VALUES (?, ?, ?)", (key, now(), data))

    def blob_keys(self, prefix: str) -> list[str]:
        """The keys of the cached blobs that start with ``prefix``, sorted."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT key FROM blobs WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix))
            return [key for (key,) in rows]

    def get_blob(self, key: str) -> bytes | None:
        with self._db.read() as conn:
            row = conn.execute("SELECT data FROM blobs WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])


def delete_set(conn: sqlite3.Connection, sample_set: str) -> int:
    """Delete a sample set with its features, routes, deletion marks and contamination record; return how
    many samples."""
    ids = "SELECT id FROM samples WHERE sample_set = ?"
    conn.execute(f"DELETE FROM features WHERE sample_id IN ({ids})", (sample_set,))
    conn.execute(f"DELETE FROM routes WHERE sample_id IN ({ids})", (sample_set,))
    conn.execute("DELETE FROM deleted_samples WHERE sample_set = ?", (sample_set,))
    contamination.forget_set(conn, sample_set)
    trash.forget_set(conn, sample_set)
    return int(conn.execute("DELETE FROM samples WHERE sample_set = ?", (sample_set,)).rowcount)


def delete_samples_by_id(conn: sqlite3.Connection, ids: list[int]) -> int:
    """Delete samples by row id with their features and contamination marks, keeping deletion marks."""
    deleted = 0
    contamination.forget_samples(conn, ids)
    for chunk in chunks(ids):
        conn.execute(f"DELETE FROM features WHERE sample_id IN ({marks(len(chunk))})", chunk)
        conn.execute(
            "INSERT OR IGNORE INTO deleted_samples (sample_set, leaf_id, key) "
            f"SELECT sample_set, leaf_id, key FROM samples WHERE id IN ({marks(len(chunk))})",
            chunk,
        )
        deleted += conn.execute(f"DELETE FROM samples WHERE id IN ({marks(len(chunk))})", chunk).rowcount
    return deleted


def refuse_taken(conn: sqlite3.Connection, sample_set: str) -> None:
    """Refuse to import into a sample set that already holds samples."""
    (held,) = conn.execute("SELECT COUNT(*) FROM samples WHERE sample_set = ?", (sample_set,)).fetchone()
    if held:
        raise ProjectError(
            f"the sample set {sample_set!r} already holds {held} samples; choose another name or delete that set first"
        )
