"""Each point's origin kept with its map, so reading a map of a million points reads the map's own
rows, not every sample.

A point's origin is its sample's set, leaf and path (:class:`~treesynth_core.store.columns.SampleOrigin`).
When a map becomes the latest of its kind (:func:`~.maps.lay_out`), :func:`keep_origins` reads the
samples' columns once (the one ``GROUP BY`` over every sample, paid by the map's job) and keeps one
int32 code per point into a small table of the origins on the map, with the seq the project's
journal of deleted or moved samples had then (migration m025; triggers write it whatever deletes or
moves a sample). :func:`current_origins` answers as that ``GROUP BY`` would now: it looks up again
only the samples the journal names since (deleted: off the map; moved: their new origin).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..store.columns import SampleColumns, SampleOrigin


class OriginStore(Protocol):
    """What keeping and reading the origins needs from a project."""

    def get_blob(self, key: str) -> bytes | None: ...

    def put_blob(self, key: str, data: bytes) -> None: ...

    def blob_keys(self, prefix: str) -> list[str]: ...

    def sample_columns(self, sample_sets: Iterable[str] = ...) -> SampleColumns: ...

    def sample_sets(self) -> dict[str, int]: ...

    def sample_moves_seq(self) -> int: ...

    def sample_moves(self, since: int) -> list[int]: ...

    def forget_sample_moves(self, through: int) -> None: ...

    def sample_origins(self, sample_ids: Iterable[int]) -> dict[int, tuple[str, str, str]]: ...


@dataclass
class KeptOrigins:
    """The origins kept with a map: ``codes[i]``, point i's row of ``table`` (-1: not a stored
    sample when the map was written); each row is ``[sample set, leaf id, path JSON]``."""

    codes: np.ndarray  # (n,) int64, writable
    table: list[list[str]]
    #: The journal seq they were read at.
    moves: int


def keep_origins(store: OriginStore, key: str, ids: np.ndarray) -> dict[str, Any]:
    """Read the origins of the map ``key``'s points ``ids`` and keep their codes beside its
    coordinates; returns what the map's latest record holds of them (``moves``, ``origins``, and
    ``codes``, the digest that ties the codes' blob to it)."""
    seq = store.sample_moves_seq()  # before the read: a change made meanwhile is looked up again
    columns = store.sample_columns(store.sample_sets())
    rows = columns.rows_of(ids)
    codes = np.where(rows >= 0, columns.origin[np.maximum(rows, 0)], -1)
    used = np.unique(codes[codes >= 0])  # the origins on the map, in the columns' order
    remap = np.full(len(columns.origins), -1, dtype=np.int64)
    remap[used] = np.arange(used.size)
    packed = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1).astype(np.int32).tobytes()
    store.put_blob(f"{key}:codes", packed)
    table = [_origin_row(*columns.origins[int(i)]) for i in used]
    return {"moves": seq, "origins": table, "codes": _digest(packed)}


def kept_origins(store: OriginStore, latest: Mapping[str, Any], n: int) -> KeptOrigins | None:
    """The origins kept with the latest map record ``latest`` of ``n`` points; None for a map
    written before they were kept (or whose codes' blob does not match the record)."""
    if "origins" not in latest or "moves" not in latest:
        return None
    packed = store.get_blob(f"{latest['key']}:codes")
    if packed is None or len(packed) != 4 * n or _digest(packed) != latest.get("codes"):
        return None
    codes = np.frombuffer(packed, dtype=np.int32).astype(np.int64)
    return KeptOrigins(codes, [list(row) for row in latest["origins"]], int(latest["moves"]))


def current_origins(
    store: OriginStore, ids: np.ndarray, kept: KeptOrigins, sample_sets: Iterable[str]
) -> tuple[np.ndarray, np.ndarray, list[SampleOrigin]]:
    """``(keep, codes, origins)``: which of the map's points ``ids`` are stored samples of
    ``sample_sets`` now (a boolean mask), the row of ``origins`` of each kept point, and those
    origins (sorted by set, leaf and path): the samples deleted or moved since the origins were
    kept are looked up again (one query)."""
    codes, table = kept.codes, kept.table
    moved = store.sample_moves(kept.moves)
    if moved:
        rows = np.flatnonzero(np.isin(ids, np.asarray(moved, dtype=np.int64)))
        found = store.sample_origins(ids[rows].tolist())
        index = {tuple(row): code for code, row in enumerate(table)}
        for row in rows.tolist():
            now = found.get(int(ids[row]))
            if now is None:  # deleted
                codes[row] = -1
                continue
            origin = _origin_row(now[0], now[1], json.loads(now[2]))
            codes[row] = index.setdefault(tuple(origin), len(table))
            if codes[row] == len(table):
                table.append(origin)
    wanted = set(sample_sets)
    in_sets = np.array([row[0] in wanted for row in table] + [False], dtype=bool)  # the last one: code -1
    keep = in_sets[codes]
    used = sorted({int(c) for c in np.unique(codes[keep])}, key=lambda c: table[c])
    remap = np.full(len(table), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    origins = [SampleOrigin(table[c][0], table[c][1], json.loads(table[c][2])) for c in used]
    return keep, remap[codes[keep]], origins


def moved_since(store: OriginStore, kept: KeptOrigins) -> bool:
    """Whether a sample was deleted or moved since ``kept`` was read."""
    return bool(store.sample_moves(kept.moves))


def forget_moves(store: OriginStore, latest_prefix: str) -> None:
    """Drop the journal rows that every latest map (records under ``latest_prefix``) has read past."""
    seqs = []
    for name in store.blob_keys(latest_prefix):
        data = store.get_blob(name)
        if data is not None and "moves" in (latest := json.loads(data)):
            seqs.append(int(latest["moves"]))
    if seqs:
        store.forget_sample_moves(min(seqs))


def _origin_row(sample_set: str, leaf_id: str, path: Any) -> list[str]:
    """An origin as a map keeps it: sample set, leaf id, path as compact JSON."""
    return [sample_set, leaf_id, json.dumps(path, ensure_ascii=False, separators=(",", ":"))]


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()
