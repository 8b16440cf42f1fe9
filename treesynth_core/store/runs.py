"""Runs of LLM work and what they leave: the call log, the reply cache, call statistics, and the
background jobs that start runs. Every function takes the connection of a transaction the caller
holds; ids and secrets are handled here because these are the records that carry them."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..llm.base import ChatResult
from ..llm.recording import CallRecord
from .db import marks
from .schema import dumps, now

_RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(ChatResult))
_CACHED_FIELDS = frozenset(_RESULT_FIELDS) - {"cached"}
#: The call log's columns written as the record has them; the others are made by :func:`insert_calls`.
_CALL_COLUMNS = tuple(
    f.name
    for f in dataclasses.fields(CallRecord)
    if f.name not in {"request", "response", "error", "cached", "attempt_errors"}
)
_INSERT_CALL = (
    f"INSERT INTO llm_calls ({', '.join(_CALL_COLUMNS)}, id, ts, request, response, error, cached, attempt_errors) "
    f"VALUES ({marks(len(_CALL_COLUMNS) + 7)})"
)
_JOB_FIELDS = frozenset({"done", "total", "message", "status", "error", "finished", "run_id", "result"})

# -- LLM reply cache and call log -----------------------------------------------------------------


CACHE_GET = "SELECT result FROM llm_cache WHERE key = ?"


def cache_get(conn: sqlite3.Connection, key: str) -> ChatResult | None:
    """The reply cached under ``key`` (see ``llm.base.cache_key``), marked ``cached=True``."""
    row = conn.execute(CACHE_GET, (key,)).fetchone()
    return None if row is None else cache_result(row[0])


def cache_result(text: str) -> ChatResult | None:
    """A cache row's reply, marked ``cached=True``; None when it is unreadable (it counts as a miss,
    and the next put replaces it)."""
    try:
        data = json.loads(text)
        return ChatResult(**{k: v for k, v in data.items() if k in _CACHED_FIELDS}, cached=True)
    except (ValueError, TypeError, AttributeError):
        return None


def cache_text(result: ChatResult) -> str:
    """A reply as its cache row holds it."""
    # field by field: a reply's fields are plain values, and ``asdict``'s deep copy cost more than the write
    return dumps({name: getattr(result, name) for name in _RESULT_FIELDS} | {"cached": False})


def cache_put(conn: sqlite3.Connection, key: str, result: ChatResult) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO llm_cache (key, result, created) VALUES (?, ?, ?)", (key, cache_text(result), now())
    )


def cache_evict(conn: sqlite3.Connection, key: str) -> None:
    """Drop the reply cached under ``key`` (one its request's validator rejects)."""
    conn.execute("DELETE FROM llm_cache WHERE key = ?", (key,))


def log_call(conn: sqlite3.Connection, record: CallRecord) -> str:
    """Append one LLM call to the log, secrets redacted; return its id."""
    call_id = new_ulid()
    insert_calls(conn, [(call_id, now(), record)])
    return call_id


def insert_calls(conn: sqlite3.Connection, calls: Sequence[tuple[str, str, CallRecord]]) -> None:
    """Append ``(id, time, record)`` calls to the log in this order, secrets redacted."""
    rows = [
        (
            *(getattr(record, name) for name in _CALL_COLUMNS),
            call_id,
            ts,
            redacted_json(record.request),
            redact_secrets(record.response),
            redact_secrets(record.error),
            int(record.cached),
            dumps(redact_secrets(list(record.attempt_errors))),
        )
        for call_id, ts, record in calls
    ]
    conn.executemany(_INSERT_CALL, rows)


# -- runs and statistics --------------------------------------------------------------------------


def start_run(
    conn: sqlite3.Connection, command: str, params: dict[str, Any] | None = None, *, job_id: str | None = None
) -> str:
    """Record that a command (grow, synth, ...) started, under the job (the run lease) ``job_id``
    holds; return the run id."""
    run_id = new_ulid()
    conn.execute(
        "INSERT INTO runs (id, command, params, started) VALUES (?, ?, ?, ?)",
        (run_id, command, dumps(redact_secrets(params or {})), now()),
    )
    if job_id is not None:
        conn.execute("UPDATE jobs SET run_id = ? WHERE id = ?", (run_id, job_id))
    return run_id


def finish_run(conn: sqlite3.Connection, run_id: str, status: str, error: str | None) -> bool:
    """Record how a run ended; False if there is no such run."""
    cur = conn.execute(
        "UPDATE runs SET finished = ?, status = ?, error = ? WHERE id = ?",
        (now(), status, redact_secrets(error), run_id),
    )
    return cur.rowcount > 0


#: The tries of a call: its failed ones, and the last one when it succeeded.
_TRIES = "(json_array_length(c.attempt_errors) + (c.error IS NULL))"
_COUNTS = ", ".join(
    f"COALESCE(SUM({expr}), 0)"
    for expr in (
        "c.cached = 0 AND c.error IS NULL",
        "c.cached = 1 AND c.error IS NULL",
        "c.error IS NOT NULL",
        "CASE WHEN c.cached = 0 THEN c.attempts END",
        "CASE WHEN c.cached = 0 THEN c.attempts - (c.error IS NULL AND c.attempts > 0) END",
        f"CASE WHEN c.cached = 0 AND {_TRIES} > 1 THEN {_TRIES} - 1 END",
        "CASE WHEN c.cached = 0 THEN c.prompt_tokens END",
        "CASE WHEN c.cached = 0 THEN c.completion_tokens END",
        "CASE WHEN c.cached = 0 THEN c.latency_s END",
    )
)


@dataclass(frozen=True)
class CallCounts:
    """LLM calls made (not cached, not failed), served from the cache and failed; tokens and
    latency add up every call that reached the model. ``requests`` counts the HTTP requests that
    reached the server (retries included: what the server saw), ``failed_requests`` those that
    failed, ``retries`` the tries after each call's first (a refused connection is a try that sent
    no request)."""

    calls: int
    cached: int
    failed: int
    requests: int
    failed_requests: int
    retries: int
    prompt_tokens: int
    completion_tokens: int
    latency_s: float

    @staticmethod
    def from_row(values: Sequence[Any]) -> CallCounts:
        """Counts from the nine ``_COUNTS`` columns of a query row."""
        calls, cached, failed, requests, failed_requests, retries, prompt, completion, latency = values
        tallies = (int(calls), int(cached), int(failed), int(requests), int(failed_requests), int(retries))
        return CallCounts(*tallies, int(prompt), int(completion), float(latency))

    @staticmethod
    def total(parts: Iterable[CallCounts]) -> CallCounts:
        """The sum of ``parts``."""
        parts = list(parts)
        return CallCounts.from_row([sum(getattr(p, f.name) for p in parts) for f in dataclasses.fields(CallCounts)])


@dataclass(frozen=True)
class RunRow:
    """One run as :meth:`Project.stats` lists it: how it went and its call counts."""

    id: str
    command: str
    started: str
    finished: str | None
    status: str
    error: str | None
    calls: int
    cached: int
    failed: int
    requests: int
    failed_requests: int
    retries: int


@dataclass(frozen=True)
class RunStats(CallCounts):
    """Call counts in total (the inherited fields), by command, by model, and for the latest 20 runs."""

    by_command: dict[str, CallCounts]
    by_model: dict[str, CallCounts]
    runs: list[RunRow]

    def to_json(self) -> dict[str, Any]:
        """The plain dict ``treesynth stats --json`` and the commands' ``"llm"`` entries print."""
        return dataclasses.asdict(self)


def stats(conn: sqlite3.Connection, run_id: str | None = None) -> RunStats:
    """LLM call counts, tokens and latency: in total, by command, and for the latest 20 runs (all
    for ``run_id`` alone if given). A run recorded as ``running`` that no live lease holds (its
    process was killed) reads ``killed``."""
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
    by_command = {row[0]: CallCounts.from_row(row[1:]) for row in conn.execute(by_command_sql, params)}
    by_model = {row[0]: CallCounts.from_row(row[1:]) for row in conn.execute(by_model_sql, params)}
    runs = []
    held = {job.run_id for job in running_jobs(conn) if holder_alive(job)}
    for row in conn.execute(runs_sql, params):
        counts = CallCounts.from_row(row[6:])
        run, command, started, finished, status, error = row[:6]
        if status == "running" and run not in held:
            status = KILLED
        tallies = (counts.calls, counts.cached, counts.failed, counts.requests, counts.failed_requests, counts.retries)
        runs.append(RunRow(run, command, started, finished, status, error, *tallies))
    totals = CallCounts.total(by_command.values())
    return RunStats(**dataclasses.asdict(totals), by_command=by_command, by_model=by_model, runs=runs)


#: How many calls :func:`call_latencies` reads per usable reply it wants (failed ones among them).
FAILED_CALLS_SCANNED = 4


def call_latencies(
    conn: sqlite3.Connection,
    backend: str,
    model: str,
    purposes: Sequence[str] | None,
    limit: int,
    run_id: str | None = None,
) -> list[float]:
    """Seconds each of the latest ``limit`` usable replies took on ``backend`` and ``model``, of
    ``purposes`` (None: any), of run ``run_id`` (None: any), newest first: a real call's time (not
    cached), with the time of the failed calls just before it (unusable or cut-off replies, errors;
    not those stopped by a person) added, since a run spends that too before it has the reply. A
    small model that runs to its token limit on half its calls takes several times its good calls'
    time for each reply it keeps."""
    where = (
        "c.cached = 0 AND c.latency_s > 0 AND (c.error IS NULL OR c.error != 'cancelled') "
        "AND c.backend = ? AND c.model = ?"
    )
    params: list[Any] = [backend, model]
    if run_id is not None:
        where += " AND c.run_id = ?"
        params.append(run_id)
    if purposes is not None:
        where += f" AND c.purpose IN ({marks(len(purposes))})"
        params.extend(purposes)
    sql = f"SELECT c.latency_s, c.error IS NULL FROM llm_calls c WHERE {where} ORDER BY c.ts DESC, c.id DESC LIMIT ?"
    rows = conn.execute(sql, (*params, limit * FAILED_CALLS_SCANNED)).fetchall()
    replies, spent = [], 0.0
    for seconds, usable in reversed(rows):  # oldest first: failures count toward the next usable reply
        spent += float(seconds)
        if usable:
            replies.append(spent)
            spent = 0.0
    return replies[::-1][:limit]


@dataclass(frozen=True)
class RunCounts:
    """What a run has done so far: LLM calls answered (cached ones too) and samples written."""

    calls: int
    samples: int
    #: When its latest answered call was logged (ISO 8601, UTC); None before the first.
    last_reply: str | None = None
    #: How the run stands: running, ok, partial (some of what it was asked for is missing), failed, ...
    status: str = "running"


def run_counts(conn: sqlite3.Connection, run_id: str) -> RunCounts:
    """The calls answered and samples written by run ``run_id`` so far, when the last was answered,
    and how the run stands."""
    calls, last = conn.execute(
        "SELECT COUNT(*), MAX(ts) FROM llm_calls WHERE run_id = ? AND error IS NULL", (run_id,)
    ).fetchone()
    samples = conn.execute(
        "SELECT COUNT(*) FROM samples s JOIN llm_calls c ON c.id = s.call_id WHERE c.run_id = ?", (run_id,)
    ).fetchone()[0]
    row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    return RunCounts(int(calls), int(samples), last, row[0] if row else "running")


# -- background jobs and the run lease ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRecord:
    """A background job as the store records it (its ``jobs`` row)."""

    id: str
    kind: str
    params: dict[str, Any]
    status: str  # running | done | failed | cancelled | interrupted
    done: int
    total: int | None
    message: str
    error: str | None
    started: str
    finished: str | None
    run_id: str | None
    heartbeat: float = 0.0
    cancel_requested: bool = False
    pid: int = 0
    host: str = ""
    result: str | None = None  # the outcome: a finished run's summary, what a stopped one kept (never progress)
    starter: str = ""  # the token of the browser tab that started it ("" for a command)
    origin: str = ""  # the app page that started it ("" for a command)


_JOB_NAMES = tuple(f.name for f in dataclasses.fields(JobRecord))
_JOB_COLUMNS = ", ".join(_JOB_NAMES)


#: Seconds a run's lease lives without a heartbeat before another run takes it over (its process
#: died or hangs); the environment variable :data:`LEASE_STALE_ENV` overrides it.
LEASE_STALE_S = 30.0
LEASE_STALE_ENV = "TREESYNTH_LEASE_STALE_S"
#: The status of a run whose lease went stale while it was recorded as running.
KILLED = "killed"
HOST = socket.gethostname()


def lease_stale_s() -> float:
    """:data:`LEASE_STALE_S`, or the number of seconds ``$TREESYNTH_LEASE_STALE_S`` gives."""
    try:
        value = float(os.environ.get(LEASE_STALE_ENV, LEASE_STALE_S))
    except ValueError:
        return LEASE_STALE_S
    return value if value > 0 else LEASE_STALE_S


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def holder_alive(job: JobRecord, stale_after_s: float | None = None, at: float | None = None) -> bool:
    """Whether a running job still holds the lease: it beat within ``stale_after_s`` (default
    :func:`lease_stale_s`) and, when it runs on this host, its process exists."""
    stale = lease_stale_s() if stale_after_s is None else stale_after_s
    if job.status != "running" or (time.time() if at is None else at) - job.heartbeat >= stale:
        return False
    return not (job.host == HOST and job.pid > 0 and not pid_alive(job.pid))


def running_jobs(conn: sqlite3.Connection) -> list[JobRecord]:
    """Jobs recorded as running, newest first (some may be dead: see :func:`holder_alive`)."""
    sql = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status = 'running' ORDER BY started DESC, id DESC"
    return [_job_record(row) for row in conn.execute(sql)]


def claim_job(
    conn: sqlite3.Connection,
    kind: str,
    params: dict[str, Any],
    *,
    stale_after_s: float | None = None,
    starter: str = "",
    origin: str = "",
) -> tuple[JobRecord, bool]:
    """Take the project's run lease for a job of ``kind`` unless a live job holds it: ``(job, created)``.

    Running jobs that no longer hold the lease (:func:`holder_alive`: no beat for ``stale_after_s``,
    or their process is gone) become ``interrupted`` first, and the runs they left ``running``
    become ``killed``; if a live one remains it is returned uncreated. The new job records this
    process's pid and host, and who started it where (``starter``, ``origin``).
    """
    stamp = time.time()
    running = running_jobs(conn)
    live = [job for job in running if holder_alive(job, stale_after_s, stamp)]
    if live:
        return live[0], False
    finished = now()
    conn.execute("UPDATE jobs SET status = 'interrupted', finished = ? WHERE status = 'running'", (finished,))
    # Every run holds the lease, so with none held no run is still working.
    conn.execute(
        "UPDATE runs SET status = ?, finished = ?, error = ? WHERE status = 'running'",
        (KILLED, finished, "its process stopped without finishing (killed, or the machine went down)"),
    )
    job_id = new_ulid()
    conn.execute(
        "INSERT INTO jobs (id, kind, params, status, started, heartbeat, pid, host, starter, origin) "
        "VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
        (job_id, kind, dumps(redact_secrets(params)), finished, stamp, os.getpid(), HOST, starter, origin),
    )
    created = job(conn, job_id)
    assert created is not None
    return created, True


def update_job(conn: sqlite3.Connection, job_id: str, fields: Mapping[str, Any]) -> None:
    """Set some of: done, total, message, status, error, finished, run_id, result (and the heartbeat)."""
    unknown = set(fields) - _JOB_FIELDS
    if unknown:
        raise ValueError(f"unknown job fields: {sorted(unknown)}")
    sets = ", ".join(f"{name} = ?" for name in fields)
    values = [redact_secrets(v) if isinstance(v, str) else v for v in fields.values()]
    conn.execute(
        f"UPDATE jobs SET heartbeat = ?{', ' if sets else ''}{sets} WHERE id = ?", (time.time(), *values, job_id)
    )


def request_cancel(conn: sqlite3.Connection, job_id: str) -> None:
    conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))


def job(conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else _job_record(row)


def jobs(conn: sqlite3.Connection, *, kind: str | None = None, limit: int = 20) -> list[JobRecord]:
    """Jobs, newest first."""
    where = " WHERE kind = ?" if kind else ""
    sql = f"SELECT {_JOB_COLUMNS} FROM jobs{where} ORDER BY started DESC, id DESC LIMIT ?"
    return [_job_record(row) for row in conn.execute(sql, ((kind,) if kind else ()) + (limit,))]


def _job_record(row: Sequence[Any]) -> JobRecord:
    values = dict(zip(_JOB_NAMES, row, strict=True))
    values["params"] = json.loads(values["params"] or "{}")
    values["cancel_requested"] = bool(values["cancel_requested"])
    return JobRecord(**values)


# -- ids and secrets ------------------------------------------------------------------------------

_SECRET = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}|\bBearer\s+[A-Za-z0-9_\-.~+/=]{8,}")
_SECRET_KEYS = frozenset({"api_key", "apikey", "api-key", "x-api-key", "authorization", "password"})
REDACTED = "[REDACTED]"
#: In lower case, what anything :func:`redact_secrets` changes contains.
_MARKERS = ("sk-", "bearer", *_SECRET_KEYS)


def redacted_json(value: Any) -> str:
    """``dumps(redact_secrets(value))``, without walking ``value`` when its JSON holds nothing that
    could be a secret (no ``sk-``, ``bearer`` or secret key name in any case): most requests."""
    text = dumps(value)
    lowered = text.lower()
    if any(marker in lowered for marker in _MARKERS):
        return dumps(redact_secrets(value))
    return text


def redact_secrets(value: Any) -> Any:
    """A copy of ``value`` with anything that looks like an API key or a bearer token redacted."""
    if isinstance(value, str):
        if "sk-" not in value and "Bearer" not in value:  # what every match holds: skip the regex (most text)
            return value
        return _SECRET.sub(lambda m: ("sk-" if m.group(0).startswith("sk-") else "Bearer ") + REDACTED, value)
    if isinstance(value, Mapping):
        return {k: REDACTED if v and str(k).lower() in _SECRET_KEYS else redact_secrets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_secrets(v) for v in value]
    return value


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Two Crockford digits for each 10-bit value: a ULID is 13 of them.
_CROCKFORD_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_ulid_lock = threading.Lock()
_ulid_last = [0]


def new_ulid() -> str:
    """A 26-character id that sorts by creation time (ULID: 48 bits of milliseconds, 80 random);
    ids made in one process always increase, even within one millisecond."""
    value = (int(datetime.now(UTC).timestamp() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    with _ulid_lock:
        value = _ulid_last[0] = max(value, _ulid_last[0] + 1)
    return "".join([_CROCKFORD_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10)])
