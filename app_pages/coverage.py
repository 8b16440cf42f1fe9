"""Coverage page: how diverse the tree's samples are, where they lie, and how the tree compares with
a flat baseline; fill the sparse regions.

Heavy work (features, UMAP layouts, the baseline, gap filling) runs as background jobs; the page
shows whatever the project store already holds and polls while a job runs.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from studio import coverage_panel as C
from studio import gaps_panel as G
from studio import security
from studio import set_scores_panel as S
from studio.job_view import job_status, live_job, start_job
from studio.state import get_state
from studio.widgets import (
    PAGE_COVERAGE,
    PAGE_SYNTH,
    PAGE_TREE,
    POLL_S,
    md,
    require_project,
    show_notices,
    still_open,
)
from treesynth_core.jobs import background as jobs
from treesynth_core.store.samples import BASELINE_SET

state = get_state()
project = require_project(state)
running_at_start = jobs.active_job(project) is not None

st.title("Coverage")
st.caption("Diversity of the samples, their map, and the tree against a flat baseline at equal n.")


def _start(kind: jobs.Kind, params: dict) -> None:
    if start_job(state, kind, params, page=PAGE_COVERAGE):
        st.rerun()


@st.fragment(run_every=POLL_S if running_at_start else None)
def body() -> None:
    project = still_open(state)
    live = live_job(state, project, busy=running_at_start, page=PAGE_COVERAGE)
    show_notices(state)
    tree_n = sum(project.sample_counts().values())
    if tree_n == 0:
        _no_samples_yet()
        st.page_link(PAGE_SYNTH, label="Go to the Synthesize page", icon=":material/auto_awesome:")
        return
    flat_n = sum(project.sample_counts(sample_set=BASELINE_SET).values())
    busy = live is not None
    _job_status(live)

    emb_kind, grad_kind = C.stored_kind(project, "embeddings"), C.stored_kind(project, "gradients")
    rep = C.report(project, emb_kind, grad_kind) if emb_kind else None
    grads = _feature_buttons(rep, grad_kind, busy)
    if rep is None:
        st.info(
            "No features yet (or new samples since they were computed): compute features and map.",
            icon=":material/scatter_plot:",
        )
        return

    C.score_cards(rep)
    if rep["gradients_stale"]:
        st.caption("Gradient features are out of date (new samples): compute gradient features again for G-Vendi.")
    if rep["baseline_stale"]:
        st.caption("The flat baseline has samples without features yet: compute features and map to compare it.")
    section = C.section_picker()  # not st.tabs: the open section stays when a job ends
    if section == "map":
        _map_tab(emb_kind, grad_kind)
    elif section == "leaves":
        C.leaf_table(rep)
    elif section == "baseline":
        _baseline_tab(rep, flat_n, tree_n, busy)
    else:
        _gaps_tab(grads, busy)


def _no_samples_yet() -> None:
    others = [name for name in project.sample_sets() if name != BASELINE_SET]
    if others:
        st.info(
            md(
                f"This page scores the samples synthesized from the tree, and there are none yet. The other "
                f"sets ({', '.join(others)}) are compared before and after rebalancing on the Data page."
            ),
            icon=":material/info:",
        )
    else:
        st.info("The project has no samples yet: synthesize first.", icon=":material/info:")


def _job_status(live: jobs.JobState | None) -> None:
    """A coverage job's progress, another job's notice, or the last job's outcome."""
    job_status(project, live, page=PAGE_COVERAGE, progress=C.job_progress, outcome=C.job_outcome)


def _feature_buttons(rep: dict[str, Any] | None, grad_kind: str | None, busy: bool) -> Any:
    """The two feature buttons and the gradient settings; returns the settings chosen."""
    left, mid, _ = st.columns([1, 1, 2])
    first = "primary" if rep is None else "secondary"
    if left.button(
        "Compute features and map",
        key="coverage.features",
        type=first,
        icon=":material/scatter_plot:",
        disabled=busy,
        width="stretch",
        help="Embed every sample (MiniLM) and lay out the UMAP map, in the background.",
    ):
        _start("features", {"space": "embeddings"})
    grads = C.gradient_settings_form(project, disabled=busy or security.read_only())
    about = "" if busy else f": {C.gradient_time(project, grads)}"  # no estimate to read while a job runs
    grad_help = md(f"Gradient features (G-Vendi, gradient map) of the {grads.describe()}{about}.")
    if mid.button(
        "Compute gradient features",
        key="coverage.gradients",
        icon=":material/function:",
        disabled=busy,
        width="stretch",
        help=grad_help,
    ):
        _start("features", {"space": "gradients"})
    stale = C.stale_gradients(grads, grad_kind)
    if stale:
        st.caption(md(stale))
    return grads


def _map_tab(emb_kind: str | None, grad_kind: str | None) -> None:
    spaces = ["embeddings"] + (["gradients"] if grad_kind else [])
    c1, c2, c3 = st.columns(3)
    space = c1.radio("Space", spaces, format_func=C.SPACE_LABELS.get, horizontal=True, key="coverage.space")
    kind = grad_kind if space == "gradients" else emb_kind
    laid_out = C.points(project, kind or "")
    if laid_out is None:
        st.info("This map is not computed yet: compute features and map.", icon=":material/scatter_plot:")
    else:
        pts, missing = laid_out
        if missing:
            st.caption(
                f":orange[:material/update:] {missing} newer sample{'s are' if missing != 1 else ' is'} "
                "not on this map yet: compute features and map to place them."
            )
        from treesynth_core.coverage.maps import color_options

        color_by = c2.selectbox("Colour by", color_options(pts), key="coverage.color")
        leaf_ids = C.tree_leaves(pts)
        leaf = c3.selectbox(
            "Highlight a leaf",
            [C.NO_LEAF, *leaf_ids],  # "(none)" a real option: a None value shows as "Choose an option"
            key="coverage.leaf",
            format_func=lambda i: leaf_ids.get(i, i),
        )
        if leaf != C.NO_LEAF and state.selected != leaf:
            state.select(leaf)  # the Tree page opens on it
        baseline = C.has_baseline(pts) and st.checkbox(
            "Show the flat baseline",
            key="coverage.show_baseline",
            help="Draw the flat baseline's samples (grey crosses) over the tree's.",
        )
        shown = C.shown_points(pts, show_baseline=baseline)
        title = f"UMAP of {space} ({kind}), {len(shown)} samples"
        fig = C.scatter(shown, color_by, {leaf} if leaf else set(), title)
        event = st.plotly_chart(fig, key=C.MAP_KEY, on_select="rerun", selection_mode=("box", "lasso"))
        C.downloads(shown, color_by, title)
        _map_selection(C.selected(event, shown))


def _map_selection(chosen: Any) -> None:
    """The samples box- or lasso-selected on the map, with their leaves highlighted for the Tree page."""
    if chosen:
        C.selection_list(chosen)
        leaves = C.selected_leaves(chosen)
        state.set_highlight(leaves)  # the Tree page marks them
        if leaves:
            n = len(leaves)
            st.page_link(
                PAGE_TREE,
                label=f"Open the Tree page ({n} lea{'ves' if n != 1 else 'f'} highlighted)",
                icon=":material/account_tree:",
            )
    else:
        st.caption("Box- or lasso-select points to list their samples and highlight their leaves in the tree.")


def _baseline_tab(rep: dict[str, Any], flat_n: int, tree_n: int, busy: bool) -> None:
    if flat_n == 0:
        st.info(
            f"No flat baseline yet: make {tree_n} samples from the task description alone (no tree), "
            "with the same generator, to compare against.",
            icon=":material/compare_arrows:",
        )
    seed = C.next_baseline_seed(jobs.latest_job(project, "baseline"), flat_n, tree_n)
    if 0 < flat_n < tree_n:
        st.caption(
            f"The flat baseline has {flat_n} of {tree_n} samples (the model repeated itself or "
            f"replied unusably); scores compare at equal n. Topping it up asks new questions "
            f"(seed {seed})."
        )
    label = (
        f"Make the flat baseline, n = {tree_n}"
        if flat_n == 0
        else f"Top up the flat baseline to n = {tree_n}"
        if flat_n < tree_n
        else "Baseline complete"
    )
    if st.button(label, key="coverage.baseline", icon=":material/compare_arrows:", disabled=busy or flat_n >= tree_n):
        _start("baseline", {"n": tree_n, "seed": seed})
    if flat_n < tree_n and not busy:
        st.caption(md(C.baseline_time(project, state.settings(), tree_n - flat_n)))
    if "baseline" in rep["sets"]:
        C.comparison(rep)
        st.caption(
            "On the map the baseline shows as grey crosses (Show the flat baseline hides them); "
            "colour by sample_set to compare the two sets."
        )
    for note in rep["notes"]:
        st.caption(md(note))


def _gaps_tab(grads: Any, busy: bool) -> None:
    st.caption("Generate candidates near sparse regions of the feature space and keep those that land there.")
    g1, g2, g3 = st.columns(3)
    rounds = g1.number_input("Rounds", 1, 10, key="coverage.rounds")
    per_round = g2.number_input("Candidates per round", 5, 200, step=5, key="coverage.per_round")
    gspace = g3.radio("Space", list(C.GAP_SPACES), format_func=C.GAP_SPACES.get, key="coverage.gap_space")
    if gspace == "gradients" and not busy:
        st.caption(md(f"Gradient features: {C.gradient_time(project, grads, int(rounds) * int(per_round))}."))
    extra = G.start_options(disabled=busy)
    if st.button("Fill gaps", key="coverage.fill", type="primary", icon=":material/join_inner:", disabled=busy):
        _start("fill-gaps", {"rounds": int(rounds), "per_round": int(per_round), "space": gspace, **extra})
    if not busy:
        st.caption(md(C.gaps_time(project, state.settings(), int(rounds), int(per_round))))
    G.last_run(project)


body()
st.subheader("Sample sets side by side")
S.sets_section(project)  # any sets (the tree's, a Concepts set, an import), whatever the tree holds
