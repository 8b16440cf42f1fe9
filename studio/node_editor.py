"""The Tree page's node editor: every edit of the selected node (status, lock, fold, growth,
rename, values, criterion), its details, and actions on a whole level.

Every edit of the core is a native widget here (so AppTest can drive it); clicking a node in the
graph only selects it for this panel.
"""

from __future__ import annotations

from collections.abc import Iterable

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from studio import actions as A
from studio import concept_values_panel
from studio import graph as G
from studio.grow_panel import node_grow_buttons
from studio.state import AppState
from studio.widgets import button_row, md
from treesynth_core.jobs import background as jobs
from treesynth_core.progress import plural
from treesynth_core.store import Project
from treesynth_core.tree import model as T


def wkey(name: str, node_id: str) -> str:
    """Widget key of a per-node input (a fresh input for each node)."""
    return f"edit.{name}.{node_id}"


def refresh_inputs(tree: T.Tree, node_ids: Iterable[str]) -> None:
    """Set the Value and Criterion inputs of these nodes (changed in another tab) to the nodes as
    they are now: not the old text, nor a refused edit's. What a person typed in the other boxes
    (a value to add, ...) stays."""
    for node_id in node_ids:
        node = tree.nodes.get(node_id)
        if node is None:
            continue
        for name, now in (("value", node.value or ""), ("criterion", node.split_criterion or "")):
            if wkey(name, node_id) in st.session_state:
                st.session_state[wkey(name, node_id)] = now


def _badges(tree: T.Tree, node: T.Node, samples: int) -> None:
    status = G.status_of(tree, node, not tree.is_active(node.id) and not node.pruned)
    colors = {"approved": "green", "proposed": "orange", "pruned": "gray", "root": "blue"}
    parts = [f":{colors[status]}-badge[{status if status != 'root' else 'root'}]"]
    if node.locked:
        parts.append(":blue-badge[:material/lock: locked]")
    if node.pool:
        parts.append(f":violet-badge[\u221e sampled from {plural(len(node.pool), 'value')}]")
    if node.flag:
        parts.append(f":red-badge[{G.FLAG_MARK} flagged for review]")
    if node.provenance.source == "llm":
        parts.append(f":gray-badge[by {md(node.provenance.model or 'LLM')}]")
    else:
        parts.append(":gray-badge[by a person]")
    if samples:
        parts.append(f":violet-badge[{plural(samples, 'sample')}]")
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
        node_grow_buttons(state, tree, node, live)

        rename, values, criterion, details = st.tabs(["Rename", "Values", "Criterion", "Details"])
        with rename:
            _rename_tab(node)
        with values:
            _values_tab(tree, node)
            concept_values_panel.section(project, tree, node)
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
    row = button_row()
    if not node.is_root:
        if node.approved and not node.pruned:  # a pruned node offers Restore only
            _edit_button(
                row, "Unapprove", "unapprove", "Marked as proposed.", {"node_ids": [nid]}, icon=":material/remove_done:"
            )
        elif not node.pruned:
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
    row = button_row()
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
        st.session_state.setdefault(wkey("value", nid), node.value or "")  # refresh_inputs may set it
        st.text_input("Value", key=wkey("value", nid), disabled=locked)
        st.button(
            "Rename value",
            key="edit.rename",
            on_click=A.edit,
            disabled=locked,
            args=("rename", "Renamed.", {"node_id": nid}, {"new_value": wkey("value", nid)}),
        )


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
        args=("add-value", "Value added.", {"parent_id": nid}, widgets, None, [wkey("add", nid)]),
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
        st.session_state.setdefault(wkey("criterion", nid), node.split_criterion)  # refresh_inputs may set it
        st.text_input("Criterion that splits this node", key=wkey("criterion", nid), disabled=locked)
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
            "Criterion replaced." if node.split_criterion else "Node split.",
            {"node_id": nid},
            {"criterion": wkey("new_criterion", nid)},
            {"values": wkey("new_values", nid)},
            [wkey("new_criterion", nid), wkey("new_values", nid)],
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
    st.caption(f"id `{node.id}` \u00b7 level {node.depth} \u00b7 {plural(samples, 'sample')}")


def _level_actions(tree: T.Tree) -> None:
    if tree.levels() < 1:
        return
    with st.container(border=True):
        st.markdown("**A whole level at once**")
        level = st.selectbox("Level", list(range(1, tree.levels() + 1)), key="level.depth")
        row = button_row()
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
