"""Scaling points: the ``size,metric`` rows a scaling-law fit starts from, and the metric they measure.

:func:`read_points` / :func:`parse_points` read ``size,metric`` rows (optional ``split`` and
``model`` columns) into a :class:`PointSet`; :class:`PointsError` says what is wrong with them.
The laws (:mod:`treesynth_core.scaling.law`) are fitted to an *error* (lower is better).
``metric_kind`` says how the user's metric maps onto it (:func:`to_error`): ``"loss"`` is used as
given; ``"accuracy_percent"`` becomes ``100 - accuracy``; ``"accuracy_fraction"`` becomes
``1 - accuracy``. Differences (RMSE, gains per 10x) are the same in both units, so thresholds and
errors read in the metric's own units.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import DataError

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
