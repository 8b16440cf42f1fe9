"""Batch generation's records (see :mod:`treesynth_core.batch`): the prepared shard files and how
each stands, and the replies batches brought back, by the cache key of their request. Every function
takes the connection of a transaction the caller holds."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..llm.recording import CallRecord
from .runs import insert_calls, new_ulid, redacted_json
from .schema import dumps, now

#: ``IN`` over the keys of one JSON array parameter: one query for a chunk of any size.
_JSON_KEYS = "(SELECT value FROM json_each(?))"

#: The columns a caller may change with :func:`update_batch`.
_UPDATABLE = frozenset(
    {"status", "base_url", "input_file_id", "remote_id", "output_file_id", "error_file_id", "counts"}
)
_COLUMNS = (
    "id",
    "round",
    "shard",
    "requests",
    "status",
    "base_url",
    "input_file_id",
    "remote_id",
    "output_file_id",
    "error_file_id",
    "counts",
    "created",
    "updated",
)


@dataclass(frozen=True)
class BatchRecord:
    """One shard file of a prepared round and what became of it.

    ``status`` is ``prepared`` (written, not sent), then the provider's own (``validating``,
    ``in_progress``, ``finalizing``, ``completed``, ``failed``, ``expired``, ``cancelled``), then
    ``collected`` once its replies are in the project. ``counts`` holds the provider's request counts
    and what ``collect`` took (``replies``, ``failed``).
    """

    id: str
    round: str
    shard: str
    requests: int
    status: str = "prepared"
    base_url: str | None = None
    input_file_id: str | None = None
    remote_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: Mapping[str, Any] = field(default_factory=dict)
    created: str = ""
    updated: str = ""


def add_batch(conn: sqlite3.Connection, batch_id: str, round_id: str, shard: str, requests: int) -> None:
    stamp = now()
    conn.execute(
        "INSERT INTO batches (id, round, shard, requests, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
        (batch_id, round_id, shard, requests, stamp, stamp),
    )


def update_batch(conn: sqlite3.Connection, batch_id: str, fields: Mapping[str, Any]) -> None:
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValueError(f"not batch fields: {sorted(unknown)}")
    values = {k: dumps(v) if k == "counts" else v for k, v in fields.items()}
    sets = ", ".join(f"{name} = ?" for name in values)
    conn.execute(f"UPDATE batches SET {sets}, updated = ? WHERE id = ?", (*values.values(), now(), batch_id))


def batches(conn: sqlite3.Connection, round_id: str | None = None) -> list[BatchRecord]:
    """The batches (of one round), oldest first."""
    where, args = ("WHERE round = ?", (round_id,)) if round_id else ("", ())
    rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM batches {where} ORDER BY created, id", args)
    found = []
    for row in rows:
        data = dict(zip(_COLUMNS, row, strict=True))
        found.append(BatchRecord(**{**data, "counts": json.loads(data["counts"] or "{}")}))
    return found


def add_round(conn: sqlite3.Connection, round_id: str, kind: str, params: Mapping[str, Any]) -> None:
    """Record what a prepared round is for and the options it was prepared with."""
    conn.execute(
        "INSERT OR REPLACE INTO batch_rounds (id, kind, params, created) VALUES (?, ?, ?, ?)",
        (round_id, kind, dumps(dict(params)), now()),
    )


def rounds(conn: sqlite3.Connection, round_ids: Iterable[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """round id -> (kind, params) of the recorded rounds among ``round_ids`` (rounds prepared before
    rounds were recorded have none)."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for round_id in dict.fromkeys(round_ids):
        row = conn.execute("SELECT kind, params FROM batch_rounds WHERE id = ?", (round_id,)).fetchone()
        if row is not None:
            found[round_id] = (row[0], json.loads(row[1]))
    return found


@dataclass(frozen=True)
class KeptOutcomes:
    """What :func:`keep_outcomes` did with one chunk of a batch's outcomes."""

    #: Replies new to the project (kept, and logged as calls).
    replies: int = 0
    #: Replies whose key the project held already (before this chunk, or earlier in it): not kept again.
    known: int = 0
    #: The failures logged now, as ``(key, error)``, in the chunk's order.
    failed: tuple[tuple[str, str], ...] = ()


def keep_outcomes(
    conn: sqlite3.Connection,
    outcomes: Sequence[tuple[str, Mapping[str, Any] | None, CallRecord]],
    batch_id: str | None,
) -> KeptOutcomes:
    """Keep one chunk of a batch's outcomes, ``(key, chat completion body or None for a failure, the
    call's log record)`` in file order: each reply whose key has none yet is kept and its call logged;
    each failure whose key has no reply is logged, unless the same failure (its key and request) was
    logged before. A few queries and one ``executemany`` per table, whatever the chunk's size, so
    a chunk is collected whole or not at all by the caller's transaction, and collecting it again
    changes nothing."""
    keys = list(dict.fromkeys(key for key, _, _ in outcomes))
    held = {k for (k,) in conn.execute(f"SELECT key FROM batch_replies WHERE key IN {_JSON_KEYS}", (dumps(keys),))}
    failures = [key for key, body, _ in outcomes if body is None and key not in held]
    logged: set[tuple[str, str]] = set()
    if failures:  # failed calls are few: the partial index on their keys finds the ones logged before
        sql = f"SELECT cache_key, request FROM llm_calls WHERE error IS NOT NULL AND cache_key IN {_JSON_KEYS}"
        logged = set(conn.execute(sql, (dumps(list(dict.fromkeys(failures))),)))
    stamp = now()
    replies: list[tuple[str, str | None, str, str]] = []
    calls: list[tuple[str, str, CallRecord]] = []
    failed: list[tuple[str, str]] = []
    known = 0
    for key, body, record in outcomes:
        if body is not None:
            if key in held:
                known += 1
                continue
            held.add(key)
            replies.append((key, batch_id, dumps(body), stamp))
        else:
            request = redacted_json(record.request)
            if key in held or (key, request) in logged:
                continue
            logged.add((key, request))
            failed.append((key, record.error or "failed"))
        calls.append((new_ulid(), stamp, record))
    conn.executemany("INSERT INTO batch_replies (key, batch_id, body, collected) VALUES (?, ?, ?, ?)", replies)
    insert_calls(conn, calls)
    return KeptOutcomes(len(replies), known, tuple(failed))


def reply(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    """The chat completion a batch brought back for the request with cache key ``key``, if any."""
    row = conn.execute("SELECT body FROM batch_replies WHERE key = ?", (key,)).fetchone()
    return None if row is None else json.loads(row[0])


def any_replies(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM batch_replies LIMIT 1").fetchone() is not None


def unused_replies(conn: sqlite3.Connection) -> int:
    """How many batch replies no run has used yet: not in the reply cache, where a run keeps each
    usable reply it takes (a cut-off one, which a run asks again bigger, stays counted)."""
    sql = "SELECT COUNT(*) FROM batch_replies b WHERE NOT EXISTS (SELECT 1 FROM llm_cache c WHERE c.key = b.key)"
    return int(conn.execute(sql).fetchone()[0])


def release_replies(conn: sqlite3.Connection, call_ids: Iterable[str]) -> int:
    """Forget the cached replies of the logged calls ``call_ids`` that came from collected batches
    (replies a wave took that stored nothing, as it waits for others still out): they count as
    unused again, and the next run takes them from the batch again. Returns how many."""
    ids = list(dict.fromkeys(call_ids))
    released = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        cursor = conn.execute(
            f"DELETE FROM llm_cache WHERE key IN (SELECT cache_key FROM llm_calls WHERE id IN ({marks})) "
            "AND key IN (SELECT key FROM batch_replies)",
            chunk,
        )
        released += cursor.rowcount
    return released


def has_replies(conn: sqlite3.Connection, keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` have a batch reply."""
    wanted = list(dict.fromkeys(keys))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(k for (k,) in conn.execute(f"SELECT key FROM batch_replies WHERE key IN ({marks})", chunk))
    return found


def tokens_by_model(conn: sqlite3.Connection, command: str) -> dict[str, tuple[int, int]]:
    """Prompt and completion tokens of the calls logged by runs of ``command`` (the batch collects),
    by model: what was spent at the batch price."""
    rows = conn.execute(
        "SELECT c.model, SUM(c.prompt_tokens), SUM(c.completion_tokens) FROM llm_calls c "
        "JOIN runs r ON r.id = c.run_id WHERE r.command = ? GROUP BY c.model",
        (command,),
    )
    return {model: (int(prompt or 0), int(completion or 0)) for model, prompt, completion in rows}
