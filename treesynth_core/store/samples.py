"""Synthesized (or imported) samples as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ProjectError

#: The sample set leaf synthesis writes to. Other sets (a flat baseline, an imported dataset, a
#: rebalanced copy) live beside it in the same table under their own names.
TREE_SET = "tree"
#: The sample set of the flat baseline (the paper's "Temp" sampling from the task alone).
BASELINE_SET = "baseline"
#: The sets no dataset (an import, a rebalanced copy) may take, with what writes each.
RESERVED_SETS: dict[str, str] = {TREE_SET: "leaf synthesis", BASELINE_SET: "the flat baseline"}
#: An import is staged under this prefix until it commits, so a name may not start with it.
STAGING_PREFIX = "~importing:"


def dataset_set_problem(name: str) -> str | None:
    """Why ``name`` cannot name a dataset's sample set (an import or a rebalanced copy); None when it can.

    The one place the naming rules live: the store enforces them (:func:`check_dataset_set`), the app
    only shows them.
    """
    if not name.strip():
        return "give the new sample set a name"
    if name in RESERVED_SETS:
        return f"{name!r} is reserved for {RESERVED_SETS[name]}: choose another name"
    if name.startswith(STAGING_PREFIX):
        return f"{name!r} starts with {STAGING_PREFIX!r}, which marks an import still running: choose another name"
    return None


def check_dataset_set(name: str) -> None:
    """Refuse a name no dataset may take, with a one-line :class:`ProjectError` saying why."""
    problem = dataset_set_problem(name)
    if problem is not None:
        raise ProjectError(f"a dataset needs its own sample set name: {problem}")


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


class SamplesAdded(int):
    """How many samples a store call added, with ``dropped``: the samples of the tree set it did not
    store because their leaf was pruned or deleted while the run was making them."""

    dropped: int

    def __new__(cls, added: int, dropped: int = 0) -> SamplesAdded:
        value = super().__new__(cls, added)
        value.dropped = dropped
        return value


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
