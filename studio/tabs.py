"""Two tabs (or two people) on one project: what this session sees of the others' edits.

Each browser tab is an owner of edits (:attr:`AppState.owner`) and the starter of the jobs it started
(:attr:`AppState.tab`, kept across reloads: see :mod:`studio.browser_tab`): a start button pressed while
another tab's job runs says so (:func:`studio.job_view.other_tab_refusal`) instead of taking that job as
its own. On each run the Tree page calls :func:`look`: it names the edits other owners made since this
session last looked (an info line) and keeps the tree it shows as :attr:`AppState.seen_tree`, which the
session's edits carry, so an edit of a node another tab changed meanwhile is refused (``ConflictError``)
instead of overwriting it. While the page sits idle, :func:`watch` polls for the others' edits (one
count query every :data:`WATCH_S` seconds) and redraws the page when one arrives, so the notice and the
graph show it without a click.
"""

from __future__ import annotations

from collections import Counter

import streamlit as st

from studio import actions as A
from studio import node_editor
from studio.state import AppState
from studio.widgets import still_open
from treesynth_core.progress import plural
from treesynth_core.store import EditRecord, Project
from treesynth_core.text import escape_markdown
from treesynth_core.tree.model import Tree

#: The others' edits named one by one in the notice; more are counted by kind.
NAMED = 3
#: Seconds between the idle Tree page's looks for the others' edits.
WATCH_S = 3.0


def look(state: AppState, project: Project, tree: Tree) -> None:
    """Show what other owners edited since this session's last look, and remember what it sees now.
    The editor's Value and Criterion inputs of the nodes they changed show those nodes as they are
    now (not the old value, nor a refused edit's text)."""
    head = project.log_head()
    if state.seen_head is not None and head > state.seen_head:
        text = others_notice(project.edits_after(state.seen_head), state.owner)
        if text:
            st.info(escape_markdown(text), icon=":material/group:")
            seen = state.seen_tree.nodes if state.seen_tree is not None else {}
            changed = [n for n in tree.nodes if seen.get(n) != tree.nodes[n]]
            node_editor.refresh_inputs(tree, changed)
            picked = st.session_state.get(A.PICKER_KEY)
            if picked in changed:  # set again, so the search box shows the node's new name
                st.session_state[A.PICKER_KEY] = picked
    state.seen_head, state.seen_tree = head, tree


def others_arrived(state: AppState, project: Project) -> bool:
    """Whether other owners edited since this session's last :func:`look` (one count query)."""
    return state.seen_head is not None and project.others_edits_after(state.seen_head, state.owner) > 0


def watch(state: AppState) -> None:
    """Poll for the others' edits every :data:`WATCH_S` seconds (while no job runs: the page polls
    then anyway) and redraw the page when one arrived, so :func:`look` shows it."""

    @st.fragment(run_every=WATCH_S)
    def poll() -> None:
        if others_arrived(state, still_open(state)):
            st.rerun(scope="app")

    poll()


def others_notice(edits: list[EditRecord], owner: str) -> str | None:
    """``Another tab or person made 3 edits since you last looked: rename "a" → "b", approve …;
    the graph shows them.`` for the edits in ``edits`` not made by ``owner``; ``None`` if none."""
    others = [edit for edit in edits if edit.owner != owner]
    if not others:
        return None
    named = [edit.what or edit.kind for edit in others[-NAMED:]]
    rest = Counter(edit.kind for edit in others[:-NAMED])
    more = f" and {', '.join(f'{n} {kind}' for kind, n in rest.items())} before" if rest else ""
    return (
        f"Another tab or person made {plural(len(others), 'edit')} since you last looked: "
        f"{', '.join(named)}{more}; the graph shows them."
    )
