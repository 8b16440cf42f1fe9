"""The Concepts page's "Route into the tree": a concepts set's questions walk the tree to its leaves
with either router (the ``route`` job, exactly as on the Data page), and the result shows as it does
there (:func:`studio.route_panel.route_summary`). Routing only places the questions: the set and
what each question recorded (level, documents, concepts) stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from studio import data_panel, job_view, route_panel
from studio.state import AppState
from studio.widgets import PAGE_CONCEPTS
from treesynth_core.data.pipeline import default_router
from treesynth_core.store import Project


def route_section(state: AppState, project: Project, sets: Sequence[str], *, busy: bool) -> None:
    """Pick a concepts set and a router; Route starts the job; the last routing of the set below."""
    if not sets:
        return
    st.markdown("**Route into the tree**")
    tree = project.tree()
    if data_panel.has_no_leaves(tree):
        st.caption("The tree is only its root: grow or split it on the Tree page, then route the questions.")
        return
    st.caption(
        "Each question walks the tree top-down to one value per criterion (none fits: it stops there, "
        "counted, never dropped), so the set can be compared and rebalanced leaf by leaf."
    )
    c1, c2, c3 = st.columns([1, 2, 1], vertical_alignment="bottom")
    name = str(c1.selectbox("Set", list(sets), key="concepts.route.set"))
    routers = list(data_panel.ROUTER_LABELS)
    router = c2.radio(
        "Router",
        routers,
        index=routers.index(default_router(state.settings().backend)),
        format_func=data_panel.ROUTER_LABELS.get,
        key="concepts.route.router",
    )
    if c3.button(
        "Route into the tree",
        key="concepts.route.run",
        icon=":material/alt_route:",
        disabled=busy,
        width="stretch",
    ):
        params = {"sample_set": name, "router": router, "agreement_n": 0, "seed": 0}
        if job_view.start_job(state, "route", params, page=PAGE_CONCEPTS):
            st.rerun()
    report = route_panel.route_view(project, name)
    if report is None:
        st.caption("Not routed on the current tree yet.")
    else:
        route_panel.route_summary(project, name, report)
