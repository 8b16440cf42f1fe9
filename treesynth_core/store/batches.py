"""Batch generation's records (see :mod:`treesynth_core.batch`): the prepared shard files and how
each stands, and the replies batches brought back, by the cache key of their request. Every function
takes the connection of a transaction the caller holds."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .schema import dumps, now

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


def put_replies(
    conn: sqlite3.Connection, replies: Iterable[tuple[str, Mapping[str, Any]]], batch_id: str | None
) -> int:
    """Keep each ``(key, chat completion body)`` a batch brought back; a key kept before keeps its
    first reply (collecting twice changes nothing). Returns how many were new."""
    stamp, added = now(), 0
    for key, body in replies:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO batch_replies (key, batch_id, body, collected) VALUES (?, ?, ?, ?)",
            (key, batch_id, dumps(body), stamp),
        )
        added += cursor.rowcount
    return added


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
