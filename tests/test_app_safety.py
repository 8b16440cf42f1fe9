"""The app's safety rails a newcomer relies on (issue 13): undo stops at the tree just opened and
names what it undid, a running synthesis keeps its own form, a delete of samples is confirmed and
can be undone, and a project folder deleted under the app is said, never a silent success."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from studio.tree_panel import wkey
from studio.widgets import md
from tests.apptest import new_app, open_example, run
from treesynth_core.store import Project


def tree_of(folder: Path):
    with Project.open(folder) as project:
        return project.tree()


def select(at: AppTest, node_id: str) -> AppTest:
    at.selectbox(key="tree.search").set_value(node_id)
    return run(at)


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
