"""Runs of LLM work and what they leave: the call log, the reply cache, call statistics, and the
background jobs that start runs. Every function takes the connection of a transaction the caller
holds; ids and secrets are handled here because these are the records that carry them."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..llm.base import ChatResult
from ..llm.recording import CallRecord
from .db import marks
from .schema import dumps, now

_CALL_FIELDS = tuple(f.name for f in dataclasses.fields(CallRecord))
_JOB_FIELDS = frozenset({"done", "total", "message", "status", "error", "finished", "run_id"})

# -- LLM reply cache and call log -----------------------------------------------------------------


def cache_get(conn: sqlite3.Connection, key: str) -> ChatResult | None:
    """The reply cached under ``key`` (see ``llm.base.cache_key``), marked ``cached=True``."""
    row = conn.execute("SELECT result FROM llm_cache WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    try:
        data = json.loads(row[0])
        known = {f.name for f in dataclasses.fields(ChatResult)} - {"cached"}
        return ChatResult(**{k: v for k, v in data.items() if k in known}, cached=True)
    except (ValueError, TypeError, AttributeError):
        return None  # an unreadable entry counts as a miss; the next put replaces it


def cache_put(conn: sqlite3.Connection, key: str, result: ChatResult) -> None:
    data = dataclasses.asdict(result) | {"cached": False}
    conn.execute("INSERT OR REPLACE INTO llm_cache (key, result, created) VALUES (?, ?, ?)", (key, dumps(data), now()))


def log_call(conn: sqlite3.Connection, record: CallRecord) -> str:
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
    conn.execute(f"INSERT INTO llm_calls ({', '.join(values)}) VALUES ({marks(len(values))})", list(values.values()))
    return call_id


# -- runs and statistics --------------------------------------------------------------------------


def start_run(conn: sqlite3.Connection, command: str, params: dict[str, Any] | None = None) -> str:
    """Record that a command (grow, synth, ...) started; return the run id."""
    run_id = new_ulid()
    conn.execute(
        "INSERT INTO runs (id, command, params, started) VALUES (?, ?, ?, ?)",
        (run_id, command, dumps(redact_secrets(params or {})), now()),
    )
    return run_id


def finish_run(conn: sqlite3.Connection, run_id: str, status: str, error: str | None) -> bool:
    """Record how a run ended; False if there is no such run."""
    cur = conn.execute(
        "UPDATE runs SET finished = ?, status = ?, error = ? WHERE id = ?",
        (now(), status, redact_secrets(error), run_id),
    )
    return cur.rowcount > 0


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


def stats(conn: sqlite3.Connection, run_id: str | None = None) -> dict[str, Any]:
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


# -- background jobs ------------------------------------------------------------------------------


def claim_job(
    conn: sqlite3.Connection, kind: str, params: dict[str, Any], *, stale_after_s: float
) -> tuple[dict[str, Any], bool]:
    """Start recording a job, unless one is already running: ``(job row, created)``.

    Running jobs whose heartbeat is older than ``stale_after_s`` (their process died) become
    ``interrupted`` first; if a live one remains it is returned uncreated.
    """
    stamp = time.time()
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


def update_job(conn: sqlite3.Connection, job_id: str, fields: Mapping[str, Any]) -> None:
    """Set some of: done, total, message, status, error, finished, run_id (and the heartbeat)."""
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


def job(conn: sqlite3.Connection, job_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else _job_dict(conn, row)


def jobs(conn: sqlite3.Connection, *, kind: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Jobs, newest first."""
    sql = "SELECT * FROM jobs" + (" WHERE kind = ?" if kind else "") + " ORDER BY started DESC, id DESC LIMIT ?"
    rows = conn.execute(sql, ((kind,) if kind else ()) + (limit,)).fetchall()
    return [_job_dict(conn, row) for row in rows]


def _job_dict(conn: sqlite3.Connection, row: tuple[Any, ...]) -> dict[str, Any]:
    names = [d[1] for d in conn.execute("PRAGMA table_info(jobs)")]
    data = dict(zip(names, row, strict=True))
    data["params"] = json.loads(data["params"] or "{}")
    data["cancel_requested"] = bool(data["cancel_requested"])
    return data


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
