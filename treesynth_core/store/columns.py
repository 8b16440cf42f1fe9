"""Samples as columns (numpy arrays): what a map of a million samples reads without an object per
sample. Imported only by those who read columns (numpy stays out of the command line's start)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class SampleOrigin(NamedTuple):
    """What the samples of one :class:`SampleColumns` origin share."""

    sample_set: str
    leaf_id: str
    #: The path written into their prompts, as stored: ``[{"criterion": ..., "value": ...}, ...]``.
    path: list[dict[str, str]]


@dataclass(frozen=True, eq=False)
class SampleColumns:
    """Samples as columns, without a Python object per sample: their row ids, ascending, and for
    each the row of its (sample set, leaf, path) in ``origins``."""

    ids: np.ndarray  # (n,) int64, ascending
    origin: np.ndarray  # (n,) int64: rows of origins
    origins: tuple[SampleOrigin, ...]

    @classmethod
    def from_groups(cls, groups: Sequence[tuple[str, str, str, str]]) -> SampleColumns:
        """From rows ``(sample_set, leaf_id, path JSON, "id,id,...")``, one per origin (SQL's
        ``GROUP BY`` with ``group_concat(id)``)."""
        parts = [np.fromstring(ids, dtype=np.int64, sep=",") for *_, ids in groups]
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        origin = np.repeat(np.arange(len(parts), dtype=np.int64), [part.size for part in parts])
        order = np.argsort(ids, kind="stable")
        origins = tuple(SampleOrigin(sample_set, leaf, json.loads(path)) for sample_set, leaf, path, _ in groups)
        sorted_ids, sorted_origin = ids[order], origin[order]
        sorted_ids.flags.writeable = sorted_origin.flags.writeable = False  # shared by every reader of the memo
        return cls(ids=sorted_ids, origin=sorted_origin, origins=origins)

    def __len__(self) -> int:
        return int(self.ids.size)

    def rows_of(self, sample_ids: np.ndarray) -> np.ndarray:
        """The row of each of ``sample_ids`` (-1 for an id not among these samples)."""
        wanted = np.asarray(sample_ids, dtype=np.int64)
        rows = np.searchsorted(self.ids, wanted)
        found = rows < self.ids.size
        found[found] = self.ids[rows[found]] == wanted[found]
        return np.where(found, rows, -1)
