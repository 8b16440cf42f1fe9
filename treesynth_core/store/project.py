"""A TreeSynth project: one folder holding one SQLite database, ``treesynth.db``.

:class:`Project` is the one public entry to the store. It keeps the task, the tree (one row per
node), the edit log that undo and redo replay, the samples, the LLM call log and reply cache, the
runs and the background jobs. The pieces live beside it: the connection, its checks and its
transactions in :mod:`.db`, the tree rows and the edit log in :mod:`.history`, runs, calls, the
cache and jobs in :mod:`.runs`; the samples' SQL stays here. Tree edits take the write lock up front
(``BEGIN IMMEDIATE``) and read the tree inside it, so two processes or two app sessions editing one
project queue up instead of overwriting each other.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import ConfigError, ProjectError
from ..llm.base import ChatResult
from ..llm.recording import CallRecord
from ..llm.settings import BackendSettings, merge_settings
from ..tree.model import Tree, new_tree, validate
from . import batches, contamination, history, runs, schema, trash
from .batches import BatchRecord
from .db import DB_NAME, FORMAT_VERSION, Database, chunks, marks, set_meta
from .history import HUMAN, EditRecord, Replayed, UndoState
from .runs import JobRecord, RunCounts, RunStats
from .samples import STAGING_PREFIX, TREE_SET, NewSample, Route, Sample, SamplesAdded, check_dataset_set
from .schema import dumps, now
from .trash import Deletion

StrPath = str | os.PathLike[str]


class Project:
    """An open project. Get one from :meth:`create` or :meth:`open`; :meth:`close` it (or use ``with``).

    ``owner`` says whose the edits made through this object are, and whose edits :meth:`undo` and
    :meth:`redo` act on: an app session sets its own; the default is
    :func:`~treesynth_core.store.history.default_owner` (``$TREESYNTH_OWNER`` or ``cli:<user>``).
    """

    path: Path
    owner: str

    def __init__(self, db: Database, *, owner: str | None = None) -> None:
        self.path = db.folder
        self.owner = owner or history.default_owner()
        self._db = db
        self._cached: tuple[int, Tree] | None = None  # (PRAGMA data_version, the tree it saw)

    # -- opening and closing ----------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: StrPath,
        *,
        task: str,
        style: str = "",
        settings: BackendSettings | None = None,
        owner: str | None = None,
        tree: Tree | None = None,
    ) -> Project:
        """Create the folder (and its parents) and a project in it whose tree is just the root, or
        ``tree`` (a tree file's): the starting point, not an edit, so no undo goes back past it."""
        folder = Path(path).expanduser()
        root_only = new_tree(task, style)  # TreeError on an empty or too long task, before the disk
        if tree is None:
            tree = root_only
        else:
            validate(tree)
        if folder.exists() and not folder.is_dir():
            raise ProjectError(f"{folder} is a file: give a folder for the new project")
        if (folder / DB_NAME).exists():
            raise ProjectError(f"{folder} already holds a TreeSynth project: open it, or pick another folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProjectError(f"could not create the project folder {folder}: {exc.strerror}") from exc
        project = cls(Database.create(folder), owner=owner)
        try:
            project._initialize(tree, settings or BackendSettings())
        except BaseException:
            project.close()
            raise
        return project

    @classmethod
    def open(cls, path: StrPath, *, owner: str | None = None) -> Project:
        """Open a project folder, check its database and bring its schema up to date."""
        return cls(Database.open(Path(path).expanduser()), owner=owner)

    def close(self) -> None:
        self._db.close()

    def check_present(self) -> None:
        """Raise :class:`~treesynth_core.errors.ProjectGone` if the project's folder or database
        was deleted, moved or replaced since it was opened (every transaction checks this too)."""
        self._db.check_present()

    def __enter__(self) -> Project:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r})"

    def _initialize(self, tree: Tree, settings: BackendSettings) -> None:
        with self._db.tx() as conn:
            if conn.execute("SELECT 1 FROM meta WHERE key = 'task'").fetchone():
                raise ProjectError(f"{self.path} already holds a TreeSynth project: open it instead")
            meta = {
                "task": tree.task,
                "style": tree.style,
                "root_id": tree.root_id,
                "settings": settings.model_dump_json(),
                "created": now(),
                "format_version": str(FORMAT_VERSION),
            }
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
            history.write_nodes(conn, tree.nodes.values())

    # -- task, style and settings -----------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.tree().task

    @property
    def style(self) -> str:
        return self.tree().style

    def settings(self) -> BackendSettings:
        """The backend settings saved in the project (the defaults if none were saved)."""
        with self._db.read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        try:
            data = json.loads(row[0]) if row else {}
            return merge_settings(None, data if isinstance(data, dict) else {})
        except (ValueError, ConfigError) as exc:
            raise ConfigError(f"the settings saved in {self.path} are invalid ({exc}): save new ones") from None

    def save_settings(self, settings: BackendSettings) -> None:
        with self._db.tx() as conn:
            set_meta(conn, "settings", settings.model_dump_json())

    # -- the tree and its edit log (see :mod:`.history`) ------------------------------------------
    def tree(self) -> Tree:
        """The current tree; cached until some connection commits a change to the database."""
        with self._db.read() as conn:
            return self._tree_in(conn)

    def _edit(self, step: Callable[[sqlite3.Connection, Tree], Tree | None]) -> Tree | None:
        """Run ``step(conn, current tree)`` in one write transaction; cache the tree it returns."""
        with self._db.lock:
            with self._db.tx() as conn:
                version = history.data_version(conn)
                cached = self._cached
                old = cached[1] if cached and cached[0] == version else history.read_tree(conn)
                new = step(conn, old)
            # Our own commits leave data_version as it was, so the tree we wrote is current for it.
            self._cached = (version, old if new is None else new)
            return new

    def apply(
        self, kind: str, fn: Callable[[Tree], Tree], *, args: dict[str, Any] | None = None, actor: str = HUMAN
    ) -> Tree:
        """Apply the pure edit ``fn`` to the current tree and record it as one undoable edit of
        :attr:`owner` (``actor`` is the role that made it: ``human`` or ``llm``).

        Nothing is recorded if ``fn`` changes nothing, and nothing is written if it raises. A
        recorded edit empties the owner's redo stack.
        """

        def step(conn: sqlite3.Connection, old: Tree) -> Tree:
            new = fn(old)
            history.record_edit(conn, old, new, kind=kind, args=args or {}, actor=actor, owner=self.owner)
            return new

        result = self._edit(step)
        assert result is not None
        return result

    def replace_tree(self, tree: Tree, *, kind: str = "import", actor: str = HUMAN) -> Tree:
        """Replace the whole tree, task and style included, as one undoable edit."""
        validate(tree)
        return self.apply(kind, lambda _old: tree, args={"nodes": len(tree.nodes)}, actor=actor)

    def undo(self, *, all_owners: bool = False) -> Tree | None:
        """Revert :attr:`owner`'s latest edit not yet undone (``all_owners``: anyone's); ``None``
        if there is none. Raises :class:`~treesynth_core.errors.EditConflict`, changing nothing,
        when a later edit by another owner changed the same nodes (see :mod:`.history`)."""
        done = self.replay(undo=True, all_owners=all_owners)
        return None if done is None else done.tree

    def redo(self, *, all_owners: bool = False) -> Tree | None:
        """Redo the edit :attr:`owner` undid last, unless it made a new edit since (``all_owners``:
        the oldest undone edit anyone can redo); ``None`` if there is none. Raises
        :class:`~treesynth_core.errors.EditConflict` as :meth:`undo` does."""
        done = self.replay(undo=False, all_owners=all_owners)
        return None if done is None else done.tree

    def replay(self, *, undo: bool, all_owners: bool = False) -> Replayed | None:
        """:meth:`undo` (or :meth:`redo`), returning also which edit it took and what that was
        (``rename "x" → "y"``), for a message that names it."""
        owner = None if all_owners else self.owner
        taken: list[Replayed] = []

        def step(conn: sqlite3.Connection, tree: Tree) -> Tree | None:
            done = history.replay(conn, tree, undo=undo, owner=owner)
            if done is None:
                return None
            taken.append(done)
            return done.tree

        self._edit(step)
        return taken[0] if taken else None

    def can_undo(self, *, all_owners: bool = False) -> bool:
        """Whether :meth:`undo` has an edit to take (it may still refuse it)."""
        with self._db.read() as conn:
            return history.can_replay(conn, undo=True, owner=None if all_owners else self.owner)

    def can_redo(self, *, all_owners: bool = False) -> bool:
        with self._db.read() as conn:
            return history.can_replay(conn, undo=False, owner=None if all_owners else self.owner)

    def undo_state(self) -> UndoState:
        """How many of :attr:`owner`'s edits can be undone and redone, and what others edited since."""
        with self._db.read() as conn:
            return history.undo_state(conn, self.owner)

    def history(self, limit: int | None = None) -> list[EditRecord]:
        """The edit log, newest first; undone edits are included and flagged."""
        with self._db.read() as conn:
            return history.edit_log(conn, limit)

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

    def _tree_in(self, conn: sqlite3.Connection) -> Tree:
        """The tree as the transaction on ``conn`` sees it (the cached one while nothing changed)."""
        version = history.data_version(conn)
        if self._cached is None or self._cached[0] != version:
            self._cached = (version, history.read_tree(conn))
        return self._cached[1]

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
            count = _delete_samples(conn, wanted)
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
            return _delete_samples(conn, dropped)

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
            _refuse_taken(conn, sample_set)
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
                _refuse_taken(conn, sample_set)
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
            return _delete_set(conn, sample_set)

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

    # -- LLM reply cache, call log and runs (see :mod:`.runs`) -------------------------------------
    def cache_get(self, key: str) -> ChatResult | None:
        """The reply cached under ``key`` (see ``llm.base.cache_key``), marked ``cached=True``."""
        with self._db.read() as conn:
            return runs.cache_get(conn, key)

    def cache_put(self, key: str, result: ChatResult) -> None:
        with self._db.tx() as conn:
            runs.cache_put(conn, key, result)

    def cache_evict(self, key: str) -> None:
        """Drop the reply cached under ``key`` (one its request's validator rejects)."""
        with self._db.tx() as conn:
            runs.cache_evict(conn, key)

    def log_call(self, record: CallRecord) -> str:
        """Append one LLM call to the log, secrets redacted; return its id."""
        with self._db.tx() as conn:
            return runs.log_call(conn, record)

    def start_run(self, command: str, params: dict[str, Any] | None = None, *, job_id: str | None = None) -> str:
        """Record that a command (grow, synth, ...) started, under the run lease ``job_id`` holds;
        return the run id."""
        with self._db.tx() as conn:
            return runs.start_run(conn, command, params, job_id=job_id)

    def finish_run(self, run_id: str, status: str = "ok", error: str | None = None) -> None:
        """Record how a run ended: ``ok``, ``failed``, ``cancelled``, ..."""
        with self._db.tx() as conn:
            if not runs.finish_run(conn, run_id, status, error):
                raise ProjectError(f"no run with id {run_id!r} in {self.path}")

    def stats(self, run_id: str | None = None) -> RunStats:
        """LLM call counts, tokens and latency: in total, by command, and for the latest 20 runs
        (see :func:`.runs.stats`)."""
        with self._db.read() as conn:
            return runs.stats(conn, run_id)

    def call_latencies(
        self, backend: str, model: str, purposes: Sequence[str] | None = None, limit: int = 50
    ) -> list[float]:
        """Seconds of the latest real calls on ``backend`` and ``model`` (of ``purposes``; None:
        any), newest first: what time estimates rest on (:mod:`treesynth_core.llm.timing`)."""
        with self._db.read() as conn:
            return runs.call_latencies(conn, backend, model, purposes, limit)

    def run_counts(self, run_id: str) -> RunCounts:
        """The calls answered and samples written by run ``run_id`` so far."""
        with self._db.read() as conn:
            return runs.run_counts(conn, run_id)

    # -- batch generation (see :mod:`.batches`) ----------------------------------------------------
    def add_batch(self, batch_id: str, round_id: str, shard: str, requests: int) -> None:
        """Record a prepared shard file (status ``prepared``)."""
        with self._db.tx() as conn:
            batches.add_batch(conn, batch_id, round_id, shard, requests)

    def update_batch(self, batch_id: str, **fields: Any) -> None:
        """Set some of: status, base_url, input_file_id, remote_id, output_file_id, error_file_id, counts."""
        with self._db.tx() as conn:
            batches.update_batch(conn, batch_id, fields)

    def batches(self, round_id: str | None = None) -> list[BatchRecord]:
        with self._db.read() as conn:
            return batches.batches(conn, round_id)

    def put_batch_replies(self, replies: Iterable[tuple[str, Mapping[str, Any]]], batch_id: str | None) -> int:
        """Keep the replies a batch brought back, by request cache key; returns how many were new."""
        with self._db.tx() as conn:
            return batches.put_replies(conn, replies, batch_id)

    def has_batch_replies(self) -> bool:
        """Whether any batch brought replies back (runs then look there before sending)."""
        with self._db.read() as conn:
            return batches.any_replies(conn)

    def batch_reply_keys(self, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` a collected batch brought a reply for."""
        with self._db.read() as conn:
            return batches.has_replies(conn, keys)

    def batch_tokens(self, command: str) -> dict[str, tuple[int, int]]:
        """(prompt, completion) tokens by model of the calls runs of ``command`` logged (batch collects)."""
        with self._db.read() as conn:
            return batches.tokens_by_model(conn, command)

    def copy_to(self, folder: Path) -> Project:
        """A copy of this project's database in the empty folder ``folder``, opened (``batch
        prepare`` runs its dry run on one, so nothing it does reaches this project)."""
        folder.mkdir(parents=True, exist_ok=True)
        target = sqlite3.connect(folder / DB_NAME)
        try:
            with self._db.read() as conn:
                conn.backup(target)
        finally:
            target.close()
        return Project.open(folder, owner=self.owner)

    def batch_reply(self, key: str) -> dict[str, Any] | None:
        """The chat completion a batch brought back for the request with cache key ``key``, if any."""
        with self._db.read() as conn:
            return batches.reply(conn, key)

    # -- background jobs --------------------------------------------------------------------------
    def claim_job(
        self, kind: str, params: dict[str, Any], *, stale_after_s: float | None = None
    ) -> tuple[JobRecord, bool]:
        """Take the project's run lease for a job, unless a live job holds it: ``(job, created)``, in
        one transaction (see :func:`.runs.claim_job`). Taking it also deletes the hidden staging rows
        an import killed half way left behind (no import can be running then)."""
        with self._db.tx() as conn:
            record, created = runs.claim_job(conn, kind, params, stale_after_s=stale_after_s)
            if created:
                staged = conn.execute(
                    "SELECT DISTINCT sample_set FROM samples WHERE substr(sample_set, 1, ?) = ?",
                    (len(STAGING_PREFIX), STAGING_PREFIX),
                ).fetchall()
                for (name,) in staged:
                    _delete_set(conn, name)
            return record, created

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Set some of: done, total, message, status, error, finished, run_id (and the heartbeat)."""
        with self._db.tx() as conn:
            runs.update_job(conn, job_id, fields)

    def request_cancel(self, job_id: str) -> None:
        with self._db.tx() as conn:
            runs.request_cancel(conn, job_id)

    def job(self, job_id: str) -> JobRecord:
        with self._db.read() as conn:
            found = runs.job(conn, job_id)
        if found is None:
            raise ProjectError(f"no job with id {job_id!r} in {self.path}")
        return found

    def jobs(self, *, kind: str | None = None, limit: int = 20) -> list[JobRecord]:
        """Jobs, newest first."""
        with self._db.read() as conn:
            return runs.jobs(conn, kind=kind, limit=limit)

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

    def get_blob(self, key: str) -> bytes | None:
        with self._db.read() as conn:
            row = conn.execute("SELECT data FROM blobs WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])


def _delete_set(conn: sqlite3.Connection, sample_set: str) -> int:
    """Delete a sample set with its features, routes, deletion marks and contamination record; return how
    many samples."""
    ids = "SELECT id FROM samples WHERE sample_set = ?"
    conn.execute(f"DELETE FROM features WHERE sample_id IN ({ids})", (sample_set,))
    conn.execute(f"DELETE FROM routes WHERE sample_id IN ({ids})", (sample_set,))
    conn.execute("DELETE FROM deleted_samples WHERE sample_set = ?", (sample_set,))
    contamination.forget_set(conn, sample_set)
    trash.forget_set(conn, sample_set)
    return int(conn.execute("DELETE FROM samples WHERE sample_set = ?", (sample_set,)).rowcount)


def _delete_samples(conn: sqlite3.Connection, ids: list[int]) -> int:
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


def _refuse_taken(conn: sqlite3.Connection, sample_set: str) -> None:
    """Refuse to import into a sample set that already holds samples."""
    (held,) = conn.execute("SELECT COUNT(*) FROM samples WHERE sample_set = ?", (sample_set,)).fetchone()
    if held:
        raise ProjectError(
            f"the sample set {sample_set!r} already holds {held} samples; choose another name or delete that set first"
        )
