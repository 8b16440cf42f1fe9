"""The Coverage map in a real browser (`streamlit run app.py` headless, Debian's chromium under
Playwright): the map's columns reach plotly.js as typed arrays, hovering a point shows its sample's
text, and a box selection lists the samples it caught and highlights their leaf for the Tree page.

The project is made here: four leaves of five samples each, hashed-word embeddings stored as a
features job stores them, and a cached map whose layout puts each leaf's samples in a cluster of
its own (UMAP is replaced by that layout in this process; the app only reads the cached map).
Screenshots go to ``test-artifacts/``. Without chromium or playwright it skips (fails under CI).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.fakes import HashEmbedder
from tests.helpers_browser import browser_fixture, server_fixture, shot, wait_until  # noqa: F401 (fixtures)
from tests.trees import split_root
from treesynth_core.coverage import maps
from treesynth_core.coverage.features.embeddings import ensure_features
from treesynth_core.jobs import background as jobs
from treesynth_core.store import Project
from treesynth_core.store.samples import NewSample

pytestmark = pytest.mark.slow

VALUES = ["Ocean", "Desert", "Rainforest", "Tundra"]
PER_LEAF = 5


def clusters(X, **_):
    """Leaf i's samples (stored leaf by leaf, five each) at x = 10 i, in a small column."""
    rows = np.arange(len(X))
    return np.column_stack([10.0 * (rows // PER_LEAF), rows % PER_LEAF]).astype(float)


@pytest.fixture
def mapped(server, monkeypatch):
    url, projects = server
    monkeypatch.setattr(maps, "umap_2d", clusters)
    with Project.create(projects / "animals", task="Short questions about animals") as project:
        tree = split_root(project, "Habitat", VALUES)
        project.add_samples(
            NewSample(
                leaf_id=leaf.id,
                key=str(j),
                instruction=f"Which animal of the {leaf.value} eats {j} fish a day?",
                path=[{"criterion": "Habitat", "value": leaf.value or ""}],
            )
            for leaf in tree.children(tree.root_id)
            for j in range(PER_LEAF)
        )
        embedder = HashEmbedder(dim=24)
        samples = project.samples()
        maps.map_points(project, samples, ensure_features(project, samples, embedder), embedder.name)
        project.put_blob(jobs.space_key("embeddings"), embedder.name.encode())  # as a features job does
    return url


def point_at(page, x: float, y: float) -> dict:
    """The page position of data point (x, y) on the map."""
    return page.evaluate(
        """([x, y]) => {
            const gd = document.querySelector('.js-plotly-plot');
            const box = gd.getBoundingClientRect();
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            return {x: box.left + xa._offset + xa.l2p(x), y: box.top + ya._offset + ya.l2p(y)};
        }""",
        [x, y],
    )


def test_the_map_hovers_and_selects_in_a_real_browser(browser, mapped):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})  # the whole map above the fold
    try:
        page.goto(f"{mapped}/coverage?project=animals")
        page.get_by_role("heading", name="Coverage", exact=True).wait_for(timeout=60_000)
        page.locator(".js-plotly-plot .scatterlayer .point").first.wait_for(timeout=60_000)
        page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
        drawn = page.evaluate(
            """() => document.querySelector('.js-plotly-plot')._fullData
                .map(t => [t.name, t.x.length, t.customdata.length])"""
        )
        assert drawn == [[value, PER_LEAF, PER_LEAF] for value in VALUES]  # one trace per leaf, every point

        spot = point_at(page, 10.0, 2.0)  # the Desert leaf's third sample
        page.mouse.move(5, 5)
        page.mouse.move(spot["x"], spot["y"], steps=4)
        hover = page.locator(".hoverlayer .hovertext")
        wait_until(lambda: "Desert eats 2 fish" in (hover.first.text_content() or ""), 20, "the hover label")
        shot(page, "coverage-map-hover")

        page.mouse.move(5, 5)
        low, high = page.evaluate("() => document.querySelector('.js-plotly-plot')._fullLayout.yaxis.range")
        pad = (high - low) / 50  # inside the plot area, beyond the column's first and last point
        start, end = point_at(page, 7.0, low + pad), point_at(page, 13.0, high - pad)  # around the Desert leaf
        page.mouse.move(start["x"], start["y"])
        page.mouse.down()
        page.mouse.move(end["x"], end["y"], steps=8)
        page.mouse.up()
        listed = page.get_by_text(f"{PER_LEAF} samples selected")
        listed.wait_for(timeout=30_000)
        summary = page.locator("p", has=listed).first.text_content() or ""
        assert "5 samples selected in 1 leaves" in " ".join(summary.split()), summary
        page.locator("li", has_text="Desert").first.wait_for(timeout=10_000)  # the leaf, with its count
        page.get_by_text("Open the Tree page (1 leaf highlighted)").wait_for(timeout=10_000)
        time.sleep(0.5)
        shot(page, "coverage-map-selection")
    except BaseException:
        shot(page, "coverage-map-failure")
        raise
    finally:
        page.close()
