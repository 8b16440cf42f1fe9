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
    both = np.array([[0.05, 1.0], [1.0, 0.05], [0.5, 0.5]])
    assert np.array_equal(T.place_by_neighbours(fitted, coords, both, rows=np.array([1]), n_neighbors=2), placed[:1])
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


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float((found[:, :, None] == exact[:, None, :]).any(axis=2).mean())


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_the_cell_search_finds_the_true_neighbours(metric):
    """As a map of a million places them: 20,000 fitted rows, the default cells. Clusters of 24-d
    isotropic noise are a hard case (no few directions to follow)."""
    X, _ = blobs(T.MAP_MAX_FIT + 2000, d=24, k=5, seed=7)
    fitted, rest = X[: T.MAP_MAX_FIT], X[T.MAP_MAX_FIT :]
    assert T.default_cells(T.MAP_MAX_FIT) == 141 and T.default_cells(T.APPROX_FROM - 1) == 0
    exact, exact_dist = T.nearest_fitted(fitted, rest, 15, metric, cells=0)
    found, dist = T.nearest_fitted(fitted, rest, 15, metric)  # the default: a cell index
    assert recall(found, exact) >= 0.9
    assert (np.diff(dist, axis=1) >= 0).all() and (dist >= exact_dist * (1 - 1e-4) - 1e-6).all()  # never nearer
    again = T.nearest_fitted(fitted, rest, 15, metric)
    assert np.array_equal(found, again[0]) and np.array_equal(dist, again[1])  # deterministic
    other = T.nearest_fitted(fitted, rest, 15, metric, seed=1)[0]
    assert not np.array_equal(found, other) and recall(other, exact) >= 0.9  # another seed, other cells


def test_searching_every_cell_is_the_exact_search_and_workers_do_not_matter():
    fitted, _ = blobs(500, 8, seed=1)
    X, _ = blobs(300, 8, seed=2)
    for metric in T.PLACE_METRICS:
        exact, exact_dist = T.nearest_fitted(fitted, X, 6, metric, cells=0)
        index = T.CellIndex.build(fitted, metric, cells=20, seed=5)
        assert index.cells == 20 and index.starts[-1] == 500 and np.array_equal(np.sort(index.order), np.arange(500))
        found, dist = index.search(X, 6, probes=20, workers=1)
        assert np.array_equal(found, exact) and np.allclose(dist, exact_dist, atol=1e-5)
        one = index.search(X, 6, probes=3, workers=1)
        three = index.search(X, 6, probes=3, workers=3)
        assert np.array_equal(one[0], three[0]) and np.array_equal(one[1], three[1])


def test_a_row_whose_cells_hold_too_few_rows_is_searched_exactly(monkeypatch):
    fitted, _ = blobs(200, 6, seed=1)
    X, _ = blobs(50, 6, seed=2)
    exact, _ = T.nearest_fitted(fitted, X, 10, cells=0)
    found, dist = T.nearest_fitted(fitted, X, 10, cells=200, probes=1)  # one row a cell: every row short
    assert np.array_equal(found, exact) and np.isfinite(dist).all()
    monkeypatch.setattr(T, "CELL_BLOCK_ROWS", 7)  # blocks of rows, some short and some not
    some, _ = T.nearest_fitted(fitted, X, 10, cells=25, probes=2)
    assert some.shape == (50, 10) and (some >= 0).all() and recall(some, exact) > 0.5


@pytest.mark.slow  # numba compiles UMAP on first use
def test_placing_by_the_cell_search_keeps_the_map_as_trustworthy_as_the_exact_search():
    from sklearn.manifold import trustworthiness

    X, _ = blobs(6000, d=24, k=5, seed=7)
    fit = T.fit_indices(6000, 1500, seed=0)
    rest = np.setdiff1d(np.arange(6000), fit)
    coords = M.umap_2d(X[fit], seed=0)
    exact = T.place_by_neighbours(X[fit], coords, X[rest], cells=0)
    # 300 cells of 1,500 fitted rows: the 16 searched hold ~5% of them (the default searches ~11%)
    cells = T.place_by_neighbours(X[fit], coords, X[rest], cells=300)
    found, _ = T.nearest_fitted(X[fit], X[rest], 15, cells=300)
    assert recall(found, T.nearest_fitted(X[fit], X[rest], 15, cells=0)[0]) < 0.95  # neighbours do get missed
    sample = np.random.default_rng(0).choice(rest.size, 2000, replace=False)
    t_exact = trustworthiness(X[rest][sample], exact[sample], n_neighbors=10, metric="cosine")
    t_cells = trustworthiness(X[rest][sample], cells[sample], n_neighbors=10, metric="cosine")
    assert t_exact >= 0.9 and t_cells >= t_exact - 0.01
