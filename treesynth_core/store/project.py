"""A TreeSynth project: one folder holding one SQLite database, ``treesynth.db``.

:class:`Project` is the only code that talks to SQLite. It keeps the task, the tree (one row per
node), the edit log that undo and redo replay, the samples, the LLM call log and reply cache, and
the runs. Every write is one short transaction committed at once, so a crash or Ctrl-C loses
nothing already committed; tree edits take the write lock up front (``BEGIN IMMEDIATE``) and read
the tree inside it, so two processes or two app sessions editing one project queue up instead of
overwriting each other.

The connection is shared by the app's background threads (``check_same_thread=False``); a
re-entrant lock serializes its use.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import ConfigError, ProjectError
from ..llm.base import ChatResult
from ..llm.recording import CallRecord
from ..llm.settings import BackendSettings, merge_settings
from ..tree.changes import NodeChange, apply_changes, diff, node_from_dict, node_to_dict
from ..tree.model import Node, Tree, new_tree, validate
from . import schema
from .samples import STAGING_PREFIX, TREE_SET, NewSample, Route, Sample, check_dataset_set
from .schema import dumps, now

DB_NAME = "treesynth.db"
#: Written to ``meta.format_version``; the schema itself is versioned by its migrations.
FORMAT_VERSION = 1
BUSY_TIMEOUT_S = 10.0
_CHUNK = 500  # ids per `IN (...)` query, well under SQLite's variable limit
_TREE_META = ("task", "style", "root_id")  # the Tree fields kept in `meta`
HUMAN = "human"
StrPath = str | os.PathLike[str]


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


_CALL_FIELDS = tuple(f.name for f in dataclasses.fields(CallRecord))


class Project:
    """An open project. Get one from :meth:`create` or :meth:`open`; :meth:`close` it (or use ``with``)."""

    path: Path

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._db = path / DB_NAME
        self._conn = conn
        self._lock = threading.RLock()
        self._closed = False
        self._cached: tuple[int, Tree] | None = None  # (PRAGMA data_version, the tree it saw)

    # -- opening and closing ----------------------------------------------------------------------
    @classmethod
    def create(cls, path: StrPath, *, task: str, style: str = "", settings: BackendSettings | None = None) -> Project:
        """Create the folder (and its parents) and a project in it whose tree is just the root."""
        folder = Path(path).expanduser()
        tree = new_tree(task, style)  # TreeError on an empty task, before anything touches the disk
        if folder.exists() and not folder.is_dir():
            raise ProjectError(f"{folder} is a file: give a folder for the new project")
        if (folder / DB_NAME).exists():
            raise ProjectError(f"{folder} already holds a TreeSynth project: open it, or pick another folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProjectError(f"could not create the project folder {folder}: {exc.strerror}") from exc
        project = cls(folder, _connect(folder / DB_NAME, create=True))
        try:
            with project._errors():
                schema.migrate(project._conn)
            project._initialize(tree, settings or BackendSettings())
        except BaseException:
            project.close()
            raise
        return project

    @classmethod
    def open(cls, path: StrPath) -> Project:
        """Open a project folder, check its database and bring its schema up to date."""
        folder = Path(path).expanduser()
        project = cls(folder, _connect(_existing_db(folder), create=False))
        try:
            project._check()
        except BaseException:
            project.close()
            raise
        return project

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r})"

    def _initialize(self, tree: Tree, settings: BackendSettings) -> None:
        with self._tx() as conn:
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
            conn.executemany(_UPSERT_NODE, [schema.node_row(node) for node in tree.nodes.values()])

    def _check(self) -> None:
        """Refuse a database that is damaged, not ours, or lacks its tables or its task."""
        conn, db = self._conn, self._db
        with self._errors():
            if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("integrity check failed")
            if not schema.has_migrations_table(conn):
                raise ProjectError(
                    f"{db} is an SQLite database but not a TreeSynth project: move it away, or open the "
                    "folder of a TreeSynth project"
                )
            schema.migrate(conn)
            if missing := schema.missing_tables(conn):
                raise ProjectError(_damaged(db, f"tables missing: {', '.join(missing)}"))
            keys = {key for (key,) in conn.execute("SELECT key FROM meta")}
        if not {"task", "root_id"} <= keys:
            raise ProjectError(
                f"the project in {self.path} is incomplete (its creation was interrupted): delete {db} "
                "and create the project again"
            )

    # -- transactions -----------------------------------------------------------------------------
    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite failures into a :class:`ProjectError` a user can act on."""
        try:
            yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # bugs in TreeSynth, not something the user can fix
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise ProjectError(
                    f"the project {self.path} is busy: another TreeSynth process held it locked for over "
                    f"{BUSY_TIMEOUT_S:g} s; try again"
                ) from exc
            raise ProjectError(f"the project database {self._db} could not be used: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise ProjectError(_damaged(self._db, str(exc))) from exc

    @contextmanager
    def _tx(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """One transaction: committed on exit, rolled back on any exception (Ctrl-C included)."""
        with self._lock, self._errors():
            if self._closed:
                raise ProjectError(f"the project {self.path} is closed")
            conn = self._conn
            conn.execute(f"BEGIN {mode}")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for several queries."""
        return self._tx("DEFERRED")

    # -- task, style and settings -----------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.tree().task

    @property
    def style(self) -> str:
        return self.tree().style

    def settings(self) -> BackendSettings:
        """The backend settings saved in the project (the defaults if none were saved)."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        try:
            data = json.loads(row[0]) if row else {}
            return merge_settings(None, data if isinstance(data, dict) else {})
        except (ValueError, ConfigError) as exc:
            raise ConfigError(f"the settings saved in {self.path} are invalid ({exc}): save new ones") from None

    def save_settings(self, settings: BackendSettings) -> None:
        with self._tx() as conn:
            _set_meta(conn, "settings", settings.model_dump_json())

    # -- the tree and its edit log ----------------------------------------------------------------
    def tree(self) -> Tree:
        """The current tree; cached until some connection commits a change to the database."""
        with self._read() as conn:
            version = _data_version(conn)
            if self._cached is None or self._cached[0] != version:
                self._cached = (version, _read_tree(conn))
            return self._cached[1]

    def _edit(self, step: Callable[[sqlite3.Connection, Tree], Tree | None]) -> Tree | None:
        """Run ``step(conn, current tree)`` in one write transaction; cache the tree it returns."""
        with self._lock:
            with self._tx() as conn:
                version = _data_version(conn)
                old = self._cached[1] if self._cached and self._cached[0] == version else _read_tree(conn)
                new = step(conn, old)
            # Our own commits leave data_version as it was, so the tree we wrote is current for it.
            self._cached = (version, old if new is None else new)
            return new

    def apply(
        self, kind: str, fn: Callable[[Tree], Tree], *, args: dict[str, Any] | None = None, actor: str = HUMAN
    ) -> Tree:
        """Apply the pure edit ``fn`` to the current tree and record it as one undoable edit.

        Nothing is recorded if ``fn`` changes nothing, and nothing is written if it raises. A
        recorded edit empties the redo stack.
        """

        def step(conn: sqlite3.Connection, old: Tree) -> Tree:
            new = fn(old)
            _record_edit(conn, old, new, kind=kind, args=args or {}, actor=actor)
            return new

        result = self._edit(step)
        assert result is not None
        return result

    def replace_tree(self, tree: Tree, *, kind: str = "import", actor: str = HUMAN) -> Tree:
        """Replace the whole tree, task and style included, as one undoable edit."""
        validate(tree)
        return self.apply(kind, lambda _old: tree, args={"nodes": len(tree.nodes)}, actor=actor)

    def undo(self) -> Tree | None:
        """Revert the latest edit not yet undone; ``None`` if there is none."""
        return self._edit(lambda conn, tree: _replay(conn, tree, undo=True))

    def redo(self) -> Tree | None:
        """Redo the edit undone last, unless a new edit came since; ``None`` if there is none."""
        return self._edit(lambda conn, tree: _replay(conn, tree, undo=False))

    def can_undo(self) -> bool:
        with self._read() as conn:
            return conn.execute(_NEXT_UNDO).fetchone() is not None

    def can_redo(self) -> bool:
        with self._read() as conn:
            return conn.execute(_NEXT_REDO).fetchone() is not None

    def history(self, limit: int | None = None) -> list[EditRecord]:
        """The edit log, newest first; undone edits are included and flagged."""
        sql = "SELECT id, ts, kind, args, actor, undone, n_changes FROM edits ORDER BY id DESC LIMIT ?"
        with self._read() as conn:
            rows = conn.execute(sql, (-1 if limit is None else limit,)).fetchall()
        return [
            EditRecord(i, ts, kind, json.loads(args), actor, bool(undone), n)
            for i, ts, kind, args, actor, undone, n in rows
        ]

    # -- samples ----------------------------------------------------------------------------------
    def add_samples(self, samples: Iterable[NewSample]) -> int:
        """Store samples in one transaction, skipping any (sample_set, leaf_id, key) already
        stored; return how many were added."""
        created = now()
        rows = [schema.sample_row(sample, created) for sample in samples]
        if not rows:
            return 0
        columns = schema.SAMPLE_COLUMNS
        sql = f"INSERT OR IGNORE INTO samples ({', '.join(columns)}) VALUES ({_marks(len(columns))})"
        with self._tx() as conn:
            return conn.executemany(sql, rows).rowcount

    def samples(
        self, *, sample_set: str = TREE_SET, leaf_id: str | None = None, leaf_ids: Iterable[str] | None = None
    ) -> list[Sample]:
        """The samples of one set, oldest first; only those of ``leaf_id`` / ``leaf_ids`` if given."""
        sql = f"SELECT id, {', '.join(schema.SAMPLE_COLUMNS)} FROM samples WHERE sample_set = ?"
        params: list[Any] = [sample_set]
        if leaf_id is not None:
            sql, params = sql + " AND leaf_id = ?", [*params, leaf_id]
        rows = []
        with self._read() as conn:
            if leaf_ids is None:
                rows = conn.execute(sql, params).fetchall()
            for chunk in _chunks(list(dict.fromkeys(leaf_ids or ()))):
                rows += conn.execute(f"{sql} AND leaf_id IN ({_marks(len(chunk))})", [*params, *chunk])
        return [schema.row_sample(row) for row in sorted(rows, key=lambda r: int(r[0]))]

    def sample_counts(self, *, sample_set: str = TREE_SET) -> dict[str, int]:
        """How many samples each leaf has in ``sample_set``."""
        sql = "SELECT leaf_id, COUNT(*) FROM samples WHERE sample_set = ? GROUP BY leaf_id"
        with self._read() as conn:
            return dict(conn.execute(sql, (sample_set,)).fetchall())

    def sample_keys(self, leaf_id: str, *, sample_set: str = TREE_SET) -> set[str]:
        """The keys stored for one leaf, and those of deleted samples: what a rerun must skip."""
        sql = (
            "SELECT key FROM samples WHERE sample_set = ? AND leaf_id = ? "
            "UNION SELECT key FROM deleted_samples WHERE sample_set = ? AND leaf_id = ?"
        )
        with self._read() as conn:
            return {key for (key,) in conn.execute(sql, (sample_set, leaf_id, sample_set, leaf_id))}

    def skip_keys(self, leaf_id: str, keys: Iterable[str], *, sample_set: str = TREE_SET) -> None:
        """Record keys a rerun must skip though no sample holds them (a synthesis call that was
        answered but kept nothing); kept beside the deletion marks, returned by :meth:`sample_keys`."""
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO deleted_samples (sample_set, leaf_id, key) VALUES (?, ?, ?)",
                [(sample_set, leaf_id, key) for key in keys],
            )

    def delete_samples(self, ids: Iterable[int]) -> int:
        """Delete samples by row id, in one transaction; return how many were deleted."""
        deleted = 0
        with self._tx() as conn:
            for chunk in _chunks(list(dict.fromkeys(int(i) for i in ids))):
                conn.execute(f"DELETE FROM features WHERE sample_id IN ({_marks(len(chunk))})", chunk)
                conn.execute(
                    "INSERT OR IGNORE INTO deleted_samples (sample_set, leaf_id, key) "
                    f"SELECT sample_set, leaf_id, key FROM samples WHERE id IN ({_marks(len(chunk))})",
                    chunk,
                )
                deleted += conn.execute(f"DELETE FROM samples WHERE id IN ({_marks(len(chunk))})", chunk).rowcount
        return deleted

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
        with self._read() as conn:
            _refuse_taken(conn, sample_set)
        staging = STAGING_PREFIX + sample_set
        self.delete_sample_set(staging)  # left behind by a process killed during an earlier import
        columns = schema.SAMPLE_COLUMNS
        sql = f"INSERT OR IGNORE INTO samples ({', '.join(columns)}) VALUES ({_marks(len(columns))})"
        created, added = now(), 0
        pending: list[tuple[Any, ...]] = []

        def flush() -> None:
            nonlocal added, pending
            with self._tx() as conn:
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
            with self._tx() as conn:
                _refuse_taken(conn, sample_set)
                conn.execute("UPDATE samples SET sample_set = ? WHERE sample_set = ?", (sample_set, staging))
        except BaseException:
            self.delete_sample_set(staging)
            raise
        return added

    def sample_sets(self) -> dict[str, int]:
        """Every sample set in the project with its number of samples (imports still running, which
        are staged under a hidden name, are not listed)."""
        with self._read() as conn:
            rows = conn.execute("SELECT sample_set, COUNT(*) FROM samples GROUP BY sample_set ORDER BY 1")
            return {name: n for name, n in rows if not name.startswith(STAGING_PREFIX)}

    def delete_sample_set(self, sample_set: str) -> int:
        """Delete a whole sample set with its features, routes and deletion marks; one transaction."""
        ids = "SELECT id FROM samples WHERE sample_set = ?"
        with self._tx() as conn:
            conn.execute(f"DELETE FROM features WHERE sample_id IN ({ids})", (sample_set,))
            conn.execute(f"DELETE FROM routes WHERE sample_id IN ({ids})", (sample_set,))
            conn.execute("DELETE FROM deleted_samples WHERE sample_set = ?", (sample_set,))
            return conn.execute("DELETE FROM samples WHERE sample_set = ?", (sample_set,)).rowcount

    # -- routes -----------------------------------------------------------------------------------
    def put_routes(self, routes: Iterable[Route]) -> None:
        """Store routes (replacing a router's earlier route of the same sample); one transaction."""
        created = now()
        rows = [
            (r.sample_id, r.router, r.tree_digest, r.status, r.leaf_id, r.stopped_at, dumps(r.path), r.detail, created)
            for r in routes
        ]
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO routes (sample_id, router, tree_digest, status, leaf_id, stopped_at, path, "
                f"detail, created) VALUES ({_marks(9)})",
                rows,
            )

    def routes(self, router: str, *, sample_set: str) -> dict[int, Route]:
        """The routes ``router`` made for the samples of ``sample_set``, by sample id."""
        sql = (
            "SELECT r.sample_id, r.router, r.status, r.stopped_at, r.leaf_id, r.path, r.detail, r.tree_digest "
            "FROM routes r JOIN samples s ON s.id = r.sample_id WHERE r.router = ? AND s.sample_set = ?"
        )
        with self._read() as conn:
            rows = conn.execute(sql, (router, sample_set)).fetchall()
        return {
            int(sid): Route(int(sid), rtr, status, stopped, leaf, json.loads(path), detail, digest)
            for sid, rtr, status, stopped, leaf, path, detail, digest in rows
        }

    def assign_leaves(self, assignments: Mapping[int, tuple[str, list[dict[str, str]]]]) -> None:
        """Set each sample's leaf and path (by sample id), as routing decided; one transaction."""
        with self._tx() as conn:
            conn.executemany(
                "UPDATE samples SET leaf_id = ?, path = ? WHERE id = ?",
                [(leaf, dumps(path), int(sid)) for sid, (leaf, path) in assignments.items()],
            )

    # -- LLM reply cache and call log -------------------------------------------------------------
    def cache_get(self, key: str) -> ChatResult | None:
        """The reply cached under ``key`` (see ``llm.base.cache_key``), marked ``cached=True``."""
        with self._read() as conn:
            row = conn.execute("SELECT result FROM llm_cache WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            data = json.loads(row[0])
            known = {f.name for f in dataclasses.fields(ChatResult)} - {"cached"}
            return ChatResult(**{k: v for k, v in data.items() if k in known}, cached=True)
        except (ValueError, TypeError, AttributeError):
            return None  # an unreadable entry counts as a miss; the next put replaces it

    def cache_put(self, key: str, result: ChatResult) -> None:
        data = dataclasses.asdict(result) | {"cached": False}
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO llm_cache (key, result, created) VALUES (?, ?, ?)",
                (key, dumps(data), now()),
            )

    def log_call(self, record: CallRecord) -> str:
        """Append one LLM call to the log, secrets redacted; return its id."""
        call_id = new_ulid()
        values = {
            **{name: getattr(record, name) for name in _CALL_FIELDS},
            "id": call_id,
            "ts": now(),
            "request": dumps(redact_secrets(dict(record.request))),
            "response": redact_secrets(record.response),
            "error": redact_secrets(record.error),
            "cached": int(record.cached),
        }
        sql = f"INSERT INTO llm_calls ({', '.join(values)}) VALUES ({_marks(len(values))})"
        with self._tx() as conn:
            conn.execute(sql, list(values.values()))
        return call_id

    # -- runs and statistics ----------------------------------------------------------------------
    def start_run(self, command: str, params: dict[str, Any] | None = None) -> str:
        """Record that a command (grow, synth, ...) started; return the run id."""
        run_id = new_ulid()
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO runs (id, command, params, started) VALUES (?, ?, ?, ?)",
                (run_id, command, dumps(redact_secrets(params or {})), now()),
            )
        return run_id

    def finish_run(self, run_id: str, status: str = "ok", error: str | None = None) -> None:
        """Record how a run ended: ``ok``, ``failed``, ``cancelled``, ..."""
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE runs SET finished = ?, status = ?, error = ? WHERE id = ?",
                (now(), status, redact_secrets(error), run_id),
            )
            if cur.rowcount == 0:
                raise ProjectError(f"no run with id {run_id!r} in {self.path}")

    def stats(self, run_id: str | None = None) -> dict[str, Any]:
        """LLM call counts, tokens and latency: in total, by command, and for the latest 20 runs.

        ``calls`` counts the calls made (not cached, not failed), ``cached`` the cache hits and
        ``failed`` the errors; tokens and latency add up every call that reached the model.
        """
        params = (run_id,) if run_id else ()
        by_command_sql = (
            f"SELECT COALESCE(r.command, ''), {_COUNTS} FROM llm_calls c LEFT JOIN runs r ON r.id = c.run_id "
            f"{'WHERE c.run_id = ?' if run_id else ''} GROUP BY 1 ORDER BY 1"
        )
        by_model_sql = (
            f"SELECT c.model, {_COUNTS} FROM llm_calls c {'WHERE c.run_id = ?' if run_id else ''} GROUP BY 1 ORDER BY 1"
        )
        runs_sql = (
            f"SELECT r.id, r.command, r.started, r.finished, r.status, r.error, {_COUNTS} FROM runs r "
            f"LEFT JOIN llm_calls c ON c.run_id = r.id {'WHERE r.id = ?' if run_id else ''} "
            "GROUP BY r.id ORDER BY r.started DESC, r.id DESC LIMIT 20"
        )
        with self._read() as conn:
            by_command = {row[0]: _count_dict(row[1:]) for row in conn.execute(by_command_sql, params)}
            by_model = {row[0]: _count_dict(row[1:]) for row in conn.execute(by_model_sql, params)}
            run_rows = conn.execute(runs_sql, params).fetchall()
        totals = _count_dict(sum(counts[key] for counts in by_command.values()) for key in _COUNT_KEYS)
        runs = [
            dict(zip(("id", "command", "started", "finished", "status", "error"), r[:6], strict=True))
            | {k: v for k, v in _count_dict(r[6:]).items() if k in ("calls", "cached", "failed")}
            for r in run_rows
        ]
        return {**totals, "by_command": by_command, "by_model": by_model, "runs": runs}

    # -- background jobs --------------------------------------------------------------------------
    def claim_job(self, kind: str, params: dict[str, Any], *, stale_after_s: float) -> tuple[dict[str, Any], bool]:
        """Start recording a job, unless one is already running: ``(job row, created)``.

        In one transaction: running jobs whose heartbeat is older than ``stale_after_s`` (their
        process died) become ``interrupted``; if a live one remains it is returned uncreated.
        """
        stamp = time.time()
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'interrupted', finished = ? WHERE status = 'running' AND heartbeat < ?",
                (now(), stamp - stale_after_s),
            )
            live = conn.execute("SELECT * FROM jobs WHERE status = 'running' ORDER BY started DESC").fetchone()
            if live is not None:
                return _job_dict(conn, live), False
            job_id = new_ulid()
            conn.execute(
                "INSERT INTO jobs (id, kind, params, status, started, heartbeat) VALUES (?, ?, ?, 'running', ?, ?)",
                (job_id, kind, dumps(redact_secrets(params)), now(), stamp),
            )
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return _job_dict(conn, row), True

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Set some of: done, total, message, status, error, finished, run_id (and the heartbeat)."""
        allowed = {"done", "total", "message", "status", "error", "finished", "run_id"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown job fields: {sorted(unknown)}")
        sets = ", ".join(f"{name} = ?" for name in fields)
        values = [redact_secrets(v) if isinstance(v, str) else v for v in fields.values()]
        with self._tx() as conn:
            conn.execute(
                f"UPDATE jobs SET heartbeat = ?{', ' if sets else ''}{sets} WHERE id = ?",
                (time.time(), *values, job_id),
            )

    def request_cancel(self, job_id: str) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))

    def job(self, job_id: str) -> dict[str, Any]:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise ProjectError(f"no job with id {job_id!r} in {self.path}")
            return _job_dict(conn, row)

    def jobs(self, *, kind: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Jobs, newest first."""
        sql = "SELECT * FROM jobs" + (" WHERE kind = ?" if kind else "") + " ORDER BY started DESC, id DESC LIMIT ?"
        with self._read() as conn:
            rows = conn.execute(sql, ((kind,) if kind else ()) + (limit,)).fetchall()
            return [_job_dict(conn, row) for row in rows]

    # -- feature vectors and cached arrays ----------------------------------------------------------
    def put_features(self, kind: str, vectors: Mapping[int, bytes]) -> None:
        """Store float32 feature vectors (as bytes) by sample id under ``kind``; one transaction."""
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO features (kind, sample_id, vector) VALUES (?, ?, ?)",
                [(kind, int(sample_id), bytes(vector)) for sample_id, vector in vectors.items()],
            )

    def get_features(self, kind: str, sample_ids: Iterable[int]) -> dict[int, bytes]:
        """The stored vectors (float32 bytes) of ``kind`` for those sample ids that have one."""
        found: dict[int, bytes] = {}
        with self._read() as conn:
            for chunk in _chunks(list(dict.fromkeys(int(i) for i in sample_ids))):
                rows = conn.execute(
                    f"SELECT sample_id, vector FROM features WHERE kind = ? AND sample_id IN ({_marks(len(chunk))})",
                    (kind, *chunk),
                )
                found.update({sample_id: vector for sample_id, vector in rows})
        return found

    def put_blob(self, key: str, data: bytes) -> None:
        """Cache derived data (a map's coordinates, ...) under a content key."""
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO blobs (key, created, data) VALUES (?, ?, ?)", (key, now(), data))

    def get_blob(self, key: str) -> bytes | None:
        with self._read() as conn:
            row = conn.execute("SELECT data FROM blobs WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])


# -- SQL pieces -----------------------------------------------------------------------------------


def _refuse_taken(conn: sqlite3.Connection, sample_set: str) -> None:
    """Refuse to import into a sample set that already holds samples."""
    (held,) = conn.execute("SELECT COUNT(*) FROM samples WHERE sample_set = ?", (sample_set,)).fetchone()
    if held:
        raise ProjectError(
            f"the sample set {sample_set!r} already holds {held} samples; choose another name or delete that set first"
        )


def _job_dict(conn: sqlite3.Connection, row: tuple[Any, ...]) -> dict[str, Any]:
    names = [d[1] for d in conn.execute("PRAGMA table_info(jobs)")]
    data = dict(zip(names, row, strict=True))
    data["params"] = json.loads(data["params"] or "{}")
    data["cancel_requested"] = bool(data["cancel_requested"])
    return data


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    """``items`` in slices small enough for one ``IN (...)`` query."""
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


_UPSERT_NODE = f"INSERT OR REPLACE INTO nodes ({', '.join(schema.NODE_COLUMNS)}) VALUES " + (
    f"({_marks(len(schema.NODE_COLUMNS))})"
)
_NEXT_UNDO = "SELECT id, changes, meta FROM edits WHERE undone = 0 ORDER BY id DESC LIMIT 1"
_NEXT_REDO = "SELECT id, changes, meta FROM edits WHERE undone = 1 AND redoable = 1 ORDER BY id LIMIT 1"
_COUNT_KEYS = ("calls", "cached", "failed", "prompt_tokens", "completion_tokens", "latency_s")
_COUNTS = ", ".join(
    f"COALESCE(SUM({expr}), 0)"
    for expr in (
        "c.cached = 0 AND c.error IS NULL",
        "c.cached = 1 AND c.error IS NULL",
        "c.error IS NOT NULL",
        "CASE WHEN c.cached = 0 THEN c.prompt_tokens END",
        "CASE WHEN c.cached = 0 THEN c.completion_tokens END",
        "CASE WHEN c.cached = 0 THEN c.latency_s END",
    )
)


def _count_dict(values: Iterable[Any]) -> dict[str, Any]:
    pairs = zip(_COUNT_KEYS, values, strict=True)
    return {key: float(v) if key == "latency_s" else int(v) for key, v in pairs}


# -- connecting -----------------------------------------------------------------------------------


def _existing_db(folder: Path) -> Path:
    """The database of a project folder, or a ProjectError that says what is wrong and what to do."""
    db = folder / DB_NAME
    if not folder.exists():
        raise ProjectError(f"no project at {folder}: the folder does not exist (check the path, or create it)")
    if not folder.is_dir():
        raise ProjectError(f"{folder} is a file, not a project folder: give the folder that holds {DB_NAME}")
    if not db.is_file():
        raise ProjectError(
            f"{folder} is not a TreeSynth project (it has no {DB_NAME}): pick the project's folder, or "
            "create a new project"
        )
    # Never open() the file itself: closing any other descriptor on it drops this process's POSIX
    # locks held by SQLite connections already open on it (another app session, a job), and then
    # another process can checkpoint and delete the WAL under them, losing their later writes.
    # SQLite rejects a file that is not a database when it connects (see _connect).
    if not os.access(db, os.R_OK | os.W_OK):
        raise ProjectError(f"cannot read and write the project database {db}: check its permissions")
    if db.stat().st_size == 0:
        raise ProjectError(_damaged(db, "the file is empty"))
    return db


def _connect(db: Path, *, create: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (the store runs its own transactions), WAL, FKs on."""
    uri = f"{db.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise ProjectError(f"cannot open the project database {db}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        conn.close()
        why = "not an SQLite database" if "not a database" in str(exc) else str(exc)
        raise ProjectError(_damaged(db, why)) from exc
    return conn


def _damaged(db: Path, why: str) -> str:
    return (
        f"the project database {db} is damaged ({why}): restore it from a backup, or move it away, "
        "create the project again and import its tree file"
    )


# -- the tree and its edit log --------------------------------------------------------------------


def _data_version(conn: sqlite3.Connection) -> int:
    """Changes whenever another connection commits; run first in a transaction, it names its snapshot."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _read_tree(conn: sqlite3.Connection) -> Tree:
    query = f"SELECT key, value FROM meta WHERE key IN ({_marks(len(_TREE_META))})"
    meta = dict(conn.execute(query, _TREE_META).fetchall())
    rows = conn.execute(f"SELECT {', '.join(schema.NODE_COLUMNS)} FROM nodes")
    nodes = {node.id: node for node in map(schema.row_node, rows)}
    return Tree(task=meta.get("task", ""), style=meta.get("style", ""), nodes=nodes, root_id=meta["root_id"])


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def _record_edit(
    conn: sqlite3.Connection, old: Tree, new: Tree, *, kind: str, args: Mapping[str, Any], actor: str
) -> None:
    """Write what changed from ``old`` to ``new`` and log it as one edit; nothing if nothing did."""
    changes = diff(old, new)
    meta = {k: [getattr(old, k), getattr(new, k)] for k in _TREE_META if getattr(old, k) != getattr(new, k)}
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


def _replay(conn: sqlite3.Connection, tree: Tree, *, undo: bool) -> Tree | None:
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


def _encode(node: Node | None) -> dict[str, Any] | None:
    return None if node is None else node_to_dict(node)


def _decode(data: Mapping[str, Any] | None) -> Node | None:
    return None if data is None else node_from_dict(data)


def _write(conn: sqlite3.Connection, changes: list[NodeChange], meta: Mapping[str, list[str]], *, undo: bool) -> None:
    """Write node rows (and task/style/root_id) as they are after the edit, or before it (undo)."""
    targets = [(c.node_id, c.before if undo else c.after) for c in changes]
    conn.executemany("DELETE FROM nodes WHERE id = ?", [(i,) for i, node in targets if node is None])
    conn.executemany(_UPSERT_NODE, [schema.node_row(node) for _, node in targets if node is not None])
    for key, (before, after) in meta.items():
        _set_meta(conn, key, before if undo else after)


# -- ids and secrets ------------------------------------------------------------------------------

_SECRET = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}|\bBearer\s+[A-Za-z0-9_\-.~+/=]{8,}")
_SECRET_KEYS = frozenset({"api_key", "apikey", "api-key", "x-api-key", "authorization", "password"})
REDACTED = "[REDACTED]"


def redact_secrets(value: Any) -> Any:
    """A copy of ``value`` with anything that looks like an API key or a bearer token redacted."""
    if isinstance(value, str):
        return _SECRET.sub(lambda m: ("sk-" if m.group(0).startswith("sk-") else "Bearer ") + REDACTED, value)
    if isinstance(value, Mapping):
        return {k: REDACTED if v and str(k).lower() in _SECRET_KEYS else redact_secrets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_secrets(v) for v in value]
    return value


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ulid_lock = threading.Lock()
_ulid_last = [0]


def new_ulid() -> str:
    """A 26-character id that sorts by creation time (ULID: 48 bits of milliseconds, 80 random);
    ids made in one process always increase, even within one millisecond."""
    value = (int(datetime.now(UTC).timestamp() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    with _ulid_lock:
        value = _ulid_last[0] = max(value, _ulid_last[0] + 1)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
