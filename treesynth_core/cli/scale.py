"""CLI command ``scale``: fit the SynthLLM rectified scaling law to (size, metric) points.

A thin wrapper over :mod:`treesynth_core.scaling.law`. :func:`register` adds it to a ``treesynth`` app.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import TreeSynthError
from .common import JsonOpt, emit, register_commands

if TYPE_CHECKING:
    from ..scaling.points import MetricKind


class MetricChoice(StrEnum):
    loss = "loss"
    accuracy = "accuracy"
    accuracy_fraction = "accuracy-fraction"


METRIC_KIND: dict[str, MetricKind] = {
    "loss": "loss",
    "accuracy": "accuracy_percent",
    "accuracy-fraction": "accuracy_fraction",
}

PointsArg = Annotated[
    Path,
    typer.Argument(
        help="CSV of the points: columns size,metric (see above).", show_default=False, metavar="POINTS.csv"
    ),
]
MetricOpt = Annotated[
    MetricChoice | None,
    typer.Option(
        "--metric",
        help="What the metric column holds: loss (or error rate; lower is better), accuracy (percent, "
        "0-100) or accuracy-fraction (0-1). Default: accuracy when the column is named accuracy/acc "
        "(fraction if every value is <= 1), else loss.",
        show_default=False,
    ),
]
TestOpt = Annotated[
    int | None,
    typer.Option(
        "--test",
        help="Hold out the N largest sizes to score both laws' predictions. Default: 1 when 5 or more "
        "distinct sizes remain to fit, else 0. Not allowed with a split column.",
        metavar="N",
        show_default=False,
    ),
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        help="Plateau: where a 10x larger size gains less than this, in the metric's units. Default: 1 "
        "for accuracy in %, 0.01 for accuracy-fraction and loss.",
        metavar="X",
        show_default=False,
    ),
]
ExtrapolateOpt = Annotated[
    str | None,
    typer.Option(
        "--extrapolate",
        help="Sizes to predict, comma separated, in the points' units (k/M/B/T suffixes work), e.g. "
        "10,100,1000. Default: 10x, 100x and 1000x the largest size.",
        metavar="SIZES",
        show_default=False,
    ),
]
PlotOpt = Annotated[
    Path | None,
    typer.Option(
        "--plot",
        help="Write an interactive plot to FILE.html (self-contained, opens offline).",
        metavar="FILE.html",
        show_default=False,
    ),
]
BootstrapOpt = Annotated[
    int,
    typer.Option(
        "--bootstrap", help="Residual-bootstrap resamples for 90% parameter intervals (0: none).", metavar="N"
    ),
]
ModelFilterOpt = Annotated[
    str | None,
    typer.Option(
        "--model", help="Fit only this model (a value of the model column).", metavar="NAME", show_default=False
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the random restarts and the bootstrap.")]


def _g(value: float | None, digits: int = 4) -> str:
    """A number for a table: ``4e+12``, ``40,000``, ``84.38``, ``0.1389``; '-' for None."""
    if value is None:
        return "-"
    if 1e3 <= abs(value) < 1e7:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _report_text(report: Any, metric_note: list[str]) -> str:
    from ..scaling.points import METRIC_LABEL

    name = f"Model {report.model}: " if report.model else ""
    held = ", ".join(_g(size) for size in sorted({q.size for q in report.test_points}))
    lines = [
        f"{name}{len(report.fit_points)} points fitted, {len(report.test_points)} held out"
        + (f" (size {held})" if held else ""),
        *metric_note,
        "",
        f"{'law':10}{'B':>11}{'D_l':>11}{'beta':>8}{'E':>10}{'ceiling':>10}{'B/D_l':>10}",
    ]
    for law, fit in report.fits.items():
        lines.append(
            f"{law:10}{_g(fit.B):>11}{_g(fit.D_l if law == 'rectified' else None):>11}"
            f"{fit.beta:>8.3f}{_g(fit.E):>10}{_g(report.ceiling(law)):>10}{_g(fit.initial_gap):>10}"
        )
    for law, intervals in report.intervals.items():
        if intervals:
            spans = ", ".join(f"{k} {_g(lo, 3)}..{_g(hi, 3)}" for k, (lo, hi) in intervals.items() if k != "B_over_D_l")
            lines.append(f"  {law} 90% intervals: {spans}")
    lines += [
        "",
        f"{'law':10}{'fit RMSE':>10}{'test RMSE':>11}{'max |err|':>11}   plateau (gain per 10x < {report.threshold:g})",
    ]
    for law, fit in report.fits.items():
        test = report.held_out.get(law)
        plateau = report.plateau.get(law)
        where = _g(plateau) if plateau is not None else "not within 1e6x the largest size"
        lines.append(
            f"{law:10}{_g(fit.rmse):>10}{_g(test.rmse if test else None):>11}"
            f"{_g(test.max_abs_error if test else None):>11}   {where}"
        )
    if report.preferred:
        lines.append(f"The held-out points favour the {report.preferred} law.")
    label = METRIC_LABEL[report.metric_kind]
    lines += ["", f"Extrapolated {label}:", f"{'size':>14}{'rectified':>12}{'power':>12}"]
    for row in report.extrapolation:
        lines.append(f"{_g(row['size']):>14}{_g(row['rectified']):>12}{_g(row['power']):>12}")
    if report.notes:
        lines += ["", *[f"Note: {note}" for note in report.notes]]
    return "\n".join(lines)


def scale(
    points: PointsArg,
    metric: MetricOpt = None,
    test: TestOpt = None,
    threshold: ThresholdOpt = None,
    extrapolate: ExtrapolateOpt = None,
    plot: PlotOpt = None,
    bootstrap: BootstrapOpt = 0,
    model: ModelFilterOpt = None,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Fit the rectified scaling law L(D) = B / (D_l + D^beta) + E (SynthLLM, arXiv 2503.19551) and the
    power law L(D) = B / D^beta + E to how a metric improves with the amount of synthetic data, score
    both on held-out larger sizes, and report where more data stops paying (the plateau) and what
    larger sizes would give.

    POINTS.csv has a header naming a size column (size, tokens, samples, n or D; any unit, e.g.
    billions of tokens) and a metric column (metric, loss, error or accuracy); optional columns:
    split (fit or test, to choose the held-out points yourself) and model (one fit per model). Lines
    starting with # are comments. D_l is the "pre-learned" data size: B / D_l is the error above the
    floor E before fine-tuning; the rectified law bends where D^beta passes D_l, the power law
    cannot. Accuracies are fitted as errors (100 - accuracy); the ceiling is 100 - E.
    """
    from ..scaling.plot import scaling_figure
    from ..scaling.points import FITTED_AS, METRIC_LABEL, infer_metric_kind, parse_sizes, read_points
    from ..scaling.report import fit_report

    point_set = read_points(points)
    groups = point_set.by_model()
    if model is not None:
        if model not in groups:
            raise TreeSynthError(f"no model {model!r} in {points}: the models are {', '.join(map(repr, groups))}")
        groups = {model: groups[model]}
    if plot is not None and plot.suffix.lower() not in (".html", ".htm"):
        raise TreeSynthError(f"cannot write a plot to {plot.name}: use a .html file name")
    kind: MetricKind
    if metric is None:
        kind = infer_metric_kind(point_set.metric_column, [point.metric for point in point_set.points])
        source = [f"  (guessed from the column name {point_set.metric_column!r}; --metric overrides)"]
    else:
        kind, source = METRIC_KIND[metric.value], []
    sizes = parse_sizes(extrapolate) if extrapolate is not None else None
    reports = [
        fit_report(
            group,
            metric_kind=kind,
            n_test=test,
            threshold=threshold,
            extrapolate_to=sizes,
            seed=seed,
            bootstrap=bootstrap,
        )
        for group in groups.values()
    ]
    written = None
    if plot is not None:
        fig = scaling_figure(reports, size_label=point_set.size_column)
        written = plot.expanduser()
        written.parent.mkdir(parents=True, exist_ok=True)
        fig.write_html(str(written), include_plotlyjs=True, full_html=True, config={"displaylogo": False})
    note = [f"Metric: {METRIC_LABEL[kind]}, fitted as {FITTED_AS[kind]}", *source]
    text = "\n\n".join(_report_text(report, note) for report in reports)
    if written is not None:
        text += f"\n\nWrote the plot to {written}"
    data = {
        "points": str(points),
        "metric_kind": kind,
        "reports": [report.to_dict() for report in reports],
        "plot": None if written is None else str(written),
    }
    from rich.markup import escape

    emit(as_json, data, escape(text))


COMMANDS = {"scale": scale}


def register(app: typer.Typer) -> None:
    """Add ``scale`` to ``app`` (once; calling again is a no-op)."""
    register_commands(app, COMMANDS)
