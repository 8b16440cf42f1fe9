"""Scaling laws for synthetic data: how the error falls as the data grows, and where it stops falling.

SynthLLM (Qin et al., arXiv 2503.19551) fits the *rectified* scaling law of Lin et al. (2024)

    L(D) = B / (D_l + D**beta) + E

to the error rate L of models fine-tuned on D tokens (or samples) of synthetic data, and compares it
with the plain power law ``L(D) = B / D**beta + E``, which cannot bend: at small D the rectified law
is flat (D_l, the "pre-learned data size", dominates D**beta), so B / D_l is the error above the floor
before any fine-tuning; at large D both laws fall as D**-beta towards the floor E.

The pipeline, one pure function each:

* :func:`read_points` / :func:`parse_points` read ``size,metric`` rows (optional ``split`` and
  ``model`` columns) into a :class:`PointSet`; :class:`PointsError` says what is wrong with them.
* The laws are fitted to an *error* (lower is better). ``metric_kind`` says how the user's metric
  maps onto it (:func:`to_error`): ``"loss"`` is used as given; ``"accuracy_percent"`` becomes
  ``100 - accuracy``; ``"accuracy_fraction"`` becomes ``1 - accuracy``. Differences (RMSE, gains per
  10x) are the same in both units, so thresholds and errors read in the metric's own units.
* :func:`fit_rectified` and :func:`fit_power` fit by least squares in log-parameter space
  (B, D_l, beta > 0; E >= 0 by bounds) from a fixed grid of starts plus seeded random restarts, and
  return a frozen :class:`ScalingFit` with a :meth:`~ScalingFit.predict` method. Same data and seed,
  same fit.
* :func:`split_fit_test` holds out the largest size(s) (or follows an explicit ``split`` column);
  :func:`evaluate` scores a fit on the held-out points; :func:`plateau_size` finds where a 10x
  larger D stops paying; :func:`extrapolate` tabulates predictions; :func:`bootstrap_intervals`
  gives residual-bootstrap intervals of the parameters.
* :func:`fit_report` does all of it for one model;
  :func:`treesynth_core.scaling.plot.scaling_figure` draws reports with plotly.

The paper does not state its fitting loss or optimiser; with few points the rectified law is poorly
identified (very different (B, D_l, beta) give near-identical curves over the data), so read the
parameters with their intervals and trust the held-out error more than the fit RMSE.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import DataError, TreeSynthError

Law = Literal["rectified", "power"]
FIT_COLOUR, TEST_COLOUR = "#2ca02c", "#d62728"  # the paper's green fit points and red test points
MetricKind = Literal["loss", "accuracy_percent", "accuracy_fraction"]
METRIC_KINDS: tuple[MetricKind, ...] = ("loss", "accuracy_percent", "accuracy_fraction")
#: How each metric kind is named (axis titles, pickers) and what the laws are fitted to.
METRIC_LABEL: dict[MetricKind, str] = {
    "loss": "loss / error (lower is better)",
    "accuracy_percent": "accuracy (%)",
    "accuracy_fraction": "accuracy (0 to 1)",
}
FITTED_AS: dict[MetricKind, str] = {
    "loss": "the metric itself",
    "accuracy_percent": "error = 100 - accuracy",
    "accuracy_fraction": "error = 1 - accuracy",
}
#: Parameters of each law (the power law has no D_l).
N_PARAMS: dict[Law, int] = {"rectified": 4, "power": 3}
#: beta is searched in [BETA_MIN, BETA_MAX].
BETA_MIN, BETA_MAX = 1e-3, 10.0
#: Default plateau threshold (the gain in the metric's units from a 10x larger D) per metric kind.
DEFAULT_THRESHOLD: dict[MetricKind, float] = {"loss": 0.01, "accuracy_percent": 1.0, "accuracy_fraction": 0.01}

# Header words that name each column (matched case-insensitively against the header's words).
SIZE_WORDS = frozenset({"size", "sizes", "tokens", "token", "samples", "sample", "examples", "n", "d", "data"})
METRIC_WORDS = frozenset({"metric", "loss", "error", "err", "accuracy", "acc", "score", "pass", "correct"})
ACCURACY_WORDS = frozenset({"accuracy", "acc", "pass", "correct"})
SPLIT_WORDS = frozenset({"split"})
MODEL_WORDS = frozenset({"model", "group", "series"})
FIT_SPLITS = frozenset({"fit", "train", "training"})
TEST_SPLITS = frozenset({"test", "heldout", "held-out", "held_out", "holdout", "eval"})
SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


class PointsError(DataError):
    """The scaling points are missing, malformed, out of range, or too few for the law."""


# -- points -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One measurement: the metric of a model trained on ``size`` tokens (or samples)."""

    size: float
    metric: float
    #: "fit" or "test" when the input says so; None lets :func:`split_fit_test` choose.
    split: Literal["fit", "test"] | None = None
    model: str = ""


@dataclass(frozen=True)
class PointSet:
    """Parsed points and the names of the columns they came from."""

    points: tuple[Point, ...]
    size_column: str = "size"
    metric_column: str = "metric"

    def by_model(self) -> dict[str, list[Point]]:
        """The points of each model, in order of first appearance ("" when there is no model column)."""
        groups: dict[str, list[Point]] = {}
        for point in self.points:
            groups.setdefault(point.model, []).append(point)
        return groups


def _words(header: str) -> set[str]:
    return set(re.findall(r"[a-z]+", header.lower()))


def _number(text: str, what: str, where: str) -> float:
    """A number from a cell: ``4.5``, ``1e9``, ``4.5B`` (k/M/B/G/T suffixes), ``60%``."""
    raw = text.strip().replace("_", "")
    value = raw.rstrip("%").strip()
    scale = 1.0
    if value and value[-1].lower() in SUFFIXES:
        scale, value = SUFFIXES[value[-1].lower()], value[:-1]
    try:
        number = float(value) * scale
    except ValueError:
        raise PointsError(f"{where}: {what} {raw!r} is not a number") from None
    if not math.isfinite(number):
        raise PointsError(f"{where}: {what} {raw!r} is not a finite number")
    return number


def _is_number(cell: str) -> bool:
    try:
        _number(cell, "", "")
    except PointsError:
        return False
    return True


def _rows(text: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) for every non-blank, non-# line: comma, semicolon, tab or blank separated."""
    numbered = enumerate(text.splitlines(), 1)
    lines = [(i, line) for i, line in numbered if line.strip() and not line.lstrip().startswith("#")]
    body = "\n".join(line for _, line in lines)
    delimiter = next((d for d in (",", ";") if d in body), None)
    if delimiter is None and all("\t" in line for _, line in lines):
        delimiter = "\t"  # cells may hold blanks ("tokens (B)")
    if delimiter is None:
        return [(i, line.split()) for i, line in lines]
    cells = csv.reader([line for _, line in lines], delimiter=delimiter)
    return [(i, [cell.strip() for cell in row]) for (i, _), row in zip(lines, cells, strict=True)]


def _columns(header: list[str], where: str) -> dict[str, int]:
    roles = {"size": SIZE_WORDS, "metric": METRIC_WORDS, "split": SPLIT_WORDS, "model": MODEL_WORDS}
    found: dict[str, int] = {}
    for index, name in enumerate(header):
        words = _words(name)
        for role, vocabulary in roles.items():
            if words & vocabulary:
                if role in found:
                    raise PointsError(f"{where}: two {role} columns ({header[found[role]]!r} and {name!r})")
                found[role] = index
                break
    missing = [role for role in ("size", "metric") if role not in found]
    if missing:
        raise PointsError(
            f"{where}: no {' or '.join(missing)} column in the header {', '.join(header)!r}; name the columns "
            "size (or tokens/samples/n/D) and metric (or loss/error/accuracy), optionally split (fit/test) and model"
        )
    return found


def parse_points(text: str, *, source: str = "the points") -> PointSet:
    """Parse ``size,metric`` rows from CSV (or pasted, blank/tab separated) text.

    A header is optional. Header names are matched case-insensitively by their words: the size
    column is ``size``/``tokens``/``samples``/``n``/``D`` (``num_tokens``, ``tokens (B)`` work), the
    metric column ``metric``/``loss``/``error``/``accuracy``; optional ``split`` (``fit``/``test``,
    blank = fit) and ``model`` columns; other columns are ignored. Without a header the columns are
    size, metric and optionally split. Numbers may carry k/M/B/T suffixes (``4.5B`` = 4.5e9) or a
    ``%``. Lines starting with ``#`` are comments. Repeated sizes are fine.

    Raises :class:`PointsError` for no rows, non-numeric cells, sizes <= 0 and unknown split values.
    """
    rows = _rows(text)
    if not rows:
        raise PointsError(f"{source} has no points: give rows of size,metric")
    first_line, first = rows[0]
    has_header = not all(_is_number(cell) for cell in first[:2])
    if has_header:
        columns = _columns(first, f"{source} line {first_line}")
        header_names = first
        rows = rows[1:]
        if not rows:
            raise PointsError(f"{source} has a header but no points")
    else:
        columns = {"size": 0, "metric": 1} | ({"split": 2} if len(first) > 2 else {})
        header_names = ["size", "metric", "split"]
    points = []
    for line, cells in rows:
        where = f"{source} line {line}"
        need = max(columns.values()) + 1 if not has_header else max(columns["size"], columns["metric"]) + 1
        if len(cells) < need:
            raise PointsError(f"{where}: expected {need} columns, found {len(cells)}")
        size = _number(cells[columns["size"]], "size", where)
        if size <= 0:
            raise PointsError(f"{where}: size {cells[columns['size']]!r} must be > 0 (the laws take log D)")
        metric = _number(cells[columns["metric"]], "metric", where)
        split: Literal["fit", "test"] | None = None
        if "split" in columns:
            cell = cells[columns["split"]].lower() if columns["split"] < len(cells) else ""
            if cell in TEST_SPLITS:
                split = "test"
            elif cell in FIT_SPLITS or cell == "":
                split = "fit"
            else:
                raise PointsError(f"{where}: split {cell!r} must be fit or test")
        model = cells[columns["model"]] if "model" in columns and columns["model"] < len(cells) else ""
        points.append(Point(size, metric, split, model))
    return PointSet(tuple(points), header_names[columns["size"]], header_names[columns["metric"]])


def read_points(path: str | Path) -> PointSet:
    """Read points from a CSV file (see :func:`parse_points` for the accepted columns)."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PointsError(f"no such points file: {file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PointsError(f"cannot read the points file {file}: {exc}") from None
    return parse_points(text, source=str(file))


def parse_sizes(text: str) -> list[float]:
    """Comma- or blank-separated sizes, e.g. ``"10,100,1000"`` or ``"10B 1T"`` (each > 0)."""
    cells = [cell for cell in re.split(r"[,\s]+", text.strip()) if cell]
    if not cells:
        raise PointsError("no sizes given: write them like 10,100,1000")
    sizes = [_number(cell, "size", "the sizes") for cell in cells]
    for cell, size in zip(cells, sizes, strict=True):
        if size <= 0:
            raise PointsError(f"the sizes: size {cell!r} must be > 0")
    return sizes


# -- the metric and the error ------------------------------------------------------------------------


def infer_metric_kind(column: str, values: Sequence[float]) -> MetricKind:
    """A guess from the metric column's name: accuracy-like names (accuracy, acc, pass, correct) give
    ``accuracy_fraction`` when every value is in [0, 1], else ``accuracy_percent``; others ``loss``."""
    if _words(column) & ACCURACY_WORDS:
        return "accuracy_fraction" if all(0 <= v <= 1 for v in values) else "accuracy_percent"
    return "loss"


def to_error(metric: Any, kind: MetricKind) -> np.ndarray:
    """The error the laws are fitted to: loss as given, ``100 - acc`` (percent), ``1 - acc`` (fraction).

    Raises :class:`PointsError` for a loss < 0 (the floor E is >= 0) or an accuracy outside its range.
    """
    if kind not in METRIC_KINDS:
        raise PointsError(f"unknown metric kind {kind!r}: use one of {', '.join(METRIC_KINDS)}")
    values = np.asarray(metric, dtype=float)
    if kind == "loss":
        if (values < 0).any():
            raise PointsError(
                f"loss {values[values < 0][0]:g} is negative; the law's floor E is >= 0, so give an error or "
                "loss that is >= 0 (or an accuracy with --metric accuracy)"
            )
        return values
    top = 100.0 if kind == "accuracy_percent" else 1.0
    bad = values[(values < 0) | (values > top)]
    if bad.size:
        hint = " (for percentages use --metric accuracy)" if top == 1.0 else " (for a loss use --metric loss)"
        raise PointsError(f"accuracy {bad[0]:g} is outside 0..{top:g}{hint}")
    return top - values


def from_error(error: Any, kind: MetricKind) -> np.ndarray:
    """The inverse of :func:`to_error` (no range check)."""
    values = np.asarray(error, dtype=float)
    return values if kind == "loss" else (100.0 if kind == "accuracy_percent" else 1.0) - values


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
        return _clean(
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
        Errors (>= 0; lower is better). Convert accuracies with :func:`to_error` first.
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
        return _clean(
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


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become None."""
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


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


# -- figure ----------------------------------------------------------------------------------------------
