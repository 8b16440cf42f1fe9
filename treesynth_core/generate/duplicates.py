"""Exact and near-duplicate texts within a leaf: what leaf synthesis, the flat baseline, rebalancing
and gap filling drop.

Two texts are exact duplicates when they are equal with case, punctuation and whitespace ignored
(:func:`text_key`), near duplicates when their character 5-gram sets (:func:`shingles`) have a
Jaccard similarity at or above a threshold (``SynthOptions.near_duplicate``, 0.85 by default).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WS = re.compile(r"\s+")
_NONWORD = re.compile(r"[^\w\s]")


def text_key(text: str) -> str:
    """Exact-duplicate key: case, punctuation and whitespace ignored."""
    return _WS.sub(" ", _NONWORD.sub(" ", text.casefold())).strip()


def shingles(text: str, k: int = 5) -> frozenset[str]:
    key = text_key(text)
    if len(key) <= k:
        return frozenset([key])
    return frozenset(key[i : i + k] for i in range(len(key) - k + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class DuplicateFilter:
    """Remembers a leaf's texts; ``admit`` says whether a new text is neither an exact nor a
    near duplicate (character 5-gram Jaccard >= threshold) of any text seen so far."""

    def __init__(self, threshold: float, seen: Iterable[str] = ()) -> None:
        self.threshold = threshold
        self.keys: set[str] = set()
        self.sets: list[frozenset[str]] = []
        for text in seen:
            self._add(text)

    def _add(self, text: str) -> None:
        self.keys.add(text_key(text))
        self.sets.append(shingles(text))

    def admit(self, text: str) -> bool:
        key = text_key(text)
        if not key or key in self.keys:
            return False
        grams = shingles(text)
        if any(jaccard(grams, other) >= self.threshold for other in self.sets):
            return False
        self._add(text)
        return True
