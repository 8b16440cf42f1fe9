"""The Tree page's overview of the whole tree and the switches above the graph: Graph or Overview,
and full screen (the page puts them in one row with the sample-set picker).

The overview is an icicle (:mod:`studio.tree_overview`) that scales to thousands of nodes; clicking a
box focuses the graph on that subtree (:func:`~studio.actions.focus_subtree`) and switches back to
the graph.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from studio import actions as A
from studio import graph as G
from studio.state import AppState
from studio.tree_overview import overview_figure, overview_of
from treesynth_core.tree import model as T


def mode_switch(tree: T.Tree) -> str:
    """Graph or Overview; returns what to show."""
    if st.session_state.get(A.MODE_KEY) not in (A.GRAPH, A.OVERVIEW):
        st.session_state[A.MODE_KEY] = A.GRAPH
    st.segmented_control(
        "Show",
        [A.GRAPH, A.OVERVIEW],
        key=A.MODE_KEY,
        label_visibility="collapsed",
        help=f"The overview shows all {len(tree.nodes):,} nodes at once with their samples; click a box to "
        "focus the graph on it.",
    )
    return str(st.session_state.get(A.MODE_KEY) or A.GRAPH)


def full_screen_toggle(state: AppState) -> None:
    """The graph fills the window, the editor hidden."""
    st.session_state[A.FULL_KEY] = state.full_screen
    st.toggle(
        "Full screen",
        key=A.FULL_KEY,
        on_change=A.set_full_screen,
        help="The graph fills the window; the editor is hidden until you turn this off.",
    )


def overview(tree: T.Tree, counts: Mapping[str, int], state: AppState, *, height: int) -> None:
    """The icicle of the whole tree, zoomed into the focused node; a click focuses the graph there."""
    figure = overview_figure(overview_of(tree, counts), level=state.view.focus, height=height)
    st.plotly_chart(
        figure,
        key=A.OVERVIEW_KEY,
        on_select=A.overview_clicked,
        selection_mode="points",
        config={"displayModeBar": False},
    )
    picker, note = st.columns([2, 3], vertical_alignment="center")
    if st.session_state.get(A.FOCUS_PICKER_KEY) not in tree.nodes:
        st.session_state[A.FOCUS_PICKER_KEY] = None
    picker.selectbox(
        "Focus the graph on",
        G.node_options(tree),
        index=None,
        key=A.FOCUS_PICKER_KEY,
        on_change=A.focus_picked,
        format_func=lambda node_id: G.option_label(tree, node_id),
        placeholder="a node (or click its box)\u2026",
    )
    note.caption(
        "Each box is a node, as wide as its leaves, coloured by status; hover for its path and counts. "
        "Click a box (or pick a node) to focus the graph on that subtree."
    )
