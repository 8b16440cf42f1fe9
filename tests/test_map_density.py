"""Big maps: the density image's counts, the drawn sample, and a figure that keeps selection data."""

from __future__ import annotations

import numpy as np
import pytest

from treesynth_core.coverage import map_density as D
from treesynth_core.coverage import maps as M
from treesynth_core.coverage.map_points import MapPoint, MapPoints
from treesynth_core.errors import TreeSynthError


def test_drawn_indices_are_all_up_to_the_threshold_else_a_seeded_sample():
    assert np.array_equal(D.drawn_indices(5, above=10), np.arange(5))
    picked = D.drawn_indices(1000, seed=1, limit=50, above=100)
    assert picked.size == 50 and np.unique(picked).size == 50 and (np.diff(picked) > 0).all()
    assert np.array_equal(picked, D.drawn_indices(1000, seed=1, limit=50, above=100))


def test_density_grid_counts_every_point_and_leaves_empty_cells_blank():
    x = np.array([0.0, 0.0, 0.0, 1.0])
    y = np.array([0.0, 0.0, 0.0, 1.0])
    z, x0, dx, y0, dy = D.density_grid(x, y, bins=2)
    assert (x0, dx, y0, dy) == (0.0, 0.5, 0.0, 0.5)
    assert z[0, 0] == pytest.approx(np.log1p(3)) and z[1, 1] == pytest.approx(np.log1p(1))
    assert np.isnan(z[0, 1]) and np.isnan(z[1, 0])


def _points(n: int) -> MapPoints:
    rng = np.random.default_rng(0)
    return MapPoints.from_points(
        [
            MapPoint(
                i, float(rng.normal()), float(rng.normal()), f"leaf{i % 3}", f"leaf {i % 3}", "", {"c": str(i % 3)}
            )
            for i in range(n)
        ]
    )


def test_a_big_figure_draws_a_density_image_under_a_sample_with_customdata(monkeypatch):
    monkeypatch.setattr(M, "DENSITY_ABOVE", 100)
    monkeypatch.setattr(M, "DRAWN_POINTS", 30)
    points = _points(400)
    fig = M.figure(points)
    assert fig.data[0].type == "heatmap" and fig.data[0].hoverinfo == "skip"
    scatters = fig.data[1:]
    assert sum(len(t.x) for t in scatters) == 30
    rows = [row for t in scatters for row in t.customdata]
    assert len({row[0] for row in rows}) == 30 and all(f"leaf{row[0] % 3}" == row[1] for row in rows)
    small = M.figure(points.take(np.arange(100)))
    assert all(t.type != "heatmap" for t in small.data) and sum(len(t.x) for t in small.data) == 100
    with pytest.raises(TreeSynthError, match="cannot colour"):
        M.figure(points, color_by="nothing")


def test_a_big_figure_reads_the_texts_of_the_drawn_points_only(monkeypatch):
    monkeypatch.setattr(M, "DENSITY_ABOVE", 100)
    monkeypatch.setattr(M, "DRAWN_POINTS", 30)
    asked: list[int] = []
    points = _points(400)

    def texts(ids):
        asked.extend(int(i) for i in ids)
        return [f"text {i}" for i in ids]

    fig = M.figure(MapPoints(points.sample_id, points.x, points.y, points.origin, points.origins, texts))
    assert len(asked) == 30 and set(asked) == {row[0] for t in fig.data[1:] for row in t.customdata}
    assert any("text " in hover for t in fig.data[1:] for hover in t.text)
