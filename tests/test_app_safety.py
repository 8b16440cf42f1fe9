"""The app's safety rails a newcomer relies on (issue 13): undo stops at the tree just opened and
names what it undid, a running synthesis keeps its own form, a delete of samples is confirmed and
can be undone, and a project folder deleted under the app is said, never a silent success."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio.tree_panel import wkey
from studio.widgets import PAGE_CONCEPTS as CONCEPTS
from studio.widgets import PAGE_COVERAGE as COVERAGE
from studio.widgets import PAGE_DATA as DATA
from studio.widgets import PAGE_SYNTH as SYNTH
from studio.widgets import PAGE_TREE as TREE
from studio.widgets import md
from tests.apptest import (
    new_app,
    open_example,
    run,
    run_fragments,
    select,
    synthesize,
    texts,
    tree_of,
    wait_for_job,
)
from tests.fakes import GatedLLM
from treesynth_core.jobs import background as jobs
from treesynth_core.store import Project
from treesynth_core.tree.model import Node


def example_on_first_child(projects: Path) -> tuple[AppTest, Path, Node]:
    """The GSM8K example open on the Tree page with the root's first child selected."""
    at = open_example(new_app())
    folder = projects / "example-gsm8k_math"
    tree = tree_of(folder)
    first = next(iter(tree.children(tree.root_id)))
    return select(at, first.id), folder, first


def toasts(at: AppTest) -> list[str]:
    return [str(t.value) for t in at.toast]


def test_undo_after_opening_an_example_stops_at_it_and_names_what_it_undid(projects: Path) -> None:
    at = open_example(new_app())
    folder = projects / "example-gsm8k_math"
    opened = tree_of(folder)
    undo = at.button(key="tree.undo")
    assert undo.disabled and undo.help == "Nothing to undo: the tree was just opened."

    first = next(iter(opened.children(opened.root_id)))
    at = select(at, first.id)
    at.text_input(key=wkey("value", first.id)).input("sums")
    at.button(key="edit.rename").click()
    run(at)
    at.button(key="tree.undo").click()
    run(at)
    assert md(f'Undid: rename "{first.value}" \u2192 "sums"') in toasts(at)
    assert tree_of(folder) == opened
    assert at.button(key="tree.undo").disabled


def test_deleting_the_open_project_folder_is_said_and_closes_it(projects: Path) -> None:
    at, folder, first = example_on_first_child(projects)
    shutil.rmtree(folder)
    at.text_input(key=wkey("value", first.id)).input("sums")
    at.button(key="edit.rename").click()
    run(at)
    errors = [str(e.value) for e in at.error]
    assert any("was deleted or moved while it was open; your last edit was not saved" in e for e in errors), errors
    assert not toasts(at)  # no success
    assert "No project is open yet" in " ".join(str(i.value) for i in at.info)
    assert not folder.exists()


def test_deleting_samples_is_confirmed_with_its_count_and_can_be_undone(projects: Path) -> None:
    folder = projects / "example-gsm8k_math"
    at = synthesize(open_example(new_app()), folder)
    leaf = at.selectbox(key="samples.leaf").value
    picker = at.multiselect(key=f"samples.delete.{leaf}")
    assert picker.value == []  # nothing picked at first
    with Project.open(folder) as project:
        before = project.samples(leaf_id=leaf)
    picker.set_value([s.id for s in before])
    run(at)
    assert any(m.value.startswith("Delete **2 samples** of this leaf?") for m in at.markdown)
    assert at.button(key="samples.delete").label == "Delete 2 samples"
    at.button(key="samples.delete").click()
    run(at)
    with Project.open(folder) as project:
        assert project.samples(leaf_id=leaf) == []
    at.button(key="samples.undo").click()
    run(at)
    with Project.open(folder) as project:
        assert project.samples(leaf_id=leaf) == before
    assert "Restored 2 samples." in toasts(at)
    assert not [b for b in at.button if b.key == "samples.undo"]


def test_instruction_only_samples_have_no_response_column(projects: Path) -> None:
    folder = projects / "example-gsm8k_math"
    at = synthesize(open_example(new_app()), folder)
    with Project.open(folder) as project:
        assert not any(s.response for s in project.samples())
    table = at.dataframe[-1]
    assert list(table.value.columns) == ["id", "instruction", "response"]  # the data; the view hides it
    assert table.proto.column_order == ["id", "instruction"]


def test_a_reload_during_synthesis_shows_the_running_jobs_form(projects: Path) -> None:
    """Issue 13 item 3: not the defaults (all leaves, 10 per leaf), which one click would start."""
    folder = projects / "example-gsm8k_math"
    gate = threading.Event()
    jobs.set_llm_factory(lambda settings: GatedLLM(gate))
    at = open_example(new_app())
    tree = tree_of(folder)
    inner = next(n for n in tree.children(tree.root_id) if tree.children(n.id))
    at.switch_page(SYNTH)
    run(at)
    at.radio(key="synth.scope").set_value("subtree")
    run(at)
    at.selectbox(key="synth.subtree").set_value(inner.id)
    at.number_input(key="synth.per_leaf").set_value(2)
    at.radio(key="synth.kind").set_value("pair")
    run(at)
    wanted = {m.label: m.value for m in at.metric}["Samples to make"]
    at.button(key="synth.start").click()
    run(at)
    try:
        again = new_app(project="example-gsm8k_math")  # the reload: a new session
        again.switch_page(SYNTH)
        run(again)
        assert again.radio(key="synth.scope").value == "subtree" and again.radio(key="synth.scope").disabled
        assert again.selectbox(key="synth.subtree").value == inner.id
        assert again.number_input(key="synth.per_leaf").value == 2 and again.number_input(key="synth.per_leaf").disabled
        assert again.radio(key="synth.kind").value == "pair"
        assert int({m.label: m.value for m in again.metric}["Samples to make"]) <= int(wanted)
        assert not [b for b in again.button if b.key == "synth.start"]
    finally:
        gate.set()
        assert wait_for_job(folder).status == "done"


def test_tree_editor_minors(projects: Path) -> None:
    """Issue 13 minors: the Add-value box empties after adding, a split by hand says so, and a
    pruned node offers Restore, not Unapprove."""
    at = open_example(new_app())
    folder = projects / "example-gsm8k_math"
    tree = tree_of(folder)
    at = select(at, tree.root_id)
    at.text_input(key=wkey("add", tree.root_id)).input("percentages")
    at.button(key="edit.add_value").click()
    run(at)
    assert any(n.value == "percentages" for n in tree_of(folder).children(tree.root_id))
    assert at.text_input(key=wkey("add", tree.root_id)).value == ""

    leaf = next(n for n in tree_of(folder).children(tree.root_id) if n.value == "percentages")
    at = select(at, leaf.id)
    at.text_input(key=wkey("new_criterion", leaf.id)).input("Difficulty")
    at.text_area(key=wkey("new_values", leaf.id)).input("easy\nhard")
    at.button(key="edit.replace_criterion").click()
    run(at)
    assert md("Node split.") in toasts(at)
    assert [n.value for n in tree_of(folder).children(leaf.id)] == ["easy", "hard"]

    approved = next(n for n in tree.children(tree.root_id) if n.approved)
    at = select(at, approved.id)
    at.button(key="edit.prune").click()
    run(at)
    keys = {b.key for b in at.button}
    assert "edit.restore" in keys and "edit.unapprove" not in keys and "edit.approve" not in keys


def test_reopening_an_example_says_it_is_your_copy_and_offers_a_fresh_one(projects: Path) -> None:
    at, folder, first = example_on_first_child(projects)
    at.text_input(key=wkey("value", first.id)).input("sums")
    at.button(key="edit.rename").click()
    run(at)
    again = new_app()
    assert again.button(key="example.gsm8k_math").label == "Open your copy"
    again.button(key="example.gsm8k_math.fresh").click()
    run(again)
    fresh = tree_of(projects / "example-gsm8k_math-2")
    assert first.value in {n.value for n in fresh.children(fresh.root_id)}
    assert tree_of(folder).nodes[first.id].value == "sums"  # the edited copy is kept


@pytest.mark.parametrize("page", [TREE, SYNTH, COVERAGE, DATA, CONCEPTS])
def test_a_page_that_polls_says_its_project_folder_was_deleted(projects: Path, page: str) -> None:
    """Issue 13: a polling fragment (``run_every``) runs without the page's project check; it checks
    again and the page says the folder is gone, with no traceback."""
    at = open_example(new_app())
    at.switch_page(page)
    run(at)
    folder = projects / "example-gsm8k_math"
    shutil.rmtree(folder)
    run_fragments(at)  # what the fragment's timer runs: no exception (it asserts so)
    errors = [str(e.value) for e in at.error]
    assert any("was deleted or moved while it was open" in e for e in errors), errors
    assert "No project is open yet" in texts(at)
    run(at)  # and the page's next run
    assert "No project is open yet" in texts(at)
