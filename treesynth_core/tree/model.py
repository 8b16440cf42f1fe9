"""The partition tree as plain values, its invariants, and the pure edits people and the LLM make.

A :class:`Tree` maps node ids to frozen :class:`Node` values. Each node stands for one
(criterion, value) pair of its parent's split; its path is the list of those pairs from the root.
Every edit is a function ``edit(tree, ...) -> Tree``; the store turns the difference between the old
and the new tree into an edit record (:func:`~treesynth_core.tree.changes.diff`), so undo and redo are
:func:`~treesynth_core.tree.changes.apply_changes`. Nothing in this module does I/O.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal

from ..errors import TreeError
from .limits import MAX_DEPTH, TOO_DEEP, check_length

Source = Literal["llm", "human"]


@dataclass(frozen=True)
class Provenance:
    """Who proposed a node: a person, or an LLM (which model, which logged call)."""

    source: Source = "human"
    model: str | None = None
    call_id: str | None = None


@dataclass(frozen=True)
class Node:
    """One subspace of the data space.

    ``criterion``/``value`` say which value of the parent's split this node is (both ``None`` at
    the root). ``split_criterion`` is the criterion chosen to split *this* node; its children are
    its values. A node with a non-empty ``pool`` is a *sampled* node: the split had more values than
    the cap (the paper's "infinite" dimension), so one value of the pool is drawn at random each
    time the path is written into a prompt. A non-empty ``flag`` says why a person should look at
    the node (e.g. ``may combine "x" and "y"``); approving, renaming or merging it clears the flag.
    """

    id: str
    parent_id: str | None
    depth: int
    criterion: str | None = None
    value: str | None = None
    split_criterion: str | None = None
    pivots: tuple[str, ...] = ()
    approved: bool = False
    pruned: bool = False
    locked: bool = False
    provenance: Provenance = field(default_factory=Provenance)
    pool: tuple[str, ...] = ()
    rank: int = 0
    expanded: bool = False
    note: str = ""
    flag: str = ""

    @property
    def status(self) -> str:
        """``pruned``, ``approved`` or ``proposed`` (locking is shown separately)."""
        if self.pruned:
            return "pruned"
        return "approved" if self.approved else "proposed"

    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    @property
    def label(self) -> str:
        """What the node is called in a picture of the tree."""
        if self.is_root:
            return "root"
        if self.pool:
            return f"{self.value} ({len(self.pool)} values, sampled)"
        return self.value or ""


@dataclass(frozen=True)
class PathStep:
    """One (criterion, value) pair on a root-to-node path. ``pool`` is set for sampled nodes."""

    criterion: str
    value: str
    pool: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tree:
    """A task's partition tree: the task text, the style text and the nodes by id."""

    task: str
    style: str
    nodes: Mapping[str, Node]
    root_id: str

    # -- structure ----------------------------------------------------------------------------
    @cached_property
    def _children(self) -> dict[str, list[Node]]:
        index: dict[str, list[Node]] = {node_id: [] for node_id in self.nodes}
        for node in self.nodes.values():
            if node.parent_id is not None and node.parent_id in index:
                index[node.parent_id].append(node)
        for kids in index.values():
            kids.sort(key=lambda n: (n.rank, n.id))
        return index

    @property
    def root(self) -> Node:
        return self.nodes[self.root_id]

    def node(self, node_id: str) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise TreeError(f"no node with id {node_id!r} in this tree", node_id) from None

    def children(self, node_id: str, *, include_pruned: bool = True) -> list[Node]:
        kids = self._children.get(node_id, [])
        return list(kids) if include_pruned else [k for k in kids if not k.pruned]

    def ancestors(self, node_id: str) -> list[Node]:
        """The node's ancestors, root first (the node itself excluded)."""
        chain: list[Node] = []
        node = self.node(node_id)
        seen = {node.id}
        while node.parent_id is not None:
            node = self.node(node.parent_id)
            if node.id in seen:
                raise TreeError("the tree has a cycle", node.id)
            seen.add(node.id)
            chain.append(node)
        chain.reverse()
        return chain

    def path(self, node_id: str) -> list[PathStep]:
        """The (criterion, value) pairs from the root down to this node."""
        steps = []
        for node in [*self.ancestors(node_id), self.node(node_id)]:
            if node.is_root:
                continue
            steps.append(PathStep(node.criterion or "", node.value or "", node.pool))
        return steps

    def subtree(self, node_id: str) -> list[Node]:
        """The node and all its descendants, parents before children."""
        out: list[Node] = []
        stack = [self.node(node_id)]
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(reversed(self.children(node.id)))
        return out

    def is_active(self, node_id: str) -> bool:
        """True when neither the node nor any ancestor is pruned."""
        node = self.node(node_id)
        return not node.pruned and not any(a.pruned for a in self.ancestors(node_id))

    def is_approved_path(self, node_id: str) -> bool:
        """True when the node and every ancestor is approved and none is pruned."""
        chain = [*self.ancestors(node_id), self.node(node_id)]
        return all(n.approved and not n.pruned for n in chain)

    def leaves(self, *, approved_only: bool = False) -> list[Node]:
        """Active nodes with no active child, in depth-first order. Pruned subtrees give none."""
        out: list[Node] = []
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node.pruned:
                continue
            kids = self.children(node.id, include_pruned=False)
            if kids:
                stack.extend(reversed(kids))
            elif not approved_only or self.is_approved_path(node.id):
                out.append(node)
        return out

    def levels(self) -> int:
        return max(n.depth for n in self.nodes.values()) if self.nodes else 0

    def criteria_on_path(self, node_id: str) -> list[str]:
        """The criteria already used to reach this node (and its own split, if any)."""
        out = [step.criterion for step in self.path(node_id)]
        return out

    def find(self, text: str) -> list[Node]:
        """Nodes whose value or criterion contains ``text`` (case-insensitive)."""
        needle = normalize(text)
        return [
            n
            for n in self.nodes.values()
            if needle and (needle in normalize(n.value or "") or needle in normalize(n.split_criterion or ""))
        ]


# -- text normalization ---------------------------------------------------------------------------

_BULLET = re.compile(r"^\s*(?:[-*\u2022\u2023\u25e6>]+|\(?\d{1,3}[.)]|\(?[a-zA-Z][.)](?=\s))\s*")
#: Punctuation ignored when comparing labels; "+" and "#" stay, so "C", "C++" and "C#" differ.
_PUNCT = re.compile(r"[^\w\s+#]", re.UNICODE)
_SPACE = re.compile(r"\s+")


def clean_label(text: str) -> str:
    """Tidy an LLM-written label for display: drop bullets, numbering, quotes and stray spaces."""
    text = unicodedata.normalize("NFKC", text or "")
    text = text.strip().strip("\"'`").strip()
    text = _BULLET.sub("", text)
    text = text.strip().strip("\"'`").strip()
    text = text.rstrip(".,;:")
    return _SPACE.sub(" ", text).strip()


def normalize(text: str) -> str:
    """The comparison key of a label: case, whitespace, punctuation and bullets ignored."""
    text = clean_label(text).casefold()
    text = text.replace("_", " ")
    text = _PUNCT.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def new_id() -> str:
    """A fresh node id: 12 hex digits, unique enough for one project."""
    return uuid.uuid4().hex[:12]


# -- construction ---------------------------------------------------------------------------------


def new_tree(task: str, style: str = "", *, root_id: str | None = None) -> Tree:
    """A tree holding only its root, which starts approved (the task itself needs no review)."""
    task = (task or "").strip()
    if not task:
        raise TreeError("the task description is empty: say in one line what data you want")
    check_length("task", task)
    check_length("style", (style or "").strip())
    rid = root_id or new_id()
    root = Node(id=rid, parent_id=None, depth=0, approved=True)
    return Tree(task=task, style=(style or "").strip(), nodes={rid: root}, root_id=rid)


def with_nodes(tree: Tree, changed: Iterable[Node] = (), removed: Iterable[str] = ()) -> Tree:
    """A copy of ``tree`` with nodes replaced or added, and others removed."""
    nodes = dict(tree.nodes)
    for node_id in removed:
        nodes.pop(node_id, None)
    for node in changed:
        nodes[node.id] = node
    return Tree(task=tree.task, style=tree.style, nodes=nodes, root_id=tree.root_id)


# -- invariants -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    node_id: str
    message: str


def problems(tree: Tree) -> list[Problem]:
    """Every broken invariant, each naming the node at fault."""
    found: list[Problem] = []
    roots = [n for n in tree.nodes.values() if n.parent_id is None]
    if len(roots) != 1 or tree.root_id not in tree.nodes or roots[0].id != tree.root_id:
        ids = ", ".join(sorted(n.id for n in roots)) or "none"
        found.append(Problem(tree.root_id, f"the tree must have exactly one root (found: {ids})"))
        return found
    if deep := next((n for n in tree.nodes.values() if n.depth > MAX_DEPTH), None):
        found.append(Problem(deep.id, TOO_DEEP))
        return found  # the checks below walk every path
    for node in tree.nodes.values():
        if node.parent_id is None:
            continue
        parent = tree.nodes.get(node.parent_id)
        if parent is None:
            found.append(Problem(node.id, f"node {node.id} points at a missing parent {node.parent_id}"))
            continue
        if node.depth != parent.depth + 1:
            found.append(Problem(node.id, f"node {node.id} has depth {node.depth}, its parent {parent.depth}"))
        if not node.value or not node.value.strip():
            found.append(Problem(node.id, f"node {node.id} has an empty value"))
        if parent.split_criterion is None or normalize(node.criterion or "") != normalize(parent.split_criterion):
            found.append(
                Problem(
                    node.id,
                    f"value {node.value!r} has criterion {node.criterion!r} but its parent splits on "
                    f"{parent.split_criterion!r}",
                )
            )
    for node in tree.nodes.values():
        seen: dict[str, str] = {}
        for kid in tree.children(node.id):
            key = normalize(kid.value or "")
            if key in seen:
                found.append(
                    Problem(kid.id, f"value {kid.value!r} repeats sibling {seen[key]!r} under the same criterion")
                )
            else:
                seen[key] = kid.value or ""
        if node.split_criterion:
            try:
                used = [normalize(a.split_criterion or "") for a in tree.ancestors(node.id)]
            except TreeError as exc:
                found.append(Problem(node.id, str(exc)))
                continue
            if normalize(node.split_criterion) in used:
                found.append(Problem(node.id, f"criterion {node.split_criterion!r} is already used above this node"))
    for leaf in tree.leaves():
        if not tree.is_active(leaf.id):
            found.append(Problem(leaf.id, f"node {leaf.id} is a leaf under a pruned subtree"))
    return found


def validate(tree: Tree) -> Tree:
    """Return the tree unchanged, or raise :class:`TreeError` naming the first offending node."""
    found = problems(tree)
    if found:
        first = found[0]
        more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
        raise TreeError(first.message + more, first.node_id)
    return tree


# -- edits ----------------------------------------------------------------------------------------


def _editable(tree: Tree, node_id: str) -> Node:
    node = tree.node(node_id)
    if node.locked:
        raise TreeError(f"node {node.label!r} is locked: unlock it before editing", node_id)
    return node


def _label(text: str, what: str) -> str:
    cleaned = clean_label(text)
    if not cleaned:
        raise TreeError(f"the new {what} is empty")
    return check_length(what, cleaned)


def approve(tree: Tree, node_ids: Iterable[str], *, approved: bool = True, clear_flags: bool = True) -> Tree:
    """Mark nodes approved (or back to proposed). Approving a node approves its ancestors too.

    A person approving a node has seen its flag, so the flag is cleared (on the named nodes only);
    growth's auto-approve passes ``clear_flags=False``, keeping the flags for a later review."""
    changed: dict[str, Node] = {}
    for node_id in node_ids:
        node = tree.node(node_id)
        targets = [node, *tree.ancestors(node_id)] if approved else [node]
        for target in targets:
            if target.approved != approved and not (target.is_root and not approved):
                changed[target.id] = replace(changed.get(target.id, target), approved=approved)
        if approved and clear_flags and node.flag:
            changed[node.id] = replace(changed.get(node.id, node), flag="")
    return with_nodes(tree, changed.values())


def prune(tree: Tree, node_id: str) -> Tree:
    """Soft-delete a node: it and its subtree stop giving leaves, and can be restored."""
    node = _editable(tree, node_id)
    if node.is_root:
        raise TreeError("the root cannot be pruned", node_id)
    return with_nodes(tree, [replace(node, pruned=True)])


def restore(tree: Tree, node_id: str) -> Tree:
    """Undo a prune of this node."""
    node = tree.node(node_id)
    return with_nodes(tree, [replace(node, pruned=False)])


def lock(tree: Tree, node_id: str, *, locked: bool = True) -> Tree:
    """Lock a node against edits and regrowth, or unlock it."""
    node = tree.node(node_id)
    return with_nodes(tree, [replace(node, locked=locked)])


def rename_criterion(tree: Tree, node_id: str, new_criterion: str) -> Tree:
    """Rename the criterion that splits ``node_id``; its children follow."""
    node = _editable(tree, node_id)
    if not node.split_criterion:
        raise TreeError(f"node {node.label!r} is not split yet, so it has no criterion to rename", node_id)
    name = _label(new_criterion, "criterion")
    changed = [replace(node, split_criterion=name)]
    changed += [replace(kid, criterion=name) for kid in tree.children(node_id)]
    return validate(with_nodes(tree, changed))


def rename_value(tree: Tree, node_id: str, new_value: str) -> Tree:
    """Rename the value a node stands for. A person's rename may combine values."""
    node = _editable(tree, node_id)
    if node.is_root:
        raise TreeError("the root has no value to rename", node_id)
    value = _label(new_value, "value")
    renamed = replace(node, value=value, provenance=Provenance("human"), flag="")
    return validate(with_nodes(tree, [renamed]))


def add_value(tree: Tree, parent_id: str, value: str, *, criterion: str | None = None) -> Tree:
    """Add a value by hand under ``parent_id``. If the parent is not split yet, ``criterion`` names
    the split."""
    parent = _editable(tree, parent_id)
    name = parent.split_criterion or (criterion and _label(criterion, "criterion"))
    if not name:
        raise TreeError(f"node {parent.label!r} has no criterion yet: give one with the new value", parent_id)
    kids = tree.children(parent_id)
    child = Node(
        id=new_id(),
        parent_id=parent_id,
        depth=parent.depth + 1,
        criterion=name,
        value=_label(value, "value"),
        approved=True,
        provenance=Provenance("human"),
        rank=max((k.rank for k in kids), default=-1) + 1,
    )
    changed = [child] if parent.split_criterion else [replace(parent, split_criterion=name), child]
    return validate(with_nodes(tree, changed))


def remove_value(tree: Tree, node_id: str) -> Tree:
    """Delete a value and its subtree (unlike prune, it is gone until undone)."""
    node = _editable(tree, node_id)
    if node.is_root:
        raise TreeError("the root cannot be removed", node_id)
    removed = [n.id for n in tree.subtree(node_id)]
    parent = tree.node(node.parent_id or "")
    changed: list[Node] = []
    if len(tree.children(parent.id)) == 1:
        changed.append(replace(parent, split_criterion=None))
    return with_nodes(tree, changed, removed)


def merge(tree: Tree, keep_id: str, other_id: str, *, new_value: str | None = None) -> Tree:
    """Merge sibling ``other_id`` into ``keep_id``.

    The kept node takes ``new_value`` (or keeps its own) and both nodes' pivots. It keeps its own
    subtree; if it has none, it takes over the other node's subtree. Whatever is left of the other
    node is removed (undo brings it back).
    """
    keep = _editable(tree, keep_id)
    other = _editable(tree, other_id)
    if keep_id == other_id or keep.parent_id != other.parent_id or keep.is_root:
        raise TreeError("only two different sibling values can be merged", other_id)
    value = _label(new_value, "value") if new_value else keep.value
    merged = replace(
        keep,
        value=value,
        pivots=keep.pivots + tuple(p for p in other.pivots if p not in keep.pivots),
        provenance=Provenance("human"),
        flag="",
    )
    changed: list[Node] = []
    removed = [other_id]
    other_kids = tree.children(other_id)
    if not tree.children(keep_id) and other_kids:
        merged = replace(merged, split_criterion=other.split_criterion)
        changed += [replace(k, parent_id=keep_id) for k in other_kids]
    else:
        removed = [n.id for n in tree.subtree(other_id)]
    changed.append(merged)
    return validate(with_nodes(tree, changed, removed))


def _split(
    tree: Tree,
    node: Node,
    criterion: str,
    values: Iterable[str],
    *,
    provenance: Provenance,
    approved: bool,
    pool: tuple[str, ...] = (),
    pivots: tuple[str, ...] | None = None,
    note: str = "",
    flags: Mapping[str, str] | None = None,
) -> Tree:
    """``node`` split on ``criterion`` into one child per value (or one sampled child for ``pool``),
    its old subtree dropped; ``flags`` maps values to the reason a person should review them."""
    flags = flags or {}
    removed = [n.id for n in tree.subtree(node.id)[1:]]
    labels = [f"any {criterion}"] if pool else list(values)
    kids = [
        Node(
            id=new_id(),
            parent_id=node.id,
            depth=node.depth + 1,
            criterion=criterion,
            value=label,
            approved=approved,
            provenance=provenance,
            pool=tuple(pool),
            rank=i,
            flag=flags.get(label, ""),
        )
        for i, label in enumerate(labels)
    ]
    split = replace(node, split_criterion=criterion, expanded=True, note=note)
    if pivots is not None:
        split = replace(split, pivots=pivots)
    return validate(with_nodes(tree, [split, *kids], removed))


def replace_criterion(tree: Tree, node_id: str, criterion: str, values: Iterable[str]) -> Tree:
    """Split ``node_id`` on a new criterion with the given values, dropping the old subtree."""
    node = _editable(tree, node_id)
    labels = [_label(v, "value") for v in values]
    if not labels:
        raise TreeError("give at least one value for the new criterion", node_id)
    return _split(tree, node, _label(criterion, "criterion"), labels, provenance=Provenance("human"), approved=True)


def propose_values(tree: Tree, node_id: str, criterion: str, values: Iterable[str]) -> Tree:
    """Add ``values`` under ``node_id`` as proposed children (for review): beside its children when it
    is split on ``criterion`` already (values it has are skipped), else as a new split on ``criterion``
    (an old subtree is dropped, as by :func:`replace_criterion`; undo restores it). The node's note (a
    person's description of its value) is kept."""
    node = _editable(tree, node_id)
    name = _label(criterion, "criterion")
    labels = list(dict.fromkeys(_label(v, "value") for v in values))
    if normalize(node.split_criterion or "") != normalize(name):
        if not labels:
            raise TreeError("no values to propose", node_id)
        return _split(tree, node, name, labels, provenance=Provenance("human"), approved=False, note=node.note)
    kids = tree.children(node_id)
    have = {normalize(k.value or "") for k in kids}
    new = [v for v in labels if normalize(v) not in have]
    if not new:
        raise TreeError(f"{node.label or 'the root'!r} has every proposed value already", node_id)
    start = max((k.rank for k in kids), default=-1) + 1
    added = [
        Node(new_id(), node_id, node.depth + 1, name, v, approved=False, provenance=Provenance("human"), rank=start + i)
        for i, v in enumerate(new)
    ]
    return validate(with_nodes(tree, added))


def attach_split(
    tree: Tree,
    node_id: str,
    *,
    criterion: str,
    values: list[str],
    pivots: Iterable[str] = (),
    provenance: Provenance,
    pool: tuple[str, ...] = (),
    note: str = "",
    flags: Mapping[str, str] | None = None,
) -> Tree:
    """Record the result of growing ``node_id``: its pivots, its criterion and proposed children.

    With ``pool`` set, one sampled child stands for all pool values (see :class:`Node`). ``flags``
    marks values for review (see :attr:`Node.flag`).
    """
    return _split(
        tree,
        tree.node(node_id),
        criterion,
        values,
        provenance=provenance,
        approved=False,
        pool=pool,
        pivots=tuple(pivots),
        note=note,
        flags=flags,
    )


def mark_leaf(tree: Tree, node_id: str, *, pivots: Iterable[str] = (), note: str) -> Tree:
    """Record that growing ``node_id`` ended without a split (it stays a leaf), and why."""
    node = tree.node(node_id)
    return with_nodes(tree, [replace(node, pivots=tuple(pivots), expanded=True, note=note)])
