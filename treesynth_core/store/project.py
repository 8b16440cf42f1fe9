"""A TreeSynth project: one folder holding one SQLite database, ``treesynth.db``.

:class:`Project` is the one public entry to the store. It keeps the task, the tree (one row per
node), the edit log that undo and redo replay, the samples, the LLM call log and reply cache, the
runs and the background jobs. The pieces live beside it: the connection, its checks and its
transactions in :mod:`.db`, the tree rows and the edit log in :mod:`.history`, runs, calls, the
cache and jobs in :mod:`.runs`; the samples, their sets, routes and features in
:mod:`.sample_store` (a base class of :class:`Project`). Tree edits take the write lock up front
(``BEGIN IMMEDIATE``) and read the tree inside it, so two processes or two app sessions editing one
project queue up instead of overwriting each other."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import ConfigError, ProjectError, TreeError
from ..llm.base import ChatResult
from ..llm.recording import CallRecord
from ..llm.settings import BackendSettings, merge_settings
from ..tree.model import Tree, new_tree, validate
from . import batches, history, runs
from .batches import BatchRecord, KeptOutcomes
from .db import DB_NAME, FORMAT_VERSION, Database, set_meta
from .history import HUMAN, EditRecord, Replayed, UndoState
from .runs import JobRecord, RunCounts, RunStats
from .sample_store import SampleStore, delete_set
from .samples import STAGING_PREFIX
from .schema import now

StrPath = str | os.PathLike[str]


class Project(SampleStore):
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
        self,
        kind: str,
        fn: Callable[[Tree], Tree],
        *,
        args: dict[str, Any] | None = None,
        actor: str = HUMAN,
        seen: Tree | None = None,
    ) -> Tree:
        """Apply the pure edit ``fn`` to the current tree and record it as one undoable edit of
        :attr:`owner` (``actor`` is the role that made it: ``human`` or ``llm``).

        Nothing is recorded if ``fn`` changes nothing, and nothing is written if it raises. A
        recorded edit empties the owner's redo stack. ``seen``: the tree the edit's maker looked at
        (an app tab's); when a node the edit is about or changes is no longer as it was there
        (another tab renamed, pruned or removed it), the edit is refused with a
        :class:`~treesynth_core.errors.ConflictError` and nothing is written.
        """

        def step(conn: sqlite3.Connection, old: Tree) -> Tree:
            stale = seen is not None and seen is not old
            try:
                new = fn(old)
            except TreeError:  # not valid on the tree as it is now: a node changed since is the reason
                if stale:
                    history.check_seen(conn, seen, old, None, kind=kind, args=args or {})
                raise
            if stale:
                history.check_seen(conn, seen, old, new, kind=kind, args=args or {})
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

    def log_head(self) -> int:
        """The id of the latest edit in the log (0 if none): pass it to :meth:`edits_after` later."""
        with self._db.read() as conn:
            return history.log_head(conn)

    def others_edits_after(self, edit_id: int, owner: str) -> int:
        """How many edits owners other than ``owner`` recorded after ``edit_id``: one cheap count, for
        a page that polls for another tab's edits."""
        with self._db.read() as conn:
            return history.others_after(conn, edit_id, owner)

    def edits_after(self, edit_id: int) -> list[EditRecord]:
        """The edits recorded after ``edit_id``, oldest first, each with its ``what``."""
        with self._db.read() as conn:
            return history.edits_after(conn, edit_id)

    def history(self, limit: int | None = None) -> list[EditRecord]:
        """The edit log, newest first; undone edits are included and flagged."""
        with self._db.read() as conn:
            return history.edit_log(conn, limit)

    def _tree_in(self, conn: sqlite3.Connection) -> Tree:
        """The tree as the transaction on ``conn`` sees it (the cached one while nothing changed)."""
        version = history.data_version(conn)
        if self._cached is None or self._cached[0] != version:
            self._cached = (version, history.read_tree(conn))
        return self._cached[1]

    # -- LLM reply cache, call log and runs (see :mod:`.runs`) -------------------------------------
    def cache_get(self, key: str) -> ChatResult | None:
        """The reply cached under ``key`` (see ``llm.base.cache_key``), marked ``cached=True``; while
        a run writes behind, one it put or evicted moments ago is seen from the queue."""
        if (behind := self._db.behind) is not None:
            queued, result = behind.cached(key)
            if queued:
                return result
        row = self._db.query_one(runs.CACHE_GET, (key,))
        if row is None and behind is not None:  # a commit that failed meanwhile put it back in the queue
            return behind.cached(key)[1]
        return None if row is None else runs.cache_result(row[0])

    def cache_put(self, key: str, result: ChatResult) -> None:
        if (behind := self._db.behind) is not None and behind.cache_put(key, result):
            return
        with self._db.tx() as conn:
            runs.cache_put(conn, key, result)

    def cache_evict(self, key: str) -> None:
        """Drop the reply cached under ``key`` (one its request's validator rejects)."""
        if (behind := self._db.behind) is not None and behind.cache_evict(key):
            return
        with self._db.tx() as conn:
            runs.cache_evict(conn, key)

    def log_call(self, record: CallRecord) -> str:
        """Append one LLM call to the log, secrets redacted; return its id. While a run writes
        behind, the row is queued (see :meth:`write_behind`)."""
        if (behind := self._db.behind) is not None and (call_id := behind.log_call(record)) is not None:
            return call_id
        with self._db.tx() as conn:
            return runs.log_call(conn, record)

    def write_behind(self, **options: Any) -> AbstractContextManager[object]:
        """While inside, call-log and cache rows are queued and committed in batches by a writer
        thread, off the run's event loop; leaving commits everything queued, however the block
        ended. Order, read-your-writes and what a crash can lose: see :mod:`.write_behind`
        (``options``: its ``max_delay_s`` and ``max_rows``)."""
        return self._db.write_behind(**options)

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
        self,
        backend: str,
        model: str,
        purposes: Sequence[str] | None = None,
        limit: int = 50,
        run_id: str | None = None,
    ) -> list[float]:
        """Seconds of the latest real calls on ``backend`` and ``model`` (of ``purposes``, of run
        ``run_id``; None: any), newest first: what time estimates rest on
        (:mod:`treesynth_core.llm.timing`)."""
        with self._db.read() as conn:
            return runs.call_latencies(conn, backend, model, purposes, limit, run_id)

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

    def add_batch_round(self, round_id: str, kind: str, params: Mapping[str, Any]) -> None:
        """Record what a prepared round is for (``synth``, ``route``) and its options (JSON)."""
        with self._db.tx() as conn:
            batches.add_round(conn, round_id, kind, params)

    def batch_rounds(self, round_ids: Iterable[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """round id -> (kind, params) of the recorded rounds among ``round_ids``."""
        with self._db.read() as conn:
            return batches.rounds(conn, round_ids)

    def keep_batch_outcomes(
        self, outcomes: Sequence[tuple[str, Mapping[str, Any] | None, CallRecord]], batch_id: str | None
    ) -> KeptOutcomes:
        """Keep one chunk of what a batch brought back, in one transaction: the replies new to the
        project (by request cache key) with their calls logged, and the failures not logged before
        (see :func:`.batches.keep_outcomes`)."""
        with self._db.tx() as conn:
            return batches.keep_outcomes(conn, outcomes, batch_id)

    def has_batch_replies(self) -> bool:
        """Whether any batch brought replies back (runs then look there before sending)."""
        with self._db.read() as conn:
            return batches.any_replies(conn)

    def unused_batch_replies(self) -> int:
        """How many replies collected batches brought back that no run has used yet."""
        with self._db.read() as conn:
            return batches.unused_replies(conn)

    def release_batch_replies(self, call_ids: Iterable[str]) -> int:
        """The batch replies of the logged calls ``call_ids`` count as unused again (see
        :func:`.batches.release_replies`); returns how many."""
        with self._db.tx() as conn:
            return batches.release_replies(conn, call_ids)

    def batch_reply_keys(self, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` a collected batch brought a reply for."""
        with self._db.read() as conn:
            return batches.has_replies(conn, keys)

    def batch_tokens(self, command: str) -> dict[str, tuple[int, int]]:
        """(prompt, completion) tokens by model of the calls runs of ``command`` logged (batch collects)."""
        with self._db.read() as conn:
            return batches.tokens_by_model(conn, command)

    def batch_reply(self, key: str) -> dict[str, Any] | None:
        """The chat completion a batch brought back for the request with cache key ``key``, if any."""
        with self._db.read() as conn:
            return batches.reply(conn, key)

    # -- background jobs --------------------------------------------------------------------------
    def claim_job(
        self,
        kind: str,
        params: dict[str, Any],
        *,
        stale_after_s: float | None = None,
        starter: str = "",
        origin: str = "",
    ) -> tuple[JobRecord, bool]:
        """Take the project's run lease for a job, unless a live job holds it: ``(job, created)``, in
        one transaction (see :func:`.runs.claim_job`; ``starter`` and ``origin`` say who started it
        where). Taking it also deletes the hidden staging rows an import killed half way left behind
        (no import can be running then)."""
        with self._db.tx() as conn:
            record, created = runs.claim_job(
                conn, kind, params, stale_after_s=stale_after_s, starter=starter, origin=origin
            )
            if created:
                staged = conn.execute(
                    "SELECT DISTINCT sample_set FROM samples WHERE substr(sample_set, 1, ?) = ?",
                    (len(STAGING_PREFIX), STAGING_PREFIX),
                ).fetchall()
                for (name,) in staged:
                    delete_set(conn, name)
            return record, created

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Set some of: done, total, message, status, error, finished, run_id, result (and the heartbeat)."""
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
