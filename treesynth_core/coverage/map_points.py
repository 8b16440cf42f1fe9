"""A map's points as columns: a million points are a few arrays, not a million objects.

:class:`MapPoints` holds one array per field (sample id, x, y, and the row of each point's
:class:`Origin`: its leaf, path and sample set, shared by every sample with the same ones); the
samples' texts are looked up only for the points that are drawn or listed. :class:`MapPoint` is one
point as a plain value, for the few a selection lists (and for small maps made by hand).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..store.columns import SampleOrigin
from ..store.samples import TREE_SET

#: The leaf label of a flat-baseline point (a sample made without the tree).
BASELINE_LABEL = "flat baseline"

#: Sample ids -> their texts, in order (the store's instructions, or a table held in memory).
TextLookup = Callable[[np.ndarray], list[str]]


@dataclass(frozen=True)
class Origin:
    """What the points of one origin share: leaf, label, path, criteria and sample set."""

    leaf_id: str
    #: The leaf's place in the tree, e.g. "addition > fruit" (the flat baseline's is its own label).
    leaf_label: str
    #: The path written into the samples' prompts (a sampled node shows the value drawn).
    path: str
    criteria: Mapping[str, str]
    sample_set: str

    @property
    def flat(self) -> bool:
        """A flat-baseline-like point: outside the tree's set, with no path."""
        return self.sample_set != TREE_SET and not self.criteria


@dataclass(frozen=True)
class MapPoint:
    """One sample on a map: where it lies and what it is."""

    sample_id: int
    x: float
    y: float
    leaf_id: str
    leaf_label: str
    path: str
    criteria: dict[str, str] = field(default_factory=dict)
    sample_set: str = TREE_SET
    text: str = ""


def origins_of(origins: Sequence[SampleOrigin], labels: Mapping[str, str]) -> tuple[Origin, ...]:
    """The map origins of the store's sample ``origins`` (:attr:`SampleColumns.origins
    <treesynth_core.store.columns.SampleColumns.origins>`); ``labels`` gives each leaf's label."""
    out = []
    for sample_set, leaf_id, path in origins:
        steps = [(str(p.get("criterion", "")), str(p.get("value", ""))) for p in path]
        flat = sample_set != TREE_SET and not steps
        out.append(
            Origin(
                leaf_id=leaf_id,
                leaf_label=BASELINE_LABEL if flat else labels.get(leaf_id, leaf_id),
                path=" > ".join(v for _, v in steps),
                criteria=dict(steps),
                sample_set=sample_set,
            )
        )
    return tuple(out)


@dataclass(frozen=True, eq=False)
class MapPoints:
    """The points of a map, one array per field (row i: one sample).

    ``origin[i]`` is the row of point i's :class:`Origin` in ``origins``; ``texts`` looks up the
    samples' texts by id (called for the points drawn or listed, never for all of a big map).
    """

    sample_id: np.ndarray  # (n,) int64
    x: np.ndarray  # (n,) float64
    y: np.ndarray  # (n,) float64
    origin: np.ndarray  # (n,) int64
    origins: tuple[Origin, ...]
    texts: TextLookup

    def __len__(self) -> int:
        return int(self.sample_id.size)

    @classmethod
    def from_points(cls, points: Sequence[MapPoint]) -> MapPoints:
        """Columns of a few :class:`MapPoint` (texts held in memory)."""
        keys: dict[tuple[str, str, str, tuple[tuple[str, str], ...], str], int] = {}
        codes = []
        for p in points:
            key = (p.leaf_id, p.leaf_label, p.path, tuple(p.criteria.items()), p.sample_set)
            codes.append(keys.setdefault(key, len(keys)))
        origins = tuple(Origin(leaf, label, path, dict(criteria), sset) for leaf, label, path, criteria, sset in keys)
        texts = {p.sample_id: p.text for p in points}
        return cls(
            sample_id=np.array([p.sample_id for p in points], dtype=np.int64),
            x=np.array([p.x for p in points], dtype=np.float64),
            y=np.array([p.y for p in points], dtype=np.float64),
            origin=np.array(codes, dtype=np.int64),
            origins=origins,
            texts=lambda ids: [texts.get(int(i), "") for i in ids],
        )

    def take(self, rows: np.ndarray) -> MapPoints:
        """The points at ``rows`` (indices, in that order, or a boolean mask)."""
        return MapPoints(self.sample_id[rows], self.x[rows], self.y[rows], self.origin[rows], self.origins, self.texts)

    def where(self, keep: Callable[[Origin], bool]) -> np.ndarray:
        """A boolean mask of the points whose origin ``keep`` accepts (one call per origin)."""
        accepted = np.fromiter((keep(o) for o in self.origins), dtype=bool, count=len(self.origins))
        return accepted[self.origin] if accepted.size else np.zeros(len(self), dtype=bool)

    def column(self, name: str) -> np.ndarray:
        """One field of the points' origins, per point (an object array of shared values), e.g. ``leaf_id``."""
        values = np.empty(len(self.origins), dtype=object)
        values[:] = [getattr(o, name) for o in self.origins]
        return values[self.origin]

    def present(self) -> list[Origin]:
        """The origins of these points, in order of first appearance."""
        codes, first = np.unique(self.origin, return_index=True)
        return [self.origins[int(c)] for c in codes[np.argsort(first, kind="stable")]]

    def text(self) -> list[str]:
        """The texts of these points, in order (looked up: call it on the few drawn or listed)."""
        return self.texts(self.sample_id) if len(self) else []

    def records(self) -> list[MapPoint]:
        """One :class:`MapPoint` per point (texts included): for the few a selection lists."""
        out = []
        for sample_id, x, y, code, text in zip(self.sample_id, self.x, self.y, self.origin, self.text(), strict=True):
            o = self.origins[int(code)]
            out.append(
                MapPoint(
                    sample_id=int(sample_id),
                    x=float(x),
                    y=float(y),
                    leaf_id=o.leaf_id,
                    leaf_label=o.leaf_label,
                    path=o.path,
                    criteria=dict(o.criteria),
                    sample_set=o.sample_set,
                    text=text,
                )
            )
        return out

    def rows_of(self, sample_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The rows of those of ``sample_ids`` on the map, in their order (ids not on it are left out)."""
        wanted = np.asarray(sample_ids, dtype=np.int64).reshape(-1)
        order = np.argsort(self.sample_id, kind="stable")
        at = np.searchsorted(self.sample_id[order], wanted)
        at = np.minimum(at, max(len(self) - 1, 0))
        found = (self.sample_id[order][at] == wanted) if len(self) else np.zeros(wanted.size, dtype=bool)
        return order[at[found]]
