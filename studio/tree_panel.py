"""The Tree page's parts: the toolbar, the growth controls and the node editor panel.

Every edit of the core is a native widget here (so AppTest can drive it); clicking a node in the
graph only selects it for this panel.
"""

from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from studio import actions as A
from studio import graph as G
from studio.state import AppState
from studio.widgets import md, start_job
from treesynth_core.generate.grow import GrowOptions, paper_options
from treesynth_core.generate.grow_result import EMBEDDED_NOTE
from treesynth_core.jobs import background as jobs
from treesynth_core.store import Project, UndoState
from treesynth_core.tree import model as T

GROW_DEPTH, GROW_PIVOTS, GROW_VALUES, GROW_AUTO = "grow.depth", "grow.pivots", "grow.max_values", "grow.auto"
GROW_ROUNDS, GROW_PAPER = "grow.coverage_rounds", "grow.paper"


def wkey(name: str, node_id: str) -> str:
    """Widget key of a per-node input (a fresh input for each node)."""
    return f"edit.{name}.{node_id}"


def plural(n: int, word: str) -> str:
    """``1 sample``, ``2 samples``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def metrics(project: Project, tree: T.Tree, sample_set: str = "tree") -> None:
    """One line of counts: nodes, levels, leaves approved, nodes awaiting review, samples (of the set
    whose counts the graph shows)."""
    counts = project.sample_counts(sample_set=sample_set)
    leaves = tree.leaves()
    approved = tree.leaves(approved_only=True)
    proposed = sum(1 for n in tree.nodes.values() if n.status == "proposed")
    pruned = sum(1 for n in tree.nodes.values() if n.pruned)
    parts = [
        f":blue-badge[:material/account_tree: {len(tree.nodes)} nodes, {tree.levels()} levels]",
        f":green-badge[:material/check: {len(approved)} of {len(leaves)} leaves approved]",
        f":orange-badge[:material/rate_review: {proposed} awaiting review]",
        f":gray-badge[:material/content_cut: {pruned} pruned]",
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


def _button_row() -> DeltaGenerator:
    """A row for buttons side by side that wraps onto two lines when the panel is too narrow for
    their labels (columns would cut the labels off instead)."""
    return st.container(horizontal=True, gap="small")


def toolbar(project: Project, tree: T.Tree, state: AppState) -> None:
    """Search (jumps to a node), levels shown, undo and redo."""
    search, depth, undo, redo = st.columns([5, 2, 1.5, 1.5], vertical_alignment="bottom")
    options = G.node_options(tree)
    if st.session_state.get(A.PICKER_KEY) not in (None, *tree.nodes):
        st.session_state[A.PICKER_KEY] = None
    search.selectbox(
        "Find a node",
        options,
        index=None,
        key=A.PICKER_KEY,
        on_change=A.picked,
        format_func=lambda node_id: G.option_label(tree, node_id),
        placeholder=f"Search {len(tree.nodes)} nodes by value, criterion or path\u2026",
    )
    levels = ["all", *range(1, max(1, tree.levels()) + 1)]
    current = "all" if state.view.show_depth is None else state.view.show_depth
    if st.session_state.get(A.DEPTH_KEY) != current:
        st.session_state[A.DEPTH_KEY] = current if current in levels else "all"
    depth.selectbox(
        "Levels shown",
        levels,
        key=A.DEPTH_KEY,
        on_change=A.set_depth,
        format_func=lambda v: "all levels" if v == "all" else f"{v} level{'s' if v != 1 else ''}",
    )
    all_owners = bool(st.session_state.get(A.UNDO_ALL_KEY))
    undo.button(
        "Undo",
        key="tree.undo",
        on_click=A.undo,
        disabled=not project.can_undo(all_owners=all_owners),
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
    """What Undo and Redo will act on: this session's edits (how many), and whether other sessions
    edited the project since this session's latest edit."""
    if all_owners:
        text = "Undo and redo act on the latest edit of anyone."
    else:
        text = f"Undo acts on this session's edits: {state.undoable} to undo, {state.redoable} to redo."
    other = state.latest_other
    if state.others_since and other is not None:
        text += (
            f" Others made {plural(state.others_since, 'edit')} since"
            f" (latest: {other.kind} by {other.owner}, edit {other.id})."
        )
    return text


def _paper() -> bool:
    return bool(st.session_state.get(GROW_PAPER))


def _auto() -> bool:
    return _paper() or bool(st.session_state.get(GROW_AUTO))


def _depth() -> int:
    return paper_options().max_depth if _paper() else int(st.session_state.get(GROW_DEPTH) or GrowOptions().max_depth)


def grow_params(*, only: tuple[str, ...] = (), max_depth: int | None = None) -> dict:
    """Growth options from the growth controls (read from their widget keys); with the paper preset
    on, the preset's (:func:`~treesynth_core.generate.grow.paper_options`)."""
    defaults = paper_options() if _paper() else GrowOptions()
    params: dict[str, object] = {
        "max_depth": int(max_depth or _depth()),
        "pivots": int(st.session_state.get(GROW_PIVOTS) or defaults.pivots),
        "max_values": defaults.max_values
        if _paper()
        else int(st.session_state.get(GROW_VALUES) or defaults.max_values),
        "coverage_rounds": defaults.coverage_rounds
        if _paper()
        else int(st.session_state.get(GROW_ROUNDS) or defaults.coverage_rounds),
        "auto_approve": _auto(),
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
            if start_job(state, "grow", grow_params()):
                st.rerun()
        st.caption(
            "Only approved nodes grow unless auto-approve is on; new values arrive as *proposed* for review. "
            + (EMBEDDED_NOTE if embedded and not state.settings().gguf_path else "")
        )


def _badges(tree: T.Tree, node: T.Node, samples: int) -> None:
    status = G.status_of(tree, node, not tree.is_active(node.id) and not node.pruned)
    colors = {"approved": "green", "proposed": "orange", "pruned": "gray", "root": "blue"}
    parts = [f":{colors[status]}-badge[{status if status != 'root' else 'root'}]"]
    if node.locked:
        parts.append(":blue-badge[:material/lock: locked]")
    if node.pool:
        parts.append(f":violet-badge[\u221e sampled from {len(node.pool)} values]")
    if node.flag:
        parts.append(f":red-badge[{G.FLAG_MARK} flagged for review]")
    if node.provenance.source == "llm":
        parts.append(f":gray-badge[by {md(node.provenance.model or 'LLM')}]")
    else:
        parts.append(":gray-badge[by a person]")
    if samples:
        parts.append(f":violet-badge[{samples} samples]")
    st.markdown(" ".join(parts))


def editor(project: Project, tree: T.Tree, state: AppState, live: jobs.JobState | None) -> None:
    """The panel beside the graph: every edit of the selected node."""
    node_id = state.selected if state.selected is not None and state.selected in tree.nodes else tree.root_id
    node = tree.nodes[node_id]
    nid = node.id
    counts = project.sample_counts()
    with st.container(border=True):
        _node_header(tree, node, counts.get(nid, 0))
        _status_buttons(node)
        _lock_and_fold_buttons(tree, node, state)
        _grow_buttons(state, tree, node, live)

        rename, values, criterion, details = st.tabs(["Rename", "Values", "Criterion", "Details"])
        with rename:
            _rename_tab(node)
        with values:
            _values_tab(tree, node)
        with criterion:
            _criterion_tab(tree, node)
        with details:
            _details_tab(tree, node, counts.get(nid, 0))

    _level_actions(tree)


def _node_header(tree: T.Tree, node: T.Node, count: int) -> None:
    """The node's value, criterion and path, its badges, and its flag or note."""
    nid = node.id
    title = tree.task if node.is_root else (node.value or "")
    st.markdown(f"**{md(G.shorten(title, 160))}**")
    st.caption(
        ("criterion: " + md(node.criterion or "") + " \u00b7 ") * (not node.is_root)
        + "path: "
        + md(G.path_text(tree, nid))
    )
    _badges(tree, node, count)
    if node.flag:
        st.warning(
            f"{md(node.flag)}. Approve it if it is one value; rename it, or merge it into a sibling, if not.",
            icon=":material/flag:",
        )
    if node.note:
        st.caption(f":material/info: {md(node.note)}")


def _edit_button(
    row: DeltaGenerator,
    label: str,
    op: str,
    message: str,
    params: dict,
    *,
    icon: str,
    primary: bool = False,
    disabled: bool = False,
) -> None:
    """A full-width button in `row` that applies the edit `op` to the selected node."""
    row.button(
        label,
        key=f"edit.{op}",
        on_click=A.edit,
        type="primary" if primary else "secondary",
        icon=icon,
        disabled=disabled,
        args=(op, message, params),
        width="stretch",
    )


def _status_buttons(node: T.Node) -> None:
    """Approve or unapprove, prune or restore (not on the root)."""
    nid, locked = node.id, node.locked
    row = _button_row()
    if not node.is_root:
        if node.approved:
            _edit_button(
                row, "Unapprove", "unapprove", "Marked as proposed.", {"node_ids": [nid]}, icon=":material/remove_done:"
            )
        else:
            _edit_button(
                row, "Approve", "approve", "Approved.", {"node_ids": [nid]}, icon=":material/check:", primary=True
            )
        if node.pruned:
            _edit_button(row, "Restore", "restore", "Restored.", {"node_id": nid}, icon=":material/restore:")
        else:
            _edit_button(
                row,
                "Prune",
                "prune",
                "Pruned (restore brings it back).",
                {"node_id": nid},
                icon=":material/content_cut:",
                disabled=locked,
            )


def _lock_and_fold_buttons(tree: T.Tree, node: T.Node, state: AppState) -> None:
    """Lock or unlock the node; fold or unfold its subtree when it has children."""
    nid, locked = node.id, node.locked
    row = _button_row()
    if locked:
        _edit_button(row, "Unlock", "unlock", "Unlocked.", {"node_id": nid}, icon=":material/lock_open:")
    else:
        _edit_button(row, "Lock", "lock", "Locked.", {"node_id": nid}, icon=":material/lock:")
    if tree.children(nid):
        is_open = nid in G.visible_ids(tree, state.view).opened
        row.button(
            "Fold subtree" if is_open else "Unfold subtree",
            key="edit.fold",
            on_click=A.fold,
            args=(nid,),
            kwargs={"open_": not is_open},
            width="stretch",
            icon=":material/unfold_less:" if is_open else ":material/unfold_more:",
        )


def _rename_tab(node: T.Node) -> None:
    nid, locked = node.id, node.locked
    if node.is_root:
        st.caption("The root stands for the whole task; rename its criterion on the Criterion tab.")
    else:
        st.text_input("Value", value=node.value or "", key=wkey("value", nid), disabled=locked)
        st.button(
            "Rename value",
            key="edit.rename",
            on_click=A.edit,
            disabled=locked,
            args=("rename", "Renamed.", {"node_id": nid}, {"new_value": wkey("value", nid)}),
        )


def _grow_buttons(state: AppState, tree: T.Tree, node: T.Node, live: jobs.JobState | None) -> None:
    nid = node.id
    approved = tree.is_approved_path(nid) or _auto()
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
    row = _button_row()
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
        if start_job(state, "grow", grow_params(only=(nid,), max_depth=node.depth + 1)):
            st.rerun()
    depth = max(_depth(), node.depth + 1)
    if row.button(
        "Grow subtree",
        key="edit.grow_subtree",
        icon=":material/account_tree:",
        disabled=bool(why),
        help=why or f"Grow every approved node under this one, down to level {depth}",
        width="stretch",
    ):
        if start_job(state, "grow", grow_params(only=(nid,), max_depth=depth)):
            st.rerun()


def _values_tab(tree: T.Tree, node: T.Node) -> None:
    nid = node.id
    locked = node.locked
    st.text_input(
        "Add a value under this node",
        key=wkey("add", nid),
        disabled=locked,
        placeholder="a new value of " + (node.split_criterion or "a new criterion"),
    )
    widgets = {"value": wkey("add", nid)}
    if not node.split_criterion:
        st.text_input("Criterion of the new split", key=wkey("add_criterion", nid), disabled=locked)
        widgets["criterion"] = wkey("add_criterion", nid)
    st.button(
        "Add value",
        key="edit.add_value",
        on_click=A.edit,
        disabled=locked,
        icon=":material/add:",
        args=("add-value", "Value added.", {"parent_id": nid}, widgets),
    )
    if node.is_root:
        return
    st.divider()
    siblings = [k for k in tree.children(node.parent_id or "") if k.id != nid]
    if siblings:
        st.selectbox(
            "Merge a sibling into this value",
            [k.id for k in siblings],
            key=wkey("merge", nid),
            format_func=lambda i: tree.nodes[i].value or i,
            disabled=locked,
        )
        st.text_input(
            "Merged value (optional)", key=wkey("merge_value", nid), disabled=locked, placeholder=node.value or ""
        )
        st.button(
            "Merge",
            key="edit.merge",
            on_click=A.edit,
            disabled=locked,
            icon=":material/merge:",
            args=(
                "merge",
                "Merged.",
                {"keep_id": nid},
                {"other_id": wkey("merge", nid), "new_value": wkey("merge_value", nid)},
            ),
        )
    st.button(
        "Remove this value",
        key="edit.remove",
        on_click=A.edit,
        disabled=locked,
        icon=":material/delete:",
        help="Deletes the value and its subtree (undo brings it back; prune is the soft option).",
        args=("remove-value", "Value removed.", {"node_id": nid}),
    )


def _criterion_tab(tree: T.Tree, node: T.Node) -> None:
    nid = node.id
    locked = node.locked
    if node.split_criterion:
        st.text_input(
            "Criterion that splits this node", value=node.split_criterion, key=wkey("criterion", nid), disabled=locked
        )
        st.button(
            "Rename criterion",
            key="edit.rename_criterion",
            on_click=A.edit,
            disabled=locked,
            args=(
                "rename-criterion",
                "Criterion renamed.",
                {"node_id": nid},
                {"new_criterion": wkey("criterion", nid)},
            ),
        )
        st.divider()
    st.markdown("**Replace the criterion**" if node.split_criterion else "**Split this node by hand**")
    st.text_input("New criterion", key=wkey("new_criterion", nid), disabled=locked)
    st.text_area("Its values, one per line", key=wkey("new_values", nid), disabled=locked, height=120)
    st.button(
        "Replace criterion" if node.split_criterion else "Split",
        key="edit.replace_criterion",
        on_click=A.edit,
        disabled=locked,
        icon=":material/swap_horiz:",
        help="The current subtree is dropped (undo restores it).",
        args=(
            "replace-criterion",
            "Criterion replaced.",
            {"node_id": nid},
            {"criterion": wkey("new_criterion", nid)},
            {"values": wkey("new_values", nid)},
        ),
    )


def _details_tab(tree: T.Tree, node: T.Node, samples: int) -> None:
    if node.pivots:
        st.markdown(f"**Pivot samples** ({len(node.pivots)})")
        for pivot in node.pivots[:10]:
            st.text(G.shorten(pivot, 400))
    else:
        st.caption("No pivot samples: this node has not been grown.")
    if node.pool:
        st.markdown(f"**Sampled values** ({len(node.pool)})")
        st.text(", ".join(node.pool[:60]) + (" \u2026" if len(node.pool) > 60 else ""))
    st.caption(f"id `{node.id}` \u00b7 level {node.depth} \u00b7 {samples} samples")


def _level_actions(tree: T.Tree) -> None:
    if tree.levels() < 1:
        return
    with st.container(border=True):
        st.markdown("**A whole level at once**")
        level = st.selectbox("Level", list(range(1, tree.levels() + 1)), key="level.depth")
        row = _button_row()
        row.button(
            "Approve all",
            key="level.approve",
            help=f"Approve every node on level {level}",
            on_click=A.edit,
            icon=":material/done_all:",
            args=("approve-level", f"Approved level {level}.", {"depth": level}),
            width="stretch",
        )
        row.button(
            "Prune all",
            key="level.prune",
            help=f"Prune every node on level {level} (Undo brings them back)",
            on_click=A.edit,
            icon=":material/content_cut:",
            args=("prune-level", f"Pruned level {level}.", {"depth": level}),
            width="stretch",
        )


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
    if len(sets) < 2 and state.count_set in sets:
        return state.count_set
    names = list(dict.fromkeys(["tree", *sets]))

    def chosen() -> None:  # before the rerun, so the badge above the picker shows the new set too
        state.count_set = st.session_state["tree.count_set"]

    state.count_set = st.selectbox(
        "Counts shown on the tree",
        names,
        index=names.index(state.count_set),
        key="tree.count_set",
        format_func=lambda name: f"{name} ({plural(sets.get(name, 0), 'sample')})",
        on_change=chosen,
        help="Per-node sample counts of this set: compare an imported dataset (before) with its balanced set (after).",
    )
    return state.count_set
