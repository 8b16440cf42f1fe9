"""The near-duplicate filter: the same answers as comparing with every text seen, without comparing every pair."""

from __future__ import annotations

import random

import pytest

from treesynth_core.generate import duplicates
from treesynth_core.generate.duplicates import DuplicateFilter, jaccard, shingles, text_key

WORDS = "apple river stone cloud number train garden window copper violin ladder candle harbor meadow".split()


def brute_force(threshold: float, seen: list[str], texts: list[str]) -> list[bool]:
    """What ``admit`` must answer: compare with every text kept so far."""
    keys = {text_key(t) for t in seen}
    sets = [shingles(t) for t in seen]
    out = []
    for text in texts:
        key, grams = text_key(text), shingles(text)
        ok = bool(key) and key not in keys and not any(jaccard(grams, s) >= threshold for s in sets)
        if ok:
            keys.add(key)
            sets.append(grams)
        out.append(ok)
    return out


def near_copies(rng: random.Random, n: int) -> list[str]:
    """Texts of which many are one- or two-word edits of an earlier one (near duplicates at every threshold)."""
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.5:
            words = rng.choice(texts).split()
            for _ in range(rng.randint(1, 2)):
                words[rng.randrange(len(words))] = rng.choice(WORDS)
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choices(WORDS, k=rng.randint(1, 14))) + f" {rng.randint(0, 99)}")
    return texts


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.7, 0.85, 1.0, 1.5])
def test_admit_answers_as_comparing_with_every_text(threshold):
    rng = random.Random(threshold)
    seen, texts = near_copies(rng, 40), near_copies(rng, 700)  # past the first rankings (64, 256)
    dupes = DuplicateFilter(threshold, seen)
    assert [dupes.admit(t) for t in texts] == brute_force(threshold, seen, texts)


def test_a_leaf_of_varied_texts_is_not_compared_pair_by_pair(monkeypatch):
    calls = 0

    def counting(a: frozenset[str], b: frozenset[str]) -> float:
        nonlocal calls
        calls += 1
        return jaccard(a, b)

    monkeypatch.setattr(duplicates, "jaccard", counting)
    rng = random.Random(0)
    n = 3000
    texts = [
        f"Write a Python function `{rng.choice(WORDS)}_{rng.choice(WORDS)}` for the {rng.choice(WORDS)} log "
        f"that returns the {rng.randint(2, 9)} most frequent items. Input: {rng.sample(range(1000), 5)}"
        for _ in range(n)
    ]
    dupes = DuplicateFilter(0.85)
    admitted = sum(dupes.admit(t) for t in texts)
    assert admitted > n * 0.95
    pairs = n * (n - 1) // 2
    assert calls < pairs / 20, f"{calls} comparisons for {n} texts, of {pairs} pairs"
