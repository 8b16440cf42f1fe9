"""A project's database connection: opening it, refusing a damaged one, and running transactions.

:class:`Database` owns the one SQLite connection of an open project. The connection is shared by
the app's background threads (``check_same_thread=False``); a re-entrant lock serializes its use.
Every write is one short transaction committed at once (:meth:`Database.tx`), so a crash or Ctrl-C
loses nothing already committed (a run's call-log and cache rows are committed in batches behind it:
see :mod:`.write_behind`), and SQLite failures reach the user as a :class:`ProjectError` that says
what to do (:meth:`Database.errors`). A project whose folder or database file this process
cannot write is opened read-only: reads work, a write says the folder is read-only.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ProjectError, ProjectGone
from . import schema

if TYPE_CHECKING:
    from .write_behind import WriteBehind

DB_NAME = "treesynth.db"
#: Written to ``meta.format_version``; the schema itself is versioned by its migrations.
FORMAT_VERSION = 1
BUSY_TIMEOUT_S = 10.0
CHUNK = 500  # ids per `IN (...)` query, well under SQLite's variable limit


class Database:
    """The connection to ``folder/treesynth.db``, its lock and its transactions."""

    def __init__(self, folder: Path, conn: sqlite3.Connection, *, read_only: bool = False) -> None:
        self.folder = folder
        self.file = folder / DB_NAME
        self.conn = conn
        self.read_only = read_only
        self.lock = threading.RLock()
        self.closed = False
        #: The queue of call-log and cache rows while a run writes behind (see :meth:`write_behind`).
        self.behind: WriteBehind | None = None
        #: The database file's (device, inode) when opened: a file gone or replaced since is refused
        #: (checked at its absolute path, so a change of working directory is no false alarm).
        self._watched = self.file.absolute()
        self.identity = file_identity(self._watched)

    @classmethod
    def create(cls, folder: Path) -> Database:
        """A new database in ``folder`` (which exists), with the whole schema."""
        db = cls(folder, connect(folder / DB_NAME, create=True))
        try:
            with db.errors():
                schema.migrate(db.conn)
            db.identity = file_identity(db._watched)
        except BaseException:
            db.close()
            raise
        return db

    @classmethod
    def open(cls, folder: Path) -> Database:
        """The database of an existing project folder, checked and migrated (read-only when this
        process cannot write the folder or the file: see :func:`read_only_mode`)."""
        file = existing_db(folder)
        mode = read_only_mode(folder, file)
        db = cls(folder, connect(file, create=False, read_only=mode), read_only=mode is not None)
        try:
            db.check()
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        """Commit what a run queued (see :meth:`write_behind`), then close the connection."""
        if (behind := self.behind) is not None:
            behind.close(raise_errors=False)
            self.behind = None
        with self.lock:
            if not self.closed:
                self.closed = True
                self.conn.close()

    @contextmanager
    def write_behind(self, **options: Any) -> Iterator[WriteBehind | None]:
        """Queue call-log and cache rows while inside, committed in batches by a writer thread (see
        :mod:`.write_behind`); on the way out, whether the block ended or raised, everything queued
        is committed. Inside another such block it only joins that one; a read-only project writes
        nothing behind (None: its writes are refused at once, as before)."""
        if self.behind is not None or self.read_only:
            yield self.behind
            return
        from .write_behind import WriteBehind  # it builds rows with .runs, which imports this module

        behind = self.behind = WriteBehind(self._commit_queued, self.check_writable, **options)
        failed = True
        try:
            yield behind
            failed = False
        finally:
            try:
                behind.close(raise_errors=not failed)
            finally:
                self.behind = None

    def _commit_queued(self) -> None:
        with self.tx():
            pass  # tx() takes in what is queued

    def check_writable(self) -> None:
        """Raise what a write transaction would raise before it starts: the project is closed,
        read-only, or its folder is gone."""
        if self.closed:
            raise ProjectError(f"the project {self.folder} is closed")
        if self.read_only:
            raise ProjectError(read_only_error(self.folder))
        self.check_present(writing=True)

    def check(self) -> None:
        """Refuse a database that is damaged, not ours, or lacks its tables or its task."""
        conn, db = self.conn, self.file
        with self.errors():
            if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("integrity check failed")
            if not schema.has_migrations_table(conn):
                raise ProjectError(
                    f"{db} is an SQLite database but not a TreeSynth project: move it away, or open the "
                    "folder of a TreeSynth project"
                )
            if not self.read_only:
                schema.migrate(conn)
            elif pending := schema.pending(conn):
                raise ProjectError(
                    f"the project {self.folder} was made by an older TreeSynth and needs {len(pending)} schema "
                    "update(s), but its folder is read-only: open it once where it can be written, or copy "
                    "the folder somewhere writable"
                )
            if missing := schema.missing_tables(conn):
                raise ProjectError(damaged(db, f"tables missing: {', '.join(missing)}"))
            keys = {key for (key,) in conn.execute("SELECT key FROM meta")}
        if not {"task", "root_id"} <= keys:
            raise ProjectError(
                f"the project in {self.folder} is incomplete (its creation was interrupted): delete {db} "
                "and create the project again"
            )

    def check_present(self, *, writing: bool = False) -> None:
        """Raise :class:`ProjectGone` if the database file is no longer where it was opened (its
        folder deleted or moved, the file replaced): SQLite would go on reading and writing the
        orphaned file, and every later edit would vanish."""
        if self.identity is not None and file_identity(self._watched) != self.identity:
            raise ProjectGone(self.folder, writing=writing)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn SQLite failures into a :class:`ProjectError` a user can act on."""
        try:
            yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # bugs in TreeSynth, not something the user can fix
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise ProjectError(
                    f"the project {self.folder} is busy: another TreeSynth process held it locked for over "
                    f"{BUSY_TIMEOUT_S:g} s; try again"
                ) from exc
            raise ProjectError(f"the project database {self.file} could not be used: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise ProjectError(damaged(self.file, str(exc))) from exc

    @contextmanager
    def tx(self, mode: str = "IMMEDIATE", *, queued: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction: committed on exit, rolled back on any exception (Ctrl-C included).

        While a run writes behind (:meth:`write_behind`), a write transaction first takes in the
        call-log and cache rows queued so far (put back in the queue if it rolls back), and a read
        commits them first, so every write is ordered after the calls before it and every read sees
        them; ``queued=False``: a read that leaves them queued (the cache lookup, which reads the
        queue itself)."""
        with self.lock, self.errors():
            if self.closed:
                raise ProjectError(f"the project {self.folder} is closed")
            if self.read_only and mode != "DEFERRED":
                raise ProjectError(read_only_error(self.folder))
            writing = mode != "DEFERRED"
            behind = self.behind if queued else None
            if behind is not None and not writing and behind.pending():
                self._commit_queued()
            self.check_present(writing=writing)
            conn = self.conn
            conn.execute(f"BEGIN {mode}")
            requeue: Callable[[], None] | None = None
            try:
                if behind is not None and writing:
                    requeue = behind.drain(conn)
                yield conn
                if writing:
                    self.check_present(writing=True)  # gone while this transaction ran: roll back
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if requeue is not None:
                    requeue()
                raise

    def query_one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The first row of one query, outside a transaction (one statement needs no snapshot, and
        this is the cache lookup before every LLM call); what is queued behind a run stays queued."""
        with self.lock, self.errors():
            if self.closed:
                raise ProjectError(f"the project {self.folder} is closed")
            self.check_present()
            row: tuple[Any, ...] | None = self.conn.execute(sql, params).fetchone()
            return row

    def read(self, *, queued: bool = True) -> AbstractContextManager[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for several queries (see :meth:`tx` for
        ``queued``)."""
        return self.tx("DEFERRED", queued=queued)


def file_identity(file: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of ``file``, or None when it does not exist."""
    try:
        found = file.stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino


def existing_db(folder: Path) -> Path:
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
    # SQLite rejects a file that is not a database when it connects (see connect).
    if not os.access(db, os.R_OK):
        raise ProjectError(f"cannot read the project database {db}: check its permissions")
    if db.stat().st_size == 0:
        raise ProjectError(damaged(db, "the file is empty"))
    return db


def read_only_error(folder: Path) -> str:
    return (
        f"the project folder {folder} is read-only: this command changes the project; copy the folder "
        "somewhere writable, or ask its owner for write access"
    )


def read_only_mode(folder: Path, db: Path) -> str | None:
    """How to open a project this process cannot write (None: it can): ``immutable=1`` when the folder
    is read-only too (SQLite could not make its shared-memory file there), unless a write-ahead log
    holds changes not yet in the file (then ``mode=ro``, which reads it)."""
    if os.access(db, os.W_OK) and os.access(folder, os.W_OK):
        return None
    wal = folder / f"{DB_NAME}-wal"
    if not os.access(folder, os.W_OK) and not (wal.exists() and wal.stat().st_size > 0):
        return "ro&immutable=1"
    return "ro"


def connect(db: Path, *, create: bool, read_only: str | None = None) -> sqlite3.Connection:
    """A connection in autocommit mode (the store runs its own transactions), WAL, FKs on;
    ``read_only``: a :func:`read_only_mode`."""
    uri = f"{db.resolve().as_uri()}?mode={'rwc' if create else read_only or 'rw'}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise ProjectError(f"cannot open the project database {db}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if read_only is None:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        conn.close()
        why = "not an SQLite database" if "not a database" in str(exc) else str(exc)
        raise ProjectError(damaged(db, why)) from exc
    return conn


def damaged(db: Path, why: str) -> str:
    return (
        f"the project database {db} is damaged ({why}): restore it from a backup, or move it away, "
        "create the project again and import its tree file"
    )


# -- SQL pieces -----------------------------------------------------------------------------------


def marks(n: int) -> str:
    """``n`` comma-separated ``?`` placeholders."""
    return ", ".join("?" * n)


def chunks(items: list[Any]) -> Iterator[list[Any]]:
    """``items`` in slices small enough for one ``IN (...)`` query."""
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
