"""The near-duplicate filter: the same answers as comparing with every text seen, without comparing every pair."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def near_copies(rng: random.Random, n: int, longest: int = 14, edits: int = 2) -> list[str]:
    """Texts of which many are edits (words replaced, added or dropped) of an earlier one (near
    duplicates at every threshold)."""
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.5:
            words = rng.choice(texts).split()
            for _ in range(rng.randint(1, edits)):
                at, edit = rng.randrange(len(words)), rng.random()
                if edit < 0.6:
                    words[at] = rng.choice(WORDS)
                elif edit < 0.8 or len(words) == 1:
                    words.insert(at, rng.choice(WORDS))
                else:
                    del words[at]
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choices(WORDS, k=rng.randint(1, longest))) + f" {rng.randint(0, 99)}")
    return texts


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.7, 0.85, 1.0, 1.5])
def test_admit_answers_as_comparing_with_every_text(threshold):
    rng = random.Random(threshold)
    seen, texts = near_copies(rng, 40), near_copies(rng, 700)  # past the first rankings (64, 256)
    dupes = DuplicateFilter(threshold, seen)
    assert [dupes.admit(t) for t in texts] == brute_force(threshold, seen, texts)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    threshold=st.floats(0.3, 1.0),
    longest=st.integers(1, 60),
    edits=st.integers(1, 6),
    n_seen=st.integers(0, 30),
    n=st.integers(1, 160),
)
def test_admit_answers_as_brute_force_for_any_texts_and_threshold(seed, threshold, longest, edits, n_seen, n):
    """Property: short and long texts, few and many edits, any threshold, with and without texts seen
    before; past the first rankings (8, 32, 128 texts)."""
    rng = random.Random(seed)
    seen, texts = near_copies(rng, n_seen, longest, edits), near_copies(rng, n, longest, edits)
    dupes = DuplicateFilter(threshold, seen)
    assert [dupes.admit(t) for t in texts] == brute_force(threshold, seen, texts)


def test_a_leaf_of_varied_texts_is_not_compared_pair_by_pair():
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
    assert dupes.comparisons < n, f"{dupes.comparisons} comparisons for {n} texts, of {pairs} pairs"
