"""The curves of the gap-filling report (Prismatic Synthesis, arXiv 2505.20161): the histogram of
cluster sizes, and the Vendi-vs-n curve of the growing pool against a random-acceptance baseline
(the same number of each round's candidates kept at random). Pure functions over arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..coverage.diversity import vendi_from_eigenvalues


def cluster_size_histogram(labels: np.ndarray, k: int) -> list[tuple[int, int]]:
    """``(size, clusters of that size)`` pairs, ascending by size, for ``k`` clusters labelled
    ``labels`` (empty clusters count as size 0)."""
    sizes = np.bincount(np.asarray(labels, dtype=np.int64), minlength=k)
    values, counts = np.unique(sizes, return_counts=True)
    return [(int(v), int(c)) for v, c in zip(values, counts, strict=True)]


def random_acceptance(candidates: int, kept: int, seed: int) -> np.ndarray:
    """The rows of the random-acceptance baseline: ``kept`` of ``candidates`` rows drawn without
    replacement (seeded), ascending."""
    if not 0 <= kept <= candidates:
        raise ValueError(f"cannot keep {kept} of {candidates} candidates")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(candidates, size=kept, replace=False))


class GrowingVendi:
    """The Vendi score (cosine kernel, q = 1) of a pool that only grows, updated per batch of rows.

    Keeps ``S = Σ x̂ x̂ᵀ`` (d×d, over the unit rows x̂) and n: the nonzero eigenvalues of ``S / n``
    are those of the n×n kernel ``K / n``, so :meth:`score` equals
    :func:`~treesynth_core.coverage.diversity.vendi_score` of every row added so far, at O(b·d²)
    per batch of b rows instead of recomputing from all n rows.

    Parameters
    ----------
    X : array of shape (n, d)
        The starting pool (may be empty with d columns).
    """

    def __init__(self, X: np.ndarray) -> None:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"expected features of shape (n, d), got {X.shape}")
        self.n = 0
        self.S = np.zeros((X.shape[1], X.shape[1]))
        self.add(X)

    def add(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, self.S.shape[0])
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        unit = rows / np.where(norms > 0, norms, 1.0)
        self.S += unit.T @ unit
        self.n += len(rows)

    def score(self) -> float:
        if self.n == 0:
            return 0.0
        return vendi_from_eigenvalues(np.linalg.eigvalsh(self.S / self.n))


def vendi_curve(
    pool: np.ndarray, kept: Sequence[np.ndarray], randomly: Sequence[np.ndarray]
) -> list[tuple[int, float, float]]:
    """The Vendi-vs-n curve of a pool grown round by round, against a random-acceptance baseline.

    Parameters
    ----------
    pool : array of shape (n0, d)
        The pool before the first round.
    kept : sequence of arrays of shape (m_r, d)
        The features each round kept.
    randomly : sequence of arrays of shape (m_r, d)
        As many of each round's candidates, drawn at random (:func:`random_acceptance`).

    Returns
    -------
    list of (n, kept Vendi, random Vendi)
        One point before the first round and one after each round; n counts the pool's rows.
    """
    if len(kept) != len(randomly):
        raise ValueError("kept and randomly need one batch per round each")
    ours, theirs = GrowingVendi(pool), GrowingVendi(pool)
    start = ours.score()
    points = [(ours.n, start, start)]
    for mine, other in zip(kept, randomly, strict=True):
        if len(mine) != len(other):
            raise ValueError(f"a round kept {len(mine)} rows but the baseline {len(other)}: they must match")
        ours.add(mine)
        theirs.add(other)
        points.append((ours.n, ours.score(), theirs.score()))
    return points
