"""How often verification's majority vote agreed, per leaf, kept in the project.

Every synthesis or gap-filling run with ``verify`` adds its per-leaf counts (questions whose draws
agreed on a final answer, and those rejected) to the project's totals, so the app can show each
leaf's agreement rate and the dataset card can state it. The totals live in one blob
(:data:`AGREEMENT_KEY`); only one writing job runs on a project at a time (the run lease).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: The blob of the per-leaf totals: ``{leaf_id: [verified, rejected]}``.
AGREEMENT_KEY = "verify:leaves"


class BlobStore(Protocol):
    def get_blob(self, key: str) -> bytes | None: ...

    def put_blob(self, key: str, data: bytes) -> None: ...


@dataclass(frozen=True)
class LeafAgreement:
    """One leaf's votes: questions verified (a strict majority agreed) and rejected."""

    verified: int = 0
    rejected: int = 0

    @property
    def votes(self) -> int:
        return self.verified + self.rejected

    @property
    def rate(self) -> float:
        """The share of votes that agreed (0.0 without votes)."""
        return self.verified / self.votes if self.votes else 0.0


def leaf_agreement(project: BlobStore) -> dict[str, LeafAgreement]:
    """The project's per-leaf totals (empty when no run verified answers)."""
    blob = project.get_blob(AGREEMENT_KEY)
    if blob is None:
        return {}
    try:
        data = json.loads(blob)
        return {str(leaf): LeafAgreement(int(v), int(r)) for leaf, (v, r) in data.items()}
    except (ValueError, TypeError):
        return {}


def record_agreement(project: BlobStore, counts: Mapping[str, Any]) -> dict[str, LeafAgreement]:
    """Add one run's per-leaf counts (anything with ``verified`` and ``rejected``, e.g.
    :class:`~treesynth_core.generate.verify.VerifyCounts`) to the project's totals; the new totals."""
    totals = leaf_agreement(project)
    for leaf, c in counts.items():
        if c.verified or c.rejected:
            old = totals.get(leaf, LeafAgreement())
            totals[leaf] = LeafAgreement(old.verified + c.verified, old.rejected + c.rejected)
    if counts:
        data = {leaf: [a.verified, a.rejected] for leaf, a in sorted(totals.items())}
        project.put_blob(AGREEMENT_KEY, json.dumps(data).encode())
    return totals


def total_agreement(totals: Mapping[str, LeafAgreement]) -> LeafAgreement:
    """All leaves' votes together."""
    return LeafAgreement(sum(a.verified for a in totals.values()), sum(a.rejected for a in totals.values()))
