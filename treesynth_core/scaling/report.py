"""One scaling report: both laws fitted to one model's points, scored on held-out points, with the
plateau and an extrapolation.

:func:`split_fit_test` holds out the largest size(s) (or follows an explicit ``split`` column);
:func:`evaluate` scores a fit on the held-out points; :func:`plateau_size` finds where a 10x larger
D stops paying; :func:`extrapolate` tabulates predictions; :func:`fit_report` does all of it for one
model and :func:`fit_reports` for each model of a :class:`~treesynth_core.scaling.points.PointSet`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .law import BETA_MAX, BETA_MIN, N_PARAMS, ScalingFit, bootstrap_intervals, fit_power, fit_rectified, json_safe
from .points import METRIC_KINDS, MetricKind, Point, PointsError, PointSet, from_error, to_error

#: Default plateau threshold (the gain in the metric's units from a 10x larger D) per metric kind.
DEFAULT_THRESHOLD: dict[MetricKind, float] = {"loss": 0.01, "accuracy_percent": 1.0, "accuracy_fraction": 0.01}


# -- splitting, scoring, plateau, extrapolation ------------------------------------------------------


def split_fit_test(points: Sequence[Point], n_test: int | None = None) -> tuple[list[Point], list[Point]]:
    """Split points into (fit, held-out test).

    When any point has an explicit ``split``, that decides (and ``n_test`` must be None). Otherwise
    every point at the ``n_test`` largest distinct sizes is held out; ``n_test=None`` holds out the
    largest size when at least 5 distinct sizes remain to fit the rectified law with one spare, else
    none. Raises :class:`PointsError` when ``n_test`` would leave fewer than 4 distinct fit sizes.
    """
    points = list(points)
    if any(point.split is not None for point in points):
        if n_test is not None:
            raise PointsError("the points have a split column: drop --test (or the column) to choose the test points")
        return [q for q in points if q.split != "test"], [q for q in points if q.split == "test"]
    sizes = sorted({point.size for point in points})
    need = N_PARAMS["rectified"]
    if len(sizes) < need:
        raise PointsError(
            f"the rectified law has {need} parameters and needs at least {need} distinct sizes to fit; got {len(sizes)}"
        )
    if n_test is None:
        n_test = 1 if len(sizes) >= N_PARAMS["rectified"] + 2 else 0
    if n_test < 0:
        raise PointsError(f"--test must be >= 0, got {n_test}")
    if len(sizes) - n_test < N_PARAMS["rectified"]:
        raise PointsError(
            f"holding out {n_test} of {len(sizes)} distinct sizes leaves {len(sizes) - n_test}; the "
            f"rectified law needs at least {N_PARAMS['rectified']} to fit"
        )
    held = set(sizes[len(sizes) - n_test :]) if n_test else set()
    return [q for q in points if q.size not in held], [q for q in points if q.size in held]


@dataclass(frozen=True)
class HeldOut:
    """How a fit predicts held-out points (metric units)."""

    n: int
    rmse: float
    max_abs_error: float
    #: Predicted minus actual error, one per held-out point (positive: the law was too pessimistic).
    residuals: tuple[float, ...]


def evaluate(fit: ScalingFit, test_points: Sequence[Point], metric_kind: MetricKind = "loss") -> HeldOut | None:
    """RMSE and max |error| of ``fit`` on ``test_points`` (None when there are none)."""
    if not test_points:
        return None
    sizes = np.array([point.size for point in test_points])
    residuals = fit.predict(sizes) - to_error([point.metric for point in test_points], metric_kind)
    return HeldOut(
        n=len(test_points),
        rmse=float(np.sqrt(np.mean(residuals**2))),
        max_abs_error=float(np.abs(residuals).max()),
        residuals=tuple(float(r) for r in residuals),
    )


def gain_per_decade(fit: ScalingFit, D: Any) -> np.ndarray:
    """How much the error falls from D to 10 D (>= 0; the metric's units)."""
    sizes = np.asarray(D, dtype=float)
    return fit.predict(sizes) - fit.predict(10.0 * sizes)


def plateau_size(
    fit: ScalingFit,
    threshold: float,
    start: float | None = None,
    stop: float | None = None,
    *,
    points_per_decade: int = 40,
) -> float | None:
    """The smallest D >= ``start`` beyond which a 10x larger D improves the metric by less than
    ``threshold`` (the metric's units), i.e. the last crossing of :func:`gain_per_decade` below
    ``threshold`` in [start, stop].

    ``start`` defaults to the smallest fitted size and ``stop`` to 1e6 times the largest. Returns
    ``start`` when the gain is below the threshold everywhere, and None when it is still at least the
    threshold at ``stop`` (no plateau within the search range). The rectified law's gain rises and
    then falls with D (it is small while D**beta << D_l), hence "last" crossing; the crossing is
    refined by root finding on log D between grid points.
    """
    from scipy.optimize import brentq

    if threshold <= 0:
        raise PointsError(f"the plateau threshold must be > 0, got {threshold:g}")
    low = fit.size_range[0] if start is None else float(start)
    high = fit.size_range[1] * 1e6 if stop is None else float(stop)
    if not 0 < low < high:
        raise PointsError(f"the plateau search needs 0 < start < stop, got {low:g} and {high:g}")
    count = max(2, int(math.ceil(math.log10(high / low) * points_per_decade)) + 1)
    grid = np.geomspace(low, high, count)
    above = np.nonzero(gain_per_decade(fit, grid) >= threshold)[0]
    if above.size == 0:
        return low
    last = int(above[-1])
    if last == count - 1:
        return None
    root = brentq(
        lambda t: float(gain_per_decade(fit, math.exp(t))) - threshold,
        math.log(grid[last]),
        math.log(grid[last + 1]),
        xtol=1e-12,
    )
    return float(math.exp(root))


def extrapolate(
    fits: Sequence[ScalingFit], sizes: Sequence[float], metric_kind: MetricKind = "loss"
) -> list[dict[str, float]]:
    """One row per size: ``{"size": D, "<law>": predicted metric, ...}`` in the metric's units."""
    rows = []
    for size in sizes:
        if not size > 0:
            raise PointsError(f"extrapolation size {size:g} must be > 0")
        row = {"size": float(size)}
        for fit in fits:
            row[fit.law] = float(from_error(fit.predict(size), metric_kind))
        rows.append(row)
    return rows


# -- one report ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalingReport:
    """Both laws fitted to one model's points, scored on held-out points, with plateau and extrapolation."""

    model: str
    metric_kind: MetricKind
    fit_points: tuple[Point, ...]
    test_points: tuple[Point, ...]
    fits: dict[str, ScalingFit]
    held_out: dict[str, HeldOut | None]
    #: Plateau threshold: the gain from a 10x larger D below which the metric counts as flat.
    threshold: float
    plateau: dict[str, float | None]
    extrapolation: list[dict[str, float]]
    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def preferred(self) -> str | None:
        """The law with the lower held-out RMSE (None without held-out points)."""
        scored = {law: held.rmse for law, held in self.held_out.items() if held is not None}
        return min(scored, key=lambda law: scored[law]) if scored else None

    def predict_metric(self, law: str, D: Any) -> np.ndarray:
        """A law's prediction in the metric's own units (accuracy for accuracies)."""
        return from_error(self.fits[law].predict(D), self.metric_kind)

    def ceiling(self, law: str) -> float:
        """The metric as D grows without bound: the floor E in the metric's units."""
        return float(from_error(self.fits[law].E, self.metric_kind))

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "model": self.model,
                "metric_kind": self.metric_kind,
                "fit_points": [{"size": q.size, "metric": q.metric} for q in self.fit_points],
                "test_points": [{"size": q.size, "metric": q.metric} for q in self.test_points],
                "fits": {
                    law: {
                        **fit.to_dict(),
                        "ceiling": self.ceiling(law),
                        "intervals": {k: list(v) for k, v in self.intervals.get(law, {}).items()},
                    }
                    for law, fit in self.fits.items()
                },
                "held_out": {
                    law: None
                    if h is None
                    else {"n": h.n, "rmse": h.rmse, "max_abs_error": h.max_abs_error, "residuals": list(h.residuals)}
                    for law, h in self.held_out.items()
                },
                "preferred": self.preferred,
                "threshold": self.threshold,
                "plateau": self.plateau,
                "extrapolation": self.extrapolation,
                "notes": list(self.notes),
            }
        )


def default_extrapolation_sizes(points: Sequence[Point]) -> list[float]:
    """10x, 100x and 1000x the largest size."""
    top = max(point.size for point in points)
    return [top * 10.0**k for k in (1, 2, 3)]


def fit_report(
    points: Sequence[Point],
    *,
    metric_kind: MetricKind = "loss",
    n_test: int | None = None,
    threshold: float | None = None,
    extrapolate_to: Sequence[float] | None = None,
    seed: int = 0,
    bootstrap: int = 0,
    model: str | None = None,
) -> ScalingReport:
    """Split -> fit both laws -> score on held-out points -> plateau -> extrapolation, for one model.

    ``threshold`` defaults to :data:`DEFAULT_THRESHOLD` for the metric kind (1 point per 10x for
    accuracy in percent); ``extrapolate_to`` to :func:`default_extrapolation_sizes`; ``bootstrap``
    is the number of residual-bootstrap resamples per law (0: no intervals).
    """
    points = list(points)
    if not points:
        raise PointsError("no points to fit")
    models = sorted({point.model for point in points})
    if len(models) > 1:
        raise PointsError(f"the points hold {len(models)} models ({', '.join(models)}): fit one at a time")
    if metric_kind not in METRIC_KINDS:
        raise PointsError(f"unknown metric kind {metric_kind!r}: use one of {', '.join(METRIC_KINDS)}")
    to_error([point.metric for point in points], metric_kind)  # range check every point, held-out too
    fit_points, test_points = split_fit_test(points, n_test)
    D = np.array([point.size for point in fit_points])
    L = to_error([point.metric for point in fit_points], metric_kind)
    fits = {"rectified": fit_rectified(D, L, seed=seed), "power": fit_power(D, L, seed=seed)}
    limit = DEFAULT_THRESHOLD[metric_kind] if threshold is None else threshold
    sizes = default_extrapolation_sizes(points) if extrapolate_to is None else list(extrapolate_to)
    notes = []
    if not test_points:
        notes.append(
            "No held-out points: the fit RMSE alone cannot tell the laws apart (the rectified law "
            "contains the power law). Hold out the largest size with --test 1 or a split column."
        )
    if np.unique(D).size == N_PARAMS["rectified"]:
        notes.append(
            "4 distinct sizes for 4 parameters: the rectified law interpolates them, so its fit RMSE "
            "says nothing; add sizes."
        )
    if np.unique(D).size >= 3 and np.corrcoef(np.log(D), L)[0, 1] > 0:
        notes.append(
            "The error rises with size. If higher is better, this metric is an accuracy: use "
            "--metric accuracy (percent) or accuracy-fraction."
        )
    if metric_kind == "accuracy_percent" and all(point.metric <= 1 for point in points):
        notes.append("Every accuracy is <= 1: if these are fractions, use --metric accuracy-fraction.")
    fit = fits["rectified"]
    if fit.beta >= BETA_MAX * 0.999 or fit.beta <= BETA_MIN * 1.001:
        notes.append(
            f"The rectified fit's beta ({fit.beta:.3g}) sits at the edge of its search range: the "
            "points do not pin the law down."
        )
    intervals = {}
    if bootstrap:
        for law, law_fit in fits.items():
            intervals[law] = bootstrap_intervals(law_fit, D, L, n_resamples=bootstrap, seed=seed)
    return ScalingReport(
        model=points[0].model if model is None else model,
        metric_kind=metric_kind,
        fit_points=tuple(fit_points),
        test_points=tuple(test_points),
        fits=fits,
        held_out={law: evaluate(law_fit, test_points, metric_kind) for law, law_fit in fits.items()},
        threshold=limit,
        plateau={law: plateau_size(law_fit, limit) for law, law_fit in fits.items()},
        extrapolation=extrapolate(list(fits.values()), sizes, metric_kind),
        intervals=intervals,
        notes=tuple(notes),
    )


def fit_reports(point_set: PointSet, **options: Any) -> list[ScalingReport]:
    """:func:`fit_report` for each model in ``point_set`` (in order of first appearance)."""
    return [fit_report(points, **options) for points in point_set.by_model().values()]
