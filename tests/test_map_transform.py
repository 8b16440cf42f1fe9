"""Maps fitted on a sample: which rows are fitted, how the rest are placed, and the layout's quality."""

from __future__ import annotations

import numpy as np
import pytest

from treesynth_core.coverage import map_transform as T
from treesynth_core.coverage import maps as M


def blobs(n: int, d: int = 24, k: int = 5, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = 3.0 * rng.normal(size=(k, d))
    labels = rng.integers(0, k, n)
    return centers[labels] + rng.normal(size=(n, d)), labels


def test_fit_indices_are_all_rows_up_to_max_fit_else_a_seeded_sample():
    assert np.array_equal(T.fit_indices(10, 20), np.arange(10))
    assert np.array_equal(T.fit_indices(10, None), np.arange(10))
    picked = T.fit_indices(1000, 100, seed=3)
    assert picked.size == 100 and np.unique(picked).size == 100 and (np.diff(picked) > 0).all()
    assert np.array_equal(picked, T.fit_indices(1000, 100, seed=3))
    assert not np.array_equal(picked, T.fit_indices(1000, 100, seed=4))
    with pytest.raises(ValueError, match="at least 4"):
        T.fit_indices(10, 2)


def test_neighbour_weights_favour_the_nearest_and_sum_to_one():
    w = T.neighbour_weights(np.array([[0.1, 0.2, 0.5], [0.3, 0.3, 0.3]]))
    assert np.allclose(w.sum(axis=1), 1.0)
    assert w[0, 0] > w[0, 1] > w[0, 2]
    assert np.allclose(w[1], 1 / 3)  # equal distances, equal weights


def test_a_point_is_placed_among_its_nearest_fitted_points():
    fitted = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 10.0], [11.0, 10.0]])
    placed = T.place_by_neighbours(fitted, coords, np.array([[1.0, 0.05], [0.05, 1.0]]), n_neighbors=2)
    assert 0.0 <= placed[0, 0] <= 1.0 and placed[0, 1] == pytest.approx(0.0)
    assert 10.0 <= placed[1, 0] <= 11.0 and placed[1, 1] == pytest.approx(10.0)
    assert T.place_by_neighbours(fitted, coords, np.zeros((0, 2))).shape == (0, 2)
    with pytest.raises(ValueError, match="coordinates for"):
        T.place_by_neighbours(fitted, coords[:2], fitted)


@pytest.mark.slow  # numba compiles UMAP and pynndescent on first use
def test_fit_on_a_sample_keeps_neighbourhoods_and_the_sample_layout():
    from sklearn.manifold import trustworthiness

    X, _ = blobs(3000)
    coords = M.umap_2d(X, seed=7, max_fit=1000)
    assert coords.shape == (3000, 2) and np.isfinite(coords).all()
    fit = T.fit_indices(3000, 1000, seed=7)
    assert np.array_equal(coords[fit], M.umap_2d(X[fit], seed=7))  # the fitted points: a plain fit on them
    assert trustworthiness(X, coords, n_neighbors=10, metric="cosine") >= 0.9
    assert np.array_equal(coords, M.umap_2d(X, seed=7, max_fit=1000))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_nearest_fitted_matches_brute_force(metric):
    fitted, _ = blobs(60, 5, seed=1)
    X, _ = blobs(37, 5, seed=2)
    idx, dist = T.nearest_fitted(fitted, X, 4, metric, block=8)
    if metric == "cosine":
        U, V = (A / np.linalg.norm(A, axis=1, keepdims=True) for A in (X, fitted))
        full = 1.0 - U @ V.T
    else:
        full = np.linalg.norm(X[:, None, :] - fitted[None, :, :], axis=2)
    assert np.allclose(dist, np.sort(full, axis=1)[:, :4], atol=1e-5)
    assert np.allclose(np.take_along_axis(full, idx, 1), dist, atol=1e-5)
    with pytest.raises(ValueError, match="supports cosine and euclidean"):
        T.nearest_fitted(fitted, X, 4, "manhattan")
