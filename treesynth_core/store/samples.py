"""Synthesized (or imported) samples as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The sample set leaf synthesis writes to. Other sets (a flat baseline, an imported dataset, a
#: rebalanced copy) live beside it in the same table under their own names.
TREE_SET = "tree"
#: The sample set of the flat baseline (the paper's "Temp" sampling from the task alone).
BASELINE_SET = "baseline"


@dataclass(frozen=True)
class NewSample:
    """A sample about to be stored.

    ``key`` makes the insert idempotent: the same (sample_set, leaf_id, key) is stored once, so a
    rerun after Ctrl-C adds no duplicates. Synthesis uses ``"<call index>:<item index>"``.
    """

    leaf_id: str
    key: str
    instruction: str
    path: list[dict[str, str]]
    response: str | None = None
    model: str | None = None
    call_id: str | None = None
    response_call_id: str | None = None
    sample_set: str = TREE_SET
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample(NewSample):
    """A stored sample, with its row id and creation time (UTC ISO 8601)."""

    id: int = 0
    created: str = ""


#: The ``leaf_id`` of an imported sample no router has placed yet (or that fits no leaf).
UNROUTED = ""


@dataclass(frozen=True)
class Route:
    """Where one router sent one sample.

    ``status`` is ``"leaf"`` (``leaf_id`` names the leaf) or ``"none"``: at node ``stopped_at``
    none of the criterion's values fitted, which is counted and shown, never dropped. ``path`` is
    the root-to-``stopped_at`` path of (criterion, value) pairs taken.
    """

    sample_id: int
    router: str
    status: str
    stopped_at: str
    leaf_id: str | None = None
    path: list[dict[str, str]] = field(default_factory=list)
    detail: str = ""
    tree_digest: str = ""
