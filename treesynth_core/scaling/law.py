"""Scaling laws for synthetic data: how the error falls as the data grows, and where it stops falling.

SynthLLM (Qin et al., arXiv 2503.19551) fits the *rectified* scaling law of Lin et al. (2024)

    L(D) = B / (D_l + D**beta) + E

to the error rate L of models fine-tuned on D tokens (or samples) of synthetic data, and compares it
with the plain power law ``L(D) = B / D**beta + E``, which cannot bend: at small D the rectified law
is flat (D_l, the "pre-learned data size", dominates D**beta), so B / D_l is the error above the floor
before any fine-tuning; at large D both laws fall as D**-beta towards the floor E.

The pipeline, one pure function each:

* :mod:`treesynth_core.scaling.points` reads the measured points and maps the metric onto the
  error the laws are fitted to.
* Here, :func:`fit_rectified` and :func:`fit_power` fit by least squares in log-parameter space
  (B, D_l, beta > 0; E >= 0 by bounds) from a fixed grid of starts plus seeded random restarts, and
  return a frozen :class:`ScalingFit` with a :meth:`~ScalingFit.predict` method (same data and seed,
  same fit); :func:`bootstrap_intervals` gives residual-bootstrap intervals of the parameters.
* :mod:`treesynth_core.scaling.report` holds out test points, scores the fits on them, finds where
  a 10x larger D stops paying, and extrapolates: :func:`~treesynth_core.scaling.report.fit_report`
  does all of it for one model; :func:`treesynth_core.scaling.plot.scaling_figure` draws reports.

The paper does not state its fitting loss or optimiser; with few points the rectified law is poorly
identified (very different (B, D_l, beta) give near-identical curves over the data), so read the
parameters with their intervals and trust the held-out error more than the fit RMSE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import TreeSynthError
from .points import PointsError

Law = Literal["rectified", "power"]
#: Parameters of each law (the power law has no D_l).
N_PARAMS: dict[Law, int] = {"rectified": 4, "power": 3}
#: beta is searched in [BETA_MIN, BETA_MAX].
BETA_MIN, BETA_MAX = 1e-3, 10.0


# -- fitting -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalingFit:
    """A fitted law, in the error's units and the input's size units.

    ``L(D) = B / (D_l + D**beta) + E`` (rectified) or ``B / D**beta + E`` (power, ``D_l == 0``).
    """

    law: Law
    B: float
    D_l: float
    beta: float
    E: float
    #: Root-mean-square error on the fit points (error units = the metric's units).
    rmse: float
    n_points: int
    #: Smallest and largest fitted size.
    size_range: tuple[float, float]

    def predict(self, D: Any) -> np.ndarray:
        """The error at size(s) ``D`` (> 0), shape as ``D``; computed in log space (no overflow)."""
        log_d = np.log(np.asarray(D, dtype=float))
        scaled = self.beta * log_d
        denominator = np.logaddexp(math.log(self.D_l), scaled) if self.D_l > 0 else scaled
        return np.exp(math.log(self.B) - denominator) + self.E

    @property
    def initial_gap(self) -> float | None:
        """B / D_l: the error above the floor at D = 0 (rectified only; the paper's "B/D_l")."""
        return self.B / self.D_l if self.law == "rectified" and self.D_l > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "law": self.law,
                "B": self.B,
                "D_l": self.D_l if self.law == "rectified" else None,
                "beta": self.beta,
                "E": self.E,
                "B_over_D_l": self.initial_gap,
                "rmse": self.rmse,
                "n_points": self.n_points,
                "size_range": list(self.size_range),
            }
        )


def _arrays(D: Any, L: Any, law: Law) -> tuple[np.ndarray, np.ndarray]:
    sizes, errors = np.asarray(D, dtype=float).ravel(), np.asarray(L, dtype=float).ravel()
    if sizes.shape != errors.shape:
        raise PointsError(f"{sizes.size} sizes but {errors.size} metric values")
    if not (np.isfinite(sizes).all() and np.isfinite(errors).all()):
        raise PointsError("sizes and metric values must be finite numbers")
    if (sizes <= 0).any():
        raise PointsError(f"size {sizes[sizes <= 0][0]:g} must be > 0 (the laws take log D)")
    if (errors < 0).any():
        raise PointsError(f"error {errors[errors < 0][0]:g} is negative; the law's floor E is >= 0")
    need, distinct = N_PARAMS[law], np.unique(sizes).size
    if distinct < need:
        raise PointsError(
            f"the {law} law has {need} parameters and needs at least {need} distinct sizes to fit; got {distinct}"
        )
    return sizes, errors


def _model(law: Law, p: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and Jacobian at centred log sizes ``x``; ``p`` = (log B, [log D_l,] log beta, E)."""
    beta = math.exp(p[-2])
    if law == "rectified":
        log_q = np.logaddexp(p[1], beta * x)
        above = np.exp(p[0] - log_q)
        share = np.exp(p[1] - log_q)  # D_l / (D_l + D**beta)
        jac = np.column_stack([above, -above * share, -above * (1.0 - share) * x * beta, np.ones_like(x)])
    else:
        above = np.exp(p[0] - beta * x)
        jac = np.column_stack([above, -above * x * beta, np.ones_like(x)])
    return above + p[-1], jac


def _scale_and_floor(g: np.ndarray, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row of ``g`` (shape (..., n)): the least-squares B >= 0, E >= 0 of ``B g + E ~ errors``
    and its sum of squares. Two columns, so the bounded problem is solved exactly: the unconstrained
    solution when feasible, else the better of the boundary solutions E = 0 and B = 0."""
    mean_g, mean_l = g.mean(-1), float(errors.mean())
    centred = g - mean_g[..., None]
    var, cov = (centred**2).sum(-1), (centred * (errors - mean_l)).sum(-1)
    slope = np.where(var > 0, cov / np.where(var > 0, var, 1.0), 0.0)
    floor = mean_l - slope * mean_g
    inner_ok = (slope >= 0) & (floor >= 0)
    no_floor = np.maximum((g * errors).sum(-1) / np.maximum((g * g).sum(-1), 1e-300), 0.0)
    candidates = [
        (np.where(inner_ok, slope, 0.0), np.where(inner_ok, floor, 0.0)),
        (no_floor, np.zeros_like(no_floor)),
        (np.zeros_like(no_floor), np.full_like(no_floor, max(mean_l, 0.0))),
    ]
    sse = np.stack([((b[..., None] * g + e[..., None] - errors) ** 2).sum(-1) for b, e in candidates])
    sse[0] = np.where(inner_ok, sse[0], np.inf)
    pick = np.argmin(sse, axis=0)
    scale = np.choose(pick, [b for b, _ in candidates])
    return scale, np.choose(pick, [e for _, e in candidates]), np.choose(pick, sse)


#: Grid of starts: beta (log spaced) and, for the rectified law, where the bend sits: log D_l = beta * (x_min +
#: u (x_max - x_min)) in centred log sizes, u from far below the smallest size (a power law) to far above the largest.
BETA_GRID = np.geomspace(2.5e-3, BETA_MAX, 37)
BEND_GRID = np.linspace(-4.0, 5.0, 37)


def _starts(law: Law, x: np.ndarray, errors: np.ndarray, count: int) -> list[np.ndarray]:
    """Starting points from a grid over the nonlinear parameters (beta, and D_l for the rectified law),
    with B and E solved exactly at each grid point: the ``count`` best local minima of the grid."""
    from scipy.ndimage import minimum_filter

    if law == "rectified":
        betas, bends = np.meshgrid(BETA_GRID, BEND_GRID, indexing="ij")
        log_dl = betas * (x.min() + bends * (x.max() - x.min()))
        g = np.exp(-np.logaddexp(log_dl[..., None], betas[..., None] * x))
    else:
        betas, log_dl = BETA_GRID, np.zeros_like(BETA_GRID)
        g = np.exp(-betas[:, None] * x)
    scale, floor, sse = _scale_and_floor(g, errors)
    minima = np.flatnonzero((sse <= minimum_filter(sse, size=3, mode="nearest")).ravel())
    chosen = minima[np.argsort(sse.ravel()[minima], kind="stable")][:count]
    tiny = 1e-12 * max(float(errors.max()), 1e-12)
    starts = []
    for k in chosen:
        middle = [float(log_dl.ravel()[k])] if law == "rectified" else []
        log_b = math.log(max(float(scale.ravel()[k]), tiny))
        starts.append(np.array([log_b, *middle, math.log(float(betas.ravel()[k])), float(floor.ravel()[k])]))
    return starts


def _bounds(law: Law) -> tuple[np.ndarray, np.ndarray]:
    inner = [-300.0] * (N_PARAMS[law] - 2)
    lower = np.array([*inner, math.log(BETA_MIN), 0.0])
    upper = np.array([300.0] * (N_PARAMS[law] - 2) + [math.log(BETA_MAX), np.inf])
    return lower, upper


def _least_squares(
    law: Law, x: np.ndarray, errors: np.ndarray, starts: Sequence[np.ndarray]
) -> tuple[float, np.ndarray] | None:
    """The best (cost, parameters) of bounded least squares from each start (None if none converged)."""
    from scipy.optimize import least_squares

    lower, upper = _bounds(law)
    best: tuple[float, np.ndarray] | None = None
    for start in starts:
        x0 = np.clip(start, lower + 1e-9, np.where(np.isfinite(upper), upper - 1e-9, upper))
        try:
            result = least_squares(
                lambda p: _model(law, p, x)[0] - errors,
                x0,
                jac=lambda p: _model(law, p, x)[1],
                bounds=(lower, upper),
                x_scale="jac",
                max_nfev=MAX_NFEV,
            )
        except (ValueError, FloatingPointError):  # a start where the residuals are not finite
            continue
        if np.isfinite(result.cost) and (best is None or result.cost < best[0]):
            best = (float(result.cost), result.x)
    return best


#: Starts taken from the grid's best local minima.
GRID_STARTS = 4
#: Function evaluations per start: the grid starts near a minimum, so more only wander along flat directions.
MAX_NFEV = 100


def _fit(
    law: Law, D: Any, L: Any, *, seed: int, n_starts: int, starts: Sequence[np.ndarray] | None = None
) -> ScalingFit:
    sizes, errors = _arrays(D, L, law)
    log_scale = float(np.log(sizes).mean())  # fit in units of the geometric mean size: better conditioned
    x = np.log(sizes) - log_scale
    best = _least_squares(law, x, errors, _starts(law, x, errors, GRID_STARTS) if starts is None else starts)
    if best is None:
        raise TreeSynthError(f"the {law} law could not be fitted to these points (no start converged)")
    if n_starts > 0:  # seeded random restarts around the best so far
        rng = np.random.default_rng(seed)
        spread = np.array([1.0] * (N_PARAMS[law] - 2) + [0.5, 0.25 * float(errors.std()) + 1e-12])
        again = _least_squares(
            law, x, errors, [best[1] + rng.normal(size=best[1].size) * spread for _ in range(n_starts)]
        )
        if again is not None and again[0] < best[0]:
            best = again
    params = best[1]
    prediction = _model(law, params, x)[0]
    beta = math.exp(params[-2])
    # undo the scaling: B'/(D_l' + (D/s)**beta) = B' s**beta / (D_l' s**beta + D**beta)
    log_b = params[0] + beta * log_scale
    log_dl = params[1] + beta * log_scale if law == "rectified" else -math.inf
    return ScalingFit(
        law=law,
        B=math.exp(log_b),
        D_l=math.exp(log_dl),
        beta=beta,
        E=float(params[-1]),
        rmse=float(np.sqrt(np.mean((prediction - errors) ** 2))),
        n_points=int(sizes.size),
        size_range=(float(sizes.min()), float(sizes.max())),
    )


def fit_rectified(D: Any, L: Any, *, seed: int = 0, n_starts: int = 2) -> ScalingFit:
    """Fit ``L(D) = B / (D_l + D**beta) + E`` by least squares.

    Parameters
    ----------
    D : array, shape (n,)
        Sizes (> 0; tokens or samples, any unit). Repeated sizes are fine; at least 4 distinct.
    L : array, shape (n,)
        Errors (>= 0; lower is better). Convert accuracies with :func:`~treesynth_core.scaling.points.to_error` first.
    seed : int
        Seed of the random restarts (the result is deterministic given the data and the seed).
    n_starts : int
        Seeded random restarts around the best fit from the grid starts (0: grid starts only).

    Returns
    -------
    ScalingFit
        Parameters in the input's units; ``rmse`` on these points.

    Starts: on a grid over (beta, D_l), B and E enter linearly, so they are solved exactly (with
    B, E >= 0) at every grid point; the best :data:`GRID_STARTS` local minima of that grid start
    bounded least squares (scipy's trust-region reflective method, analytic Jacobian) over
    (log B, log D_l, log beta, E) with E >= 0 and beta in [BETA_MIN, BETA_MAX], sizes scaled by
    their geometric mean; then ``n_starts`` seeded restarts; the lowest sum of squares wins.
    """
    return _fit("rectified", D, L, seed=seed, n_starts=n_starts)


def fit_power(D: Any, L: Any, *, seed: int = 0, n_starts: int = 2) -> ScalingFit:
    """Fit ``L(D) = B / D**beta + E`` (at least 3 distinct sizes); as :func:`fit_rectified`."""
    return _fit("power", D, L, seed=seed, n_starts=n_starts)


def _params(fit: ScalingFit, log_scale: float) -> np.ndarray:
    """The fit's parameter vector in the scaled space ``_fit`` optimises in."""
    middle = [math.log(fit.D_l) - fit.beta * log_scale] if fit.law == "rectified" else []
    return np.array([math.log(fit.B) - fit.beta * log_scale, *middle, math.log(fit.beta), fit.E])


def bootstrap_intervals(
    fit: ScalingFit, D: Any, L: Any, *, n_resamples: int = 50, level: float = 0.9, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Residual-bootstrap intervals of the parameters (and B/D_l): refit ``fit.law`` to the fitted
    curve plus residuals drawn with replacement (scaled by sqrt(n / (n - p))), each refit started
    from ``fit``. Returns ``{name: (low, high)}`` at ``level`` (percentile method); ``{}`` when
    there are no more points than parameters (no residuals to resample) or ``n_resamples < 2``.

    This reflects the scatter of the fit points around the curve, not whether the law is right.
    """
    sizes, errors = _arrays(D, L, fit.law)
    p = N_PARAMS[fit.law]
    if sizes.size <= p or n_resamples < 2:
        return {}
    fitted = fit.predict(sizes)
    residuals = (errors - fitted) * math.sqrt(sizes.size / (sizes.size - p))
    residuals -= residuals.mean()
    log_scale = float(np.log(sizes).mean())
    start = _params(fit, log_scale)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {"B": [], "D_l": [], "beta": [], "E": [], "B_over_D_l": []}
    for _ in range(n_resamples):
        resampled = np.maximum(fitted + rng.choice(residuals, size=residuals.size, replace=True), 0.0)
        try:
            refit = _fit(fit.law, sizes, resampled, seed=0, n_starts=0, starts=[start])
        except TreeSynthError:
            continue
        values = {"B": refit.B, "D_l": refit.D_l, "beta": refit.beta, "E": refit.E, "B_over_D_l": refit.initial_gap}
        for name, value in values.items():
            if value is not None:
                samples[name].append(value)
    tail = 50.0 * (1.0 - level)
    return {
        name: (float(np.percentile(v, tail)), float(np.percentile(v, 100.0 - tail)))
        for name, v in samples.items()
        if len(v) >= 2 and not (fit.law == "power" and name == "D_l")
    }


def json_safe(value: Any) -> Any:
    """``value`` made JSON-safe: non-finite floats become None (in dicts, lists and tuples too)."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value
