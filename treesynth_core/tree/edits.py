"""Named edits, shared by the CLI and the app: each applies one pure tree edit through the store,
so it lands in the edit history (undo/redo) as one record."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..errors import TreeError
from . import model as T


class EditStore(Protocol):
    def tree(self) -> T.Tree: ...

    def apply(
        self,
        kind: str,
        fn: Callable[[T.Tree], T.Tree],
        *,
        args: dict | None = None,
        actor: str = "human",
        seen: T.Tree | None = None,
    ) -> T.Tree: ...


def _level(tree: T.Tree, depth: int) -> list[str]:
    return [n.id for n in tree.nodes.values() if n.depth == depth and not n.is_root]


def _prune_many(tree: T.Tree, node_ids: list[str]) -> T.Tree:
    for node_id in node_ids:
        if not tree.node(node_id).locked:
            tree = T.prune(tree, node_id)
    return tree


#: Every edit a person can make, by name: ``fn(tree, **args) -> tree``.
EDITS: dict[str, Callable[..., T.Tree]] = {
    "approve": lambda t, node_ids: T.approve(t, node_ids),
    "unapprove": lambda t, node_ids: T.approve(t, node_ids, approved=False),
    "approve-level": lambda t, depth: T.approve(t, _level(t, depth)),
    "prune": T.prune,
    "prune-level": lambda t, depth: _prune_many(t, _level(t, depth)),
    "restore": T.restore,
    "rename-criterion": T.rename_criterion,
    "rename": T.rename_value,
    "add-value": T.add_value,
    "remove-value": T.remove_value,
    "merge": T.merge,
    "replace-criterion": T.replace_criterion,
    "propose-values": T.propose_values,
    "lock": lambda t, node_id: T.lock(t, node_id, locked=True),
    "unlock": lambda t, node_id: T.lock(t, node_id, locked=False),
}


def run_edit(store: EditStore, name: str, *, seen: T.Tree | None = None, **args: Any) -> T.Tree:
    """Apply the edit called ``name`` with ``args`` as one recorded edit; ``seen``: the tree its
    maker looked at, so an edit of a node changed since is refused (see ``Project.apply``)."""
    try:
        fn = EDITS[name]
    except KeyError:
        raise TreeError(f"unknown edit {name!r}; known: {', '.join(sorted(EDITS))}") from None
    return store.apply(name, lambda tree: fn(tree, **args), args=args, actor="human", seen=seen)


def resolve_node(tree: T.Tree, ref: str) -> T.Node:
    """Find a node by id, unique id prefix, ``root``, or a unique value / path text
    (``"addition > fruit"``)."""
    ref = ref.strip()
    if ref in tree.nodes:
        return tree.nodes[ref]
    if ref.casefold() == "root":
        return tree.root
    by_prefix = [n for n in tree.nodes.values() if n.id.startswith(ref)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    wanted = [T.normalize(part) for part in ref.split(">")]
    matches = [
        n
        for n in tree.nodes.values()
        if not n.is_root and [T.normalize(s.value) for s in tree.path(n.id)][-len(wanted) :] == wanted
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise TreeError(f"no node matches {ref!r} (use an id from `treesynth show`, or a value path 'a > b')")
    options = ", ".join(f"{n.id} ({' > '.join(s.value for s in tree.path(n.id))})" for n in matches[:5])
    raise TreeError(f"{ref!r} matches {len(matches)} nodes: {options}; use an id or a longer path")
