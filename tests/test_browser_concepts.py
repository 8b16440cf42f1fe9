"""The Concepts page in a real browser (`streamlit run app.py` headless, Debian's chromium driven by
Playwright; the app and the fixtures of ``test_browser.py``): the concept graph of three Python
reference topics (hand-written capable-model concepts, ``tests/fixtures/capable/concepts_python_docs.json``)
renders on a canvas with topics and concepts told apart and edges of different widths, and a click on
a concept selects it: the page lists its documents. The README's screenshot is taken here (set
``TREESYNTH_README_SHOT`` to keep a copy).

Skips without chromium or playwright, as ``test_browser.py`` does (fails under CI).
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from tests.capable import load_capable
from tests.test_browser import ARTIFACTS, browser, server, shot, wait_until  # noqa: F401 (fixtures)
from treesynth_core.concepts.documents import python_docs
from treesynth_core.concepts.graph import node_id
from treesynth_core.concepts.model import ConceptsReply
from treesynth_core.concepts.store import save_concepts, save_documents
from treesynth_core.store import Project

pytestmark = pytest.mark.slow

SCENARIO = "concepts_python_docs"


def seed_project(folder) -> None:
    """A project holding the three documents and their hand-written concepts (no LLM call needed)."""
    scenario = load_capable(SCENARIO)
    by_id = {d.doc_id: d for d in python_docs()}
    replies = [r["text"] for r in scenario["replies"]["concepts"]]
    with Project.create(folder, task="Questions about the Python language") as project:
        save_documents(project, [by_id[name] for name in scenario["documents"]])
        save_concepts(
            project,
            [
                ConceptsReply.model_validate_json(text).concepts(d)
                for d, text in zip(scenario["documents"], replies, strict=True)
            ],
        )


def concept_nodes(page) -> list[dict]:
    return page.evaluate(
        "() => window.treesynthConceptGraph ? window.treesynthConceptGraph.nodes.get().map("
        "n => ({id: n.id, kind: n.kind, shape: n.shape, label: n.label})) : []"
    )


def test_concept_graph_renders_and_a_click_selects_a_concept(browser, server):  # noqa: F811
    url, projects = server
    seed_project(projects / "pydocs")
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{url}/concepts?project=pydocs")
        page.get_by_role("heading", name="Concepts", exact=True).wait_for()
        nodes = wait_until(lambda: concept_nodes(page), 30, "the concept graph's nodes")
        assert page.get_by_test_id("treesynth-concept-graph").locator("canvas").count() == 1
        assert {n["kind"] for n in nodes} == {"topic", "concept"}
        assert {n["shape"] for n in nodes if n["kind"] == "topic"} == {"box"}
        assert {n["shape"] for n in nodes if n["kind"] == "concept"} == {"dot"}
        widths = page.evaluate("() => window.treesynthConceptGraph.edges.get().map(e => e.width)")
        assert len(set(widths)) > 1  # edges shared by more documents are wider

        target = node_id("concept", "while loop")
        assert target in {n["id"] for n in nodes}
        page.locator(".ts-cgraph .ts-fit").click()
        time.sleep(0.5)
        center = page.evaluate("(id) => window.treesynthConceptGraph.nodeCenter(id)", target)
        page.mouse.click(center["x"], center["y"])
        page.get_by_text("Concept: while loop").wait_for()
        for doc in ("break", "continue", "while"):
            page.get_by_text(doc, exact=True).first.wait_for()
        selected = page.evaluate("() => window.treesynthConceptGraph.network.getSelectedNodes()")
        assert selected == [target]
        time.sleep(1)
        page.get_by_test_id("stMainBlockContainer").evaluate("el => el.scrollIntoView()")
        shot(page, "concepts")
    except BaseException:
        shot(page, "concepts-failure")
        raise
    finally:
        page.close()
    target_file = os.environ.get("TREESYNTH_README_SHOT")
    if target_file:
        shutil.copy(ARTIFACTS / "concepts.png", target_file)
