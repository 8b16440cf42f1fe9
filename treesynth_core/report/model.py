"""What the stakeholder report shows, as plain typed values (no I/O): :func:`.collect.collect_report`
fills a :class:`Report` from a project, :func:`.render.render_html` draws it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: Samples shown per leaf, by default.
SAMPLES_PER_LEAF = 3


@dataclass(frozen=True)
class ReportNode:
    """One node of the tree, with the samples of the tree set at or below it."""

    id: str
    parent_id: str | None
    depth: int
    #: The criterion whose value this node is (``None`` for the root).
    criterion: str | None
    #: The node's text: its value, or the task for the root.
    label: str
    #: ``root``, ``approved``, ``proposed`` or ``pruned`` (pruned: itself or an ancestor).
    status: str
    #: Samples of the tree set in this node's subtree.
    samples: int
    is_leaf: bool


@dataclass(frozen=True)
class ScoreRow:
    """One figure of the score card: the tree's value, the flat baseline's (when there is one)."""

    name: str
    tree: float | None
    baseline: float | None
    higher_is_better: bool = True

    @property
    def gain(self) -> float | None:
        if self.tree is None or self.baseline is None:
            return None
        return self.tree - self.baseline


@dataclass(frozen=True)
class CurvePoint:
    n: int
    vendi: float | None


@dataclass(frozen=True)
class Scores:
    """The score card: every figure at one equal ``n``, and Vendi against n per sample set."""

    n: int
    embedder: str
    rows: tuple[ScoreRow, ...]
    curves: dict[str, tuple[CurvePoint, ...]]
    notes: tuple[str, ...]
    has_baseline: bool


@dataclass(frozen=True)
class MapDot:
    """One sample on the coverage map."""

    x: float
    y: float
    #: The colour group: the first value of the sample's path, or the flat baseline.
    group: str
    #: Hover text: the path and the start of the instruction.
    text: str


@dataclass(frozen=True)
class SampleText:
    instruction: str
    response: str


@dataclass(frozen=True)
class LeafSamples:
    """A leaf, how many samples it has, and the first few of them."""

    leaf_id: str
    path: str
    count: int
    samples: tuple[SampleText, ...]


@dataclass(frozen=True)
class SetSummary:
    """An imported or rebalanced sample set: how many of its samples are routed to a leaf, and where
    its rows came from."""

    name: str
    total: int
    routed: int
    unrouted: int
    original: int
    synthesized: int
    leaves: int


@dataclass(frozen=True)
class Report:
    name: str
    task: str
    style: str
    created: str
    nodes: tuple[ReportNode, ...]
    samples: int
    baseline_samples: int
    scores: Scores | None
    #: Why there is no score card (or a caveat about it); empty when there is nothing to say.
    scores_note: str
    map_dots: tuple[MapDot, ...]
    map_note: str
    leaves: tuple[LeafSamples, ...]
    sets: tuple[SetSummary, ...]
    #: The dataset card (markdown, as an export writes it).
    card: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def leaf_count(self) -> int:
        return sum(1 for node in self.nodes if node.is_leaf and node.status != "pruned")
