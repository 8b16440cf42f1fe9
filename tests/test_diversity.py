"""Diversity metrics against brute-force definitions and invariants (seeded synthetic arrays)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from treesynth_core.coverage import diversity as D

SEED = 20250101


def brute_vendi(X: np.ndarray, q: float = 1.0) -> float:
    """Straight from the definition: explicit cosine kernel by loops, eigvalsh of K / n, entropy."""
    n = len(X)
    K = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            K[i, j] = X[i] @ X[j] / (np.linalg.norm(X[i]) * np.linalg.norm(X[j]))
    lam = np.linalg.eigvalsh(K / n)
    lam = lam[lam > 1e-12]
    if q == 1:
        return float(np.exp(-np.sum(lam * np.log(lam))))
    if math.isinf(q):
        return float(1 / lam.max())
    if q == 0:
        return float(len(lam))
    return float(np.sum(lam**q) ** (1 / (1 - q)))


def brute_mean_cosine(X: np.ndarray) -> float:
    n, total = len(X), 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += X[i] @ X[j] / (np.linalg.norm(X[i]) * np.linalg.norm(X[j]))
    return total / (n * (n - 1))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


def clustered(rng: np.random.Generator, n: int, d: int, k: int, spread: float = 0.3) -> np.ndarray:
    centers = rng.normal(size=(k, d))
    return centers[rng.integers(0, k, n)] + spread * rng.normal(size=(n, d))


@pytest.mark.parametrize("q", [0.0, 0.5, 1.0, 2.0, math.inf])
@pytest.mark.parametrize("shape", [(12, 30), (40, 6)])
def test_vendi_matches_brute_force(rng, q, shape):
    X = clustered(rng, *shape, k=4)
    assert D.vendi_score(X, q) == pytest.approx(brute_vendi(X, q), rel=1e-9)


@pytest.mark.parametrize("q", [0.5, 1.0, 2.0, math.inf, 0.0])
def test_dual_equals_primal(rng, q):
    X = clustered(rng, 300, 20, k=6)
    primal = D.vendi_score(X, q, method="primal")
    dual = D.vendi_score(X, q, method="dual")
    assert abs(primal - dual) < 1e-9 * max(1.0, primal)
    assert D.vendi_score(X, q) == dual  # auto picks dual when n > d


def test_dual_accumulates_in_blocks(rng, monkeypatch):
    X = rng.normal(size=(50, 8))
    whole = D.vendi_score(X, method="dual")
    monkeypatch.setattr(D, "_BLOCK_ROWS", 7)
    assert D.vendi_score(X, method="dual") == pytest.approx(whole, rel=1e-12)


def test_identity_gives_n_and_identical_rows_give_one():
    assert D.vendi_score(np.eye(7)) == pytest.approx(7.0)
    assert D.vendi_score(np.eye(7), q=math.inf) == pytest.approx(7.0)
    assert D.vendi_score(np.tile([[0.3, -1.2, 2.0]], (50, 1))) == pytest.approx(1.0)
    assert D.vendi_score(np.tile([[0.3, -1.2, 2.0]], (50, 1)), q=0) == 1.0


def test_order_q_changes_the_result_on_a_900_100_split():
    X = np.vstack([np.tile([1.0, 0.0], (900, 1)), np.tile([0.0, 1.0], (100, 1))])
    assert D.vendi_score(X, 0.5) == pytest.approx(1.6, abs=1e-9)
    assert D.vendi_score(X, 1.0) == pytest.approx(1.384, abs=1e-3)
    assert D.vendi_score(X, 2.0) == pytest.approx(1.220, abs=1e-3)
    assert D.vendi_score(X, 0.0) == 2.0
    assert D.vendi_score(X, math.inf) == pytest.approx(1 / 0.9)


def test_permutation_and_scale_invariance(rng):
    X = clustered(rng, 60, 10, k=3)
    base = D.vendi_score(X)
    scaled = X * rng.uniform(0.1, 10.0, size=(60, 1))
    assert D.vendi_score(X[rng.permutation(60)]) == pytest.approx(base, rel=1e-10)
    assert D.vendi_score(scaled) == pytest.approx(base, rel=1e-10)
    assert D.vendi_score(X.astype(np.float32)) == pytest.approx(base, rel=1e-5)


def test_bounds_and_trivial_sizes(rng):
    X = rng.normal(size=(25, 5))
    assert 1.0 <= D.vendi_score(X) <= 5.0 + 1e-9  # capped by the rank
    assert D.vendi_score(np.zeros((0, 4))) == 0.0
    assert D.vendi_score(rng.normal(size=(1, 4))) == pytest.approx(1.0)


def test_rank_ignores_round_off(rng):
    X = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 50))  # rank 3 in 50 dimensions
    assert D.vendi_score(X, q=0, method="primal") == 3.0
    assert D.vendi_score(X, q=0, method="dual") == 3.0


def test_vendi_from_kernel_reference_example_and_validation():
    K = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert D.vendi_from_kernel(K) == pytest.approx(2.1573, abs=1e-4)
    assert D.vendi_from_kernel(np.eye(4)) == pytest.approx(4.0)
    assert D.vendi_from_kernel(np.ones((4, 4))) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="diagonal"):
        D.vendi_from_kernel(2 * np.eye(3))
    assert D.vendi_from_kernel(2 * np.eye(3), normalize=True) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="symmetric"):
        D.vendi_from_kernel(np.array([[1.0, 0.5], [0.1, 1.0]]))


def test_kernel_and_features_agree(rng):
    X = D.normalize_rows(rng.normal(size=(30, 8)))
    assert D.vendi_from_kernel(X @ X.T, q=2) == pytest.approx(D.vendi_score(X, q=2), rel=1e-9)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="zero norm"):
        D.vendi_score(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="NaN"):
        D.vendi_score(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="2-D"):
        D.vendi_score(np.ones(3))
    with pytest.raises(ValueError, match="q must be"):
        D.vendi_score(np.eye(2), q=-1)


def test_mean_pairwise_cosine_matches_pairwise_loops(rng):
    X = clustered(rng, 40, 7, k=3)
    assert D.mean_pairwise_cosine(X) == pytest.approx(brute_mean_cosine(X), rel=1e-10)
    assert D.mean_pairwise_cosine(np.tile([[1.0, 2.0]], (5, 1))) == pytest.approx(1.0)
    assert D.mean_pairwise_cosine(np.eye(5)) == pytest.approx(0.0)
    assert math.isnan(D.mean_pairwise_cosine(np.ones((1, 3))))


def test_distinct_n():
    texts = ["the cat sat", "the cat ran", "The CAT sat!"]
    assert D.distinct_n(texts, 1) == pytest.approx(4 / 9)  # the, cat, sat, ran
    assert D.distinct_n(texts, 2) == pytest.approx(3 / 6)  # the cat, cat sat, cat ran
    assert D.distinct_n(["one"], 2) == 0.0
    assert D.distinct_n(["a b c d"], 2) == 1.0
    with pytest.raises(ValueError, match="n must be at least 1, got 0"):
        D.distinct_n(texts, 0)


def test_subsamples_are_seeded_nested_and_equal_sized():
    a = D.subsample_indices(100, 10, seed=3)
    assert len(set(a)) == 10 and list(a) == sorted(a)
    assert np.array_equal(a, D.subsample_indices(100, 10, seed=3))
    assert not np.array_equal(a, D.subsample_indices(100, 10, seed=4))
    assert set(D.subsample_indices(100, 5, seed=3)) <= set(D.subsample_indices(100, 20, seed=3))
    n, picks = D.subsample_equal_n({"tree": 400, "baseline": 120}, seed=0)
    assert n == 120 and {len(v) for v in picks.values()} == {120}
    assert np.array_equal(picks["tree"], D.subsample_equal_n({"tree": 400}, 120, seed=0)[1]["tree"])
    assert D.subsample_equal_n({"a": 50, "b": 70}, n=10)[0] == 10
    assert D.subsample_equal_n({}, seed=0) == (0, {})


def test_scores_grow_with_n_so_equal_n_matters(rng):
    X = rng.normal(size=(400, 64))
    small = D.vendi_score(X[D.subsample_indices(400, 20)])
    large = D.vendi_score(X)
    assert large > 2 * small


def test_per_group_scores(rng):
    tight = np.tile(rng.normal(size=(1, 6)), (12, 1)) + 1e-3 * rng.normal(size=(12, 6))
    loose = rng.normal(size=(20, 6))
    X = np.vstack([tight, loose])
    labels = ["tight"] * 12 + ["loose"] * 20
    scores = D.per_group_scores(X, labels)
    assert list(scores) == ["tight", "loose"]
    assert scores["tight"].vendi < 1.1 < scores["loose"].vendi
    assert scores["tight"].mean_cosine > 0.99
    assert scores["loose"].vendi == pytest.approx(D.vendi_score(loose))
    equal = D.per_group_scores(X, labels, n=12, seed=1)
    assert equal["tight"].n == equal["loose"].n == 12 and equal["loose"].count == 20
    small = D.per_group_scores(X, labels, n=15)
    assert small["tight"].n == 12  # fewer rows than n: scored on all, and n says so
    with pytest.raises(ValueError, match="31 labels for 32 rows"):
        D.per_group_scores(X, labels[:-1])
