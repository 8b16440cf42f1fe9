"""Speed and agreement of the diversity metrics (numbers printed from one run; not a timed test).

1. Vendi of 100,000 x 1,024 random float32 features (the dual d x d form, float64 blocks).
2. Dual form against brute force at n = 2,000 (d = 1,024): the explicit n x n cosine kernel and its
   eigenvalues; the scores must agree within 1e-9, and the ratio of the two times is printed.
3. Mean pairwise cosine by the sum-vector trick against the explicit n x n similarity matrix.

    .venv/bin/python benchmarks/metrics.py [--n 100000] [--d 1024] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from treesynth_core.coverage import diversity as D  # noqa: E402

AGREEMENT = 1e-9


def timed(fn, *args, repeat: int = 1, **kwargs):
    """(best wall time in seconds over ``repeat`` runs, result)."""
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, result


def brute_force_vendi(X: np.ndarray, q: float = 1.0) -> float:
    """The definition, without the dual: explicit n x n cosine kernel, eigvalsh of K / n."""
    norms = np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)
    U = X / norms
    K = U @ U.T
    return D.vendi_from_eigenvalues(np.linalg.eigvalsh(K / len(X)), q)


def brute_force_mean_cosine(X: np.ndarray) -> float:
    U = X.astype(np.float64) / np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)
    S = U @ U.T
    n = len(X)
    return float((S.sum() - np.trace(S)) / (n * (n - 1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=1_024)
    parser.add_argument("--n-check", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    big = rng.standard_normal((args.n, args.d), dtype=np.float32)
    big_s, big_vendi = timed(D.vendi_score, big)
    del big

    # structured features (clusters), so the spectrum is not flat and the check is not trivial
    centers = rng.standard_normal((50, args.d))
    X = (centers[rng.integers(0, 50, args.n_check)] + 0.5 * rng.standard_normal((args.n_check, args.d))).astype(
        np.float32
    )
    results = {}
    for q in (0.5, 1.0, 2.0, math.inf):
        dual_s, dual = timed(D.vendi_score, X, q, method="dual", repeat=3)
        brute_s, brute = timed(brute_force_vendi, X, q, repeat=3)
        results["inf" if math.isinf(q) else f"{q:g}"] = {
            "dual": dual,
            "brute_force": brute,
            "abs_diff": abs(dual - brute),
            "dual_s": dual_s,
            "brute_force_s": brute_s,
            "time_ratio_dual_over_brute": dual_s / brute_s,
        }
    cos_s, cos = timed(D.mean_pairwise_cosine, X, repeat=3)
    cos_brute_s, cos_brute = timed(brute_force_mean_cosine, X, repeat=3)
    worst = max(r["abs_diff"] for r in results.values())
    data = {
        "vendi_big": {"n": args.n, "d": args.d, "seconds": big_s, "vendi": big_vendi},
        "check": {"n": args.n_check, "d": args.d, "orders": results, "max_abs_diff": worst, "limit": AGREEMENT},
        "mean_cosine": {
            "n": args.n_check,
            "abs_diff": abs(cos - cos_brute),
            "seconds": cos_s,
            "brute_force_seconds": cos_brute_s,
            "time_ratio": cos_s / cos_brute_s,
        },
        "ok": worst < AGREEMENT,
    }
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"Vendi of {args.n:,} x {args.d:,} float32 features (dual form): {big_s:.2f} s (score {big_vendi:.2f})")
        print(f"Dual vs brute force at n = {args.n_check:,}, d = {args.d:,}:")
        for q, r in results.items():
            print(
                f"  q={q:<4} dual {r['dual']:.12f}  brute {r['brute_force']:.12f}  |diff| {r['abs_diff']:.2e}  "
                f"time dual/brute {r['time_ratio_dual_over_brute']:.3f} ({r['dual_s']:.3f} s / "
                f"{r['brute_force_s']:.3f} s)"
            )
        print(f"  max |diff| {worst:.2e} (limit {AGREEMENT:g}): {'OK' if data['ok'] else 'FAIL'}")
        print(
            f"Mean pairwise cosine, sum trick vs explicit matrix: |diff| {data['mean_cosine']['abs_diff']:.2e}, "
            f"time ratio {data['mean_cosine']['time_ratio']:.3f}"
        )
    return 0 if data["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
