"""A big map in the browser: every point as scattergl against the density image + sample that maps draw.

For each ``--n``, lays out clustered points, builds (a) one plotly scattergl of every point and (b)
``coverage.maps.figure`` (above ``DENSITY_ABOVE`` points: a density image of all of them under a
seeded sample drawn as points), and loads each in headless chromium (Playwright; ``/usr/bin/chromium``,
software WebGL). Prints the figure JSON's size, the time to the first draw and the time of a zoom, and
the ratio of (a) to (b) in the same run.

With ``--leaves K``: ``n`` points (below the density image) in K leaves, drawn (a) one trace per leaf
and (b) as ``coverage.maps.figure`` draws them (``LEGEND_GROUPS`` traces at most, the rest sharing one).

    .venv/bin/python benchmarks/map_browser.py [--n 100000 1000000] [--leaves 2000 --n 20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from treesynth_core.coverage import maps as M  # noqa: E402
from treesynth_core.coverage.map_points import MapPoints, Origin  # noqa: E402
from treesynth_core.store.samples import TREE_SET  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
PAGE = """<html><head><script src="plotly.js"></script></head><body><div id="d" style="width:1000px;height:700px"></div>
<script>const t0=performance.now();const f=FIGURE;Plotly.newPlot('d',f.data,f.layout).then(()=>{
requestAnimationFrame(()=>{window.done=performance.now()-t0;});});</script></body></html>"""
ZOOM = """async()=>{const t=performance.now();
await Plotly.relayout('d',{'xaxis.range':[-5,5],'yaxis.range':[-5,5]});return performance.now()-t;}"""


def every_point(points: MapPoints) -> Any:
    import plotly.graph_objects as go

    return go.Figure(
        go.Scattergl(
            x=points.x,
            y=points.y,
            mode="markers",
            marker={"size": 3},
            customdata=np.column_stack([points.sample_id.astype(object), points.column("leaf_id")]),
        )
    )


def clustered(n: int, seed: int = 0, leaves: int = 20) -> MapPoints:
    """``n`` points in ``leaves`` clusters, one leaf each, as the map's columns (no object per point)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, leaves, n)
    xy = rng.normal(size=(leaves, 2))[labels] * 10 + rng.normal(size=(n, 2))
    origins = tuple(Origin(f"l{c}", f"leaf {c}", "", {}, TREE_SET) for c in range(leaves))
    return MapPoints(np.arange(n), xy[:, 0], xy[:, 1], labels, origins, lambda ids: [""] * len(ids))


def measure(browser: Any, folder: Path, name: str, fig: Any) -> dict[str, float]:
    data = fig.to_json()
    page_file = folder / f"{name}.html"
    page_file.write_text(PAGE.replace("FIGURE", data))
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.goto(page_file.as_uri())
    page.wait_for_function("window.done !== undefined", timeout=600_000)
    out = {
        "json_mb": len(data) / 1e6,
        "draw_s": page.evaluate("window.done") / 1e3,
        "zoom_s": page.evaluate(ZOOM) / 1e3,
    }
    page.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--leaves", type=int, default=0, help="compare one trace per leaf with the capped legend")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright
    from plotly.offline import get_plotlyjs

    with tempfile.TemporaryDirectory(prefix="map-browser-") as tmp, sync_playwright() as pw:
        folder = Path(tmp)
        (folder / "plotly.js").write_text(get_plotlyjs())
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
        )
        for n in args.n:
            if args.leaves:
                points = clustered(n, leaves=args.leaves)
                per_leaf, build_a = built(points, legend_groups=args.leaves)
                drawn, build_s = built(points, legend_groups=M.LEGEND_GROUPS)
                a = measure(browser, folder, f"per_leaf_{n}", per_leaf)
                b = measure(browser, folder, f"capped_{n}", drawn)
                print(f"{n:,} points in {args.leaves:,} leaves: figure built in {build_a:.1f} s (a trace per leaf)")
                print(f"  and {build_s:.1f} s ({len(drawn.data)} traces)")
                compare("a trace per leaf", a, b)
                continue
            points = clustered(n)
            drawn, build_s = built(points)
            a = measure(browser, folder, f"all_{n}", every_point(points))
            b = measure(browser, folder, f"maps_{n}", drawn)
            print(f"{n:,} points (maps.figure built in {build_s:.1f} s):")
            compare("every point", a, b)
        browser.close()
    return 0


def built(points: MapPoints, legend_groups: int | None = None) -> tuple[Any, float]:
    """``maps.figure`` of the points (with that many legend groups at most) and the seconds it took."""
    saved = M.LEGEND_GROUPS
    M.LEGEND_GROUPS = legend_groups or saved
    try:
        start = time.perf_counter()
        fig = M.figure(points)
        return fig, time.perf_counter() - start
    finally:
        M.LEGEND_GROUPS = saved


def compare(other: str, a: dict[str, float], b: dict[str, float]) -> None:
    for label, key in (("figure JSON", "json_mb"), ("first draw", "draw_s"), ("zoom", "zoom_s")):
        unit = "MB" if key == "json_mb" else "s"
        theirs, ours = a[key], b[key]
        print(f"  {label}: {other} {theirs:.2f} {unit}, ours {ours:.2f} {unit} = {theirs / ours:.1f}x less")


if __name__ == "__main__":
    sys.exit(main())
