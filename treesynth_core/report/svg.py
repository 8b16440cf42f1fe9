"""Inline SVG charts for the report, as pure functions returning markup: the Vendi-vs-n curve and the
coverage map. Every text is escaped; nothing refers to a file or a network resource."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

from ..coverage.maps import BASELINE_COLOR, BASELINE_LABEL, COLORWAY
from .model import CurvePoint, MapDot

#: The tree's colour on every chart; the flat baseline is grey, as on the app's map.
SET_COLORS = {"tree": "#16a34a", "baseline": BASELINE_COLOR}
#: The map's legend lists this many groups at most.
LEGEND_MAX = 12
FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif"'


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[low, high]``."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _log_ticks(low: float, high: float) -> list[float]:
    """Ticks at 1, 2 and 5 times each power of ten in ``[low, high]`` (only the powers of ten over
    more than two decades)."""
    multipliers = (1,) if high / low > 1_000 else (1, 2, 5)
    ticks = []
    decade = 10 ** math.floor(math.log10(low))
    while decade <= high:
        ticks += [decade * m for m in multipliers if low * 0.9999 <= decade * m <= high * 1.0001]
        decade *= 10
    return ticks


def curve_svg(curves: Mapping[str, Sequence[CurvePoint]], *, width: int = 560, height: int = 320) -> str:
    """Vendi (y) against the number of samples n (x, log scale), one line per sample set."""
    points = {name: [p for p in pts if p.vendi is not None and p.n > 0] for name, pts in curves.items()}
    points = {name: pts for name, pts in points.items() if pts}
    if not points:
        return ""
    left, right, top, bottom = 56, 16, 16, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    ns = [p.n for pts in points.values() for p in pts]
    ys = [float(p.vendi or 0.0) for pts in points.values() for p in pts]
    lo_x, hi_x = math.log10(min(ns)), math.log10(max(ns))
    hi_x = hi_x if hi_x > lo_x else lo_x + 1
    hi_y = max(ys) * 1.08 or 1.0

    def sx(n: float) -> float:
        return left + (math.log10(n) - lo_x) / (hi_x - lo_x) * plot_w

    def sy(v: float) -> float:
        return top + plot_h - v / hi_y * plot_h

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'{FONT} font-size="12">',
        "<title>Vendi score against the number of samples</title>",
    ]
    for tick in _ticks(0.0, hi_y):
        y = sy(tick)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{_fmt(y)}" y2="{_fmt(y)}" stroke="#e2e8f0"/>')
        parts.append(f'<text x="{left - 6}" y="{_fmt(y + 4)}" text-anchor="end" fill="#475569">{tick:g}</text>')
    for tick in _log_ticks(10**lo_x, 10**hi_x):
        x = sx(tick)
        parts.append(f'<line x1="{_fmt(x)}" x2="{_fmt(x)}" y1="{top}" y2="{top + plot_h}" stroke="#e2e8f0"/>')
        parts.append(f'<text x="{_fmt(x)}" y="{top + plot_h + 16}" text-anchor="middle" fill="#475569">{tick:g}</text>')
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#94a3b8"/>'
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 8}" text-anchor="middle" fill="#334155">'
        "samples n (log scale)</text>"
        f'<text transform="translate(14 {top + plot_h / 2:.0f}) rotate(-90)" text-anchor="middle" fill="#334155">'
        "Vendi (q=1)</text>"
    )
    for index, (name, pts) in enumerate(points.items()):
        color = SET_COLORS.get(name, COLORWAY[index % len(COLORWAY)])
        coords = " ".join(f"{_fmt(sx(p.n))},{_fmt(sy(float(p.vendi or 0.0)))}" for p in pts)
        label = escape("flat baseline" if name == "baseline" else name)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2.5"/>')
        for p in pts:
            parts.append(
                f'<circle cx="{_fmt(sx(p.n))}" cy="{_fmt(sy(float(p.vendi or 0.0)))}" r="3.5" fill="{color}">'
                f"<title>{label}: n = {p.n}, Vendi {float(p.vendi or 0.0):.2f}</title></circle>"
            )
        ly = top + 10 + 18 * index
        parts.append(
            f'<line x1="{left + 12}" x2="{left + 34}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2.5"/>'
            f'<text x="{left + 40}" y="{ly + 4}" fill="#0f172a">{label}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def group_colors(groups: Sequence[str]) -> dict[str, str]:
    """A colour per group, in order of first appearance; the flat baseline is grey."""
    colors: dict[str, str] = {}
    for group in groups:
        if group not in colors:
            palette_index = sum(1 for g in colors if g != BASELINE_LABEL)
            colors[group] = BASELINE_COLOR if group == BASELINE_LABEL else COLORWAY[palette_index % len(COLORWAY)]
    return colors


def map_svg(dots: Sequence[MapDot], *, width: int = 560, height: int = 420) -> str:
    """The coverage map: one dot per sample (hover shows its path and text), coloured by the first
    value of its path, with a legend of the largest groups."""
    if not dots:
        return ""
    pad = 14
    xs, ys = [d.x for d in dots], [d.y for d in dots]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    colors = group_colors([d.group for d in dots])

    def sx(x: float) -> float:
        return pad + (x - min(xs)) / span_x * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad - (y - min(ys)) / span_y * (height - 2 * pad)

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'{FONT} font-size="12">',
        "<title>Coverage map of the samples</title>",
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#ffffff" stroke="#e2e8f0"/>',
    ]
    radius = 3.0 if len(dots) < 1_000 else 2.0
    for dot in dots:
        parts.append(
            f'<circle cx="{_fmt(sx(dot.x))}" cy="{_fmt(sy(dot.y))}" r="{radius}" fill="{colors[dot.group]}" '
            f'fill-opacity="0.75"><title>{escape(dot.text)}</title></circle>'
        )
    parts.append("</svg>")
    return "".join(parts)


def map_legend(dots: Sequence[MapDot]) -> list[tuple[str, str, int]]:
    """(group, colour, samples) of the map's largest groups, at most :data:`LEGEND_MAX`."""
    colors = group_colors([d.group for d in dots])
    sizes: dict[str, int] = {}
    for dot in dots:
        sizes[dot.group] = sizes.get(dot.group, 0) + 1
    ranked = sorted(sizes.items(), key=lambda item: -item[1])[:LEGEND_MAX]
    return [(group, colors[group], count) for group, count in ranked]
