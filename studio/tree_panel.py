"""The Tree page's parts around the graph: the counts, the highlight banner, the toolbar (search,
levels, undo and redo) and the picker of the sample set whose counts the graph shows.

The growth controls live in :mod:`studio.grow_panel`, the selected node's editor in
:mod:`studio.node_editor`.
"""

from __future__ import annotations

import streamlit as st

from studio import actions as A
from studio import graph as G
from studio.node_editor import wkey as wkey  # re-exported: tests build per-node widget keys with it
from studio.state import AppState
from studio.widgets import md
from treesynth_core.progress import plural
from treesynth_core.store import Project, UndoState
from treesynth_core.tree import model as T


def metrics(project: Project, tree: T.Tree, sample_set: str = "tree") -> None:
    """One line of counts: nodes, levels, leaves approved, nodes awaiting review, samples (of the set
    whose counts the graph shows)."""
    counts = project.sample_counts(sample_set=sample_set)
    leaves = tree.leaves()
    approved = tree.leaves(approved_only=True)
    proposed = sum(1 for n in tree.nodes.values() if n.status == "proposed")
    pruned = sum(1 for n in tree.nodes.values() if n.pruned)
    parts = [
        f":blue-badge[:material/account_tree: {plural(len(tree.nodes), 'node')}, {plural(tree.levels(), 'level')}]",
        f":green-badge[:material/check: {len(approved):,} of {plural(len(leaves), 'leaf', 'leaves')} approved]",
        f":orange-badge[:material/rate_review: {proposed:,} awaiting review]",
        f":gray-badge[:material/content_cut: {pruned:,} pruned]",
        f":violet-badge[:material/dataset: {plural(sum(counts.values()), 'sample')}"
        + (f" in {md(sample_set)}]" if sample_set != "tree" else "]"),
    ]
    st.markdown(" ".join(parts))


def highlight_banner(state: AppState) -> None:
    """While leaves are highlighted from the Coverage map's selection: how many, and Clear."""
    n = len(state.highlight)
    if not n:
        return
    text, clear = st.columns([6, 1], vertical_alignment="center")
    text.info(
        f"{n} lea{'ves' if n != 1 else 'f'} highlighted from the Coverage map selection",
        icon=":material/highlight:",
    )
    clear.button(
        "Clear",
        key="tree.clear_highlight",
        on_click=A.clear_highlight,
        icon=":material/close:",
        width="stretch",
        help="Stop highlighting these leaves",
    )


def toolbar(project: Project, tree: T.Tree, state: AppState) -> None:
    """Search (jumps to a node), levels shown, undo and redo."""
    search, depth, undo, redo = st.columns([5, 2, 1.5, 1.5], vertical_alignment="bottom")
    options = G.node_options(tree)
    if st.session_state.get(A.PICKER_KEY) not in (None, *tree.nodes):
        st.session_state[A.PICKER_KEY] = None
    if A.PICKER_KEY not in st.session_state and state.selected in tree.nodes:
        st.session_state[A.PICKER_KEY] = state.selected  # back from another page: the node being edited
    status = G.status_label(tree, st.session_state.get(A.PICKER_KEY))
    search.selectbox(
        f"Find a node ({status})" if status else "Find a node",  # the label, not the options: see option_label
        options,
        index=None,
        key=A.PICKER_KEY,
        on_change=A.picked,
        format_func=lambda node_id: G.option_label(tree, node_id),
        placeholder=f"Search {plural(len(tree.nodes), 'node')} by value, criterion or path\u2026",
    )
    levels: list[str | int] = ["all", *range(1, max(1, tree.levels()) + 1)]
    current: str | int = "all" if state.view.show_depth is None else state.view.show_depth
    if current == 0:  # a subtree focused from the overview
        levels.append(A.FOCUSED)
        current = A.FOCUSED
    if st.session_state.get(A.DEPTH_KEY) != current:
        st.session_state[A.DEPTH_KEY] = current if current in levels else "all"
    depth.selectbox(
        "Levels shown",
        levels,
        key=A.DEPTH_KEY,
        on_change=A.set_depth,
        format_func=lambda v: (
            {"all": "all levels", A.FOCUSED: "focused subtree"}.get(str(v)) or plural(int(v), "level")
        ),
    )
    all_owners = bool(st.session_state.get(A.UNDO_ALL_KEY))
    can_undo = project.can_undo(all_owners=all_owners)
    undo.button(
        "Undo",
        key="tree.undo",
        on_click=A.undo,
        disabled=not can_undo,
        help=None if can_undo else A.nothing_message(project, undo=True, all_owners=all_owners),
        icon=":material/undo:",
        width="stretch",
    )
    redo.button(
        "Redo",
        key="tree.redo",
        on_click=A.redo,
        disabled=not project.can_redo(all_owners=all_owners),
        icon=":material/redo:",
        width="stretch",
    )
    summary, toggle = st.columns([8, 2], vertical_alignment="center")
    summary.caption(md(undo_summary(project.undo_state(), all_owners=all_owners)))
    toggle.toggle(
        "All owners",
        key=A.UNDO_ALL_KEY,
        help="Undo and redo the latest edit of anyone (other sessions, the CLI), not only this session's.",
    )


def undo_summary(state: UndoState, *, all_owners: bool) -> str:
    """What Undo and Redo will act on: this session's latest edit and how many it has, and the
    edits other sessions made since, which an undo of its own keeps."""
    other = state.latest_other
    if all_owners:
        text = "Undo and redo act on the latest edit of anyone."
        if state.others_since and other is not None:
            latest = f"latest: {other.kind} by {other.owner}, edit {other.id}"
            text += f" Others made {plural(state.others_since, 'edit')} since yours ({latest})."
        return text
    if state.undoable and state.latest_mine:
        text = f"Undo undoes your last edit ({state.latest_mine})"
    else:
        text = "You have no edit to undo"
    if state.others_since and other is not None:
        text += (
            f"; another tab or person made {plural(state.others_since, 'edit')} since, which it keeps"
            f" (latest: {other.kind} by {other.owner}, edit {other.id})"
        )
    return f"{text}. Yours: {state.undoable} to undo, {state.redoable} to redo."


def resolve_count_set(state: AppState, sets: dict[str, int]) -> str:
    """The set whose counts the Tree page shows: the chosen one while it exists; else the tree's own,
    or, when nothing is synthesized yet but a dataset is imported, that dataset (not zeros)."""
    if state.count_set not in sets:
        others = [name for name in sets if name not in ("tree", "baseline")]
        state.count_set = "tree" if "tree" in sets or not others else others[0]
    return state.count_set


def count_set_picker(project: Project, state: AppState) -> str:
    """Which sample set's counts the graph shows (only offered when there is more than the tree's set):
    an imported dataset before rebalancing, the balanced set after, the flat baseline."""
    sets = project.sample_sets()
    resolve_count_set(state, sets)
    names = list(dict.fromkeys(["tree", *sets]))
    if len(names) < 2 or (len(sets) < 2 and state.count_set in sets):  # one set (or none yet): no choice
        return state.count_set

    def chosen() -> None:  # before the rerun, so the badge above the picker shows the new set too
        state.count_set = st.session_state["tree.count_set"]

    state.count_set = st.selectbox(
        "Counts shown on the tree",
        names,
        index=names.index(state.count_set),
        key="tree.count_set",
        on_change=chosen,
        # the sets' sizes in its help, not in its options (a choice whose text changed would be reset)
        # nor in a line under it (it pushed the graph down, below the fold)
        help=count_set_help(names, sets),
    )
    return state.count_set


def count_set_help(names: list[str], sets: dict[str, int]) -> str:
    """The count-set picker's help: what it does, and each set's size (``tree: 220 samples, ...``)."""
    sizes = ", ".join(f"{name}: {plural(sets.get(name, 0), 'sample')}" for name in names)
    return (
        "Per-node sample counts of this set: compare an imported dataset (before) with its balanced set "
        f"(after). The sets: {md(sizes)}."
    )
