"""Trees for tests: a split root built through the store's undoable edits, and wide trees built directly."""

from __future__ import annotations

from dataclasses import replace

from treesynth_core.store import Project
from treesynth_core.tree import model as T


def split_root(
    project: Project,
    criterion: str,
    values: list[str],
    *,
    provenance: T.Provenance | None = None,
    actor: str | None = None,
) -> T.Tree:
    """Split the root of ``project`` on ``criterion`` into ``values``, approve the new leaves, and
    return the tree (the edit is a ``"grow"`` by ``actor``, the store's default when None)."""

    def build(tree: T.Tree) -> T.Tree:
        tree = T.attach_split(
            tree, tree.root_id, criterion=criterion, values=values, provenance=provenance or T.Provenance("llm")
        )
        return T.approve(tree, [k.id for k in tree.children(tree.root_id)])

    if actor is None:
        return project.apply("grow", build)
    return project.apply("grow", build, actor=actor)


def wide_tree(fanout: int, depth: int) -> T.Tree:
    """A full tree with ``fanout`` children per node, built directly (edits validate every step)."""
    root = T.Node(id="r", parent_id=None, depth=0, approved=True, split_criterion="c1")
    nodes = {"r": root}
    frontier = [root]
    for level in range(1, depth + 1):
        nxt = []
        for parent in frontier:
            for i in range(fanout):
                node = T.Node(
                    id=f"{parent.id}.{i}",
                    parent_id=parent.id,
                    depth=level,
                    criterion=f"c{level}",
                    value=f"v{level}-{i}",
                    split_criterion=f"c{level + 1}" if level < depth else None,
                    approved=True,
                    rank=i,
                )
                nodes[node.id] = node
                nxt.append(node)
        frontier = nxt
    return T.Tree(task="Big task", style="", nodes=nodes, root_id="r")


def with_leaves(project: Project, leaf_ids: list[str]) -> T.Tree:
    """Give ``project`` a tree whose root splits into leaves with exactly these ids (so samples of the
    tree set can name them: the store keeps no sample of a leaf that is not in the tree)."""
    tree = project.tree()
    root = replace(tree.root, split_criterion="c", approved=True)
    nodes = {root.id: root}
    for rank, leaf_id in enumerate(leaf_ids):
        nodes[leaf_id] = T.Node(
            id=leaf_id, parent_id=root.id, depth=1, criterion="c", value=leaf_id, approved=True, rank=rank
        )
    return project.replace_tree(replace(tree, nodes=nodes))
