"""Concepts with the tree: a node's values from the concept graph (:mod:`treesynth_core.concepts.propose`),
the ``propose-values`` edit that adds them for review, ``treesynth concepts DIR propose``, and
``treesynth route`` on a set that concepts generation made."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.concepts_data import add_concepts_questions, write_concepts
from tests.fakes import HashEmbedder
from tests.trees import split_root
from treesynth_core.cli.app import app
from treesynth_core.concepts.model import read_jsonl
from treesynth_core.concepts.propose import propose_values, words
from treesynth_core.errors import DataError, TreeError
from treesynth_core.store import Project
from treesynth_core.store.samples import UNROUTED
from treesynth_core.tree import model as T
from treesynth_core.tree.edits import run_edit


@pytest.fixture
def docs(tmp_path):
    return read_jsonl(write_concepts(tmp_path / "concepts.jsonl"))


@pytest.fixture
def tree(project):
    return split_root(project, "Construct", ["Loops", "Functions"])


def child(tree: T.Tree, parent_id: str, value: str) -> T.Node:
    return next(k for k in tree.children(parent_id) if k.value == value)


def test_words_fold_plurals_and_drop_stop_words():
    assert words("The Loops of classes and queries") == {"loop", "class", "query"}


def test_the_topics_of_the_nodes_documents_rank_first_and_the_path_is_left_out(tree, docs):
    loops = child(tree, tree.root_id, "Loops")
    proposal = propose_values(tree, loops.id, docs, k=5)
    assert proposal.values == ["Iteration", "Comprehensions"]  # "Loops" is the path itself
    assert proposal.candidates[0].documents == ("d1", "d3") and proposal.matched == 3 and proposal.total == 6
    assert proposal.criterion == "Topic" and proposal.path == ("Loops",)
    functions = propose_values(tree, child(tree, tree.root_id, "Functions").id, docs, k=5)
    assert set(functions.values) == {"Decorators", "Closures"} and "Classes" not in functions.values


def test_concepts_are_proposed_too_and_k_cuts_the_list(tree, docs):
    loops = child(tree, tree.root_id, "Loops")
    proposal = propose_values(tree, loops.id, docs, k=2, kind="concept")
    assert proposal.criterion == "Concept"
    assert proposal.values == ["for loop", "while loop"]  # two documents each; "for loop" is not "Loops"


def test_at_the_root_every_document_counts_and_existing_children_are_skipped(tree, docs):
    proposal = propose_values(tree, tree.root_id, docs, k=10, criterion="Construct")
    assert proposal.matched == 6
    assert "Loops" not in proposal.values and "Functions" not in proposal.values  # children already
    assert "Iteration" in proposal.values


def test_no_concepts_or_no_match_is_a_clear_error(tree, docs):
    with pytest.raises(DataError, match="no concepts yet"):
        propose_values(tree, tree.root_id, [], k=3)
    other = T.add_value(tree, tree.root_id, "Networking sockets")
    with pytest.raises(DataError, match="nothing to propose"):
        propose_values(other, child(other, other.root_id, "Networking sockets").id, docs)


def test_the_edit_adds_proposed_children_in_one_undoable_step(project, tree, docs):
    loops = child(tree, tree.root_id, "Loops")
    proposal = propose_values(tree, loops.id, docs)
    after = run_edit(project, "propose-values", node_id=loops.id, criterion=proposal.criterion, values=proposal.values)
    kids = after.children(loops.id)
    assert [k.value for k in kids] == ["Iteration", "Comprehensions"] and not any(k.approved for k in kids)
    assert after.nodes[loops.id].split_criterion == "Topic"
    # the same criterion again adds only what is new, beside the values
    again = run_edit(project, "propose-values", node_id=loops.id, criterion="topic", values=["Iteration", "Ranges"])
    assert [k.value for k in again.children(loops.id)] == ["Iteration", "Comprehensions", "Ranges"]
    with pytest.raises(TreeError, match="already"):
        run_edit(project, "propose-values", node_id=loops.id, criterion="Topic", values=["Ranges"])
    project.replay(undo=True)
    project.replay(undo=True)
    assert project.tree().children(loops.id) == []


def test_a_new_split_keeps_the_persons_note_and_replaces_another_criterion(tree):
    loops = child(tree, tree.root_id, "Loops")
    tree = T.replace_criterion(tree, loops.id, "Kind", ["for", "while"])
    tree = T.with_nodes(tree, [replace(tree.nodes[loops.id], note="for and while loops")])
    after = T.propose_values(tree, loops.id, "Topic", ["Iteration"])
    assert [k.value for k in after.children(loops.id)] == ["Iteration"]  # the Kind split is replaced
    assert after.nodes[loops.id].note == "for and while loops"  # a description the router reads


# -- CLI ------------------------------------------------------------------------------------------

runner = CliRunner()


def invoke(*args: object, ok: bool = True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    path = tmp_path / "proj"
    invoke("new", path, "--task", "Questions about the Python language")
    with Project.open(path) as project:
        split_root(project, "Construct", ["Loops", "Functions"])
    invoke("concepts", path, "import", write_concepts(tmp_path / "c.jsonl"))
    return path


def test_cli_propose_prints_and_apply_adds_proposed_values_that_undo_removes(proj):
    shown = invoke("concepts", proj, "propose", "--node", "Loops", "--k", "3")
    assert "1. Iteration" in shown.output and "2. Comprehensions" in shown.output and "d1, d3" in shown.output
    with Project.open(proj) as project:
        assert len(project.tree().nodes) == 3  # printing changes nothing
    data = json.loads(invoke("concepts", proj, "propose", "--node", "Loops", "--apply", "--json").output)
    assert data["applied"] and [c["value"] for c in data["candidates"]] == ["Iteration", "Comprehensions"]
    with Project.open(proj) as project:
        tree = project.tree()
        loops = child(tree, tree.root_id, "Loops")
        kids = tree.children(loops.id)
    assert [k.value for k in kids] == ["Iteration", "Comprehensions"] and {k.status for k in kids} == {"proposed"}
    invoke("edit", proj, "undo")
    with Project.open(proj) as project:
        assert project.tree().children(loops.id) == []


def test_cli_propose_errors_are_one_line(proj, tmp_path):
    bad = invoke("concepts", proj, "propose", "--node", "Loops", "--kind", "words", ok=False)
    assert bad.exit_code == 1 and "--kind must be topic or concept" in bad.output
    empty = tmp_path / "empty"
    invoke("new", empty, "--task", "t")
    none = invoke("concepts", empty, "propose", "--node", "root", ok=False)
    assert none.exit_code == 1 and "no concepts yet" in none.output and "Traceback" not in none.output


# -- routing a concepts set -----------------------------------------------------------------------


def test_route_places_a_concepts_set_in_the_trees_leaves(proj, monkeypatch):
    from treesynth_core.cli import common as cli_common
    from treesynth_core.cli import data as cli_data

    embedder = HashEmbedder(dim=64)
    monkeypatch.setattr(cli_data, "load_embedder", lambda project, spec: embedder)
    monkeypatch.setattr(cli_common, "load_embedder", lambda project, spec: embedder)
    add_concepts_questions(proj)
    report = json.loads(invoke("route", proj, "--set", "concepts-l2", "--router", "embedding", "--json").stdout)
    assert report["total"] == report["routed"] == 4 and report["leaf"] + report["none_fits"] == 4
    with Project.open(proj) as project:
        tree = project.tree()
        leaves = {leaf.id: leaf.value for leaf in tree.leaves()}
        placed = project.samples(sample_set="concepts-l2")
    assert sum(report["per_leaf"].values()) == report["leaf"] > 0
    assert all(s.leaf_id in leaves or s.leaf_id == UNROUTED for s in placed)
    assert all(s.extra["provenance"] == "concepts" for s in placed)  # routing keeps what the set recorded
