"""Exact and near-duplicate texts within a leaf: what leaf synthesis, the flat baseline, rebalancing
and gap filling drop.

Two texts are exact duplicates when they are equal with case, punctuation and whitespace ignored
(:func:`text_key`), near duplicates when their character 5-gram sets (:func:`shingles`) have a
Jaccard similarity at or above a threshold (``SynthOptions.near_duplicate``, 0.85 by default).
"""

from __future__ import annotations

import math
import re
from collections import Counter
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
    common = len(a & b)
    return common / (len(a) + len(b) - common)


#: The filter re-ranks shingles (by how many texts hold them) when it holds this many texts, then each
#: time it has grown by :data:`RERANK_GROWTH`.
RERANK_FIRST = 8
RERANK_GROWTH = 4


class DuplicateFilter:
    """Remembers a leaf's texts; ``admit`` says whether a new text is neither an exact nor a
    near duplicate (character 5-gram Jaccard >= threshold) of any text seen so far.

    Exactly the answer of comparing the new text with every text seen, without doing so (prefix
    filtering, as in exact set-similarity joins): shingles are ranked, rarest first, and two sets with
    Jaccard >= t share a shingle among the first ``|s| - ceil(t |s|) + 1`` of each. So each text is
    indexed under those few rare shingles (with every shingle new since the last ranking, which are
    the rarest of all), and a new text is compared only with the texts indexed under its own, of a
    size Jaccard >= t allows, that hold enough of its rare shingles. ``comparisons`` counts the exact
    Jaccards computed: on varied texts a few percent of the n²/2 pairs of a leaf of n (texts made
    from a small vocabulary share even their rarest shingles, so the share grows slowly with n).
    """

    def __init__(self, threshold: float, seen: Iterable[str] = ()) -> None:
        self.threshold = threshold
        self.keys: set[str] = set()
        self.comparisons = 0
        self._sets: list[frozenset[str]] = []
        self._rank: dict[str, int] = {}
        self._index: dict[str, list[int]] = {}
        self._rerank_at = RERANK_FIRST
        for text in seen:
            grams = shingles(text)
            self._add(text_key(text), grams, self._signature(grams))

    def _signature(self, grams: frozenset[str]) -> list[str]:
        """The shingles a set is indexed (and looked up) under: its prefix in the ranking, where the
        shingles the ranking has not seen come first (all of them: a superset of the prefix is safe)."""
        size = len(grams)
        prefix = size - math.ceil(self.threshold * size - 1e-9) + 1
        rank = self._rank
        unseen = [g for g in grams if g not in rank]
        if len(unseen) >= prefix:
            return unseen
        ranked = sorted((g for g in grams if g in rank), key=rank.__getitem__)
        return unseen + ranked[: prefix - len(unseen)]

    def _add(self, key: str, grams: frozenset[str], signature: list[str]) -> None:
        self.keys.add(key)
        self._sets.append(grams)
        if len(self._sets) >= self._rerank_at:
            self._rerank()
            return
        number = len(self._sets) - 1
        for gram in signature:
            self._index.setdefault(gram, []).append(number)

    def _rerank(self) -> None:
        """Rank every shingle by how many texts hold it (rarest first) and index every text again."""
        held = Counter(g for grams in self._sets for g in grams)
        self._rank = {g: i for i, g in enumerate(sorted(held, key=lambda g: (held[g], g)))}
        self._index = {}
        for number, grams in enumerate(self._sets):
            for gram in self._signature(grams):
                self._index.setdefault(gram, []).append(number)
        self._rerank_at = len(self._sets) * RERANK_GROWTH

    def admit(self, text: str) -> bool:
        key = text_key(text)
        if not key or key in self.keys:
            return False
        grams = shingles(text)
        signature = self._signature(grams)
        if self.threshold <= 0:  # every pair is that similar
            if self._sets:
                return False
        else:
            size, t = len(grams), self.threshold
            low, high = t * size - 1e-9, size / t + 1e-9
            rare = frozenset(signature)
            for number in {n for gram in signature for n in self._index.get(gram, ())}:
                other = self._sets[number]
                if not low <= len(other) <= high:
                    continue
                # Jaccard >= t needs |A & B| >= t (|A| + |B|) / (1 + t): B may lack only so many of A's shingles
                may_lack = size - math.ceil(t * (size + len(other)) / (1 + t) - 1e-9)
                if len(rare - other) > may_lack:
                    continue
                self.comparisons += 1
                if jaccard(grams, other) >= t:
                    return False
        self._add(key, grams, signature)
        return True
