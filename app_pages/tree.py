"""Tree page: the partition tree as an interactive graph, with an editor panel for the selected node.

Click a node in the graph to edit it; double-click to fold or unfold its subtree. Growth runs in
the background: while it runs, the page polls the project and the graph fills in as nodes arrive.
"""

from __future__ import annotations

import streamlit as st

from studio import actions as A
from studio import graph as G
from studio import growth_result as growth
from studio import tree_panel as panel
from studio.graph_component import tree_graph
from studio.state import get_state
from studio.widgets import POLL_S, job_progress, md, require_project, show_notices
from treesynth_core.jobs import background as jobs

state = get_state()
project = require_project(state)
running_at_start = jobs.active_job(project) is not None

st.title("Tree")
st.caption(md(project.tree().task))


@st.fragment(run_every=POLL_S if running_at_start else None)
def body() -> None:
    live = jobs.active_job(project)
    if (live is not None) != running_at_start:
        st.rerun()  # a job started or ended: redraw the page, polling only while one runs
    tree = project.tree()
    state.valid_selection(tree)
    show_notices(state)
    panel.highlight_banner(state)
    panel.metrics(project, tree, panel.resolve_count_set(state, project.sample_sets()))
    panel.toolbar(project, tree, state)
    panel.grow_controls(state, tree, live)
    if live is not None and live.kind == "grow":
        job_progress(project, live, key="tree.job")
    elif live is None:
        growth.after_growth(project, tree)
    left, right = st.columns([2, 1], gap="medium")
    with left:
        count_set = panel.count_set_picker(project, state)
        data = G.build_graph(
            tree,
            state.view,
            counts=project.sample_counts(sample_set=count_set),
            selected=state.selected,
            highlight=state.highlight,
        )
        focus_key = f"{state.view.focus}:{state.focus_seq}" if state.view.focus else None
        tree_graph(data, key="tree.graph", height=640, focus_key=focus_key, on_select=A.select, on_toggle=A.toggle)
        if data.folded_by_budget:
            st.caption(
                f"Large tree: {data.shown} of {data.total} nodes shown. Double-click a node marked "
                "'+N more' to open it, or search for a node to jump to it."
            )
    with right:
        panel.editor(project, tree, state, live)


body()
