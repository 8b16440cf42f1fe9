"""Exact and near-duplicate texts within a leaf: what leaf synthesis, the flat baseline, rebalancing
and gap filling drop.

Two texts are exact duplicates when they are equal with case, punctuation and whitespace ignored
(:func:`text_key`), near duplicates when their character 5-gram sets (:func:`shingles`) have a
Jaccard similarity at or above a threshold (``SynthOptions.near_duplicate``, 0.85 by default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

import math
import re
from array import array
from collections.abc import Iterable

_WS = re.compile(r"\s+")
_NONWORD = re.compile(r"[^\w\s]")


def text_key(text: str) -> str:
    """Exact-duplicate key: case, punctuation and whitespace ignored."""
    return _WS.sub(" ", _NONWORD.sub(" ", text.casefold())).strip()


def shingles(text: str, k: int = 5) -> frozenset[str]:
    return key_shingles(text_key(text), k)


def key_shingles(key: str, k: int = 5) -> frozenset[str]:
    """:func:`shingles` of a text whose :func:`text_key` is ``key``."""
    if len(key) <= k:
        return frozenset([key])
    return frozenset([key[i : i + k] for i in range(len(key) - k + 1)])


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


#: The filter re-ranks shingles (by how many texts hold them) when it holds this many texts, then each
#: time it has grown by :data:`RERANK_GROWTH`.
RERANK_FIRST = 8
RERANK_GROWTH = 4
#: Each text is indexed (and looks up) this many shingles beyond its prefix.
EXTRA = 4


def _room(values: np.ndarray, size: int) -> np.ndarray:
    """``values`` with room for at least ``size`` items (doubling, so appends are amortized O(1))."""
    import numpy as np  # lazily: the CLI starts without numpy

    if len(values) >= size:
        return values
    grown = np.zeros(max(size, 2 * len(values)), values.dtype)
    grown[: len(values)] = values
    return grown


class DuplicateFilter:
    """Remembers a leaf's texts; ``admit`` says whether a new text is neither an exact nor a
    near duplicate (character 5-gram Jaccard >= threshold) of any text seen so far.

    Exactly the answer of comparing the new text with every text seen, without doing so (prefix
    filtering with the positional filter, as in the exact set-similarity joins AllPairs and PPJoin).
    Shingles are integer ids in one global order: the rarest first (ranked by how many texts hold
    them, again each time the filter has grown by :data:`RERANK_GROWTH`), those new since the last
    ranking before all of them. Two sets with Jaccard >= t share a shingle among the first
    ``|s| - ceil(t |s|) + 1`` of each (the prefix), so each text is indexed under its prefix and
    :data:`EXTRA` more shingles, with the position of each, and a new text looks up as many of its
    own. A text found there is dropped without looking at its shingles when its size rules Jaccard
    >= t out, or when the shingles the two looked-up parts share, plus the most that can follow the
    last of them (those lie all beyond the indexed part of one text or all beyond that of the
    other: the order is one order), fall short of the overlap Jaccard >= t needs. The rest are
    compared exactly (the overlap counted in numpy over the stored ids); ``comparisons`` counts them.

    On templated text (a narrow leaf) even the rarest shingles recur, so the texts found grow with
    the leaf (the entries looked up grow about as n^2), but they are counted in numpy and
    almost none needs an exact comparison: ~0.3 ms a text at 18,000 ``coding_replies`` texts of one
    leaf, against ~0.04 ms to merely compute the shingles (``benchmarks/duplicates.py``).
    """

    def __init__(self, threshold: float, seen: Iterable[str] = ()) -> None:
        import numpy as np  # lazily: the CLI starts without numpy

        self.threshold = threshold
        self.keys: set[str] = set()
        self.comparisons = 0
        self._ids: dict[str, int] = {}
        #: token id -> its place in the global order (ranked: 0, 1, ...; new since: -1, -2, ...)
        self._order = np.zeros(1024, np.int64)
        self._next_new = -1
        #: every text's token ids in the global order, one text after another
        self._tokens = np.zeros(1 << 12, np.int32)
        self._used = 0
        self._starts = np.zeros(1024, np.int64)
        self._sizes = np.zeros(1024, np.int64)
        #: text number -> how many of its tokens lie beyond those it is indexed under
        self._rest = np.zeros(1024, np.int64)
        self._largest = 0
        self._count = 0
        #: token id -> (text number, position in its prefix) pairs, flat
        self._postings: list[array[int]] = []
        self._mask = np.zeros(1024, bool)
        self._rerank_at = RERANK_FIRST
        for text in seen:
            key = text_key(text)
            self._add(key, self._token_ids(key))

    def __len__(self) -> int:
        return self._count

    def _prefix(self, size: int) -> int:
        """How many of a text's first tokens are indexed and looked up: its prefix and :data:`EXTRA` more."""
        prefix = size - math.ceil(self.threshold * size - 1e-9) + 1
        return max(0, min(size, prefix + EXTRA)) if prefix > 0 else 0

    def _prefixes(self, sizes: np.ndarray) -> np.ndarray:
        """:meth:`_prefix` of each size (the same float arithmetic, in numpy)."""
        import numpy as np  # lazily: the CLI starts without numpy

        prefix = sizes - np.ceil(self.threshold * sizes - 1e-9).astype(np.int64) + 1
        return np.where(prefix > 0, np.clip(prefix + EXTRA, 0, sizes), 0)

    def _token_ids(self, key: str) -> np.ndarray:
        """The shingles of a text (of this :func:`text_key`) as token ids, in the global order (new
        shingles get ids and places)."""
        import numpy as np  # lazily: the CLI starts without numpy

        ids = self._ids
        known = len(ids)
        add = ids.setdefault
        tokens = np.array([add(g, len(ids)) for g in key_shingles(key)], np.int32)
        if len(ids) > known:
            fresh = len(ids) - known
            self._order = _room(self._order, len(ids))
            self._order[known : len(ids)] = np.arange(self._next_new, self._next_new - fresh, -1)
            self._next_new -= fresh
            self._postings.extend(array("i") for _ in range(fresh))
        return tokens[np.argsort(self._order[tokens])]

    def _add(self, key: str, tokens: np.ndarray) -> None:

        self.keys.add(key)
        number, size = self._count, len(tokens)
        self._tokens = _room(self._tokens, self._used + size)
        self._tokens[self._used : self._used + size] = tokens
        self._starts, self._sizes = _room(self._starts, number + 1), _room(self._sizes, number + 1)
        self._rest = _room(self._rest, number + 1)
        indexed = self._prefix(size)
        self._starts[number], self._sizes[number], self._rest[number] = self._used, size, size - indexed
        self._largest = max(self._largest, size)
        self._used += size
        self._count += 1
        if self._count >= self._rerank_at:
            self._rerank()
            return
        postings = self._postings
        for position, token in enumerate(tokens[:indexed].tolist()):
            postings[token].extend((number, position))

    def _rerank(self) -> None:
        """Rank every shingle by how many texts hold it (rarest first), re-sort every text's tokens
        in that order and index every text again."""
        import numpy as np  # lazily: the CLI starts without numpy

        n, used, vocab = self._count, self._used, len(self._ids)
        tokens = self._tokens[:used]
        held = np.bincount(tokens, minlength=vocab)
        self._order[np.argsort(held, kind="stable")] = np.arange(vocab)
        self._next_new = -1
        sizes = self._sizes[:n]
        text_of = np.repeat(np.arange(n), sizes)
        tokens[:] = tokens[np.lexsort((self._order[tokens], text_of))]
        position = np.arange(used) - np.repeat(self._starts[:n], sizes)
        prefixes = self._prefixes(sizes)
        indexed = position < np.repeat(prefixes, sizes)
        by_token = np.argsort(tokens[indexed], kind="stable")
        entry_tokens = tokens[indexed][by_token]
        pairs = np.stack([text_of[indexed][by_token], position[indexed][by_token]], axis=1).astype(np.int32)
        self._postings = [array("i") for _ in range(vocab)]
        self._rerank_at = n * RERANK_GROWTH
        if not len(entry_tokens):  # a threshold above 1: nothing is that similar, nothing is indexed
            return
        bounds = np.flatnonzero(np.diff(entry_tokens)) + 1
        for token, chunk in zip(
            entry_tokens[np.concatenate(([0], bounds))].tolist(), np.split(pairs, bounds), strict=True
        ):
            self._postings[token].frombytes(chunk.tobytes())

    def _near(self, tokens: np.ndarray) -> bool:
        """Whether a text of these tokens (in the global order) has Jaccard >= threshold with a text seen."""
        import numpy as np  # lazily: the CLI starts without numpy

        t, size = self.threshold, len(tokens)
        here = self._prefix(size)
        postings = self._postings
        found = [(i, postings[token]) for i, token in enumerate(tokens[:here].tolist())]
        found = [(i, p) for i, p in found if p]
        if not found:
            return False
        views = [np.frombuffer(p, np.int32) for _, p in found]
        pairs = np.concatenate(views).reshape(-1, 2)  # (text number, position in its prefix)
        del views  # the postings may grow again
        shared = np.bincount(pairs[:, 0], minlength=self._count)
        # Jaccard >= t needs |A & B| >= t (|A| + |B|) / (1 + t) and t |A| <= |B| <= |A| / t. The
        # shingles the two prefixes share are all the shared ones up to the last of them; those after
        # it lie all beyond the prefix of A, or all beyond the prefix of B (the order is one order):
        # at most max(|A| - A's prefix, |B| - B's prefix) of them. First the fewest shared that any
        # size of B allows, then each B's own.
        sizes = np.arange(max(1, math.floor(t * size) - 1), min(math.ceil(size / t) + 1, self._largest) + 1)
        if not len(sizes):
            return False
        fewest = np.ceil(t * (size + sizes) / (1 + t) - 1e-9) - np.maximum(size - here, sizes - self._prefixes(sizes))
        others = np.flatnonzero(shared >= max(1, int(fewest.min())))
        other_sizes, rest = self._sizes[others], self._rest[others]
        needed = np.ceil(t * (size + other_sizes) / (1 + t) - 1e-9)
        fits = (other_sizes >= t * size - 1e-9) & (other_sizes <= size / t + 1e-9)
        fits &= shared[others] + np.maximum(size - here, rest) >= needed
        if not fits.any():
            return False
        others, other_sizes, rest, needed = others[fits], other_sizes[fits], rest[fits], needed[fits]
        # the positional filter on those left: what can follow the last shingle the prefixes share
        chosen = np.zeros(self._count, bool)
        chosen[others] = True
        at = np.repeat(np.array([i for i, _ in found]), [len(p) // 2 for _, p in found])
        picked = chosen[pairs[:, 0]]
        pairs, at = pairs[picked], at[picked]
        by_text = np.argsort(pairs[:, 0], kind="stable")  # stable: a text's lookups stay in prefix order
        texts = pairs[by_text, 0]
        last = np.flatnonzero(np.concatenate((texts[1:] != texts[:-1], [True])))
        last_here, last_there = at[by_text][last], pairs[by_text, 1][last]  # texts[last] == others (sorted)
        after = np.maximum(
            np.minimum(size - here, other_sizes - 1 - last_there), np.minimum(size - 1 - last_here, rest)
        )
        keep = shared[others] + after >= needed
        others, other_sizes = others[keep], other_sizes[keep]
        if not len(others):
            return False
        # the exact overlap of each text left, over its stored shingle ids
        self.comparisons += len(others)
        starts = self._starts[others]
        offsets = np.cumsum(other_sizes) - other_sizes
        gather = np.arange(int(other_sizes.sum())) + np.repeat(starts - offsets, other_sizes)
        self._mask = _room(self._mask, len(self._ids))
        self._mask[tokens] = True
        common = np.add.reduceat(self._mask[self._tokens[gather]], offsets)
        self._mask[tokens] = False
        return bool(np.any(common / (size + other_sizes - common) >= t))

    def admit(self, text: str) -> bool:
        key = text_key(text)
        if not key or key in self.keys:
            return False
        tokens = self._token_ids(key)
        if self.threshold <= 0:  # every pair is that similar
            if self._count:
                return False
        elif self._near(tokens):
            return False
        self._add(key, tokens)
        return True
