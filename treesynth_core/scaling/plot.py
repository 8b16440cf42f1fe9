"""The figure of a scaling-law fit: measured points, both fitted laws extended past the data, and the
plateau size (see :mod:`treesynth_core.scaling.report`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .points import METRIC_LABEL, PointsError
from .report import ScalingReport

if TYPE_CHECKING:
    import plotly.graph_objects as go

LAW_COLOUR = {"rectified": "#1f77b4", "power": "#ff7f0e"}
FIT_COLOUR, TEST_COLOUR = "#2ca02c", "#d62728"  # the paper's green fit points and red test points


def _curve_range(report: ScalingReport) -> tuple[float, float]:
    sizes = [point.size for point in (*report.fit_points, *report.test_points)]
    sizes += [row["size"] for row in report.extrapolation]
    sizes += [value for value in report.plateau.values() if value is not None]
    return min(sizes) / 2.0, max(sizes) * 2.0


def scaling_figure(
    reports: ScalingReport | Sequence[ScalingReport],
    *,
    title: str | None = None,
    size_label: str = "size",
    log_y: bool = False,
) -> go.Figure:
    """Metric against size (log x), one panel per report: fit points (green), held-out points (red),
    both fitted laws extended past the data (rectified solid, power dashed), extrapolated sizes as
    open markers on the rectified curve and a dotted vertical line at the rectified law's plateau."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    reports = [reports] if isinstance(reports, ScalingReport) else list(reports)
    if not reports:
        raise PointsError("nothing to plot: no reports")
    names = [report.model or "points" for report in reports]
    fig = make_subplots(
        rows=1, cols=len(reports), subplot_titles=names if len(reports) > 1 else None, horizontal_spacing=0.08
    )
    for col, report in enumerate(reports, 1):
        first = col == 1
        low, high = _curve_range(report)
        grid = np.geomspace(low, high, 300)
        for law, dash in (("rectified", "solid"), ("power", "dash")):
            fig.add_trace(
                go.Scatter(
                    x=grid,
                    y=report.predict_metric(law, grid),
                    mode="lines",
                    name=f"{law} law",
                    line={"color": LAW_COLOUR[law], "dash": dash},
                    legendgroup=law,
                    showlegend=first,
                    hovertemplate=f"{law}: %{{y:.4g}} at %{{x:.4g}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        for label, pts, colour in (
            ("fit points", report.fit_points, FIT_COLOUR),
            ("held-out points", report.test_points, TEST_COLOUR),
        ):
            if pts:
                fig.add_trace(
                    go.Scatter(
                        x=[q.size for q in pts],
                        y=[q.metric for q in pts],
                        mode="markers",
                        name=label,
                        marker={"color": colour, "size": 9},
                        legendgroup=label,
                        showlegend=first,
                    ),
                    row=1,
                    col=col,
                )
        if report.extrapolation:
            ext = [row["size"] for row in report.extrapolation]
            fig.add_trace(
                go.Scatter(
                    x=ext,
                    y=[row["rectified"] for row in report.extrapolation],
                    mode="markers",
                    name="extrapolated (rectified)",
                    legendgroup="extrapolated",
                    showlegend=first,
                    marker={"color": LAW_COLOUR["rectified"], "symbol": "circle-open", "size": 9},
                ),
                row=1,
                col=col,
            )
        plateau = report.plateau.get("rectified")
        if plateau is not None:
            values = np.concatenate([report.predict_metric("rectified", grid), [q.metric for q in report.fit_points]])
            fig.add_trace(
                go.Scatter(
                    x=[plateau, plateau],
                    y=[float(values.min()), float(values.max())],
                    mode="lines",
                    name=f"plateau (gain per 10x < {report.threshold:g})",
                    legendgroup="plateau",
                    showlegend=first,
                    line={"color": "#7f7f7f", "dash": "dot"},
                    hovertemplate=f"plateau at {plateau:.4g}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(type="log", title_text=size_label, row=1, col=col)
        fig.update_yaxes(
            type="log" if log_y else "linear",
            row=1,
            col=col,
            title_text=METRIC_LABEL[report.metric_kind] if first else None,
        )
    fig.update_layout(
        title=title or "Scaling law: " + ", ".join(names),
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
        height=480,
        width=max(700, 520 * len(reports)),
    )
    return fig
