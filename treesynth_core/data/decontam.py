"""Decontamination: which samples share a word n-gram with an item of an evaluation set.

Text is normalized (Unicode NFKC, lowercased, every character that is not a letter or a digit, so
punctuation, symbols and ``_``, turned into a space, whitespace collapsed) and split into words. An
eval item is matched by its word n-grams, with ``n`` chosen by the item's length in words:

- ``n`` (13 by default, common practice since GPT-3) for items of at least ``2 n`` words;
- ``short_n = min(8, n)`` for shorter items (fewer than ``2 n`` words);
- the whole item for items shorter than ``short_n`` words;
- items of fewer than :data:`MIN_WORDS` words are not checked (a one-word answer such as ``4``
  would match almost every sample) and are counted as skipped.

A sample (its instruction, which holds an import's input, then its response) is contaminated by an
eval set when one of its own n-grams equals one of the set's. N-grams are hashed to 64 bits (each
word with blake2b, so the same across processes and machines; an n-gram as a polynomial of its
words' hashes), so an index of 10k items is a few sorted arrays and a chunk of samples is checked
with a few vectorized passes: :func:`scan` streams any number of samples in flat memory. Two
different n-grams share a hash with probability 2^-64 per pair: about 10^-5 false matches expected for
a million samples against 10k items.

Pure logic over texts; :mod:`treesynth_core.data.decontam_run` reads the eval sets and the project.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..store.contamination import Hit
from .decontam_options import DEFAULT_N, MIN_WORDS, SHORT_N, check_n

#: Samples tokenized and looked up at a time by :func:`scan`.
CHUNK = 10_000

_NOT_WORD = re.compile(r"[\W_]+")
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd: the polynomial's base, mod 2^64
_FILTER_BITS = 24  # a table's prefilter: which of the 2^24 top-24-bit prefixes its hashes have
_SHIFT = np.uint64(64 - _FILTER_BITS)


def words(text: str) -> list[str]:
    """The normalized words of ``text``: NFKC, lowercase, punctuation and symbols as spaces, split."""
    return _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).split()


def gram_length(n_words: int, n: int = DEFAULT_N) -> int | None:
    """The n-gram length an eval item of ``n_words`` words is matched with, or None when it is too short."""
    short = min(SHORT_N, n)
    if n_words < MIN_WORDS:
        return None
    if n_words < short:
        return n_words
    return short if n_words < 2 * n else n


class _WordHashes(dict[str, int]):
    """Word -> its 64-bit blake2b hash, computed once per word."""

    def __missing__(self, word: str) -> int:
        value = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
        self[word] = value
        return value


@dataclass
class _Tokens:
    """A chunk of texts as one flat run of words: ``seg[i]`` is the text of word ``i``, ``room[i]`` how
    many words its text has from ``i`` on (so an n-gram may start at ``i`` when ``room[i] >= n``)."""

    words: list[str]
    hashes: np.ndarray
    seg: np.ndarray
    room: np.ndarray
    lengths: np.ndarray


def _tokenize(texts: Sequence[str], vocab: _WordHashes) -> _Tokens:
    split = [words(t) for t in texts]
    lengths = np.fromiter((len(w) for w in split), dtype=np.int64, count=len(split))
    flat = list(itertools.chain.from_iterable(split))
    hashes = np.fromiter(map(vocab.__getitem__, flat), dtype=np.uint64, count=len(flat))
    seg = np.repeat(np.arange(len(split), dtype=np.int64), lengths)
    ends = np.cumsum(lengths)
    room = ends[seg] - np.arange(len(flat), dtype=np.int64)
    return _Tokens(flat, hashes, seg, room, lengths)


def _grams(tokens: _Tokens, lengths: Iterable[int]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(k, positions, hashes)`` for each wanted ``k``, ascending: the k-grams starting at ``positions``
    that stay inside their text. One multiply-add pass per length up to the largest wanted."""
    wanted = sorted(set(lengths))
    if not wanted or not len(tokens.hashes):
        return
    acc = tokens.hashes.copy()
    size = len(acc)
    with np.errstate(over="ignore"):
        for k in range(1, wanted[-1] + 1):
            if k > size:
                return
            if k > 1:
                acc[: size - k + 1] = acc[: size - k + 1] * _MULT + tokens.hashes[k - 1 :]
            if k in wanted:
                positions = np.flatnonzero(tokens.room[: size - k + 1] >= k)
                yield k, positions, acc[positions]


@dataclass(frozen=True)
class EvalItem:
    """One item of an eval set: ``label`` says which (``row 12``, ``sample 40``), ``text`` is what is matched."""

    label: str
    text: str


class EvalIndex:
    """The hashed n-grams of one eval set, by n-gram length (see the module docstring for which items
    use which length). Build it from the items once, then :func:`scan` samples against it.

    ``items`` counts the items indexed, ``skipped`` those too short to check; ``labels[i]`` names item ``i``.
    """

    def __init__(
        self, source: str, items: Iterable[EvalItem], *, n: int = DEFAULT_N, chunk: int = CHUNK, vocab: Any = None
    ) -> None:
        check_n(n)
        self.source = source
        self.n = n
        self.short_n = min(SHORT_N, n)
        self.labels: list[str] = []
        self.skipped = 0
        self._vocab = vocab if vocab is not None else _WordHashes()
        parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        for batch in _batched(items, chunk):
            tokens = _tokenize([item.text for item in batch], self._vocab)
            per_item = [gram_length(int(m), n) for m in tokens.lengths]
            keep = np.array([k if k is not None else 0 for k in per_item], dtype=np.int64)
            first = len(self.labels)
            for item, k in zip(batch, per_item, strict=True):
                if k is None:
                    self.skipped += 1
                self.labels.append(item.label)
            for k, positions, hashes in _grams(tokens, {k for k in per_item if k is not None}):
                mine = keep[tokens.seg[positions]] == k
                parts.setdefault(k, []).append((hashes[mine], tokens.seg[positions[mine]] + first))
        self.items = len(self.labels) - self.skipped
        #: k -> (sorted unique hashes, the first item holding each)
        self.tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._filters: dict[int, np.ndarray] = {}
        for k, chunks in parts.items():
            hashes = np.concatenate([h for h, _ in chunks])
            owners = np.concatenate([o for _, o in chunks])
            order = np.argsort(hashes, kind="stable")
            unique, first_at = np.unique(hashes[order], return_index=True)
            self.tables[k] = (unique, owners[order][first_at])
            self._filters[k] = np.zeros(1 << _FILTER_BITS, dtype=bool)
            self._filters[k][unique >> _SHIFT] = True

    @property
    def grams(self) -> int:
        """How many distinct n-grams the index holds."""
        return sum(len(h) for h, _ in self.tables.values())

    def lookup(self, k: int, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(found, item)``: which of ``hashes`` (k-grams) the index holds, and the item of each found one."""
        table = self.tables.get(k)
        if table is None or not len(hashes):
            return np.zeros(len(hashes), dtype=bool), np.zeros(0, dtype=np.int64)
        unique, owners = table
        found = self._filters[k][hashes >> _SHIFT]  # most hashes stop here: a gather instead of a search
        maybe = np.flatnonzero(found)
        at = np.searchsorted(unique, hashes[maybe]).clip(max=len(unique) - 1)
        same = unique[at] == hashes[maybe]
        found[maybe[~same]] = False
        return found, owners[at[same]]


@dataclass
class ScanResult:
    """What :func:`scan` found: ``checked`` samples, and the first hit of each contaminated sample per source."""

    checked: int = 0
    hits: list[Hit] = field(default_factory=list)

    def flagged(self, source: str | None = None) -> int:
        """How many samples were found contaminated (by ``source``, or by any)."""
        return len({h.sample_id for h in self.hits if source is None or h.source == source})


def scan(
    indexes: Sequence[EvalIndex],
    samples: Iterable[tuple[int, str]],
    *,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
) -> ScanResult:
    """Check ``(sample_id, text)`` pairs against each index, ``chunk`` samples at a time.

    Each contaminated sample gets one :class:`Hit` per eval set it overlaps (its first n-gram found).
    ``progress`` gets the running count of samples checked after each chunk.
    """
    result = ScanResult()
    vocab = _WordHashes()
    lengths = {k for index in indexes for k in index.tables}
    for batch in _batched(samples, chunk):
        tokens = _tokenize([text for _, text in batch], vocab)
        found: dict[int, list[tuple[np.ndarray, np.ndarray, int]]] = {}
        for k, positions, hashes in _grams(tokens, lengths):
            for i, index in enumerate(indexes):
                hit, items = index.lookup(k, hashes)
                if len(items):
                    found.setdefault(i, []).append((positions[hit], items, k))
        for i, parts in sorted(found.items()):
            result.hits += _first_hits(indexes[i], parts, tokens, batch)
        result.checked += len(batch)
        if progress is not None:
            progress(result.checked)
    return result


def _first_hits(
    index: EvalIndex, parts: list[tuple[np.ndarray, np.ndarray, int]], tokens: _Tokens, batch: list[tuple[int, str]]
) -> list[Hit]:
    """The earliest matching n-gram of each sample of the chunk, as hits."""
    positions = np.concatenate([p for p, _, _ in parts])
    items = np.concatenate([it for _, it, _ in parts])
    ks = np.concatenate([np.full(len(p), k, dtype=np.int64) for p, _, k in parts])
    order = np.argsort(positions, kind="stable")
    positions, items, ks = positions[order], items[order], ks[order]
    _, first = np.unique(tokens.seg[positions], return_index=True)
    hits = []
    for at in first:
        pos, k = int(positions[at]), int(ks[at])
        sample_id = batch[int(tokens.seg[pos])][0]
        ngram = " ".join(tokens.words[pos : pos + k])
        hits.append(Hit(sample_id, index.source, index.labels[int(items[at])], ngram, k))
    return hits


def tokenize_only(texts: Iterable[str], chunk: int = CHUNK) -> int:
    """Normalize and split ``texts`` in chunks, counting words: the floor :func:`scan` is measured against."""
    total = 0
    for batch in _batched(texts, chunk):
        total += sum(len(words(t)) for t in batch)
    return total


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
