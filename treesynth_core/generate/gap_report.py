"""What gap filling (:func:`~treesynth_core.generate.gaps.fill_gaps`) reports, per run and per round,
and its JSON form (the project keeps the last run's report for the app and the dataset card).

No numpy here: the CLI and the app read a stored report without loading the clustering code.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .shortfall import Shortfall

#: The blob under which the project keeps the last gap-filling report (:func:`report_json`).
LAST_REPORT_KEY = "fill-gaps:last-report"


@dataclass
class GapRound:
    """One round of :func:`fill_gaps`: candidates generated, verified and rejected by the vote (0
    without ``verify``), and kept (in a sparse cluster, new, stored).

    ``verified_by_leaf`` and ``rejected_by_leaf`` split the vote by the candidates' leaf.
    ``cluster_sizes`` is the histogram of the pool's clusters this round: ``(size, clusters of that
    size)`` pairs by ascending size; ``sparse`` of the ``clusters`` counted as sparse."""

    round: int
    candidates: int
    verified: int
    rejected: int
    kept: int
    verified_by_leaf: dict[str, int] = field(default_factory=dict)
    rejected_by_leaf: dict[str, int] = field(default_factory=dict)
    clusters: int = 0
    sparse: int = 0
    cluster_sizes: list[tuple[int, int]] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        return self.kept / self.candidates if self.candidates else 0.0


@dataclass(frozen=True)
class CurvePoint:
    """The pool's diversity after a round (the first point, numbered one below the run's first round:
    before the run) at its size ``n``: Vendi of the
    pool as kept (``kept``) and of a pool that kept the same number of each round's candidates at
    random instead (``random``, the random-acceptance baseline; seeded)."""

    round: int
    n: int
    kept: float
    random: float


@dataclass
class GapReport:
    """What :func:`fill_gaps` did. ``before`` and ``after`` are Vendi scores of the features (G-Vendi
    for gradient features) of the pool before the run and after it, both at ``n`` samples.
    ``curve`` is the Vendi-vs-n curve of the pool against the random-acceptance baseline."""

    rounds: int
    candidates: int
    accepted: int
    acceptance_rate: float
    before: float
    after: float
    n: int
    space: str
    #: With ``verify``: candidates whose draws agreed on a final answer, and those rejected (by reason).
    verified: int = 0
    rejected: int = 0
    rejected_reasons: dict[str, int] = field(default_factory=dict)
    #: Each round's numbers, in order.
    per_round: list[GapRound] = field(default_factory=list)
    failed_calls: int = 0
    duplicates: int = 0
    #: Accepted samples not stored because their leaf was pruned or deleted during the run.
    dropped_pruned: int = 0
    #: Calls made for candidates (``failed_calls`` of them got no usable reply), and why the last
    #: of those failed.
    calls: int = 0
    last_problem: str = ""
    curve: list[CurvePoint] = field(default_factory=list)
    #: The options that shape the report: draws per verified candidate (0: off), the answer
    #: extractor, and where the few-shot examples came from.
    verify: int = 0
    answer: str = ""
    shots_from: str = ""

    def shortfall(self) -> Shortfall | None:
        """The candidate calls that got no usable reply (None when every call got one)."""
        if not self.failed_calls:
            return None
        return Shortfall(
            "gap-filling calls answered",
            self.calls - self.failed_calls,
            self.calls,
            "calls",
            self.failed_calls,
            self.last_problem,
            "run fill-gaps again",
        )

    def point(self, round_number: int) -> CurvePoint | None:
        """The curve's point after round ``round_number`` (None when the curve has none)."""
        return next((p for p in self.curve if p.round == round_number), None)

    def rejected_by_leaf(self) -> dict[str, int]:
        """Candidates rejected by the vote per leaf, over all rounds."""
        return _sum_by_leaf(r.rejected_by_leaf for r in self.per_round)

    def verified_by_leaf(self) -> dict[str, int]:
        """Candidates verified by the vote per leaf, over all rounds."""
        return _sum_by_leaf(r.verified_by_leaf for r in self.per_round)


def _sum_by_leaf(parts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for leaf, n in part.items():
            total[leaf] = total.get(leaf, 0) + n
    return total


def report_data(report: GapReport) -> dict[str, Any]:
    """The report as plain data (for ``--json``): each round gains its acceptance rate."""
    data = dataclasses.asdict(report)
    for row, r in zip(data["per_round"], report.per_round, strict=True):
        row["acceptance_rate"] = r.acceptance_rate
        row["cluster_sizes"] = [list(pair) for pair in r.cluster_sizes]
    return data


def report_json(report: GapReport) -> str:
    """The report as JSON (:func:`report_from_json` reads it back)."""
    return json.dumps(report_data(report))


def report_from_json(text: str | bytes) -> GapReport:
    """A report written by :func:`report_json` (fields it does not know are ignored, missing ones
    take their defaults, so reports of older versions still read)."""
    data = json.loads(text)
    rounds = [
        GapRound(
            **{
                **_known(GapRound, row),
                "cluster_sizes": [(int(size), int(n)) for size, n in row.get("cluster_sizes", [])],
            }
        )
        for row in data.get("per_round", [])
    ]
    curve = [CurvePoint(**_known(CurvePoint, point)) for point in data.get("curve", [])]
    return GapReport(**{**_known(GapReport, data), "per_round": rounds, "curve": curve})


def _known(cls: Any, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def last_report(project: Any) -> GapReport | None:
    """The project's last gap-filling report, or None (no run yet, or an unreadable one)."""
    blob = project.get_blob(LAST_REPORT_KEY)
    if blob is None:
        return None
    try:
        return report_from_json(blob)
    except (ValueError, TypeError, KeyError):
        return None
