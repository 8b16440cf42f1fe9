"""Concepts with the tree, in the app (AppTest): the node editor's "Values from the concept graph"
adds proposed values (undo removes them), the Concepts page routes a concepts set into the tree, and
its generation offers majority-vote verification of the answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.widgets import PAGE_CONCEPTS, PAGE_TREE
from tests.apptest import create_project, new_app, run, texts, tree_of, wait_for_job
from tests.concepts_data import add_concepts_questions, write_concepts
from tests.fakes import HashEmbedder
from tests.trees import split_root
from treesynth_core.concepts.model import read_jsonl
from treesynth_core.concepts.store import save_concepts
from treesynth_core.jobs import background as jobs
from treesynth_core.store import Project


@pytest.fixture
def folder(projects: Path, tmp_path: Path):
    """An app with the project "docs": its root split into Loops and Functions, and concepts stored."""
    at = create_project(new_app(), "docs", "Questions about the Python language")
    path = projects / "docs"
    with Project.open(path) as project:
        split_root(project, "Construct", ["Loops", "Functions"])
        save_concepts(project, read_jsonl(write_concepts(tmp_path / "c.jsonl")))
    return at, path


def test_the_node_editor_adds_values_from_the_concept_graph_as_proposed(folder):
    at, path = folder
    tree = tree_of(path)
    loops = next(k for k in tree.children(tree.root_id) if k.value == "Loops")
    at.switch_page(PAGE_TREE)
    run(at)
    at.selectbox(key="tree.search").set_value(loops.id)
    run(at)
    assert "Values from the concept graph" in [e.label for e in at.expander]
    shown = next(df.value for df in at.dataframe if "score" in df.value.columns)
    assert list(shown["value"]) == ["Iteration", "Comprehensions"] and list(shown["documents"])[0] == "d1, d3"
    at.button(key="edit.concept_values").click()
    run(at)
    kids = tree_of(path).children(loops.id)
    assert [k.value for k in kids] == ["Iteration", "Comprehensions"] and {k.status for k in kids} == {"proposed"}
    assert any("values proposed from the concept graph" in str(t.value) for t in at.toast)
    at.button(key="tree.undo").click()
    run(at)
    assert tree_of(path).children(loops.id) == []


def test_a_project_without_concepts_shows_no_concept_values(projects):
    at = create_project(new_app(), "plain", "Questions about the Python language")
    with Project.open(projects / "plain") as project:
        split_root(project, "Construct", ["Loops"])
    at.switch_page(PAGE_TREE)
    run(at)
    assert "Values from the concept graph" not in [e.label for e in at.expander]


def test_the_concepts_page_routes_a_concepts_set_into_the_tree(folder):
    at, path = folder
    add_concepts_questions(path)
    jobs.set_featurizer_factory(lambda space: HashEmbedder(dim=64, name=f"emb:fake-{space}"))
    try:
        at.switch_page(PAGE_CONCEPTS)
        run(at)
        assert "Not routed on the current tree yet." in texts(at)
        at.radio(key="concepts.route.router").set_value("embedding")
        at.button(key="concepts.route.run").click()
        run(at)
        job = wait_for_job(path)
        assert job.kind == "route" and job.status == "done", (job.error, job.message)
        assert job.params["sample_set"] == "concepts-l2"
        run(at)
    finally:
        jobs.set_featurizer_factory(None)
    body = texts(at)
    assert "Routing into the tree finished in " in body and "Placed by the embedding router" in body
    assert {m.label for m in at.metric} >= {"In a leaf", "None fits", "Routed"}
    with Project.open(path) as project:
        assert all(s.leaf_id != "" for s in project.samples(sample_set="concepts-l2"))


def test_generation_offers_verification_with_answers(folder):
    at, path = folder
    at.switch_page(PAGE_CONCEPTS)
    run(at)
    assert at.selectbox(key="concepts.verify").disabled  # no answers, nothing to verify
    at.checkbox(key="concepts.responses").check()
    run(at)
    assert not at.selectbox(key="concepts.verify").disabled
    calls = next(m.value for m in at.metric if m.label == "LLM calls")
    at.selectbox(key="concepts.verify").set_value(3)
    run(at)
    assert next(m.value for m in at.metric if m.label == "LLM calls") != calls  # 3 draws a question
    at.number_input(key="concepts.n").set_value(2)
    at.button(key="concepts.generate").click()
    run(at)
    job = wait_for_job(path)
    assert job.kind == "concepts-synth" and job.params["verify"] == 3 and job.params["answer"] == "last-number"
