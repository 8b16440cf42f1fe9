"""What the store keeps of the tree: the node-level changes an edit made (its undo/redo record) and
single nodes as plain dicts (the form the store and the edit records hold them in).

:func:`diff` turns an old and a new :class:`~treesynth_core.tree.model.Tree` into changes,
:func:`apply_changes` replays them forward (redo) or backward (undo). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .model import Node, Provenance, Tree, with_nodes


@dataclass(frozen=True)
class NodeChange:
    """One node before and after an edit (``None`` = absent)."""

    node_id: str
    before: Node | None
    after: Node | None


def diff(old: Tree, new: Tree) -> list[NodeChange]:
    """The node-level changes that turn ``old`` into ``new``."""
    changes = []
    for node_id in old.nodes.keys() | new.nodes.keys():
        before, after = old.nodes.get(node_id), new.nodes.get(node_id)
        if before != after:
            changes.append(NodeChange(node_id, before, after))
    changes.sort(key=lambda c: c.node_id)
    return changes


def apply_changes(tree: Tree, changes: Iterable[NodeChange], *, reverse: bool = False) -> Tree:
    """Replay changes forward (redo) or backward (undo)."""
    changed, removed = [], []
    for change in changes:
        target = change.before if reverse else change.after
        if target is None:
            removed.append(change.node_id)
        else:
            changed.append(target)
    return with_nodes(tree, changed, removed)


# -- single nodes as dicts -------------------------------------------------------------------------


def node_to_dict(node: Node) -> dict[str, Any]:
    return {
        "id": node.id,
        "parent_id": node.parent_id,
        "depth": node.depth,
        "criterion": node.criterion,
        "value": node.value,
        "split_criterion": node.split_criterion,
        "pivots": list(node.pivots),
        "approved": node.approved,
        "pruned": node.pruned,
        "locked": node.locked,
        "provenance": {
            "source": node.provenance.source,
            "model": node.provenance.model,
            "call_id": node.provenance.call_id,
        },
        "pool": list(node.pool),
        "rank": node.rank,
        "expanded": node.expanded,
        "note": node.note,
        "flag": node.flag,
    }


def node_from_dict(data: Mapping[str, Any]) -> Node:
    prov = data.get("provenance") or {}
    return Node(
        id=str(data["id"]),
        parent_id=data.get("parent_id"),
        depth=int(data.get("depth", 0)),
        criterion=data.get("criterion"),
        value=data.get("value"),
        split_criterion=data.get("split_criterion"),
        pivots=tuple(data.get("pivots") or ()),
        approved=bool(data.get("approved", False)),
        pruned=bool(data.get("pruned", False)),
        locked=bool(data.get("locked", False)),
        provenance=Provenance(source=prov.get("source", "human"), model=prov.get("model"), call_id=prov.get("call_id")),
        pool=tuple(data.get("pool") or ()),
        rank=int(data.get("rank", 0)),
        expanded=bool(data.get("expanded", False)),
        note=str(data.get("note", "")),
        flag=str(data.get("flag") or ""),
    )
