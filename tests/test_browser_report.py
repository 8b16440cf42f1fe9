"""The stakeholder report in a real browser: Debian's chromium (Playwright) opens the HTML file with
every network route aborted and offline on; the tree graph is drawn (vis-network, inlined), the page
makes no request but for the file itself, breaks no Content-Security-Policy rule, runs no injected
script (a value holds one), and its tooltip shows the value as text. A screenshot goes to
``test-artifacts/report.png``.

Without /usr/bin/chromium or the playwright package the test skips with the reason, except under CI
(``CI`` set), where it fails.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import HashEmbedder
from tests.trees import split_root
from treesynth_core.coverage.features.embeddings import ensure_features
from treesynth_core.coverage.maps import map_points
from treesynth_core.report.collect import collect_report
from treesynth_core.report.render import render_html, write_html
from treesynth_core.store import Project
from treesynth_core.store.samples import NewSample

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
XSS = "<img src=x onerror=alert(1)><script>alert(2)</script>"
VALUES = ["Ocean", "Desert", "Rainforest", f"Tundra {XSS}"]


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is missing (pip install playwright)"
    return None


@pytest.fixture
def report_file(tmp_path, monkeypatch) -> Path:
    """A report of a project with four leaves, samples, a flat baseline and a cached map."""
    from treesynth_core.coverage import maps

    monkeypatch.setattr(maps, "umap_2d", lambda X, **_: np.random.default_rng(0).normal(size=(len(X), 2)))
    with Project.create(tmp_path / "animals", task=f"Short questions about animals {XSS}") as project:
        tree = split_root(project, "Habitat", VALUES)
        rows = [
            NewSample(
                leaf_id=leaf.id,
                key=f"{i}:{j}",
                instruction=f"Which animal of the {leaf.value} eats {j} fish a day? {XSS if j == 0 else ''}",
                path=[{"criterion": "Habitat", "value": leaf.value or ""}],
                response=f"An answer {j}.",
            )
            for i, leaf in enumerate(tree.children(tree.root_id))
            for j in range(5)
        ]
        rows += [
            NewSample(
                leaf_id="", key=f"b{j}", instruction=f"A question {j} about animals", path=[], sample_set="baseline"
            )
            for j in range(12)
        ]
        project.add_samples(rows)
        embedder = HashEmbedder(dim=24)
        samples = project.samples() + project.samples(sample_set="baseline")
        map_points(project, samples, ensure_features(project, samples, embedder), embedder.name)
        page = render_html(collect_report(project, embedder=embedder))
    return write_html(page, tmp_path / "animals-report.html")


def test_the_report_renders_offline_and_requests_nothing(report_file):
    why = _missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI, but {why}")
        pytest.skip(f"real-browser test skipped: {why}")
    from playwright.sync_api import sync_playwright

    url = report_file.as_uri()
    requests: list[str] = []
    problems: list[str] = []
    dialogs: list[str] = []

    def route(handle) -> None:
        requests.append(handle.request.url)
        if handle.request.url == url:
            handle.continue_()
        else:
            handle.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900}, offline=True)
            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(url)
            page.wait_for_selector("#graph[data-drawn]", timeout=20_000)
            drawn = page.evaluate("window.treesynthReport.network.body.nodeIndices.length")
            assert drawn == 1 + len(VALUES)
            assert page.locator("#graph canvas").count() == 1
            # hover the value with the payload: its tooltip shows it as text
            leaf = page.evaluate(
                "(() => { const r = window.treesynthReport, ids = r.nodes.getIds();"
                " const id = ids.find((i) => String(r.nodes.get(i).label).startsWith('Tundra'));"
                " const p = r.network.canvasToDOM(r.network.getPosition(id));"
                " const box = document.getElementById('graph').getBoundingClientRect();"
                " return { x: box.left + p.x, y: box.top + p.y }; })()"
            )
            page.mouse.move(leaf["x"], leaf["y"])
            tip = page.wait_for_selector("div.vis-tooltip", state="visible", timeout=5_000)
            assert XSS in tip.text_content()
            assert page.locator("div.vis-tooltip img, div.vis-tooltip script").count() == 0
            assert page.locator("main img").count() == 0  # every payload stayed text
            page.mouse.move(5, 5)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()
    assert requests == [url]
    assert not dialogs
    assert not problems, problems
