"""Two tabs on one project (issue 13 item 7), in the core: an edit carries the tree its maker
looked at (``seen``), and one about a node another owner changed since is refused with a
:class:`ConflictError`, writing nothing; edits elsewhere in the tree pass. The property: edits
from two owners, interleaved with stale views, never overwrite one another's change silently."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from treesynth_core.errors import ConflictError, TreeError
from treesynth_core.store import Project
from treesynth_core.tree import model as T
from treesynth_core.tree.edits import run_edit


def start_tree() -> T.Tree:
    tree = T.new_tree("Math word problems")
    for value in ("Algebra", "Geometry", "Sets"):
        tree = T.add_value(tree, tree.root_id, value, criterion="Topic")
    return tree


def node_id(tree: T.Tree, value: str) -> str:
    return next(n.id for n in tree.nodes.values() if n.value == value)


@pytest.fixture
def tabs(tmp_path: Path) -> Any:
    with Project.create(tmp_path / "p", task="Math word problems", tree=start_tree(), owner="app:a") as a:
        with Project.open(a.path, owner="app:b") as b:
            yield a, b


def test_a_stale_edit_of_a_renamed_node_is_refused_and_writes_nothing(tabs: Any) -> None:
    a, b = tabs
    seen_a, seen_b = a.tree(), b.tree()
    algebra = node_id(seen_a, "Algebra")
    run_edit(a, "rename", seen=seen_a, node_id=algebra, new_value="Arithmetic")
    head = b.log_head()
    with pytest.raises(ConflictError, match="your prune was not made") as caught:
        run_edit(b, "prune", seen=seen_b, node_id=algebra)
    message = str(caught.value)
    assert 'rename "Algebra" \u2192 "Arithmetic" by app:a' in message and "was changed since you looked" in message
    assert caught.value.node_id == algebra
    assert b.log_head() == head and not b.tree().node(algebra).pruned


def test_a_stale_edit_elsewhere_in_the_tree_passes(tabs: Any) -> None:
    a, b = tabs
    seen_a, seen_b = a.tree(), b.tree()
    run_edit(a, "rename", seen=seen_a, node_id=node_id(seen_a, "Algebra"), new_value="Arithmetic")
    run_edit(b, "prune", seen=seen_b, node_id=node_id(seen_b, "Sets"))
    tree = a.tree()
    assert tree.node(node_id(tree, "Arithmetic")) and tree.node(node_id(tree, "Sets")).pruned


def test_an_edit_of_a_removed_node_names_the_removal(tabs: Any) -> None:
    a, b = tabs
    seen_a, seen_b = a.tree(), b.tree()
    geometry = node_id(seen_a, "Geometry")
    run_edit(a, "remove-value", seen=seen_a, node_id=geometry)
    with pytest.raises(ConflictError, match="was removed since you looked"):
        run_edit(b, "rename", seen=seen_b, node_id=geometry, new_value="Shapes")


def test_edits_without_seen_are_unchanged(tabs: Any) -> None:
    """The CLI passes no ``seen``: last write wins, as before."""
    a, b = tabs
    algebra = node_id(a.tree(), "Algebra")
    run_edit(a, "rename", node_id=algebra, new_value="Arithmetic")
    run_edit(b, "rename", node_id=algebra, new_value="Numbers")
    assert a.tree().node(algebra).value == "Numbers"


def test_edits_after_lists_others_edits_with_what_they_did(tabs: Any) -> None:
    a, b = tabs
    head = b.log_head()
    algebra = node_id(a.tree(), "Algebra")
    run_edit(a, "rename", node_id=algebra, new_value="Arithmetic")
    run_edit(a, "lock", node_id=algebra)
    edits = b.edits_after(head)
    assert [(e.owner, e.kind) for e in edits] == [("app:a", "rename"), ("app:a", "lock")]
    assert edits[0].what == 'rename "Algebra" \u2192 "Arithmetic"'
    assert b.edits_after(b.log_head()) == []


def test_undo_state_names_this_owners_latest_edit(tabs: Any) -> None:
    a, b = tabs
    run_edit(a, "rename", node_id=node_id(a.tree(), "Algebra"), new_value="Arithmetic")
    run_edit(b, "prune", node_id=node_id(b.tree(), "Sets"))
    state = a.undo_state()
    assert state.latest_mine == 'rename "Algebra" \u2192 "Arithmetic"' and state.others_since == 1


# -- the property ------------------------------------------------------------------------------------
NAMES = ("rename", "prune", "restore", "approve", "lock", "unlock", "add-value", "remove-value")


def edit_args(tree: T.Tree, name: str, i: int, j: int) -> dict[str, Any]:
    others = sorted(n for n in tree.nodes if n != tree.root_id) or [tree.root_id]
    node = others[i % len(others)]
    if name == "rename":
        return {"node_id": node, "new_value": f"v{j % 3}"}
    if name == "approve":
        return {"node_ids": [node]}
    if name == "add-value":
        return {"parent_id": node, "value": f"v{j % 3}"}
    return {"node_id": node}


steps = st.lists(
    st.tuples(st.sampled_from((0, 1)), st.sampled_from(("look", *NAMES)), st.integers(0, 20), st.integers(0, 20)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_interleaved_edits_of_two_owners_never_lose_one_silently(script: list[tuple[int, str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        first = Project.create(Path(tmp) / "p", task="Math word problems", tree=start_tree(), owner="app:a")
        tabs = [first, Project.open(first.path, owner="app:b")]
        try:
            seen = [tab.tree() for tab in tabs]
            for who, name, i, j in script:
                tab = tabs[who]
                if name == "look":
                    seen[who] = tab.tree()
                    continue
                before, head = tab.tree(), tab.log_head()
                args = edit_args(seen[who], name, i, j)
                try:
                    after = run_edit(tab, name, seen=seen[who], **args)
                except ConflictError as exc:  # refused: nothing written, and the node did change
                    assert tab.tree() == before and tab.log_head() == head
                    assert seen[who].nodes.get(exc.node_id or "") != before.nodes.get(exc.node_id or "")
                    continue
                except TreeError:  # not a valid edit of the tree as it is now: nothing written
                    assert tab.tree() == before and tab.log_head() == head
                    continue
                assert tabs[1 - who].tree() == after
                if tab.log_head() == head:
                    continue  # the edit changed nothing
                # Every node the accepted edit overwrote was as its maker saw it: no other owner's
                # change was lost under it.
                (record,) = tab.edits_after(head)
                with tab._db.read() as conn:
                    (changes,) = conn.execute("SELECT changes FROM edits WHERE id = ?", (record.id,)).fetchone()
                for change in json.loads(changes):
                    was = seen[who].nodes.get(change["node_id"])
                    assert (was is None) == (change["before"] is None)
                    if was is not None:
                        assert was == before.nodes[change["node_id"]]
                seen[who] = after
        finally:
            for tab in tabs:
                tab.close()
