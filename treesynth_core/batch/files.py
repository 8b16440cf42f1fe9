"""Batch JSONL files: requests sharded into files a provider accepts, and reading lines back.

A shard holds at most :data:`MAX_LINES` requests and :data:`MAX_BYTES` bytes (OpenAI's limits on a
batch input file); each is sent, tracked and collected on its own, so a shard is the unit of resume.
Beside each shard ``NAME.jsonl`` lies ``NAME.calls.jsonl``: per request, what the call is for
(purpose, node), which the call log records when its reply comes back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .replay import BatchRequest

#: OpenAI's limits on one batch input file.
MAX_LINES = 50_000
MAX_BYTES = 200 * 1024 * 1024
#: How a shard's sidecar file is named: ``shard-00001.jsonl`` -> ``shard-00001.calls.jsonl``.
CALLS_SUFFIX = ".calls.jsonl"


@dataclass(frozen=True)
class Shard:
    """One written batch input file and how many requests it holds."""

    path: Path
    requests: int


@dataclass(frozen=True)
class CallInfo:
    """What a batch line's call is for (from the shard's sidecar)."""

    purpose: str = ""
    node_id: str | None = None


def _encode(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def write_shards(
    requests: Iterable[BatchRequest], folder: Path, *, max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES
) -> list[Shard]:
    """Write ``requests`` as ``folder/shard-NNNNN.jsonl`` files of at most ``max_lines`` lines and
    ``max_bytes`` bytes each (with their sidecars); returns the shards in order. A single request
    larger than ``max_bytes`` is refused."""
    if max_lines < 1 or max_bytes < 1:
        raise ValueError("max_lines and max_bytes must be at least 1")
    folder.mkdir(parents=True, exist_ok=True)
    shards: list[Shard] = []
    lines: list[bytes] = []
    calls: list[bytes] = []
    size = 0

    def flush() -> None:
        nonlocal lines, calls, size
        if not lines:
            return
        path = folder / f"shard-{len(shards) + 1:05d}.jsonl"
        path.write_bytes(b"".join(lines))
        path.with_name(path.stem + CALLS_SUFFIX).write_bytes(b"".join(calls))
        shards.append(Shard(path, len(lines)))
        lines, calls, size = [], [], 0

    for request in requests:
        line = _encode(request.line())
        if len(line) > max_bytes:
            raise DataError(f"request {request.custom_id} takes {len(line):,} bytes, above a file's {max_bytes:,}")
        if len(lines) >= max_lines or size + len(line) > max_bytes:
            flush()
        lines.append(line)
        calls.append(_encode({"custom_id": request.custom_id, "purpose": request.purpose, "node_id": request.node_id}))
        size += len(line)
    flush()
    return shards


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file, one a line (blank lines skipped), streamed."""
    try:
        with path.open(encoding="utf-8") as handle:
            for number, text in enumerate(handle, 1):
                if not text.strip():
                    continue
                try:
                    value = json.loads(text)
                except ValueError as exc:
                    raise DataError(f"{path}:{number} is not JSON: {exc}") from None
                if not isinstance(value, dict):
                    raise DataError(f"{path}:{number} is not a JSON object")
                yield value
    except FileNotFoundError:
        raise DataError(f"no such file: {path}") from None


def read_calls(shard: Path) -> dict[str, CallInfo]:
    """The sidecar of a shard: custom_id -> what the call is for (empty when there is none)."""
    sidecar = shard.with_name(shard.stem + CALLS_SUFFIX)
    if not sidecar.exists():
        return {}
    return {
        row["custom_id"]: CallInfo(row.get("purpose") or "", row.get("node_id"))
        for row in read_jsonl(sidecar)
        if "custom_id" in row
    }


def shard_ids(shard: Path) -> list[str]:
    """The custom_ids of a shard's lines, in order."""
    return [row["custom_id"] for row in read_jsonl(shard) if "custom_id" in row]
