"""Maps of more points than UMAP should fit: fit on a seeded sample, place the rest by their neighbours.

:func:`fit_indices` picks the rows UMAP lays out (all of them up to ``max_fit``, else a seeded
sample of ``max_fit``); :func:`place_by_neighbours` puts every other row at the weighted mean of
its nearest fitted rows' coordinates (UMAP's own initial placement for new points, without its
extra optimization epochs), the neighbours found exactly in numpy, block by block. A million rows
then cost one UMAP of ``max_fit`` points plus one product of every row with the fitted rows.
"""

from __future__ import annotations

import numpy as np

#: UMAP is fitted on at most this many points; more are placed by :func:`place_by_neighbours`.
MAP_MAX_FIT = 20_000
#: Rows placed per step: bounds the distance block (rows × fitted points, float32) held at once.
QUERY_BLOCK_ROWS = 2_048
#: The metrics :func:`place_by_neighbours` supports; a map of another metric fits all its points.
PLACE_METRICS = ("cosine", "euclidean")


def fit_indices(n: int, max_fit: int | None, seed: int = 0) -> np.ndarray:
    """The rows to fit UMAP on, ascending: all ``n`` when ``max_fit`` is None or ``n <= max_fit``,
    else a seeded sample of ``max_fit`` rows (same ``n``, ``max_fit`` and seed: same rows)."""
    if max_fit is not None and max_fit < 4:
        raise ValueError(f"max_fit must be at least 4 (a neighbour graph needs points), got {max_fit}")
    if max_fit is None or n <= max_fit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_fit, replace=False))


def neighbour_weights(distances: np.ndarray) -> np.ndarray:
    """Weights of each row's neighbours (ascending distances): ``exp(-(d - d_min) / mean(d - d_min))``,
    so the nearest weighs 1 and farther ones decay on the row's own scale; rows sum to 1."""
    d = np.asarray(distances, dtype=np.float64)
    gaps = d - d[:, :1]
    scale = gaps.mean(axis=1, keepdims=True)
    weights = np.exp(-np.divide(gaps, scale, out=np.zeros_like(gaps), where=scale > 0))
    return weights / weights.sum(axis=1, keepdims=True)


def nearest_fitted(
    fitted: np.ndarray, X: np.ndarray, k: int, metric: str = "cosine", block: int = QUERY_BLOCK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``fitted`` to every row of ``X`` (exact, blockwise in numpy).

    Returns
    -------
    indices : array of shape (n, k), int64
    distances : array of shape (n, k), float32
        Cosine (1 - cos) or Euclidean distances, ascending.
    """
    if metric not in PLACE_METRICS:
        raise ValueError(f"placing points by neighbours supports cosine and euclidean, not {metric!r}")
    fit = np.asarray(fitted, dtype=np.float32)
    data = np.asarray(X, dtype=np.float32)
    if metric == "cosine":
        fit, data = _unit(fit), _unit(data)
    fit_squares = np.einsum("ij,ij->i", fit, fit)
    n, m = data.shape[0], fit.shape[0]
    k = min(k, m)
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, block):
        rows = data[start : start + block]
        dots = rows @ fit.T
        if metric == "cosine":
            dist = 1.0 - dots
        else:
            squares = np.einsum("ij,ij->i", rows, rows)
            dist = np.sqrt(np.maximum(squares[:, None] + fit_squares[None, :] - 2.0 * dots, 0.0))
        part = np.argpartition(dist, k - 1, axis=1)[:, :k] if k < m else np.tile(np.arange(m), (rows.shape[0], 1))
        part_dist = np.take_along_axis(dist, part, axis=1)
        order = np.argsort(part_dist, axis=1, kind="stable")
        indices[start : start + block] = np.take_along_axis(part, order, axis=1)
        distances[start : start + block] = np.maximum(np.take_along_axis(part_dist, order, axis=1), 0.0)
    return indices, distances


def _unit(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


def place_by_neighbours(
    fitted: np.ndarray,
    coords: np.ndarray,
    X: np.ndarray,
    *,
    n_neighbors: int = 15,
    metric: str = "cosine",
) -> np.ndarray:
    """2-D positions for the rows of ``X`` from the layout ``coords`` of the rows ``fitted``.

    Parameters
    ----------
    fitted : array of shape (m, d)
        The rows UMAP laid out.
    coords : array of shape (m, 2)
        Their coordinates.
    X : array of shape (n, d)
        Rows to place.
    n_neighbors : int
        Fitted neighbours averaged per row; clipped to m.
    metric : {"cosine", "euclidean"}

    Returns
    -------
    array of shape (n, 2), float64
        Deterministic: no randomness is involved.
    """
    layout = np.asarray(coords, dtype=np.float64)
    if np.shape(fitted)[0] != layout.shape[0]:
        raise ValueError(f"{layout.shape[0]} coordinates for {np.shape(fitted)[0]} fitted rows")
    out = np.zeros((np.shape(X)[0], 2))
    if out.shape[0] == 0 or layout.shape[0] == 0:
        return out
    indices, distances = nearest_fitted(fitted, X, max(1, n_neighbors), metric)
    return np.einsum("ik,ikj->ij", neighbour_weights(distances), layout[indices])
