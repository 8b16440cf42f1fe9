"""Synthesize page: choose leaves and sample counts, see the estimate, run in the background, and
browse (and delete) the samples of each leaf.

A run survives a browser reload (it lives in the app process and the project store) and an app
restart (it reads "interrupted" and resumes where it stopped: finished samples are kept and never
asked for again).
"""

from __future__ import annotations

import streamlit as st

from studio import batch_panel, synth_panel
from studio.job_view import elsewhere_line, job_outcome, job_progress, live_job, page_of, start_job
from studio.state import get_state
from studio.widgets import PAGE_EXPORT, PAGE_SYNTH, PAGE_TREE, POLL_S, md, require_project, show_notices, still_open
from treesynth_core.generate.synth import target_leaves
from treesynth_core.jobs import background as jobs

state = get_state()
project = require_project(state)
running_at_start = jobs.active_job(project) is not None

st.title("Synthesize")
st.caption("Samples are written per leaf, each conditioned on the leaf's full root-to-leaf path.")


@st.fragment(run_every=POLL_S if running_at_start else None)
def body() -> None:
    project = still_open(state)
    live = live_job(state, project, busy=running_at_start, page=PAGE_SYNTH)
    tree = project.tree()
    settings = state.settings()
    show_notices(state)
    if not tree.leaves(approved_only=True):
        st.info("There are no approved leaves yet: grow the tree and approve its leaves first.", icon=":material/info:")
        st.page_link(PAGE_TREE, label="Go to the Tree page", icon=":material/account_tree:")
        return

    with st.container(border=True):
        st.markdown("##### :material/checklist: What to make")
        mine = live is not None and page_of(live) == PAGE_SYNTH
        choice = synth_panel.choose(tree, running=live.params if live is not None and mine else None)
    plan = synth_panel.estimate(project, tree, choice, settings)
    with st.container(border=True):
        st.markdown("##### :material/calculate: Estimate")
        if choice.empty:
            st.info(
                "Pick the leaves (or the node) to make samples for: the estimate follows.", icon=":material/ads_click:"
            )
        else:
            synth_panel.show_estimate(plan, project, settings, responses=choice.responses)

    last = jobs.latest_job(project, "synth")
    if live is not None and mine:
        left = synth_panel.calls_left(plan, responses=choice.responses)  # the calls still to make
        job_progress(project, live, key="synth.job", calls_left=left)
        leaves = [leaf.id for leaf in target_leaves(tree, live.params.get("leaf_ids") or ())]
        synth_panel.leaf_counts(
            project, tree, leaves, int(live.params.get("per_leaf") or 1), live.params.get("sampled_scale")
        )
    elif live is not None:
        elsewhere_line(live)
    else:
        resumable = last is not None and last.status in ("interrupted", "cancelled", "failed")
        if last is not None:
            job_outcome(project, last)
        left, right, _ = st.columns([1, 1, 2])
        if left.button(
            "Start synthesis",
            key="synth.start",
            type="primary",
            icon=":material/play_arrow:",
            disabled=choice.empty or plan.samples == 0,
            help="Pick the leaves first."
            if choice.empty
            else (None if plan.samples else "Every chosen leaf already has enough samples."),
            width="stretch",
        ):
            if start_job(state, "synth", choice.params(), page=PAGE_SYNTH):
                st.rerun()
        if resumable and last is not None:
            if right.button(
                "Resume the last run",
                key="synth.resume",
                icon=":material/restart_alt:",
                help="Start the interrupted run again with its settings; finished samples are kept.",
                width="stretch",
            ):
                if start_job(state, "synth", dict(last.params), page=PAGE_SYNTH):
                    st.rerun()
        if last is not None and last.status == "done":
            st.page_link(PAGE_EXPORT, label="Export the dataset", icon=":material/download:")

    ready = not choice.empty and plan.samples > 0
    batch_panel.panel(state, project, choice.params(), ready=ready, running=live is not None)

    st.markdown("##### :material/dataset: Samples")
    synth_panel.browser(project, tree)
    st.caption(f"Backend: {md(settings.describe())}")


body()
