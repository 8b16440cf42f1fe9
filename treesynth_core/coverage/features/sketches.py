"""The seeded random pieces of the gradient features' projection (see
:mod:`treesynth_core.coverage.features.gradients`): Gaussian factors for weight matrices (LoGra's
Kronecker-factored projection) and count sketches for every other parameter. Drawn on the CPU from
seeds, so the same seed gives the same numbers on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def factor_dims(d: int) -> tuple[int, int]:
    """(k_r, k_c) with k_r·k_c = d and k_r the largest divisor of d up to sqrt(d): 1024 -> (32, 32).
    Square-ish factors project best; a prime ``dim`` degenerates to (1, d)."""
    k = math.isqrt(d)
    while d % k:
        k -= 1
    return k, d // k


def gaussian(shape: tuple[int, int], seed: int, scale: float) -> torch.Tensor:
    """A seeded N(0, scale²) matrix, drawn on the CPU (the same numbers whatever the device)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen).mul_(scale)


class CountSketch:
    """A seeded count sketch of the last axis, length ``n`` -> ``d``: coordinate i goes to bucket
    ``bucket[i]`` with sign ``sign[i]``. Buckets are balanced (a random permutation of ``m·d`` slots
    folded ``m`` times, m = ceil(n/d)), so for n <= d no two coordinates collide. Applied by a
    gather and a sum: deterministic on CPU and GPU."""

    def __init__(self, n: int, d: int, seed: int, device: torch.device) -> None:
        import torch

        gen = torch.Generator().manual_seed(seed)
        self.n, self.d, self.m = n, d, max(1, math.ceil(n / d))
        slots = torch.randperm(self.m * d, generator=gen)[:n]
        sign = torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1
        self.bucket = (slots % d).numpy().astype(np.int64)
        self.sign = sign.numpy().astype(np.float64)
        source = torch.zeros(self.m * d, dtype=torch.long)
        slot_sign = torch.zeros(self.m * d)
        source[slots] = torch.arange(n)
        slot_sign[slots] = sign
        self._source, self._slot_sign = source.to(device), slot_sign.to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(..., n) -> (..., d)."""
        y = x.index_select(-1, self._source).mul_(self._slot_sign)
        return y.view(*x.shape[:-1], self.m, self.d).sum(-2) if self.m > 1 else y

    @classmethod
    def summed(cls, sketches: Sequence[CountSketch]) -> CountSketch:
        """One sketch of the concatenated inputs equal to the sum of ``sketches`` (all of the same
        ``d``): their slots side by side, so one gather and one sum apply them all."""
        import torch

        self = cls.__new__(cls)
        self.d = sketches[0].d
        self.n, self.m = sum(s.n for s in sketches), sum(s.m for s in sketches)
        offsets = np.cumsum([0] + [s.n for s in sketches[:-1]])
        self.bucket = np.concatenate([s.bucket for s in sketches])
        self.sign = np.concatenate([s.sign for s in sketches])
        self._source = torch.cat([s._source + int(o) for s, o in zip(sketches, offsets, strict=True)])
        self._slot_sign = torch.cat([s._slot_sign for s in sketches])
        return self
