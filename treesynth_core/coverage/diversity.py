"""Diversity metrics as pure functions over arrays: Vendi scores, mean pairwise cosine, distinct-n.

The API is layered by input, as in the reference Vendi code, but written in float64 and tested
against brute-force definitions (``tests/test_diversity.py``):

- :func:`vendi_from_kernel` takes a kernel matrix ``K`` (n, n) with a unit diagonal;
- :func:`vendi_score` takes features ``X`` (n, d): the cosine kernel of its rows, through the
  n×n kernel when n <= d and through the d×d dual ``XᵀX / n`` when n > d (same nonzero eigenvalues,
  hence the same score for every order q);
- :func:`vendi_spectrum` and :func:`vendi_from_eigenvalues` split the two steps, so several orders
  come from one eigendecomposition.

Vendi over sentence embeddings is "Vendi"; over projected per-sample gradients it is G-Vendi
(Jung et al., Prismatic Synthesis): the same function on other features.

Every score here grows with the number of samples n (Vendi is capped by the rank, i.e. by min(n, d)).
Compare sets only at equal n: :func:`subsample_indices` and :func:`subsample_equal_n` draw seeded
subsamples, nested for one seed, so a "diversity vs n" curve is computed on growing prefixes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

__all__ = [
    "GroupScore",
    "distinct_n",
    "mean_pairwise_cosine",
    "normalize_rows",
    "per_group_scores",
    "subsample_equal_n",
    "subsample_indices",
    "vendi_from_eigenvalues",
    "vendi_from_kernel",
    "vendi_score",
    "vendi_spectrum",
]

K = TypeVar("K", bound=Hashable)

#: Rows per block when the dual matrix XᵀX is accumulated in float64 (bounds the memory used).
_BLOCK_ROWS = 8192
_WORD = re.compile(r"\w+", re.UNICODE)


# -- inputs ---------------------------------------------------------------------------------------


def _as_matrix(X: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D array of shape (n, d), got shape {arr.shape}")
    if arr.shape[0] and arr.shape[1] == 0:
        raise ValueError("features must have at least one column")
    return arr


def normalize_rows(X: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Rows scaled to unit L2 norm, in float64.

    Parameters
    ----------
    X : array of shape (n, d)

    Returns
    -------
    array of shape (n, d), float64

    Raises
    ------
    ValueError
        If a value is not finite or a row has zero norm (its cosine similarity is undefined).
    """
    arr = _as_matrix(X).astype(np.float64, copy=True)
    if not np.isfinite(arr).all():
        raise ValueError("features contain NaN or infinite values")
    norms = np.sqrt(np.einsum("ij,ij->i", arr, arr))
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ValueError(f"row {int(zero[0])} has zero norm: its cosine similarity is undefined")
    arr *= (1.0 / norms)[:, None]
    return arr


# -- Vendi ----------------------------------------------------------------------------------------


def _check_q(q: float) -> float:
    q = float(q)
    if math.isnan(q) or q < 0:
        raise ValueError(f"the order q must be >= 0 (0, 0.5, 1, 2 or inf), got {q}")
    return q


def _tolerance(eigenvalues: np.ndarray, size: int) -> float:
    """Eigenvalues at or below this are round-off: max(λ) · size · machine epsilon (as numpy's matrix_rank)."""
    top = float(eigenvalues.max()) if eigenvalues.size else 0.0
    return max(top, 0.0) * max(size, 1) * np.finfo(np.float64).eps


def vendi_from_eigenvalues(eigenvalues: np.ndarray | Sequence[float], q: float = 1.0) -> float:
    """The Vendi score of order ``q`` from the eigenvalues of ``K / n`` (they sum to 1).

    Eigenvalues at or below a relative round-off tolerance are dropped first (so q = 0 counts the
    numerical rank, not noise); the rest are renormalized to sum to 1.

    Parameters
    ----------
    eigenvalues : array of shape (m,)
        Eigenvalues of a trace-one PSD matrix; tiny negative round-off is allowed.
    q : float
        Order: 1 (Shannon, the default), 0 (rank), ``inf`` (1 / λ_max), any other q >= 0 via the
        Rényi form ``(Σ λ^q)^(1 / (1 - q))``.

    Returns
    -------
    float
        A score between 1 and the number of nonzero eigenvalues; 0.0 when there are none.
    """
    q = _check_q(q)
    lam = np.asarray(eigenvalues, dtype=np.float64).ravel()
    lam = lam[lam > _tolerance(lam, lam.size)]
    if lam.size == 0:
        return 0.0
    lam = lam / lam.sum()
    if q == 0:
        return float(lam.size)
    if q == 1:
        return float(np.exp(-np.sum(lam * np.log(lam))))
    if math.isinf(q):
        return float(1.0 / lam.max())
    return float(np.exp(np.log(np.sum(lam**q)) / (1.0 - q)))


def vendi_spectrum(X: np.ndarray | Sequence[Sequence[float]], *, method: str = "auto") -> np.ndarray:
    """The eigenvalues behind :func:`vendi_score`: those of ``K / n`` for the cosine kernel of X's rows.

    Parameters
    ----------
    X : array of shape (n, d)
        Features; rows are L2-normalized here, in float64.
    method : {"auto", "primal", "dual"}
        ``primal`` decomposes the n×n kernel ``X Xᵀ / n``; ``dual`` the d×d matrix ``Xᵀ X / n``,
        accumulated block by block. ``auto`` picks primal when n <= d, else dual.

    Returns
    -------
    array of shape (min(n, d),) or (n,) / (d,), float64
        Ascending eigenvalues; their sum is 1 (up to round-off). Empty for n = 0.
    """
    arr = _as_matrix(X)
    n, d = arr.shape
    if n == 0:
        return np.zeros(0)
    if method == "auto":
        method = "primal" if n <= d else "dual"
    if method == "primal":
        Xn = normalize_rows(arr)
        matrix = (Xn @ Xn.T) / n
    elif method == "dual":
        matrix = np.zeros((d, d))
        for start in range(0, n, _BLOCK_ROWS):
            block = normalize_rows(arr[start : start + _BLOCK_ROWS])
            matrix += block.T @ block
        matrix /= n
    else:
        raise ValueError(f"method must be 'auto', 'primal' or 'dual', not {method!r}")
    return np.linalg.eigvalsh(matrix)


def vendi_score(X: np.ndarray | Sequence[Sequence[float]], q: float = 1.0, *, method: str = "auto") -> float:
    """Vendi score of order ``q`` over the cosine kernel of the rows of ``X``.

    The exponential of the order-q Rényi entropy of the eigenvalues of ``K / n``, where
    ``K[i, j] = cos(x_i, x_j)``: the effective number of distinct samples. It is n for orthogonal
    rows, 1 for identical rows, and never above rank(X) <= min(n, d).

    Parameters
    ----------
    X : array of shape (n, d)
        One feature row per sample (embeddings, projected gradients); any float dtype, any scale.
    q : float
        Order (see :func:`vendi_from_eigenvalues`): 1 by default; 0.5, 2 and ``inf`` are common.
    method : {"auto", "primal", "dual"}
        See :func:`vendi_spectrum`; every method gives the same score.

    Returns
    -------
    float
        0.0 for no rows, 1.0 for one row.

    Notes
    -----
    The score grows with n: compare two sets only at equal n (see :func:`subsample_equal_n`).
    """
    arr = _as_matrix(X)
    if arr.shape[0] == 0:
        return 0.0
    return vendi_from_eigenvalues(vendi_spectrum(arr, method=method), q)


def vendi_from_kernel(K: np.ndarray | Sequence[Sequence[float]], q: float = 1.0, *, normalize: bool = False) -> float:
    """Vendi score of order ``q`` from a PSD similarity matrix.

    Parameters
    ----------
    K : array of shape (n, n)
        Symmetric positive semi-definite, with ``K[i, i] == 1`` (a similarity of each item to itself).
    q : float
        Order (see :func:`vendi_from_eigenvalues`).
    normalize : bool
        Rescale to a unit diagonal first (``K_ij / sqrt(K_ii K_jj)``) instead of refusing another diagonal.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If K is not square and symmetric, or its diagonal is not 1 and ``normalize`` is False
        (the eigenvalues of K / n would not sum to 1 and the score would mean nothing).
    """
    mat = np.asarray(K, dtype=np.float64)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"a kernel matrix must be square, got shape {mat.shape}")
    n = mat.shape[0]
    if n == 0:
        return 0.0
    if not np.isfinite(mat).all():
        raise ValueError("the kernel matrix contains NaN or infinite values")
    if not np.allclose(mat, mat.T, atol=1e-8):
        raise ValueError("the kernel matrix must be symmetric")
    diag = np.diag(mat).copy()
    if normalize:
        if (diag <= 0).any():
            raise ValueError("cannot normalize a kernel with a non-positive diagonal entry")
        scale = 1.0 / np.sqrt(diag)
        mat = mat * scale[:, None] * scale[None, :]
    elif not np.allclose(diag, 1.0, atol=1e-6):
        raise ValueError("the kernel's diagonal must be 1 (k(x, x) = 1); pass normalize=True to rescale it")
    return vendi_from_eigenvalues(np.linalg.eigvalsh(mat / n), q)


# -- pairwise cosine and distinct-n ---------------------------------------------------------------


def mean_pairwise_cosine(X: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Mean cosine similarity over all pairs of distinct rows (TreeSynth's "Diversity", lower is better).

    Computed in O(n·d) from the sum of the normalized rows: ``Σ_{i≠j} x_i·x_j = |Σ x_i|² − n``.

    Parameters
    ----------
    X : array of shape (n, d)

    Returns
    -------
    float
        In [-1, 1]; NaN when there are fewer than two rows (no pair).
    """
    arr = _as_matrix(X)
    n = arr.shape[0]
    if n < 2:
        return math.nan
    total = np.zeros(arr.shape[1])
    for start in range(0, n, _BLOCK_ROWS):
        total += normalize_rows(arr[start : start + _BLOCK_ROWS]).sum(axis=0)
    return float((total @ total - n) / (n * (n - 1)))


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def distinct_n(texts: Iterable[str], n: int = 1) -> float:
    """Distinct-n (Li et al. 2016): distinct word n-grams over all word n-grams of the texts.

    Words are runs of letters, digits and underscores, case-folded; n-grams never cross texts.

    Parameters
    ----------
    texts : iterable of str
    n : int
        The n-gram length, >= 1.

    Returns
    -------
    float
        In [0, 1]; 0.0 when the texts hold no n-gram.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        words = _words(text)
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


# -- equal-n subsampling --------------------------------------------------------------------------


def subsample_indices(size: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` of ``range(size)``, drawn without replacement with ``seed``, in ascending order.

    They are the first ``n`` entries of one seeded permutation of ``range(size)``, so for one seed
    and size the subsample for a smaller n is contained in the one for a larger n.

    Returns
    -------
    array of shape (min(n, size),), int64
    """
    if size < 0 or n < 0:
        raise ValueError("size and n must be >= 0")
    order = np.random.default_rng(seed).permutation(size)
    return np.sort(order[: min(n, size)]).astype(np.int64)


def subsample_equal_n(sizes: Mapping[K, int], n: int | None = None, seed: int = 0) -> tuple[int, dict[K, np.ndarray]]:
    """Indices that bring every group to the same size, for comparisons at equal n.

    Parameters
    ----------
    sizes : mapping of group -> int
        How many items each group has.
    n : int, optional
        The common size; at most the smallest group (the default is the smallest group).
    seed : int
        Each group is drawn with its own generator seeded with ``seed``, so a group's subsample
        depends only on its size, ``n`` and ``seed`` (not on which other groups are compared).

    Returns
    -------
    n : int
        The common size used.
    indices : dict of group -> array of shape (n,)
        Ascending indices into each group.
    """
    if not sizes:
        return 0, {}
    common = min(sizes.values())
    if n is not None:
        if n < 0:
            raise ValueError("n must be >= 0")
        common = min(common, n)
    return common, {group: subsample_indices(size, common, seed) for group, size in sizes.items()}


# -- per group (leaf, subtree) ---------------------------------------------------------------------


@dataclass(frozen=True)
class GroupScore:
    """Scores of one group (a leaf, a subtree): ``count`` items, scored on a subsample of ``n``."""

    count: int
    n: int
    vendi: float
    mean_cosine: float


def per_group_scores(
    X: np.ndarray | Sequence[Sequence[float]],
    labels: Sequence[K],
    *,
    n: int | None = None,
    q: float = 1.0,
    seed: int = 0,
) -> dict[K, GroupScore]:
    """Vendi and mean pairwise cosine of each group of rows (per leaf, per subtree).

    Parameters
    ----------
    X : array of shape (n_rows, d)
    labels : sequence of length n_rows
        The group of each row.
    n : int, optional
        Score every group on a seeded subsample of this size (groups with fewer rows are scored on
        all of theirs, and their ``n`` says so). None scores each group on all its rows.
    q : float
        Vendi order.
    seed : int
        Seed of the subsamples (see :func:`subsample_indices`).

    Returns
    -------
    dict of label -> GroupScore
        In order of first appearance of each label.
    """
    arr = _as_matrix(X)
    if len(labels) != arr.shape[0]:
        raise ValueError(f"{len(labels)} labels for {arr.shape[0]} rows")
    rows: dict[K, list[int]] = {}
    for index, label in enumerate(labels):
        rows.setdefault(label, []).append(index)
    out: dict[K, GroupScore] = {}
    for label, members in rows.items():
        chosen = np.asarray(members)
        if n is not None:
            chosen = chosen[subsample_indices(len(members), n, seed)]
        part = arr[chosen]
        out[label] = GroupScore(len(members), len(chosen), vendi_score(part, q), mean_pairwise_cosine(part))
    return out
