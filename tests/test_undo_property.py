"""A property test of the edit log (issue 12): random edits, undos and redos from two owners, each
with its own connection, never break the tree; the stored tree is always the one the log's edits in
force rebuild; and undoing everything (all owners, latest first) gives the original tree back."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from treesynth_core.errors import EditConflict, TreeError
from treesynth_core.store import Project
from treesynth_core.tree import model as T
from treesynth_core.tree.changes import NodeChange, apply_changes, node_from_dict
from treesynth_core.tree.edits import run_edit

OWNERS = ("alice", "bob")
EDITS = (
    "approve",
    "unapprove",
    "prune",
    "restore",
    "rename",
    "rename-criterion",
    "add-value",
    "remove-value",
    "merge",
    "replace-criterion",
    "lock",
    "unlock",
)
STEPS = ("edit",) * 3 + ("undo", "redo", "undo-all", "redo-all")


def start_tree() -> T.Tree:
    tree = T.new_tree("Math word problems")
    for value in ("Algebra", "Geometry", "Sets"):
        tree = T.add_value(tree, tree.root_id, value, criterion="Topic")
    geometry = next(n.id for n in tree.nodes.values() if n.value == "Geometry")
    for value in ("Circles", "Triangles"):
        tree = T.add_value(tree, geometry, value, criterion="Shape")
    return tree


def pick(items: list[str], i: int) -> str:
    return items[i % len(items)]


def edit_args(tree: T.Tree, name: str, i: int, j: int) -> dict[str, Any]:
    """Arguments for the edit ``name`` on nodes of ``tree`` picked by ``i`` and ``j`` (a few
    repeated names, so sibling clashes happen)."""
    nodes = sorted(tree.nodes)
    others = [n for n in nodes if n != tree.root_id] or nodes
    node = pick(others, i)
    text = f"v{j % 4}"
    if name in ("approve", "unapprove"):
        return {"node_ids": [node]}
    if name == "rename":
        return {"node_id": node, "new_value": text}
    if name == "rename-criterion":
        return {"node_id": pick(nodes, i), "new_criterion": f"c{j % 3}"}
    if name == "add-value":
        return {"parent_id": pick(nodes, i), "value": text, "criterion": f"c{j % 3}"}
    if name == "merge":
        siblings = [n.id for n in tree.children(tree.nodes[node].parent_id or "")] or [node]
        return {"keep_id": node, "other_id": pick(siblings, j)}
    if name == "replace-criterion":
        return {"node_id": pick(nodes, i), "criterion": f"c{j % 3}", "values": [text, f"w{j % 2}"]}
    return {"node_id": node}


def rebuilt(db: Path, base: T.Tree) -> T.Tree:
    """The tree the edits in force rebuild from ``base``, read straight from the log."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT changes, meta FROM edits WHERE undone = 0 ORDER BY id").fetchall()
    tree = base
    for changes_json, meta_json in rows:
        decoded = [
            NodeChange(
                c["node_id"],
                node_from_dict(c["before"]) if c["before"] else None,
                node_from_dict(c["after"]) if c["after"] else None,
            )
            for c in json.loads(changes_json)
        ]
        tree = apply_changes(tree, decoded)
        meta = {key: after for key, (_before, after) in (json.loads(meta_json) if meta_json else {}).items()}
        tree = T.Tree(
            task=meta.get("task", tree.task),
            style=meta.get("style", tree.style),
            nodes=tree.nodes,
            root_id=meta.get("root_id", tree.root_id),
        )
    return tree


step = st.tuples(
    st.sampled_from(OWNERS),
    st.sampled_from(STEPS),
    st.sampled_from(EDITS),
    st.integers(0, 3),  # few nodes, so the owners' edits often meet on one
    st.integers(0, 7),
)


@settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, max_size=30))
def test_random_edits_undos_and_redos_from_two_owners_keep_the_tree_whole(
    steps: list[tuple[str, str, str, int, int]],
) -> None:
    run_steps(steps, opened=False)


@settings(max_examples=30, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, max_size=30))
def test_undoing_everything_after_opening_a_tree_file_gives_the_opened_tree(
    steps: list[tuple[str, str, str, int, int]],
) -> None:
    """A project made from a tree file (an example, ``new --from-tree``) starts at that tree: no
    undo of anyone's goes back past it (issue 13 item 1)."""
    run_steps(steps, opened=True)


def run_steps(steps: list[tuple[str, str, str, int, int]], *, opened: bool) -> None:
    """Play ``steps``, checking the tree after each; then undo everything. ``opened``: the project
    starts from a tree file (no edit); else it is made with a root and the tree loaded as an edit."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "p"
        if opened:
            original = start_tree()
            Project.create(folder, task=original.task, tree=original, owner="setup").close()
        else:
            with Project.create(folder, task="Math word problems", owner="setup") as setup:
                original = setup.tree()
                setup.replace_tree(start_tree())
        projects = {owner: Project.open(folder, owner=owner) for owner in OWNERS}
        try:
            for owner, kind, name, i, j in steps:
                project = projects[owner]
                before = project.tree()
                try:
                    if kind == "edit":
                        run_edit(project, name, **edit_args(before, name, i, j))
                    elif kind in ("undo", "undo-all"):
                        project.undo(all_owners=kind == "undo-all")
                    else:
                        project.redo(all_owners=kind == "redo-all")
                except EditConflict:
                    assert project.tree() == before  # a refused undo or redo changes nothing
                except TreeError:
                    assert project.tree() == before  # an edit the tree refused writes nothing
                tree = project.tree()
                T.validate(tree)
                assert tree == projects[OWNERS[0] if owner != OWNERS[0] else OWNERS[1]].tree()
                assert tree == rebuilt(folder / "treesynth.db", original)
            while projects["alice"].undo(all_owners=True) is not None:  # never refused
                T.validate(projects["alice"].tree())
            assert projects["bob"].tree() == original
            assert projects["bob"].undo(all_owners=True) is None
        finally:
            for project in projects.values():
                project.close()
