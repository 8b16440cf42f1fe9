"""Vendi at any size from Gram partials: ``XᵀX`` summed over shards, never the n×n kernel.

The cosine kernel's nonzero eigenvalues (divided by n) are those of ``XₙᵀXₙ / n`` where ``Xₙ`` has
unit rows. That d×d matrix is a sum over any split of the rows, so every shard (a file, a worker,
a leaf) contributes one small :func:`gram_partial`; Vendi over any union of shards is
:func:`vendi_from_gram` of the summed partials and their summed row counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .diversity import vendi_from_eigenvalues

#: Rows normalized and multiplied per step: bounds the float32 copy to ~BLOCK_ROWS × d.
BLOCK_ROWS = 65_536
#: Rows whose norms are all within this of 1 are used as they are.
UNIT_ATOL = 1e-5


@dataclass(frozen=True)
class GramPartial:
    """``XₙᵀXₙ`` (float64, d×d) of ``n`` unit-normalized rows."""

    gram: np.ndarray
    n: int

    def __add__(self, other: GramPartial) -> GramPartial:
        return GramPartial(self.gram + other.gram, self.n + other.n)


def gram_partial(X: np.ndarray | Sequence[Sequence[float]], *, block: int = BLOCK_ROWS) -> GramPartial:
    """The Gram partial of the rows of ``X`` after scaling each to unit L2 norm.

    Parameters
    ----------
    X : array of shape (n, d)
        Feature rows, any float dtype; multiplied in float32 block by block, summed in float64.
    block : int
        Rows per step.

    Returns
    -------
    GramPartial
        ``gram`` of shape (d, d), ``n`` the number of rows.

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, holds a NaN or infinity, or a row has zero norm.
    """
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D array of shape (n, d), got shape {arr.shape}")
    n, d = arr.shape
    gram = np.zeros((d, d))
    for start in range(0, n, block):
        rows = np.asarray(arr[start : start + block], dtype=np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
        if not np.isfinite(norms).all():
            raise ValueError("features contain NaN or infinite values")
        zero = np.flatnonzero(norms == 0)
        if zero.size:
            raise ValueError(f"row {start + int(zero[0])} has zero norm: its cosine similarity is undefined")
        if not np.allclose(norms, 1.0, rtol=0.0, atol=UNIT_ATOL):
            rows = rows / norms[:, None]  # rows already of unit length (stored embeddings) skip the copy
        gram += rows.T @ rows
    return GramPartial(gram, n)


def sum_partials(partials: Iterable[GramPartial]) -> GramPartial | None:
    """The partial of the union of the shards; None for no shards."""
    total: GramPartial | None = None
    for part in partials:
        total = part if total is None else total + part
    return total


def vendi_from_gram(G: np.ndarray | GramPartial, n: int | None = None, q: float = 1.0) -> float:
    """Vendi score of order ``q`` of ``n`` unit rows whose Gram matrix ``XᵀX`` is ``G``.

    Equals :func:`~treesynth_core.coverage.diversity.vendi_score` of the rows (up to round-off).
    ``G`` may be a :class:`GramPartial` (then ``n`` defaults to its row count). 0.0 for n = 0.
    """
    if isinstance(G, GramPartial):
        n = G.n if n is None else n
        G = G.gram
    if n is None:
        raise ValueError("vendi_from_gram needs n, the number of rows behind the Gram matrix")
    if n == 0:
        return 0.0
    matrix = np.asarray(G, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"expected a square d×d Gram matrix, got shape {matrix.shape}")
    return vendi_from_eigenvalues(np.linalg.eigvalsh(matrix / n), q)
