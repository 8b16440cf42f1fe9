"""Big maps in the browser: a density image of every point under a seeded sample drawn as points.

Measured in headless chromium (plotly 7, software WebGL, this 2-core machine): a scattergl of 1M points
is 30 MB of figure JSON, 21 s to first draw and 13 s per zoom; a 400×400 density image of the same
points with a scattergl of 20,000 of them is 2.6 MB, 1.9 s and 0.2 s. At 100k points the two cost
about the same (3 MB, 3-4 s, 0.5 s), so the density layer starts above :data:`DENSITY_ABOVE`.
The sampled points keep their hover text and customdata, so selecting on the map still names samples
and leaves. Pure numpy; plotly is imported by the caller.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Maps of more points than this draw :func:`density_trace` under :data:`DRAWN_POINTS` sampled points.
DENSITY_ABOVE = 100_000
#: How many points a big map draws individually (hover, click, selection).
DRAWN_POINTS = 20_000
#: The density image's cells along each axis.
DENSITY_BINS = 400


def drawn_indices(n: int, seed: int = 0, limit: int = DRAWN_POINTS, above: int = DENSITY_ABOVE) -> np.ndarray:
    """The points a map draws one by one, ascending: all ``n`` up to ``above``, else a seeded
    sample of ``limit``."""
    if n <= above:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=min(limit, n), replace=False))


def density_grid(
    x: np.ndarray, y: np.ndarray, bins: int = DENSITY_BINS
) -> tuple[np.ndarray, float, float, float, float]:
    """``log(1 + count)`` of the points per cell (rows: y, columns: x; NaN where empty, so the
    background shows), with the grid's origin and cell size ``(z, x0, dx, y0, dy)``."""
    counts, x_edges, y_edges = np.histogram2d(np.asarray(x, float), np.asarray(y, float), bins=bins)
    z = np.log1p(counts.T)
    z[counts.T == 0] = np.nan
    return z, float(x_edges[0]), float(x_edges[1] - x_edges[0]), float(y_edges[0]), float(y_edges[1] - y_edges[0])


def density_trace(x: np.ndarray, y: np.ndarray, *, name: str = "") -> Any:
    """A plotly heatmap of :func:`density_grid` (greys, no hover, no legend) to lie under the points."""
    import plotly.graph_objects as go

    z, x0, dx, y0, dy = density_grid(x, y)
    return go.Heatmap(
        z=z,
        x0=x0 + dx / 2,
        dx=dx,
        y0=y0 + dy / 2,
        dy=dy,
        colorscale="Greys",
        showscale=False,
        hoverinfo="skip",
        name=name,
        showlegend=False,
        opacity=0.6,
    )
