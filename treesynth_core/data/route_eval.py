"""Judging a router on a labelled set: samples whose true leaf is known.

A labelled set is JSONL, one ``{"text": ..., "leaf_path": [value, value, ...]}`` per line (the values
from the root down to the sample's leaf). :func:`score_routes` compares a router's routes with the
labels — accuracy at the leaf and at the first level, and how many it left in no leaf — and
:func:`majority_baseline` is the bar a router must clear: always answering the most common leaf.
``benchmarks/routing_accuracy.py`` runs this over the routers.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..store.samples import Route
from ..tree import model as T


@dataclass(frozen=True)
class LabelledSample:
    """A sample and the values of its true root-to-leaf path."""

    text: str
    leaf_path: tuple[str, ...]


@dataclass(frozen=True)
class RouterScore:
    """How a router did on a labelled set (rates in 0..1)."""

    router: str
    n: int
    leaf_accuracy: float
    first_level_accuracy: float
    none_fits: int
    errors: int


def read_labelled(path: str | Path) -> list[LabelledSample]:
    """The labelled samples of a JSONL file (``text`` and ``leaf_path`` per line)."""
    out: list[LabelledSample] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, values = row["text"], row["leaf_path"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{path}:{number}: a labelled sample needs text and leaf_path ({exc})") from None
        if not isinstance(text, str) or not isinstance(values, list) or not values:
            raise DataError(f"{path}:{number}: text must be a string and leaf_path a non-empty list of values")
        out.append(LabelledSample(text, tuple(str(v) for v in values)))
    return out


def leaf_for(tree: T.Tree, values: Sequence[str]) -> str:
    """The id of the leaf reached by following ``values`` from the root (compared as labels)."""
    node = tree.root
    for value in values:
        kids = {T.normalize(k.value or ""): k for k in tree.children(node.id, include_pruned=False)}
        kid = kids.get(T.normalize(value))
        if kid is None:
            where = " / ".join(values[: values.index(value)]) or "the root"
            raise DataError(f"no value {value!r} under {where}")
        node = kid
    if tree.children(node.id, include_pruned=False):
        raise DataError(f"{' / '.join(values)} is not a leaf")
    return node.id


def accuracy(predicted: Sequence[Hashable | None], truth: Sequence[Hashable]) -> float:
    """The share of ``predicted`` equal to ``truth``, position by position (``None``: no answer)."""
    if len(predicted) != len(truth):
        raise ValueError("accuracy needs one prediction per label")
    if not truth:
        return 0.0
    return sum(1 for p, t in zip(predicted, truth, strict=True) if p is not None and p == t) / len(truth)


def majority_baseline(truth: Sequence[Hashable]) -> float:
    """The accuracy of always answering the most common label."""
    if not truth:
        return 0.0
    return Counter(truth).most_common(1)[0][1] / len(truth)


def agreement_rate(a: Sequence[Hashable | None], b: Sequence[Hashable | None]) -> float:
    """The share of positions where two routers gave the same answer (both "no leaf" counts as the same)."""
    if len(a) != len(b):
        raise ValueError("agreement needs the two routers' answers for the same samples")
    if not a:
        return 0.0
    return sum(1 for x, y in zip(a, b, strict=True) if x == y) / len(a)


def score_routes(tree: T.Tree, routes: Sequence[Route], labelled: Sequence[LabelledSample]) -> RouterScore:
    """Score routes (one per labelled sample, in the same order) against the labels."""
    if len(routes) != len(labelled):
        raise ValueError("score_routes needs one route per labelled sample")
    truth = [leaf_for(tree, s.leaf_path) for s in labelled]
    predicted = [r.leaf_id if r.status == "leaf" else None for r in routes]
    first_truth = [T.normalize(s.leaf_path[0]) for s in labelled]
    first_predicted = [T.normalize(r.path[0]["value"]) if r.path else None for r in routes]
    status = Counter(r.status for r in routes)
    return RouterScore(
        router=routes[0].router if routes else "",
        n=len(routes),
        leaf_accuracy=accuracy(predicted, truth),
        first_level_accuracy=accuracy(first_predicted, first_truth),
        none_fits=status.get("none", 0),
        errors=status.get("error", 0),
    )
