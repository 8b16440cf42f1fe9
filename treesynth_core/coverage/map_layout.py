"""The layout of a map: a seeded 2-D UMAP of feature vectors, fitted on a sample when there are many.

:func:`umap_2d` is a pure function over arrays (same input and seed, same coordinates). Above
``max_fit`` rows it fits UMAP on a seeded sample and places the rest by their nearest fitted rows
(:mod:`.map_transform`). umap-learn is imported on first use; the first UMAP of a process spends
~10 s compiling numba code, later ones are fast.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .map_transform import MAP_MAX_FIT, PLACE_METRICS, fit_indices, place_by_neighbours

#: Rows checked for NaN at a time (a check of a million 1024-d rows at once would hold 1 GB).
FINITE_BLOCK = 65_536
#: Up to this many points the neighbour graph is computed exactly with numpy (no NN-descent).
EXACT_KNN_MAX = 20_000


@dataclass(frozen=True)
class MapOptions:
    """How a map is laid out: :func:`umap_2d`'s parameters (see there), one definition for the
    command line, the app's jobs and the cache key of a layout."""

    seed: int = 0
    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "cosine"
    max_fit: int | None = MAP_MAX_FIT

    def umap_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`umap_2d` (its names are the fields')."""
        return asdict(self)


#: The layout a map gets unless asked otherwise.
DEFAULT_MAP = MapOptions()


def _unit(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


def _pca_2d(X: np.ndarray) -> np.ndarray:
    """The first two principal coordinates (zeros where the rank runs out), signs fixed."""
    centered = X - X.mean(axis=0)
    u, s, _ = np.linalg.svd(centered, full_matrices=False)
    coords = np.zeros((X.shape[0], 2))
    k = min(2, s.size)
    coords[:, :k] = u[:, :k] * s[:k]
    for j in range(2):
        column = coords[:, j]
        if column.size and column[np.argmax(np.abs(column))] < 0:
            coords[:, j] = -column
    return coords


def exact_knn(X: np.ndarray, k: int, metric: str = "cosine", block: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row (itself first), blockwise in numpy.

    Parameters
    ----------
    X : array of shape (n, d)
    k : int
        Neighbours per row, the row itself included (1 <= k <= n).
    metric : {"cosine", "euclidean"}

    Returns
    -------
    indices : array of shape (n, k), int64
    distances : array of shape (n, k), float32
        Cosine distance (1 - cos) or Euclidean distance, ascending; 0 for the row itself.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"exact_knn supports cosine and euclidean, not {metric!r}")
    data = np.asarray(X, dtype=np.float32)
    if metric == "cosine":
        data = _unit(data)
    n = data.shape[0]
    squares = np.einsum("ij,ij->i", data, data)
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        dots = data[rows] @ data.T
        if metric == "cosine":
            dist = 1.0 - dots
        else:
            dist = np.sqrt(np.maximum(squares[rows, None] + squares[None, :] - 2.0 * dots, 0.0))
        np.maximum(dist, 0.0, out=dist)
        dist[np.arange(rows.size), rows] = -1.0  # the row itself comes first, even among duplicates
        part = np.argpartition(dist, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (rows.size, 1))
        part_dist = np.take_along_axis(dist, part, axis=1)
        order = np.argsort(part_dist, axis=1, kind="stable")
        indices[rows] = np.take_along_axis(part, order, axis=1)
        distances[rows] = np.maximum(np.take_along_axis(part_dist, order, axis=1), 0.0)
    return indices, distances


def umap_2d(
    X: np.ndarray | Sequence[Sequence[float]],
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "cosine",
    n_epochs: int | None = None,
    max_fit: int | None = MAP_MAX_FIT,
) -> np.ndarray:
    """A seeded 2-D UMAP layout of the rows of ``X``.

    Parameters
    ----------
    X : array of shape (n, d)
    seed : int
        UMAP's ``random_state``: the same seed gives the same coordinates (UMAP then runs single-threaded).
    n_neighbors : int
        Neighbourhood size; clipped to n - 1.
    min_dist : float
    metric : str
        Any UMAP metric; for cosine and euclidean with n <= ``EXACT_KNN_MAX`` the neighbour graph
        is computed exactly here (faster than NN-descent and its compilation at these sizes).
    n_epochs : int, optional
        UMAP's default when None.
    max_fit : int, optional
        Above this many rows UMAP is fitted on a seeded sample of ``max_fit`` of them (their
        coordinates are those of a plain layout of the sample) and every other row is placed by its
        nearest fitted rows (:func:`~treesynth_core.coverage.map_transform.place_by_neighbours`).
        None fits all rows, as do metrics other than cosine and euclidean.

    Returns
    -------
    array of shape (n, 2), float64
        For n < 4 (too few points for a neighbour graph) the first two principal coordinates of
        the (cosine-normalized) rows instead; zeros for one point.
    """
    data = np.asarray(X, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"expected a 2-D array of shape (n, d), got shape {data.shape}")
    n = data.shape[0]
    if n == 0:
        return np.zeros((0, 2))
    if not all(np.isfinite(data[i : i + FINITE_BLOCK]).all() for i in range(0, n, FINITE_BLOCK)):
        raise ValueError("features contain NaN or infinite values")
    if n < 4:
        return _pca_2d(_unit(data).astype(np.float64) if metric == "cosine" else data.astype(np.float64))
    fit = fit_indices(n, max_fit if metric in PLACE_METRICS else None, seed)
    if fit.size < n:
        coords = umap_2d(
            data[fit], seed=seed, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, n_epochs=n_epochs
        )
        rest = np.setdiff1d(np.arange(n), fit, assume_unique=True)
        out = np.empty((n, 2))
        out[fit] = coords
        out[rest] = place_by_neighbours(
            data[fit], coords, data, rows=rest, n_neighbors=n_neighbors, metric=metric, seed=seed
        )
        return out
    k = max(2, min(n_neighbors, n - 1))
    import umap

    knn: tuple[Any, Any, Any] = (None, None, None)
    if metric in ("cosine", "euclidean") and n <= EXACT_KNN_MAX:
        indices, distances = exact_knn(data, k, metric)
        knn = (indices, distances, None)
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=k,
        min_dist=min_dist,
        metric=metric,
        random_state=seed,
        n_epochs=n_epochs,
        precomputed_knn=knn,
        low_memory=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs overridden by the seed, precomputed kNN on small data, ...
        coords = reducer.fit_transform(data)
    return np.asarray(coords, dtype=np.float64)
