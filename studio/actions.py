"""Widget callbacks for tree edits: each runs one core edit and leaves a notice for the rerun.

Callbacks run before the script reruns, so the page always draws the tree after the edit. Text a
person typed is read from the widget's session-state key at click time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import streamlit as st

from studio import graph as G
from studio.state import get_state
from studio.tree_overview import clicked_node
from treesynth_core.errors import TreeSynthError
from treesynth_core.store import Project
from treesynth_core.tree.edits import run_edit


def edit(
    name: str,
    done: str,
    args: Mapping[str, Any] | None = None,
    from_widgets: Mapping[str, str] | None = None,
    lines: Mapping[str, str] | None = None,
    clear: Iterable[str] = (),
) -> None:
    """Run the edit ``name`` with ``args``, plus arguments read from widgets (``arg -> widget key``;
    ``lines``: a text area split into one item per line). ``done`` is the success message; the text
    widgets keyed in ``clear`` are emptied after it (an Add-value box, ready for the next)."""
    state = get_state()
    project = state.project()
    if project is None:
        return
    kwargs = dict(args or {})
    for arg, key in (from_widgets or {}).items():
        value = st.session_state.get(key)
        kwargs[arg] = value.strip() if isinstance(value, str) else value
    for arg, key in (lines or {}).items():
        kwargs[arg] = [line.strip() for line in str(st.session_state.get(key) or "").splitlines() if line.strip()]
    try:
        run_edit(project, name, seen=state.seen_tree, **kwargs)
    except TreeSynthError as exc:  # a ConflictError when another tab changed the node: the rerun shows it
        state.notify("error", str(exc))
        return
    for key in clear:
        st.session_state[key] = ""
    relabel_pickers()
    state.notify("success", done)


def relabel_pickers() -> None:
    """After an edit: set the node pickers again to the nodes they hold. Their option text is the
    node's path, which a rename (of the node or an ancestor) changes; a browser shows the text it
    had until the value is set again, and sends that old text back on the next run, which matches no
    option and resets the picker (the editor jumped to the root after a rename)."""
    for key in (PICKER_KEY, FOCUS_PICKER_KEY):
        if st.session_state.get(key) is not None:
            st.session_state[key] = st.session_state[key]


def undo() -> None:
    """The Undo button: this session's latest edit (anyone's with the All owners toggle on)."""
    _replay(undo=True)


def redo() -> None:
    """The Redo button: the edit this session undid last (anyone's with the toggle on)."""
    _replay(undo=False)


def _replay(*, undo: bool) -> None:
    state = get_state()
    project = state.project()
    if project is None:
        return
    all_owners = bool(st.session_state.get(UNDO_ALL_KEY))
    try:
        done = project.replay(undo=undo, all_owners=all_owners)
    except TreeSynthError as exc:  # a later edit by another owner is in the way: nothing changed
        state.notify("error", str(exc))
        return
    if done is not None:
        relabel_pickers()
        state.notify("success", f"{'Undid' if undo else 'Redid'}: {done.what}")
    else:
        state.notify("info", nothing_message(project, undo=undo, all_owners=all_owners))


def nothing_message(project: Project, *, undo: bool, all_owners: bool) -> str:
    """What an Undo (or Redo) that found no edit says: that the tree was just opened when no one
    has edited it yet (opening a project, an example or a tree file is the starting point)."""
    if undo and not project.history(limit=1):
        return "Nothing to undo: the tree was just opened."
    word = "undo" if undo else "redo"
    return f"Nothing {'' if all_owners else 'of this session '}to {word}."


def select(node_id: str) -> None:
    """A click on a node in the graph."""
    state = get_state()
    state.select(node_id)
    st.session_state[PICKER_KEY] = node_id


def toggle(node_id: str) -> None:
    """A double-click on a node in the graph: fold or unfold its subtree."""
    state = get_state()
    project = state.project()
    if project is not None:
        state.view = state.view.toggle(project.tree(), node_id)


def picked() -> None:
    """The search box chose a node: select it and bring it into view."""
    state = get_state()
    node_id = st.session_state.get(PICKER_KEY)
    state.select(node_id, focus=True)
    state.focus_seq += 1


def set_depth() -> None:
    state = get_state()
    value = st.session_state.get(DEPTH_KEY)
    if value == FOCUSED:  # the focused subtree's view stays as it is
        return
    state.view = state.view.with_depth(None if value in (None, "all") else int(value))
    state.fit_seq += 1


def fold(node_id: str, *, open_: bool) -> None:
    state = get_state()
    project = state.project()
    if project is None:
        return
    view = state.view
    visible = G.visible_ids(project.tree(), view)
    if (node_id in visible.opened) != open_:
        state.view = view.toggle(project.tree(), node_id)


def focus_subtree(node_id: str) -> None:
    """Draw the subtree of ``node_id`` (the path to it, and as many of its levels as fit), select
    the node, and fit the graph to it."""
    state = get_state()
    project = state.project()
    if project is None:
        return
    tree = project.tree()
    if node_id not in tree.nodes:
        return
    state.view = G.focus_subtree(tree, node_id)
    state.select(node_id)
    st.session_state[PICKER_KEY] = node_id
    state.fit_seq += 1


def overview_clicked() -> None:
    """A click on a box of the overview: focus the graph on that node's subtree and show the graph."""
    state = get_state()
    project = state.project()
    if project is None:
        return
    node_id = clicked_node(st.session_state.get(OVERVIEW_KEY), project.tree())
    if node_id is not None:
        focus_subtree(node_id)
        st.session_state[MODE_KEY] = GRAPH


def focus_picked() -> None:
    """The overview's node picker (the click's keyboard twin): focus the graph on that subtree."""
    node_id = st.session_state.get(FOCUS_PICKER_KEY)
    if isinstance(node_id, str):
        focus_subtree(node_id)
        st.session_state[MODE_KEY] = GRAPH
        st.session_state[FOCUS_PICKER_KEY] = None


def set_full_screen() -> None:
    """The Full screen toggle: the graph fills the window, the editor column is hidden."""
    state = get_state()
    state.full_screen = bool(st.session_state.get(FULL_KEY))
    state.fit_seq += 1


def clear_highlight() -> None:
    """The Tree page's Clear: forget the leaves highlighted from the Coverage map's selection."""
    get_state().clear_highlight()


#: The Levels shown option while the graph is focused on a subtree (from the overview).
FOCUSED = "focused"
PICKER_KEY = "tree.search"
UNDO_ALL_KEY = "tree.undo_all"
DEPTH_KEY = "tree.depth"
MODE_KEY = "tree.mode"  # Graph or Overview
GRAPH, OVERVIEW = "Graph", "Overview"
FULL_KEY = "tree.full_screen"
OVERVIEW_KEY = "tree.overview"
FOCUS_PICKER_KEY = "tree.overview.focus"
