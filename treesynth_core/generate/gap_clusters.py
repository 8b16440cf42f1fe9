"""Clustering of gap filling (Prismatic Synthesis, research brief A3 step 4): spherical (cosine)
k-means over feature rows, the sparse clusters candidates must land in, and the smallest clusters
few-shot examples may come from. Pure functions over arrays."""

from __future__ import annotations

import math

import numpy as np

_CHUNK = 4096  # rows of X per similarity block


def unit_rows(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"expected features of shape (n, d), got {X.shape}")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def assign_nearest(X: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, cosine to the chosen centroid) of each row, in row blocks."""
    labels = np.empty(len(X), dtype=np.int64)
    best = np.empty(len(X), dtype=np.float32)
    for start in range(0, len(X), _CHUNK):
        sims = X[start : start + _CHUNK] @ centroids.T
        labels[start : start + _CHUNK] = sims.argmax(axis=1)
        best[start : start + _CHUNK] = sims.max(axis=1)
    return labels, best


def _kmeans_pp(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding for the cosine distance: the next seed is drawn with probability
    proportional to 1 - (best cosine to the seeds so far), the squared chord length."""
    chosen = [int(rng.integers(len(X)))]
    closest = X @ X[chosen[0]]
    for _ in range(1, k):
        weights = np.clip(1.0 - closest, 0.0, None).astype(np.float64)
        weights[chosen] = 0.0
        total = weights.sum()
        if total <= 0:  # every remaining point duplicates a seed: take any unused one
            pick = int(rng.choice(np.setdiff1d(np.arange(len(X)), chosen)))
        else:
            pick = int(rng.choice(len(X), p=weights / total))
        chosen.append(pick)
        closest = np.maximum(closest, X @ X[pick])
    return X[chosen].copy()


def spherical_kmeans(
    X: np.ndarray, k: int, *, iters: int = 20, seed: int = 0, init: str | np.ndarray = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Spherical (cosine) k-means.

    Parameters
    ----------
    X : array of shape (n, d)
        Feature rows; they are L2-normalized here (a zero row stays zero).
    k : int
        Number of clusters, 1 <= k <= n.
    iters : int
        At most this many Lloyd iterations (it stops early when no label changes).
    seed : int
        Seeds the initialization: the same X, k and seed give the same result.
    init : {"auto", "k-means++", "random"} or array of shape (k, d)
        "k-means++" (cosine k-means++ seeding, O(n·k·d)); "random": k distinct rows drawn with the
        seed; "auto": k-means++ when n·k <= 5e7, else random. An array gives the initial centroids.

    Returns
    -------
    centroids : array of shape (k, d), float32, unit rows
    labels : array of shape (n,), int64
        The nearest centroid (highest cosine) of each row.

    Notes
    -----
    The M-step is one sparse one-hot product (no Python loop over clusters). A cluster left empty
    is re-seeded with the row farthest from its own centroid (distinct rows for several empty
    clusters), so the returned labels leave no cluster empty unless X has fewer than k distinct
    rows.
    """
    from scipy import sparse

    X = unit_rows(X)
    n, d = X.shape
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of rows ({n}), not {k}")
    rng = np.random.default_rng(seed)
    if isinstance(init, np.ndarray):
        if init.shape != (k, d):
            raise ValueError(f"initial centroids must have shape {(k, d)}, not {init.shape}")
        centroids = unit_rows(init)
    elif init == "k-means++" or (init == "auto" and n * k <= 5e7):
        centroids = _kmeans_pp(X, k, rng)
    elif init in ("random", "auto"):
        centroids = X[rng.choice(n, size=k, replace=False)].copy()
    else:
        raise ValueError(f"init must be 'auto', 'k-means++', 'random' or an array, not {init!r}")
    previous: np.ndarray | None = None
    for _ in range(max(1, iters)):
        labels, best = assign_nearest(X, centroids)
        if previous is not None and np.array_equal(labels, previous):
            break
        previous = labels
        onehot = sparse.csr_matrix((np.ones(n, dtype=np.float32), (labels, np.arange(n))), shape=(k, n))
        sums = np.asarray(onehot @ X, dtype=np.float32)
        counts = np.bincount(labels, minlength=k)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            far = np.argsort(best, kind="stable")[: len(empty)]  # lowest cosine to its own centroid
            sums[empty[: len(far)]] = X[far]
        centroids = unit_rows(sums)
    labels, _ = assign_nearest(X, centroids)
    return centroids, labels


def sparse_clusters(labels: np.ndarray, k: int, fraction: float) -> np.ndarray:
    """Boolean (k,): clusters whose size is below the size at index ⌊k · fraction⌋ of the
    ascending sizes (Prismatic's "smallest ratio"); every cluster when none is."""
    sizes = np.bincount(labels, minlength=k)
    threshold = np.sort(sizes)[min(k - 1, max(0, math.floor(k * fraction)))]
    sparse = sizes < threshold
    return sparse if sparse.any() else np.ones(k, dtype=bool)


def smallest_clusters(labels: np.ndarray, k: int, fraction: float = 0.1) -> np.ndarray:
    """Boolean (k,): the ⌈k · fraction⌉ smallest non-empty clusters (ties by cluster number), as
    ``ClusterManager.select_fewshot_examples`` of the released code picks from."""
    sizes = np.bincount(labels, minlength=k)
    nonempty = np.flatnonzero(sizes)
    chosen = nonempty[np.argsort(sizes[nonempty], kind="stable")[: max(1, math.ceil(k * fraction))]]
    mask = np.zeros(k, dtype=bool)
    mask[chosen] = True
    return mask
