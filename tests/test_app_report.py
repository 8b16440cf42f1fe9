"""The Export page's report for stakeholders with AppTest: the button makes the HTML page and offers
it for download."""

from __future__ import annotations

import numpy as np

from studio.widgets import PAGE_EXPORT as EXPORT
from tests.apptest import new_app, run
from tests.trees import split_root
from treesynth_core.jobs.specs import space_key
from treesynth_core.store import Project
from treesynth_core.store.samples import NewSample


def make_project(folder) -> None:
    with Project.create(folder, task="Word problems <b>bold</b>", style="short") as project:
        tree = split_root(project, "topic", ["fractions", "geometry"])
        project.add_samples(
            NewSample(
                leaf_id=leaf.id,
                key=f"{leaf.id}:{j}",
                instruction=f"A {leaf.value} question {j}",
                path=[{"criterion": "topic", "value": leaf.value or ""}],
            )
            for leaf in tree.children(tree.root_id)
            for j in range(3)
        )


def test_the_export_page_makes_and_offers_the_report(projects):
    make_project(projects / "demo")
    at = new_app(project="demo")
    at.switch_page(EXPORT)
    run(at)
    assert at.button(key="export.report.make")
    assert "export.report.download" not in [b.key for b in at.get("download_button")]
    at.button(key="export.report.make").click()
    run(at)
    assert not at.error
    buttons = at.get("download_button")
    assert [b.proto.label for b in buttons][-1] == "Download the report (HTML)"
    page = at.session_state["treesynth"].last_report.decode("utf-8")
    assert page.startswith("<!DOCTYPE html>") and "TreeSynth report: demo" in page
    assert "Word problems &lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page
    assert "without embeddings" in page  # no features computed on the Coverage page yet


def test_the_report_uses_the_features_the_coverage_page_stored(projects):
    make_project(projects / "demo")
    with Project.open(projects / "demo") as project:
        vectors = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
        project.put_features(
            "fake-embeddings", {s.id: v.tobytes() for s, v in zip(project.samples(), vectors, strict=True)}
        )
        project.put_blob(space_key("embeddings"), b"fake-embeddings")
    at = new_app(project="demo")
    at.switch_page(EXPORT)
    run(at)
    at.button(key="export.report.make").click()
    run(at)
    page = at.session_state["treesynth"].last_report.decode("utf-8")
    assert "Embeddings: fake-embeddings; every set scored at equal n = 6." in page
    assert "No map yet" in page
