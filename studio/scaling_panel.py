"""The SynthLLM scaling-law fit on the Data page: the points table, the fitted laws with their
held-out error, plateau and extrapolation, and the plot.

The fit itself is :func:`~treesynth_core.scaling.report.fit_report`; this module only collects the
points and renders the report.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import streamlit as st

from studio.widgets import md
from treesynth_core.scaling.points import FITTED_AS, MetricKind, Point, PointsError
from treesynth_core.scaling.report import DEFAULT_THRESHOLD, ScalingReport, fit_report


def points_frame(points: Sequence[tuple[float, float]]) -> Any:
    """An editable table of (size, metric) rows."""
    import pandas as pd

    return pd.DataFrame(
        {"size": [float(s) for s, _ in points], "metric": [float(m) for _, m in points]}, dtype="float64"
    )


def _number(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PointsError(f"{value!r} is not a number") from None
    return None if math.isnan(number) else number


def table_points(frame: Any) -> list[Point]:
    """The edited table's rows as points (blank rows skipped); PointsError names the bad row."""
    points = []
    for row, (size_cell, metric_cell) in enumerate(zip(frame["size"], frame["metric"], strict=True), 1):
        try:
            size, metric = _number(size_cell), _number(metric_cell)
        except PointsError as exc:
            raise PointsError(f"row {row}: {exc}") from None
        if size is None and metric is None:
            continue
        if size is None or metric is None:
            raise PointsError(f"row {row}: give both a size and a metric")
        if size <= 0:
            raise PointsError(f"row {row}: size {size:g} must be > 0 (the laws take log D)")
        points.append(Point(size, metric))
    return points


@st.cache_data(show_spinner=False, max_entries=16)
def fit(
    points: tuple[Point, ...], kind: MetricKind, n_test: int | None, threshold: float, model: str = ""
) -> ScalingReport:
    """:func:`scaling.fit_report` (seed 0), cached: the same points give the same fit."""
    return fit_report(list(points), metric_kind=kind, n_test=n_test, threshold=threshold, seed=0, model=model)


def default_threshold(kind: MetricKind) -> float:
    return DEFAULT_THRESHOLD[kind]


def _size(value: float | None) -> str:
    return "beyond the search range" if value is None else f"{value:,.4g}"


def fit_view(report: ScalingReport, *, size_label: str = "size") -> None:
    """Plateau, both fits' parameters and held-out errors, the extrapolation and the figure."""
    cols = st.columns(3)
    unit = "points" if report.metric_kind == "accuracy_percent" else "of the metric"
    hint = f"The size ({size_label}) beyond which 10x more data gains less than {report.threshold:g} {unit}."
    cols[0].metric(
        f"Plateau, rectified law ({size_label})", _size(report.plateau.get("rectified")), border=True, help=hint
    )
    cols[1].metric(f"Plateau, power law ({size_label})", _size(report.plateau.get("power")), border=True, help=hint)
    preferred = report.preferred
    cols[2].metric(
        "Better on held-out points",
        preferred or "\u2013 (no held-out points)",
        border=True,
        help="The law with the lower RMSE on the held-out (largest) sizes.",
    )
    columns = [
        "law",
        "B",
        "D_l",
        "beta",
        "E",
        "B / D_l",
        "ceiling",
        "fit RMSE",
        "held-out RMSE",
        "held-out max |error|",
        "plateau",
    ]
    rows: dict[str, list[Any]] = {column: [] for column in columns}
    for law, law_fit in report.fits.items():
        held = report.held_out.get(law)
        values = [
            law,
            law_fit.B,
            law_fit.D_l if law == "rectified" else None,
            law_fit.beta,
            law_fit.E,
            law_fit.initial_gap,
            report.ceiling(law),
            law_fit.rmse,
            held.rmse if held else None,
            held.max_abs_error if held else None,
            report.plateau.get(law),
        ]
        for column, value in zip(rows, values, strict=True):
            rows[column].append(value if isinstance(value, str) else _fmt4(value))
    st.dataframe(rows, key="data.scale.fits", hide_index=True, width="stretch")
    st.caption(
        f"Fitted on {len(report.fit_points)} points, {len(report.test_points)} held out. The laws are "
        f"fitted to {FITTED_AS[report.metric_kind]}; the ceiling is the metric as the data grows without "
        "bound."
    )
    for note in report.notes:
        st.caption(md(note))
    if report.extrapolation:
        ext = report.extrapolation
        st.dataframe(
            {
                "size": [_fmt4(row["size"]) for row in ext],
                **{law: [_fmt4(row.get(law)) for row in ext] for law in report.fits},
            },
            key="data.scale.extrapolation",
            hide_index=True,
        )
    title = "Scaling law" + (f": {html.escape(report.model, quote=False)}" if report.model else "")
    st.plotly_chart(
        scaling_plot(report, size_label=html.escape(size_label, quote=False), title=title), key="data.scale.figure"
    )


def _fmt4(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "\u2013"
    return f"{value:.4g}"


def scaling_plot(report: ScalingReport, *, size_label: str, title: str) -> Any:
    """The plotly figure of a fit (:func:`treesynth_core.scaling.plot.scaling_figure`), page-wide."""
    from treesynth_core.scaling.plot import scaling_figure

    fig = scaling_figure(report, title=title, size_label=size_label)
    fig.update_layout(width=None, autosize=True)
    return fig
