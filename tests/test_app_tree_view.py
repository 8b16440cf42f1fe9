"""The Tree page on a big tree (AppTest): sensible default levels, the overview, focusing the graph
on a subtree from it, and full screen. (The click on the icicle itself: tests/test_browser.py.)"""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from studio import actions as A
from studio import graph as G
from studio.widgets import PAGE_TREE as TREE
from tests.apptest import new_app, run, texts
from tests.trees import wide_tree
from treesynth_core.store import Project


def open_big(projects) -> AppTest:
    big = wide_tree(fanout=13, depth=3)  # 2,380 nodes
    with Project.create(projects / "big", task=big.task) as project:
        project.replace_tree(big, kind="import")
    at = new_app(project="big")
    at.switch_page(TREE)
    return run(at)


def drawn(at: AppTest) -> set[str]:
    state = at.session_state["treesynth"]
    project = state.project()
    return set(G.visible_ids(project.tree(), state.view).ids)


def test_a_big_tree_opens_on_one_level_and_the_overview_focuses_the_graph(projects):
    at = open_big(projects)
    assert at.session_state["treesynth"].view.show_depth == 1
    assert len(drawn(at)) == 14  # the root and its 13 children, not 400 boxes
    assert "2,380 nodes, 3 levels" in texts(at)
    assert not at.get("plotly_chart")  # the graph shows first

    at.segmented_control(key=A.MODE_KEY).set_value(A.OVERVIEW)
    run(at)
    assert len(at.get("plotly_chart")) == 1
    assert "Click a box" in texts(at)

    at.selectbox(key=A.FOCUS_PICKER_KEY).set_value("r.7.3")
    run(at)
    state = at.session_state["treesynth"]
    assert at.segmented_control(key=A.MODE_KEY).value == A.GRAPH  # back to the graph, focused
    assert state.selected == "r.7.3" and state.view.focus == "r.7.3"
    shown = drawn(at)
    assert {f"r.7.3.{i}" for i in range(13)} <= shown  # the focused subtree is drawn...
    assert "r.7" in shown and "r.6" in shown and not any(i.startswith("r.6.") for i in shown)  # ...and its path
    assert not at.get("plotly_chart")
    assert at.selectbox(key=A.DEPTH_KEY).value == A.FOCUSED

    at.selectbox(key=A.DEPTH_KEY).set_value(2)
    run(at)
    assert at.session_state["treesynth"].view.show_depth == 2 and "r.7.3.0" not in drawn(at)


def test_full_screen_hides_the_editor_and_back(projects):
    at = open_big(projects)
    assert at.button(key="edit.lock")  # the editor beside the graph
    at.toggle(key=A.FULL_KEY).set_value(True)
    run(at)
    assert at.session_state["treesynth"].full_screen
    assert not [b for b in at.button if b.key == "edit.lock"]
    at.toggle(key=A.FULL_KEY).set_value(False)
    run(at)
    assert [b for b in at.button if b.key == "edit.lock"]
