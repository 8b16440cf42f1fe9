"""The Tree page's word on a growth job that ended: ONE message, its error, that it stopped, or a
banner saying what it added. A growth that added nothing says why (see
:mod:`treesynth_core.generate.grow_result`), which attempt in a row it was, and offers three ways
forward: split the node by hand, open an example tree, use a local model."""

from __future__ import annotations

import streamlit as st

from studio import actions as A
from studio.job_view import job_outcome
from studio.widgets import PAGE_PROJECT, md
from treesynth_core.generate.grow_result import GrowthResult, latest_growth
from treesynth_core.jobs import background as jobs
from treesynth_core.store import Project
from treesynth_core.tree import model as T

SPLIT_CRITERION, SPLIT_VALUES = "growth.split.criterion", "growth.split.values"


def after_growth(project: Project, tree: T.Tree) -> None:
    """How the latest growth job ended (call it while no job runs)."""
    last = jobs.latest_job(project, "grow")
    if last is None:
        return
    if last.status != "done" and last.status != "failed":  # stopped or interrupted: the job's own word
        job_outcome(project, last)
        return
    records = [jobs.JobState.from_record(job) for job in project.jobs(kind="grow", limit=20)]
    result = latest_growth(records, project.history(limit=500), tree)
    if result is None:  # the tree changed since: what the growth left is no longer news
        return
    if result.status == "failed":  # one message: its error
        job_outcome(project, last)
    else:
        banner(result, tree)


def banner(result: GrowthResult, tree: T.Tree) -> None:
    """The result of a growth that ran to its end; with the ways forward when it added nothing."""
    if not result.empty:
        st.success(md(result.headline()), icon=":material/check_circle:")
        return
    node_id = result.node_id if result.node_id is not None and result.node_id in tree.nodes else tree.root_id
    with st.container(border=True, key="growth.banner"):
        st.warning(md(result.headline()), icon=":material/sentiment_dissatisfied:")
        st.caption("Ways forward:")
        split, example, local = st.columns(3)
        with split.popover("Split it by hand", icon=":material/call_split:", width="stretch"):
            _split_form(tree, node_id)
        example.page_link(PAGE_PROJECT, label="Open an example tree", icon=":material/park:")
        local.page_link(PAGE_PROJECT, label="Use a local model", icon=":material/computer:")


def _split_form(tree: T.Tree, node_id: str) -> None:
    node = tree.nodes[node_id]
    where = "the root" if node_id == tree.root_id else f'"{node.value}"'
    st.markdown(f"Split {md(where)} into subspaces: one criterion, and its values.")
    st.text_input("Criterion", key=SPLIT_CRITERION, placeholder="e.g. topic")
    st.text_area("Its values, one per line", key=SPLIT_VALUES, height=120, placeholder="algebra\ngeometry")
    st.button(
        "Split",
        key="growth.split",
        type="primary",
        icon=":material/call_split:",
        disabled=node.locked,
        on_click=A.edit,
        args=(
            "replace-criterion",
            "Split by hand.",
            {"node_id": node_id},
            {"criterion": SPLIT_CRITERION},
            {"values": SPLIT_VALUES},
        ),
    )
