"""Map engines against ours: datashader's density image and Embedding Atlas's Streamlit component.

Issue 15 asks whether a 1M-point Coverage map should move to Apple's Embedding Atlas (WebGPU, with a
WebGL 2 fallback, selection returned to Python as a SQL predicate) or datashader. Both are optional
and not project dependencies; this runs what is importable and measures each against our approach in
the same run:

1. the density image of ``--n`` clustered points on a ``DENSITY_BINS`` grid: ``datashader`` against
   ``coverage.map_density.density_grid`` (numpy), best of ``--repeat`` (datashader's first call, which
   compiles with numba, is printed apart);
2. a tiny Streamlit app of ``embedding_atlas.streamlit.embedding_atlas`` over the same points, served on
   127.0.0.1 and opened in headless chromium (``/usr/bin/chromium``): whether the GPU adapter exists,
   whether anything is drawn, the time to the first draw (screenshots polled), the bytes the page
   received over the websocket, the JS heap, a zoom, and whether a box selection reaches Python; against
   ``coverage.maps.figure`` measured by ``map_browser.py``'s harness in the same browser.

    pip install embedding-atlas==0.26.0 datashader==0.19.1   # in a scratch venv, with streamlit, playwright
    python benchmarks/map_engines.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

INSTALL = "pip install embedding-atlas==0.26.0 datashader==0.19.1"
APP = """import json, os, sys
import numpy as np, pandas as pd, streamlit as st
from embedding_atlas.streamlit import embedding_atlas

@st.cache_data
def frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 20, n)
    xy = rng.normal(size=(20, 2))[labels] * 10 + rng.normal(size=(n, 2))
    return pd.DataFrame({"id": np.arange(n), "x": xy[:, 0], "y": xy[:, 1], "leaf": labels.astype(str)})

df = frame(int(os.environ["ATLAS_N"]))
value = embedding_atlas(df, x="x", y="y", row_id="id", key="atlas")
with open(os.environ["ATLAS_OUT"], "a") as out:
    out.write(json.dumps(value, default=str) + "\\n")
"""
GPU = """async()=>{if(!navigator.gpu)return 'navigator.gpu absent';
try{const a=await navigator.gpu.requestAdapter();
return a?'adapter: '+(a.info?a.info.vendor+' '+a.info.architecture:'yes'):'requestAdapter() returned null';}
catch(e){return 'requestAdapter() threw: '+e;}}"""
WEBGL2 = """()=>{const g=document.createElement('canvas').getContext('webgl2');
return g?g.getParameter(g.RENDERER):'none';}"""


def missing() -> list[str]:
    return [name for name in ("datashader", "embedding_atlas", "streamlit", "playwright") if not _has(name)]


def _has(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def clustered_xy(n: int) -> tuple[np.ndarray, np.ndarray]:
    from map_browser import clustered

    points = clustered(n)
    return np.asarray(points.x, float), np.asarray(points.y, float)


def density(n: int, repeat: int) -> None:
    """datashader's count aggregate against our numpy ``density_grid``, same points, same grid."""
    import pandas as pd

    from treesynth_core.coverage.map_density import DENSITY_BINS, density_grid

    ds: Any = importlib.import_module("datashader")
    x, y = clustered_xy(n)
    frame = pd.DataFrame({"x": x, "y": y})

    def shaded() -> Any:
        canvas = ds.Canvas(
            plot_width=DENSITY_BINS,
            plot_height=DENSITY_BINS,
            x_range=(float(x.min()), float(x.max())),
            y_range=(float(y.min()), float(y.max())),
        )
        return canvas.points(frame, "x", "y", agg=ds.count())

    start = time.perf_counter()
    first = shaded()
    first_s = time.perf_counter() - start
    ours_s, theirs_s = best(lambda: density_grid(x, y), repeat), best(shaded, repeat)
    counts = np.asarray(first.values)
    z = density_grid(x, y)[0]
    print(f"density image of {n:,} points on {DENSITY_BINS}x{DENSITY_BINS} cells (best of {repeat}):")
    print(f"  numpy density_grid {ours_s:.3f} s, datashader {theirs_s:.3f} s = {ours_s / theirs_s:.1f}x")
    print(f"  (datashader's first call, numba compiling: {first_s:.2f} s)")
    print(f"  same points counted: {int(counts.sum()):,} vs {int(np.nansum(np.expm1(z)).round()):,}")


def best(call: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def browser_maps(n: int, timeout_s: float, local_cdn: bool) -> None:
    """Embedding Atlas's Streamlit component against ``maps.figure`` in the same headless chromium."""
    from map_browser import CHROMIUM, built, clustered, measure
    from playwright.sync_api import sync_playwright
    from plotly.offline import get_plotlyjs

    with tempfile.TemporaryDirectory(prefix="map-engines-") as tmp, sync_playwright() as pw:
        folder = Path(tmp)
        (folder / "plotly.js").write_text(get_plotlyjs())
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--enable-unsafe-webgpu"],
        )
        drawn, build_s = built(clustered(n))
        ours = measure(browser, folder, f"maps_{n}", drawn)
        print(f"{n:,} points in the browser:")
        print(
            f"  ours (maps.figure, built in {build_s:.1f} s): figure JSON {ours['json_mb']:.2f} MB, "
            f"first draw {ours['draw_s']:.2f} s, zoom {ours['zoom_s']:.2f} s"
        )
        atlas = atlas_in_browser(browser, folder, n, timeout_s, local_cdn)
        for key, value in atlas.items():
            print(f"  atlas {key}: {value}")
        for key in ("loaded s", "first draw s"):
            if isinstance(atlas.get(key), float):
                print(f"  atlas {key} / our first draw = {atlas[key] / ours['draw_s']:.1f}x")
        if isinstance(atlas.get("websocket MB"), float):
            print(f"  payload: atlas websocket / our figure JSON = {atlas['websocket MB'] / ours['json_mb']:.1f}x")
        browser.close()


CDN = "https://cdn.jsdelivr.net/npm/@duckdb/duckdb-wasm@*/dist/*"
#: The CDN files the component asks for, and the same version's files in the package's own CLI bundle.
DUCKDB_FILES = {
    "duckdb-browser-eh.worker.js": "duckdb-browser-eh.worker-*.js",
    "duckdb-eh.wasm": "duckdb-eh-*.wasm",
    "duckdb-browser-mvp.worker.js": "duckdb-browser-mvp.worker-*.js",
    "duckdb-mvp.wasm": "duckdb-mvp-*.wasm",
}


def serve_duckdb_locally(page: Any) -> None:
    """Answer the component's DuckDB-WASM requests to cdn.jsdelivr.net from embedding_atlas/static/assets.

    The Streamlit component loads DuckDB-WASM from the CDN at run time; without a network it draws
    nothing (``--cdn`` shows that). The package's CLI bundle carries the same DuckDB-WASM version."""
    spec = importlib.util.find_spec("embedding_atlas")
    assert spec is not None and spec.origin is not None
    assets = Path(spec.origin).parent / "static" / "assets"

    def answer(route: Any) -> None:
        name = route.request.url.rsplit("/", 1)[-1]
        found = sorted(assets.glob(DUCKDB_FILES[name])) if name in DUCKDB_FILES else []
        if not found:
            route.abort()
            return
        kind = "application/wasm" if name.endswith(".wasm") else "text/javascript"
        route.fulfill(body=found[0].read_bytes(), content_type=kind, headers={"access-control-allow-origin": "*"})

    page.context.route(CDN, answer)


def atlas_in_browser(browser: Any, folder: Path, n: int, timeout_s: float, local_cdn: bool) -> dict[str, Any]:
    app, out = folder / "atlas_app.py", folder / "atlas_values.jsonl"
    app.write_text(APP)
    port = free_port()
    env = {**os.environ, "ATLAS_N": str(n), "ATLAS_OUT": str(out)}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port)]
        + ["--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    result: dict[str, Any] = {}
    console: list[str] = []
    received = [0]
    try:
        wait_port(port, 60)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"[:300]))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"[:300]))
        if local_cdn:
            serve_duckdb_locally(page)
        page.on("websocket", lambda ws: ws.on("framereceived", lambda p: received.__setitem__(0, received[0] + len(p))))
        start = time.perf_counter()
        page.goto(f"http://127.0.0.1:{port}/")
        result["webgpu"] = page.evaluate(GPU)
        result["webgl2 renderer"] = page.evaluate(WEBGL2)
        frame, loaded = wait_loaded(page, n, timeout_s)
        if frame is None or loaded is None:
            result["loaded s"] = f"no '{n:,} / {n:,} points' within {timeout_s:.0f} s"
            result["websocket MB"] = received[0] / 1e6
            result["console (errors / gpu)"] = [line for line in console if "rror" in line or "GPU" in line][:8]
            return result
        result["loaded s"] = round(loaded - start, 2)
        result["websocket MB"] = received[0] / 1e6
        result["JS heap MB (component frame)"] = frame.evaluate(
            "performance.memory ? performance.memory.usedJSHeapSize / 1e6 : -1"
        )
        text = frame.evaluate("()=>document.body.innerText")
        refusal = [line for line in text.splitlines() if "WebGPU" in line]
        if refusal:
            result["map view"] = f"not drawn: {refusal[0]!r}"
        else:
            canvas = largest_canvas(frame)
            drawn_at = None if canvas is None else wait_drawn(page, canvas, start, timeout_s)
            result["first draw s"] = drawn_at if drawn_at is not None else "no points drawn"
            if canvas is not None and drawn_at is not None:
                result["zoom s"] = zoom(page, canvas)
                result["selection in Python"] = select(page, canvas, out)
        result["python values"] = out.read_text().strip().splitlines()[-3:] if out.exists() else []
        page.close()
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    errors = [line for line in console if "error" in line.lower() or "gpu" in line.lower()]
    result["console (errors / gpu)"] = errors[:8]
    tail = err.decode(errors="replace").strip().splitlines()[-5:]
    if tail:
        result["server stderr"] = tail
    return result


def wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"streamlit did not listen on {port} within {timeout_s:.0f} s")


def wait_loaded(page: Any, n: int, timeout_s: float) -> tuple[Any, float | None]:
    """The component's iframe, and when it showed ``n / n points`` (the data is in its DuckDB)."""
    deadline, loaded = time.monotonic() + timeout_s, f"{n:,} / {n:,} points"
    while time.monotonic() < deadline:
        for frame in page.frames[1:]:
            try:
                text = frame.evaluate("()=>document.body ? document.body.innerText : ''")
            except Exception:  # a frame navigating away
                continue
            if loaded in text.replace("\n", " "):
                return frame, time.perf_counter()
        page.wait_for_timeout(200)
    return None, None


def largest_canvas(frame: Any) -> Any:
    sized = [(c.bounding_box() or {"width": 0, "height": 0}, c) for c in frame.query_selector_all("canvas")]
    sized = [(box, c) for box, c in sized if box["width"] * box["height"] > 200 * 200]
    return max(sized, key=lambda bc: bc[0]["width"] * bc[0]["height"])[1] if sized else None


def inked(canvas: Any) -> tuple[float, bytes]:
    """The share of the canvas's pixels away from its most common colour, and the screenshot."""
    from PIL import Image

    png = canvas.screenshot()
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)
    background = np.bincount(pixels.ravel()).argmax()
    return float((np.abs(pixels - background) > 16).mean()), png


def wait_drawn(page: Any, canvas: Any, start: float, timeout_s: float) -> float | None:
    while time.perf_counter() - start < timeout_s:
        share, _ = inked(canvas)
        if share > 0.005:
            return round(time.perf_counter() - start, 2)
        page.wait_for_timeout(200)
    return None


def zoom(page: Any, canvas: Any) -> float | str:
    box = canvas.bounding_box()
    _, before = inked(canvas)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    start = time.perf_counter()
    page.mouse.wheel(0, -600)
    while time.perf_counter() - start < 30:
        _, after = inked(canvas)
        if after != before:
            return round(time.perf_counter() - start, 2)
        page.wait_for_timeout(50)
    return "no change within 30 s"


def select(page: Any, canvas: Any, out: Path) -> str:
    """Shift-drag a box over the middle of the view; what the Python side got back."""
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    seen = len(out.read_text().splitlines()) if out.exists() else 0
    page.keyboard.down("Shift")
    page.mouse.move(cx - 120, cy - 120)
    page.mouse.down()
    page.mouse.move(cx + 120, cy + 120, steps=10)
    page.mouse.up()
    page.keyboard.up("Shift")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = out.read_text().splitlines() if out.exists() else []
        for line in lines[seen:]:
            value = json.loads(line)
            if isinstance(value, dict) and value.get("predicate"):
                return f"yes: {str(value['predicate'])[:120]}"
        page.wait_for_timeout(500)
    return "no predicate reached Python within 30 s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the atlas to draw")
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--cdn", action="store_true", help="let DuckDB-WASM come from the CDN (fails offline)")
    args = parser.parse_args(argv)
    absent = missing()
    if absent:
        print(f"{', '.join(absent)} not installed; to measure them: {INSTALL} streamlit playwright")
        return 0
    density(args.n, args.repeat)
    if not args.skip_browser:
        browser_maps(args.n, args.timeout, local_cdn=not args.cdn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
