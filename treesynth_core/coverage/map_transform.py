"""Maps of more points than UMAP should fit: fit on a seeded sample, place the rest by their neighbours.

:func:`fit_indices` picks the rows UMAP lays out (all of them up to ``max_fit``, else a seeded
sample of ``max_fit``); :func:`place_by_neighbours` puts every other row at the weighted mean of
its nearest fitted rows' coordinates (UMAP's own initial placement for new points, without its
extra optimization epochs).

The neighbours come from :func:`nearest_fitted`. Up to :data:`APPROX_FROM` fitted rows it searches
all of them, exactly, block by block. From there it builds a :class:`CellIndex` once: the fitted
rows grouped into cells by a seeded k-means, so each row to place is compared with the centroids
and then only with the rows of its :data:`PROBES` nearest cells (an inverted file, as in FAISS'
IVF-Flat), in float32 matrix products over chunks of rows spread over the CPU's cores. For 20,000
fitted rows that is about 2,400 comparisons a row instead of 20,000; the neighbours found are
measured against the exact ones by recall (tests/test_map_transform.py: at least 0.9 on clusters
of 24-d noise, a hard case for any index). pynndescent's graph search was measured too and left
out: on 1024-d features without structure it was slower than the exact search.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

#: UMAP is fitted on at most this many points; more are placed by :func:`place_by_neighbours`.
MAP_MAX_FIT = 20_000
#: Rows placed per step: bounds the distance block (rows × fitted points, float32) held at once.
QUERY_BLOCK_ROWS = 2_048
#: The metrics :func:`place_by_neighbours` supports; a map of another metric fits all its points.
PLACE_METRICS = ("cosine", "euclidean")
#: From this many fitted rows, neighbours are searched in a :class:`CellIndex` (below it, exactly).
APPROX_FROM = 5_000
#: A :class:`CellIndex` of m fitted rows has about ``CELLS_PER_ROOT * sqrt(m)`` cells.
CELLS_PER_ROOT = 1.0
#: The cells searched per row: with 20,000 fitted rows (141 cells) about 11% of them.
PROBES = 16
#: Lloyd iterations of the seeded k-means that makes the cells.
KMEANS_ITERATIONS = 8
#: Rows a :class:`CellIndex` searches per step (one thread's share of the work at a time).
CELL_BLOCK_ROWS = 8_192


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


def default_cells(m: int) -> int:
    """How many cells :func:`nearest_fitted` groups ``m`` fitted rows into: 0 (search them all,
    exactly) below :data:`APPROX_FROM`, else about ``CELLS_PER_ROOT * sqrt(m)``."""
    return 0 if m < APPROX_FROM else max(1, round(CELLS_PER_ROOT * math.sqrt(m)))


def nearest_fitted(
    fitted: np.ndarray,
    X: np.ndarray,
    k: int,
    metric: str = "cosine",
    *,
    rows: np.ndarray | None = None,
    cells: int | None = None,
    probes: int = PROBES,
    seed: int = 0,
    block: int = QUERY_BLOCK_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``fitted`` to every row of ``X`` (or to ``X[rows]``).

    Parameters
    ----------
    fitted : array of shape (m, d)
    X : array of shape (n, d)
        Read a block of rows at a time: no copy of it is made.
    k : int
        Clipped to m.
    metric : {"cosine", "euclidean"}
    rows : array of int, optional
        Search for these rows of ``X`` only (default: all).
    cells : int, optional
        0 searches every fitted row, exactly (``block`` rows of ``X`` at a time); more builds a
        :class:`CellIndex` of that many cells and searches ``probes`` of them per row. None:
        :func:`default_cells`.
    probes : int
    seed : int
        Seeds the k-means of the cells: same input and seed, same neighbours.

    Returns
    -------
    indices : array of shape (len(rows), k), int64
    distances : array of shape (len(rows), k), float32
        Cosine (1 - cos) or Euclidean distances, ascending.
    """
    if metric not in PLACE_METRICS:
        raise ValueError(f"placing points by neighbours supports cosine and euclidean, not {metric!r}")
    fit = _prepared(fitted, metric)
    wanted = np.arange(np.shape(X)[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    k = min(k, fit.shape[0])
    cells = default_cells(fit.shape[0]) if cells is None else cells
    if cells <= 0 or fit.shape[0] <= k:
        return _exact(fit, X, wanted, k, metric, block)
    return CellIndex.build(fitted, metric, cells=cells, seed=seed).search(X, k, rows=wanted, probes=probes)


def _prepared(X: np.ndarray, metric: str) -> np.ndarray:
    data = np.asarray(X, dtype=np.float32)
    return _unit(data) if metric == "cosine" else data


def _unit(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


def _distances(rows: np.ndarray, fit: np.ndarray, fit_squares: np.ndarray, metric: str) -> np.ndarray:
    """Distances (float32) between ``rows`` and ``fit`` (both unit rows for cosine)."""
    dots = rows @ fit.T
    if metric == "cosine":
        return np.subtract(1.0, dots, out=dots)
    squares = np.einsum("ij,ij->i", rows, rows)
    return np.sqrt(np.maximum(squares[:, None] + fit_squares[None, :] - 2.0 * dots, 0.0))


def _smallest(dist: np.ndarray, k: int) -> np.ndarray:
    """The columns of each row's ``k`` smallest entries, in no order."""
    if k >= dist.shape[1]:
        return np.broadcast_to(np.arange(dist.shape[1]), dist.shape)
    return np.argpartition(dist, k - 1, axis=1)[:, :k]


def _ascending(dist: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``cols`` and their distances, each row sorted by distance (stable: ties keep their order)."""
    chosen = np.take_along_axis(dist, cols, axis=1)
    order = np.argsort(chosen, axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1), np.take_along_axis(chosen, order, axis=1)


def _exact(
    fit: np.ndarray, X: np.ndarray, rows: np.ndarray, k: int, metric: str, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """The exact search of ``X[rows]`` among ``fit`` (prepared), ``block`` rows at a time."""
    fit_squares = np.einsum("ij,ij->i", fit, fit)
    indices = np.empty((rows.size, k), dtype=np.int64)
    distances = np.empty((rows.size, k), dtype=np.float32)
    for start in range(0, rows.size, block):
        dist = _distances(_prepared(X[rows[start : start + block]], metric), fit, fit_squares, metric)
        cols, chosen = _ascending(dist, _smallest(dist, k))
        indices[start : start + block] = cols
        distances[start : start + block] = np.maximum(chosen, 0.0)
    return indices, distances


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """BLAS on one thread (many small products on several threads spend most of their time waiting
    for one another; the threads here share the rows instead)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@dataclass(frozen=True)
class CellIndex:
    """Fitted rows grouped into cells by a seeded k-means, for :meth:`search`.

    ``rows`` holds the fitted rows sorted by cell (cell ``c`` is ``rows[starts[c]:starts[c + 1]]``)
    and ``order`` the original index of each; for the cosine metric the rows are unit vectors and
    the cells' centroids are normalized means (spherical k-means).
    """

    rows: np.ndarray  # (m, d) float32
    squares: np.ndarray  # (m,) float32: squared norms of rows
    order: np.ndarray  # (m,) int64
    starts: np.ndarray  # (cells + 1,) int64
    centroids: np.ndarray  # (cells, d) float32
    metric: str

    @classmethod
    def build(cls, fitted: np.ndarray, metric: str, *, cells: int, seed: int = 0) -> CellIndex:
        """The index of the rows ``fitted`` (array of shape (m, d)) for ``metric``, in about ``cells``
        cells (at most m) made by a k-means seeded with ``seed``."""
        fit = _prepared(fitted, metric)
        cells = max(1, min(cells, fit.shape[0]))
        rng = np.random.default_rng(seed)
        centroids = fit[np.sort(rng.choice(fit.shape[0], size=cells, replace=False))].copy()
        for _ in range(KMEANS_ITERATIONS):
            assign = cls._nearest_cell(fit, centroids, metric)
            sums = np.zeros_like(centroids)
            np.add.at(sums, assign, fit)
            counts = np.bincount(assign, minlength=cells)
            filled = counts > 0  # an empty cell keeps its centroid
            means = sums[filled] / counts[filled, None]
            centroids[filled] = _unit(means) if metric == "cosine" else means
        assign = cls._nearest_cell(fit, centroids, metric)
        order = np.argsort(assign, kind="stable")
        rows = np.ascontiguousarray(fit[order])
        return cls(
            rows=rows,
            squares=np.einsum("ij,ij->i", rows, rows),
            order=order.astype(np.int64),
            starts=np.searchsorted(assign[order], np.arange(cells + 1)).astype(np.int64),
            centroids=centroids,
            metric=metric,
        )

    @staticmethod
    def _nearest_cell(X: np.ndarray, centroids: np.ndarray, metric: str) -> np.ndarray:
        return np.argmax(_cell_scores(X, centroids, metric), axis=1)

    @property
    def cells(self) -> int:
        return int(self.centroids.shape[0])

    def search(
        self,
        X: np.ndarray,
        k: int,
        *,
        rows: np.ndarray | None = None,
        probes: int = PROBES,
        workers: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest fitted rows of every row of ``X`` (or of ``X[rows]``) among the rows of
        its ``probes`` nearest cells (a row whose cells hold fewer than ``k`` rows is searched exactly).

        ``X`` is read :data:`CELL_BLOCK_ROWS` rows at a time (no copy of it is made), the blocks
        searched on ``workers`` threads (default: the CPU count); the result does not depend on how
        many.

        Returns
        -------
        indices : array of shape (len(rows), k), int64
            Rows of the fitted array, nearest first.
        distances : array of shape (len(rows), k), float32
        """
        wanted = np.arange(np.shape(X)[0]) if rows is None else np.asarray(rows, dtype=np.int64)
        k = min(k, self.rows.shape[0])
        probes = max(1, min(probes, self.cells))
        indices = np.empty((wanted.size, k), dtype=np.int64)
        distances = np.empty((wanted.size, k), dtype=np.float32)

        def one(start: int) -> None:
            data = _prepared(X[wanted[start : start + CELL_BLOCK_ROWS]], self.metric)
            found, dist = self._search_block(data, k, probes)
            indices[start : start + CELL_BLOCK_ROWS] = found
            distances[start : start + CELL_BLOCK_ROWS] = dist

        starts = range(0, wanted.size, CELL_BLOCK_ROWS)
        with _one_blas_thread(), ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            for _ in pool.map(one, starts):
                pass
        return indices, distances

    def _search_block(self, data: np.ndarray, k: int, probes: int) -> tuple[np.ndarray, np.ndarray]:
        n = data.shape[0]
        probed = _smallest(-_cell_scores(data, self.centroids, self.metric), probes)
        flat = probed.ravel()
        by_cell = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[by_cell], np.arange(self.cells + 1))
        which_row, which_slot = by_cell // probes, by_cell % probes
        best = np.full((n, probes, k), np.inf, dtype=np.float32)
        found = np.zeros((n, probes, k), dtype=np.int64)
        for cell in np.flatnonzero(np.diff(bounds)):
            lo, hi = int(self.starts[cell]), int(self.starts[cell + 1])
            if lo == hi:
                continue
            rows, slots = which_row[bounds[cell] : bounds[cell + 1]], which_slot[bounds[cell] : bounds[cell + 1]]
            dist = _distances(data[rows], self.rows[lo:hi], self.squares[lo:hi], self.metric)
            cols = _smallest(dist, k)
            take = cols.shape[1]
            best[rows, slots, :take] = np.take_along_axis(dist, cols, axis=1)
            found[rows, slots, :take] = cols + lo
        flat_best, flat_found = best.reshape(n, -1), found.reshape(n, -1)
        cols, dist = _ascending(flat_best, _smallest(flat_best, k))
        indices = self.order[np.take_along_axis(flat_found, cols, axis=1)]
        short = np.flatnonzero(~np.isfinite(dist[:, -1]))
        if short.size:  # its cells hold fewer than k rows: search them all
            whole, whole_dist = _exact(self.rows, data, short, k, self.metric, QUERY_BLOCK_ROWS)
            indices[short], dist[short] = self.order[whole], whole_dist
        return indices, np.maximum(dist, 0.0)


def _cell_scores(X: np.ndarray, centroids: np.ndarray, metric: str) -> np.ndarray:
    """Higher for nearer centroids: the dot product (cosine, unit rows) or ``x·c - |c|²/2`` (Euclidean)."""
    scores = X @ centroids.T
    if metric == "euclidean":
        scores -= 0.5 * np.einsum("ij,ij->i", centroids, centroids)[None, :]
    return scores


def place_by_neighbours(
    fitted: np.ndarray,
    coords: np.ndarray,
    X: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    n_neighbors: int = 15,
    metric: str = "cosine",
    seed: int = 0,
    cells: int | None = None,
) -> np.ndarray:
    """2-D positions for the rows of ``X`` (or ``X[rows]``) from the layout ``coords`` of the rows ``fitted``.

    Parameters
    ----------
    fitted : array of shape (m, d)
        The rows UMAP laid out.
    coords : array of shape (m, 2)
        Their coordinates.
    X : array of shape (n, d)
        Rows to place (read a block at a time: no copy of it is made).
    rows : array of int, optional
        Place these rows of ``X`` only (default: all).
    n_neighbors : int
        Fitted neighbours averaged per row; clipped to m.
    metric : {"cosine", "euclidean"}
    seed : int
        Seeds the cells of the neighbour search (:func:`nearest_fitted`).
    cells : int, optional
        As for :func:`nearest_fitted`.

    Returns
    -------
    array of shape (len(rows), 2), float64
        Deterministic: the same input and seed give the same positions.
    """
    layout = np.asarray(coords, dtype=np.float64)
    if np.shape(fitted)[0] != layout.shape[0]:
        raise ValueError(f"{layout.shape[0]} coordinates for {np.shape(fitted)[0]} fitted rows")
    wanted = np.arange(np.shape(X)[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.zeros((wanted.size, 2))
    if out.shape[0] == 0 or layout.shape[0] == 0:
        return out
    indices, distances = nearest_fitted(fitted, X, max(1, n_neighbors), metric, rows=wanted, cells=cells, seed=seed)
    return np.einsum("ik,ikj->ij", neighbour_weights(distances), layout[indices])
