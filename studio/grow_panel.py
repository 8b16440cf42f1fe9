"""The Tree page's growth controls: the settings and button that grow the whole tree, and the
buttons that grow the selected node or its subtree.

Growth options are read from the widgets' keys; the paper preset shows (and uses) the core's
:func:`~treesynth_core.generate.grow.paper_options`.
"""

from __future__ import annotations

import streamlit as st

from studio.job_view import start_job
from studio.state import AppState
from studio.widgets import PAGE_TREE, button_row
from treesynth_core.generate.grow import GrowOptions, paper_options
from treesynth_core.generate.grow_result import EMBEDDED_NOTE
from treesynth_core.jobs import background as jobs
from treesynth_core.tree import model as T

GROW_DEPTH, GROW_PIVOTS, GROW_VALUES, GROW_AUTO = "grow.depth", "grow.pivots", "grow.max_values", "grow.auto"
GROW_ROUNDS, GROW_PAPER = "grow.coverage_rounds", "grow.paper"


def _paper() -> bool:
    return bool(st.session_state.get(GROW_PAPER))


def auto_approve() -> bool:
    return _paper() or bool(st.session_state.get(GROW_AUTO))


def grow_depth() -> int:
    return paper_options().max_depth if _paper() else int(st.session_state.get(GROW_DEPTH) or GrowOptions().max_depth)


def grow_params(*, only: tuple[str, ...] = (), max_depth: int | None = None) -> dict:
    """Growth options from the growth controls (read from their widget keys); with the paper preset
    on, the preset's (:func:`~treesynth_core.generate.grow.paper_options`)."""
    defaults = paper_options() if _paper() else GrowOptions()
    params: dict[str, object] = {
        "max_depth": int(max_depth or grow_depth()),
        "pivots": int(st.session_state.get(GROW_PIVOTS) or defaults.pivots),
        "max_values": defaults.max_values
        if _paper()
        else int(st.session_state.get(GROW_VALUES) or defaults.max_values),
        "coverage_rounds": defaults.coverage_rounds
        if _paper()
        else int(st.session_state.get(GROW_ROUNDS) or defaults.coverage_rounds),
        "auto_approve": auto_approve(),
    }
    if only:
        params["only"] = list(only)
    return params


def grow_controls(state: AppState, tree: T.Tree, live: jobs.JobState | None) -> None:
    """Growth settings and the button that grows the whole tree. The paper preset shows (and uses)
    the core's :func:`~treesynth_core.generate.grow.paper_options` in place of the settings it fixes."""
    embedded = state.settings().backend == "embedded"
    defaults, paper = GrowOptions(), paper_options()
    on = _paper()
    fixed = " (set by the paper preset)" if on else ""
    with st.expander("Grow with the LLM", icon=":material/psychiatry:", expanded=len(tree.nodes) == 1):
        cols = st.columns(4, vertical_alignment="bottom")
        suffix = ".paper" if on else ""  # the preset's values show in their own, disabled inputs
        cols[0].number_input(
            "Depth",
            1,
            8,
            value=paper.max_depth if on else max(defaults.max_depth, min(tree.levels() + 1, paper.max_depth)),
            key=GROW_DEPTH + suffix,
            disabled=on,
            help=f"Grow down to this many levels (the paper uses {paper.max_depth}){fixed}.",
        )
        cols[1].number_input(
            "Pivots",
            2,
            30,
            value=4 if embedded else defaults.pivots,
            key=GROW_PIVOTS,
            help="Example samples written per node to find its criterion.",
        )
        cols[2].number_input(
            "Sampled above",
            2,
            500,
            value=paper.max_values if on else defaults.max_values,
            key=GROW_VALUES + suffix,
            disabled=on,
            help="More values than this make one sampled child, which draws one value per prompt (the paper's "
            f"'infinite' threshold, {paper.max_values}){fixed}.",
        )
        cols[3].number_input(
            "Coverage rounds",
            1,
            30,
            value=paper.coverage_rounds if on else defaults.coverage_rounds,
            key=GROW_ROUNDS + suffix,
            disabled=on,
            help=f"Ask for missing values ({defaults.coverage_batch} at a time) until the model says the list "
            "is complete, at most this many times; a list still incomplete then is open-ended and makes one "
            f"sampled child{fixed}.",
        )
        row = st.columns([2, 2, 3], vertical_alignment="bottom")
        row[0].toggle(
            "Paper preset",
            key=GROW_PAPER,
            help=f"The paper's unattended run (treesynth grow --paper): depth {paper.max_depth}, auto-approve, "
            f"more than {paper.max_values} values make one sampled child, coverage until complete.",
        )
        row[1].toggle(
            "Auto-approve",
            key=GROW_AUTO + suffix,
            value=on,
            disabled=on,
            help="Approve every proposed node and keep growing, without review (the paper's run).",
        )
        if row[2].button(
            "Grow the tree",
            key="grow.start",
            type="primary",
            icon=":material/play_arrow:",
            disabled=live is not None,
            width="stretch",
        ):
            if start_job(state, "grow", grow_params(), page=PAGE_TREE):
                st.rerun()
        st.caption(
            "Only approved nodes grow unless auto-approve is on; new values arrive as *proposed* for review. "
            + (EMBEDDED_NOTE if embedded and not state.settings().gguf_path else "")
        )


def node_grow_buttons(state: AppState, tree: T.Tree, node: T.Node, live: jobs.JobState | None) -> None:
    nid = node.id
    approved = tree.is_approved_path(nid) or auto_approve()
    split = bool(tree.children(nid))
    why = None
    if live is not None:
        why = "a job is running"
    elif node.locked:
        why = "the node is locked"
    elif not tree.is_active(nid):
        why = "the node is pruned (or under a pruned node): restore it first"
    elif not approved:
        why = "approve the node (and its ancestors) first, or turn on auto-approve"
    row = button_row()
    one_help = why or (
        "already split: grow its subtree, or replace its criterion"
        if split
        else "Ask the LLM for this node's criterion and values"
    )
    if row.button(
        "Grow node",
        key="edit.grow_node",
        icon=":material/psychiatry:",
        disabled=bool(why) or split,
        help=one_help,
        width="stretch",
    ):
        if start_job(state, "grow", grow_params(only=(nid,), max_depth=node.depth + 1), page=PAGE_TREE):
            st.rerun()
    depth = max(grow_depth(), node.depth + 1)
    if row.button(
        "Grow subtree",
        key="edit.grow_subtree",
        icon=":material/account_tree:",
        disabled=bool(why),
        help=why or f"Grow every approved node under this one, down to level {depth}",
        width="stretch",
    ):
        if start_job(state, "grow", grow_params(only=(nid,), max_depth=depth), page=PAGE_TREE):
            st.rerun()
