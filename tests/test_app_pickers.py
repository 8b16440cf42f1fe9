"""Pickers keep the user's choice when what they show beside it changes (issue 13): a browser sends a
selectbox's choice back as its option text, so a choice whose text changed (a count, a status mark) is
reset to the first option; counts and status live beside the pickers, not in their labels."""

from __future__ import annotations

from pathlib import Path

from studio.widgets import PAGE_EXPORT as EXPORT
from studio.widgets import PAGE_SYNTH as SYNTH
from studio.widgets import PAGE_TREE as TREE
from tests.apptest import (
    delete_first_sample,
    held_by_browser,
    new_app,
    open_example,
    run,
    run_as_browser,
    select,
    shown,
    synthesize,
    texts,
    tree_of,
)
from treesynth_core.store import Project
from treesynth_core.store.samples import NewSample


def test_the_sample_browser_keeps_its_leaf_when_its_samples_are_deleted(projects: Path) -> None:
    folder = projects / "example-gsm8k_math"
    at = synthesize(open_example(new_app()), folder)
    with Project.open(folder) as project:
        counts = project.sample_counts()
    leaf = [leaf.id for leaf in tree_of(folder).leaves() if counts.get(leaf.id)][2]  # not the first
    at.selectbox(key="samples.leaf").set_value(leaf)
    run(at)
    held = shown(at, "samples.leaf")
    assert "2 samples in this leaf" in texts(at)
    delete_first_sample(at, folder, leaf)
    with Project.open(folder) as project:
        assert len(project.samples(leaf_id=leaf)) == 1  # the delete happened
    run_as_browser(at, {"samples.leaf": held})
    assert at.selectbox(key="samples.leaf").value == leaf
    assert "1 sample in this leaf" in texts(at)


def test_the_node_search_keeps_its_node_when_the_node_is_unapproved(projects: Path) -> None:
    folder = projects / "example-gsm8k_math"
    at = open_example(new_app())
    tree = tree_of(folder)
    node = tree.children(tree.children(tree.root_id)[1].id)[1]  # not the first option
    at = select(at, node.id)
    held = shown(at, "tree.search")
    assert at.selectbox(key="tree.search").label == "Find a node (\u2713 approved)"  # the status beside
    at.button(key="edit.unapprove").click()
    run(at)
    assert tree_of(folder).nodes[node.id].status == "proposed"
    run_as_browser(at, {"tree.search": held})
    assert at.selectbox(key="tree.search").value == node.id
    assert at.selectbox(key="tree.search").label == "Find a node (? awaiting review)"


def test_the_node_search_keeps_its_node_when_the_node_is_renamed(projects: Path) -> None:
    """Walking the app: after renaming the picked node, the next click (Lock) jumped the editor to
    the root, as the browser sent the box's old text (the old path) back."""
    folder = projects / "example-gsm8k_math"
    at = open_example(new_app())
    tree = tree_of(folder)
    node = tree.children(tree.children(tree.root_id)[1].id)[1]
    at = select(at, node.id)
    held = shown(at, "tree.search")
    at.text_input(key=f"edit.value.{node.id}").set_value("a brand-new name")
    at.button(key="edit.rename").click()
    run(at)
    assert tree_of(folder).nodes[node.id].value == "a brand-new name"
    held = held_by_browser(at, "tree.search", held)
    assert "a brand-new name" in held  # the browser was sent the new path
    at.button(key="edit.lock").click()
    run_as_browser(at, {"tree.search": held})
    assert at.selectbox(key="tree.search").value == node.id
    assert tree_of(folder).nodes[node.id].locked
    for _ in range(2):  # undo the lock, then the rename: the old name is back
        at.button(key="tree.undo").click()
        run_as_browser(at, {"tree.search": held})
        held = held_by_browser(at, "tree.search", held)
    assert "a brand-new name" not in held and tree_of(folder).nodes[node.id].value == node.value
    at.button(key="edit.lock").click()
    run_as_browser(at, {"tree.search": held})
    assert at.selectbox(key="tree.search").value == node.id


def test_the_node_search_shows_the_node_being_edited_after_another_page(projects: Path) -> None:
    """Walking the app: back on the Tree page the editor showed the node, the search box was empty
    (Streamlit forgets a widget's value while its page is not drawn)."""
    folder = projects / "example-gsm8k_math"
    at = open_example(new_app())
    tree = tree_of(folder)
    node = tree.children(tree.children(tree.root_id)[1].id)[1]
    at = select(at, node.id)
    at.switch_page(SYNTH)
    run(at)
    at.switch_page(TREE)
    run(at)
    assert at.selectbox(key="tree.search").value == node.id
    assert at.selectbox(key="tree.search").label == "Find a node (\u2713 approved)"


def imported(folder: Path, name: str, n: int) -> None:
    """``n`` more samples of a set ``name``, each in the tree's first leaf."""
    with Project.open(folder) as project:
        leaf = project.tree().leaves()[0].id
        start = sum(project.sample_counts(sample_set=name).values())
        project.add_samples(
            [
                NewSample(leaf_id=leaf, key=f"{start + i}", instruction=f"{name} {start + i}", path=[], sample_set=name)
                for i in range(n)
            ]
        )


def test_the_count_set_and_export_set_pickers_keep_their_set_when_its_count_changes(projects: Path) -> None:
    folder = projects / "example-gsm8k_math"
    at = open_example(new_app())
    for name in ("a", "b", "c"):
        imported(folder, name, 2)
    imported(folder, "tree", 1)
    run(at)
    at.selectbox(key="tree.count_set").set_value("b")
    run(at)
    held = shown(at, "tree.count_set")
    imported(folder, "b", 3)  # another tab or the CLI adds to the chosen set
    run_as_browser(at, {"tree.count_set": held})
    assert at.selectbox(key="tree.count_set").value == "b"
    assert "b: 5 samples" in at.selectbox(key="tree.count_set").help

    at.switch_page(EXPORT)
    run(at)
    at.selectbox(key="export.set").set_value("c")
    run(at)
    held = shown(at, "export.set")
    imported(folder, "c", 4)
    run_as_browser(at, {"export.set": held})
    assert at.selectbox(key="export.set").value == "c"
    assert {m.label: m.value for m in at.metric}["Samples"] == "6"
