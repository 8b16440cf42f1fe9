"""Tree page: the partition tree as an interactive graph, with an editor panel for the selected node.

Click a node in the graph to edit it; double-click to fold or unfold its subtree. Growth runs in
the background: while it runs, the page polls the project and the graph fills in as nodes arrive.
"""

from __future__ import annotations

import streamlit as st

from studio import actions as A
from studio import graph as G
from studio import grow_panel, node_editor, overview_panel, tabs
from studio import growth_result as growth
from studio import tree_panel as panel
from studio.graph_component import tree_graph
from studio.job_view import elsewhere_line, job_progress, live_job, page_of
from studio.state import get_state
from studio.widgets import PAGE_TREE, POLL_S, md, require_project, show_notices, still_open
from treesynth_core.jobs import background as jobs
from treesynth_core.progress import plural

#: The graph's (and the overview's) height beside the editor; full screen takes the window's.
GRAPH_HEIGHT = 640

state = get_state()
project = require_project(state)
running_at_start = jobs.active_job(project) is not None

st.title("Tree")
st.caption(md(project.tree().task))


@st.fragment(run_every=POLL_S if running_at_start else None)
def body() -> None:
    project = still_open(state)
    live = live_job(state, project, busy=running_at_start, page=PAGE_TREE)
    tree = project.tree()
    state.valid_selection(tree)
    show_notices(state)
    tabs.look(state, project, tree)
    panel.highlight_banner(state)
    panel.metrics(project, tree, panel.resolve_count_set(state, project.sample_sets()))
    panel.toolbar(project, tree, state)
    grow_panel.grow_controls(state, tree, live)
    if live is not None and page_of(live) == PAGE_TREE:
        job_progress(project, live, key="tree.job")
    elif live is not None:
        elsewhere_line(live)
    else:
        growth.after_growth(project, tree)
    if state.full_screen:
        left, right = st.container(), None
    else:
        left, right = st.columns([2, 1], gap="medium")
    with left:
        switch, counts_column, full = st.columns([2, 2.6, 1.8], vertical_alignment="bottom")
        with switch:
            mode = overview_panel.mode_switch(tree)
        with counts_column:
            count_set = panel.count_set_picker(project, state)
        with full:
            overview_panel.full_screen_toggle(state)
        counts = project.sample_counts(sample_set=count_set)
        if mode == A.OVERVIEW:
            overview_panel.overview(tree, counts, state, height=GRAPH_HEIGHT)
        else:
            data = G.build_graph(tree, state.view, counts=counts, selected=state.selected, highlight=state.highlight)
            tree_graph(
                data,
                key="tree.graph",
                height=GRAPH_HEIGHT,
                full_screen=state.full_screen,
                focus_key=f"{state.view.focus}:{state.focus_seq}" if state.view.focus else None,
                fit_key=str(state.fit_seq),
                on_select=A.select,
                on_toggle=A.toggle,
            )
            if data.folded_by_budget:
                st.caption(
                    f"Large tree: {data.shown:,} of {plural(data.total, 'node')} shown. Double-click a node "
                    "marked '+N more' to open it, search for a node, or click it in the Overview."
                )
    if right is not None:
        with right:
            node_editor.editor(project, tree, state, live)


body()
if not running_at_start:
    tabs.watch(state)  # another tab's edit shows without a click (a running job's poll shows it too)
