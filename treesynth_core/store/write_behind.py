"""Write-behind for a run's call log and reply cache: rows queued where the calls finish (the run's
event loop) and committed in batches, one transaction each, by one writer thread.

A run answers hundreds of calls a second; a transaction for each call's log row and another for its
cache row, on the event loop, were most of what recording a call cost. While a run holds :meth:`Project.write_behind
<treesynth_core.store.Project.write_behind>`, :meth:`~WriteBehind.log_call`, :meth:`~WriteBehind.cache_put`
and :meth:`~WriteBehind.cache_evict` only queue the row (a call's id and time are fixed then), and
the writer thread commits what is queued every :data:`MAX_DELAY_S` or :data:`MAX_ROWS` rows.

What this keeps:

- **Order.** Rows are written in the order they were queued: call-log rows in the order the calls
  ended (their ids increase in that order, as before).
- **Read your writes.** A cache read sees a reply put (or evicted) moments ago, from the queue; any
  other read of the project first commits what is queued (:meth:`Database.tx`), so counts and stats
  include every call logged so far.
- **A consistent store at any moment.** Every other write transaction on the project (a sample, a
  tree edit, a job's heartbeat) first takes in everything queued, so nothing written refers to a
  call whose log row is not there; a call's cache row is committed with, never before, its log row;
  and, as before, only replies that passed validation are cached. A crash (kill -9, power loss)
  loses at most the rows queued since the last commit: calls whose replies nothing else kept yet,
  which a rerun asks again.
- **Flushed before the run reports.** Leaving :meth:`Project.write_behind` (the run ended, was
  stopped, failed or was interrupted) commits everything queued before the run's status is written;
  so does :meth:`Project.close`.
- **The store's rules.** The writer uses the project's one connection under its lock (the connection
  is shared across threads, ``check_same_thread=False``), through :meth:`Database.tx`, so a project
  whose folder is gone (:class:`~treesynth_core.errors.ProjectGone`) or read-only refuses the rows as
  it refused them before. Every commit checks the folder, and so does the first call queued after
  one (a run that was idle notices at once); a commit the writer could not make is raised on the
  run's thread at its next call, and the rows it held stay queued for the final commit.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..llm.base import ChatResult
from ..llm.recording import CallRecord
from . import runs
from .schema import now

#: Commit what is queued once the oldest row has waited this long (the most a crash can lose).
MAX_DELAY_S = 0.1
#: ... or once this many rows are queued.
MAX_ROWS = 500


@dataclass(frozen=True)
class _Call:
    call_id: str
    ts: str
    record: CallRecord


#: A queued cache change: (the reply, when it was put), or None for an eviction.
_CacheChange = tuple[ChatResult, str] | None


class WriteBehind:
    """The queue of call-log and cache rows of one project's open :class:`~.db.Database`, and the
    thread that commits them. ``commit`` runs one write transaction on the project (which calls
    :meth:`drain` inside it); ``check`` raises if the project can no longer be written."""

    def __init__(
        self,
        commit: Callable[[], None],
        check: Callable[[], None],
        *,
        max_delay_s: float | None = None,
        max_rows: int | None = None,
    ) -> None:
        self._commit, self._check = commit, check
        self.max_delay_s = MAX_DELAY_S if max_delay_s is None else max_delay_s
        self.max_rows = MAX_ROWS if max_rows is None else max_rows
        self._cond = threading.Condition(threading.Lock())
        self._calls: list[_Call] = []
        self._cache: dict[str, _CacheChange] = {}
        self._first_at = 0.0  # when the oldest queued row was queued (monotonic)
        self._error: BaseException | None = None
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="treesynth-write-behind", daemon=True)
        self._thread.start()

    # -- queuing (the run's thread) ---------------------------------------------------------------
    def log_call(self, record: CallRecord) -> str | None:
        """Queue one call-log row; return its id (None: closed, nothing was queued)."""
        if not (self._calls or self._cache):  # the first row of a batch: is the project still there?
            self._check()
        call = _Call(runs.new_ulid(), now(), record)
        with self._cond:
            if self._closed:
                return None
            self._raise_error()
            self._calls.append(call)
            self._queued()
        return call.call_id

    def cache_put(self, key: str, result: ChatResult) -> bool:
        """Queue ``result`` as the reply cached under ``key``; False: closed, nothing was queued."""
        return self._queue_cache(key, (result, now()))

    def cache_evict(self, key: str) -> bool:
        """Queue the removal of ``key``'s cached reply; False: closed, nothing was queued."""
        return self._queue_cache(key, None)

    def cached(self, key: str) -> tuple[bool, ChatResult | None]:
        """``(True, reply or None)`` when a change to ``key``'s cache row is queued (None: evicted),
        else ``(False, None)``: then the database has the answer. The reply reads as it will from
        the database (its fields are plain values), marked ``cached=True``."""
        with self._cond:
            if key not in self._cache:
                return False, None
            change = self._cache[key]
        return True, None if change is None else replace(change[0], cached=True)

    def pending(self) -> int:
        """How many rows are queued."""
        with self._cond:
            return len(self._calls) + len(self._cache)

    def _queue_cache(self, key: str, change: _CacheChange) -> bool:
        with self._cond:
            if self._closed:
                return False
            self._raise_error()
            self._cache[key] = change
            self._queued()
        return True

    def _queued(self) -> None:  # holding the condition
        size = len(self._calls) + len(self._cache)
        if size == 1:
            self._first_at = time.monotonic()
            self._cond.notify()
        elif size >= self.max_rows:
            self._cond.notify()

    def _raise_error(self) -> None:  # holding the condition
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    # -- committing ---------------------------------------------------------------------------------
    def drain(self, conn: sqlite3.Connection) -> Callable[[], None] | None:
        """Write everything queued into the transaction on ``conn`` (the caller holds the project's
        lock); returns what puts it back in the queue if that transaction rolls back (None: nothing
        was queued)."""
        with self._cond:
            calls, cache = self._calls, self._cache
            if not calls and not cache:
                return None
            self._calls, self._cache = [], {}
        if calls:
            runs.insert_calls(conn, [(c.call_id, c.ts, c.record) for c in calls])
        if evicted := [key for key, change in cache.items() if change is None]:
            conn.executemany("DELETE FROM llm_cache WHERE key = ?", [(key,) for key in evicted])
        if put := [(key, runs.cache_text(change[0]), change[1]) for key, change in cache.items() if change is not None]:
            conn.executemany("INSERT OR REPLACE INTO llm_cache (key, result, created) VALUES (?, ?, ?)", put)

        def requeue() -> None:
            with self._cond:
                self._calls = calls + self._calls
                self._cache = cache | self._cache
                if calls or cache:
                    self._first_at = time.monotonic()

        return requeue

    def flush(self) -> None:
        """Commit everything queued now, on this thread (a no-op when nothing is)."""
        if self.pending():
            self._commit()

    def close(self, *, raise_errors: bool = True) -> None:
        """Stop the writer thread and commit what is left (what the writer failed to commit
        included); from then on nothing is queued (the queuing methods say so, and the project
        writes at once). If that commit fails (the project is gone, ...), the rows are dropped and
        its error raised, unless ``raise_errors`` is false (an error is already on its way)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        with self._cond:  # what the writer could not commit is still queued: the commit below retries it
            self._error = None
        error: Exception | None = None
        while True:
            try:
                self.flush()
            except Exception as exc:  # the project is gone, closed, ...: what is queued cannot be kept
                error = error or exc
            with self._cond:
                if error is not None or not (self._calls or self._cache):
                    self._closed = True
                    self._calls, self._cache = [], {}
                    break
        if error is not None and raise_errors:
            raise error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not (self._calls or self._cache):
                    self._cond.wait()
                while not self._stopping and len(self._calls) + len(self._cache) < self.max_rows:
                    left = self._first_at + self.max_delay_s - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stopping:
                    return  # close() commits the rest on its own thread
            try:
                self.flush()
            except Exception as exc:  # kept for the run's thread; the rows stay queued
                with self._cond:
                    self._error = exc
                    while not self._stopping:  # nothing more until close(): the run ends at its next call
                        self._cond.wait()
                return
