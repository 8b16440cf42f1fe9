"""The partition tree as a vis-network graph: nodes, edges, colors, tooltips and what is shown.

Pure functions over :class:`~treesynth_core.tree.model.Tree` values; no Streamlit, no HTML. The app's
graph component draws what :func:`build_graph` returns. How a node looks (colours, label, tooltip)
lives in :mod:`studio.graph_style`, where its box goes in :mod:`studio.graph_layout`; the names
callers use from those are re-exported here, so ``G.shorten`` or ``G.STATUS_COLORS`` keep working.

**Safe text.** Values and criteria come from LLMs and people. Nothing here is HTML: a node's
``label`` is drawn on a canvas by vis-network (text only), and its tooltip is *structured*
(``tip``: a heading, key/value rows and pivot samples) that the component turns into DOM nodes
with ``textContent``. Never pass these strings to ``innerHTML``; :func:`tooltip_html` exists for
any consumer that wants one HTML string, and escapes every piece.

**Big trees.** A tree of thousands of nodes is unreadable (and slow) drawn at once, so
:class:`View` says which subtrees are collapsed or expanded, down to which level the tree shows by
default, and a budget of visible nodes. :func:`visible_ids` walks the tree breadth-first, honouring
explicit expansions and the path to the focused node, and stops opening further subtrees once
the budget is used; a collapsed node shows how many nodes hide below it. :func:`default_levels`
picks the levels a tree opens on (about 60 nodes at most), :func:`focus_subtree` the view of one
subtree picked on the overview (:mod:`studio.tree_overview`).

**Highlights.** :func:`build_graph` can mark a set of leaves (the Coverage map's selection): each
is drawn with a distinct border and a glow, and the nodes and edges on the way from the root to it
with the same colour, so a highlighted leaf hidden in a folded subtree still shows where it is.
:meth:`View.reveal` opens the paths to them.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from studio.graph_layout import BOX_MAX_WIDTH as BOX_MAX_WIDTH
from studio.graph_layout import box_height as box_height
from studio.graph_layout import box_width, tidy_layout
from studio.graph_style import (
    EDGE_COLOR,
    EDGE_HOVER,
    HIGHLIGHT_BORDER,
    SELECTED_BORDER,
    node_label,
    node_style,
    path_text,
    shorten,
    status_of,
    tooltip,
)
from studio.graph_style import FLAG_BORDER as FLAG_BORDER
from studio.graph_style import FLAG_MARK as FLAG_MARK
from studio.graph_style import HIGHLIGHT_LEGEND as HIGHLIGHT_LEGEND
from studio.graph_style import LABEL_MAX as LABEL_MAX
from studio.graph_style import LEGEND as LEGEND
from studio.graph_style import LOCK_MARK as LOCK_MARK
from studio.graph_style import LOCKED_BORDER as LOCKED_BORDER
from studio.graph_style import SAMPLED_BORDER as SAMPLED_BORDER
from studio.graph_style import SAMPLED_MARK as SAMPLED_MARK
from studio.graph_style import STATUS_COLORS as STATUS_COLORS
from studio.graph_style import tooltip_html as tooltip_html
from treesynth_core.tree import model as T

DEFAULT_BUDGET = 400
#: Past about this many nodes the graph stops being readable: the default view and a focused
#: subtree show at most this many (a single level wider than this still shows whole).
DEFAULT_VISIBLE = 60
#: ... and at most this many rows (shown nodes without shown children: the graph's height).
DEFAULT_ROWS = 24


@dataclass(frozen=True)
class View:
    """What part of the tree to draw.

    ``show_depth``: levels shown by default (``None``: all); deeper nodes stay folded unless in
    ``expanded``. ``collapsed`` folds a node's subtree; ``expanded`` opens it whatever the depth or
    budget. ``budget`` caps the visible nodes opened automatically. ``focus`` is a node whose whole
    root path is always shown (a search result, the selected node).
    """

    collapsed: frozenset[str] = frozenset()
    expanded: frozenset[str] = frozenset()
    show_depth: int | None = None
    budget: int = DEFAULT_BUDGET
    focus: str | None = None

    def toggle(self, tree: T.Tree, node_id: str) -> View:
        """Fold the node if its children show, else unfold it."""
        if node_id not in tree.nodes or not tree.children(node_id):
            return self
        if node_id in visible_ids(tree, self).opened:
            return replace(self, collapsed=self.collapsed | {node_id}, expanded=self.expanded - {node_id})
        return replace(self, collapsed=self.collapsed - {node_id}, expanded=self.expanded | {node_id})

    def expand_all(self) -> View:
        return replace(self, collapsed=frozenset(), expanded=frozenset(), show_depth=None)

    def with_depth(self, depth: int | None) -> View:
        """Show ``depth`` levels by default; forgets per-node folds."""
        return replace(self, collapsed=frozenset(), expanded=frozenset(), show_depth=depth)

    def reveal(self, tree: T.Tree, node_ids: Iterable[str]) -> View:
        """Open the path to each of ``node_ids`` (unknown ids ignored) so that they show; unlike
        ``focus`` this is a one-off: folding one of those nodes afterwards hides them again."""
        path = {a.id for node_id in node_ids if node_id in tree.nodes for a in tree.ancestors(node_id)}
        if not path:
            return self
        return replace(self, collapsed=self.collapsed - path, expanded=self.expanded | path)


@dataclass(frozen=True)
class Visible:
    """The outcome of :func:`visible_ids`."""

    ids: list[str]  # shown nodes, breadth-first
    opened: frozenset[str]  # shown nodes whose children are shown
    folded: dict[str, int]  # shown nodes with hidden descendants -> how many
    by_budget: bool = False  # True when the budget folded something


def _preorder(tree: T.Tree) -> list[str]:
    """Every node id, parents before children (pruned subtrees included)."""
    order: list[str] = []
    stack = [tree.root_id]
    while stack:
        node_id = stack.pop()
        order.append(node_id)
        stack.extend(kid.id for kid in tree.children(node_id))
    return order


def subtree_sizes(tree: T.Tree) -> dict[str, int]:
    """Descendant counts for every node (the node itself excluded), in one pass."""
    order = _preorder(tree)
    sizes = dict.fromkeys(order, 0)
    for node_id in reversed(order):
        parent = tree.nodes[node_id].parent_id
        if parent is not None and parent in sizes:
            sizes[parent] += sizes[node_id] + 1
    return sizes


def subtree_counts(tree: T.Tree, counts: Mapping[str, int]) -> dict[str, int]:
    """Samples under every node: its own plus all its descendants' (pruned subtrees included, as
    their samples still exist), so a folded branch shows how many samples it holds."""
    order = _preorder(tree)
    totals = {node_id: int(counts.get(node_id, 0)) for node_id in order}
    for node_id in reversed(order):
        parent = tree.nodes[node_id].parent_id
        if parent is not None and parent in totals:
            totals[parent] += totals[node_id]
    return totals


def visible_ids(tree: T.Tree, view: View, sizes: Mapping[str, int] | None = None) -> Visible:
    """Which nodes to draw: breadth-first from the root, within the view's folds and budget."""
    sizes = sizes if sizes is not None else subtree_sizes(tree)
    forced: set[str] = set()
    if view.focus and view.focus in tree.nodes:
        forced = {a.id for a in tree.ancestors(view.focus)}
    shown = [tree.root_id]
    opened: set[str] = set()
    folded: dict[str, int] = {}
    by_budget = False
    queue = deque([tree.root_id])
    while queue:
        node_id = queue.popleft()
        kids = tree.children(node_id)
        if not kids:
            continue
        node = tree.nodes[node_id]
        wanted = node_id in forced or node_id in view.expanded
        if not wanted:
            if node_id in view.collapsed or (view.show_depth is not None and node.depth >= view.show_depth):
                folded[node_id] = sizes.get(node_id, 0)
                continue
            if len(shown) + len(kids) > view.budget:
                folded[node_id] = sizes.get(node_id, 0)
                by_budget = True
                continue
        opened.add(node_id)
        for kid in kids:
            shown.append(kid.id)
            queue.append(kid.id)
    return Visible(shown, frozenset(opened), folded, by_budget)


def auto_depth(tree: T.Tree, target: int = 24) -> int | None:
    """How many levels to show at first so that at most ``target`` rows (shown nodes without shown
    children: the graph's height) appear, but at least one level; ``None`` when everything fits."""
    per_depth: dict[int, int] = {}
    childless: dict[int, int] = {}
    for node in tree.nodes.values():
        per_depth[node.depth] = per_depth.get(node.depth, 0) + 1
        if not tree.children(node.id):
            childless[node.depth] = childless.get(node.depth, 0) + 1
    deepest = max(per_depth)
    best = 1
    for depth in range(1, deepest + 1):
        rows = per_depth.get(depth, 0) + sum(childless.get(d, 0) for d in range(depth))
        if rows > target:
            break
        best = depth
    return None if best >= deepest else best


def default_levels(tree: T.Tree, max_nodes: int = DEFAULT_VISIBLE, max_rows: int = DEFAULT_ROWS) -> int | None:
    """How many levels a freshly opened tree shows: the most levels that keep the drawn nodes within
    ``max_nodes`` and the rows within ``max_rows`` (:func:`auto_depth`), but at least one level;
    ``None`` (all levels) when the whole tree fits."""
    per_depth: dict[int, int] = {}
    for node in tree.nodes.values():
        per_depth[node.depth] = per_depth.get(node.depth, 0) + 1
    deepest = max(per_depth)
    by_nodes, drawn = 1, per_depth.get(0, 1)
    for depth in range(1, deepest + 1):
        drawn += per_depth.get(depth, 0)
        if drawn > max_nodes:
            break
        by_nodes = depth
    by_rows = auto_depth(tree, max_rows)
    levels = min(by_nodes, by_rows if by_rows is not None else deepest)
    return None if levels >= deepest else levels


def focus_subtree(tree: T.Tree, node_id: str, max_nodes: int = DEFAULT_VISIBLE) -> View:
    """A view of one subtree (the overview's click): the path from the root to ``node_id`` with the
    path's siblings folded, and as many levels of ``node_id``'s subtree as fit in ``max_nodes``
    (at least one). Everything else is folded, so the graph draws that subtree and where it sits."""
    if node_id not in tree.nodes:
        return View()
    opened: set[str] = set()
    frontier, drawn = [node_id], 1
    while True:
        below = [kid.id for parent in frontier for kid in tree.children(parent)]
        if not below or (opened and drawn + len(below) > max_nodes):
            break
        opened.update(frontier)
        drawn += len(below)
        frontier = below
    path = {a.id for a in tree.ancestors(node_id)}
    return View(expanded=frozenset(path | opened), show_depth=0, focus=node_id)


# -- the graph ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphData:
    """What the component draws, plus counts for the page."""

    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    total: int
    folded_by_budget: bool
    version: str = ""
    selected: str | None = None
    focus: str | None = None
    highlighted: int = 0  # how many of the nodes asked to be highlighted are in the tree
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shown(self) -> int:
        return len(self.nodes)

    def payload(self) -> dict[str, Any]:
        """The JSON the component receives."""
        return {
            "nodes": self.nodes,
            "edges": self.edges,
            "version": self.version,
            "selected": self.selected,
            "focus": self.focus,
            "total": self.total,
            "shown": self.shown,
            "highlighted": self.highlighted,
            **self.extra,
        }


def _inactive_ids(tree: T.Tree) -> set[str]:
    """Nodes under a pruned ancestor (not the pruned node itself)."""
    out: set[str] = set()
    stack = [(tree.root_id, False)]
    while stack:
        node_id, under = stack.pop()
        if under:
            out.add(node_id)
        below = under or tree.nodes[node_id].pruned
        stack.extend((kid.id, below) for kid in tree.children(node_id))
    return out


def highlight_path(tree: T.Tree, node_ids: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    """The known ids among ``node_ids`` (unknown ids ignored), and their ancestors that are not
    highlighted themselves: the path drawn from the root to the highlighted nodes."""
    marked = frozenset(node_id for node_id in node_ids if node_id in tree.nodes)
    path = {a.id for node_id in marked for a in tree.ancestors(node_id)}
    return marked, frozenset(path - marked)


def build_graph(
    tree: T.Tree,
    view: View | None = None,
    *,
    counts: Mapping[str, int] | None = None,
    selected: str | None = None,
    highlight: Iterable[str] = (),
) -> GraphData:
    """The nodes and edges to draw for ``view`` (all of a small tree by default); the ``highlight``
    nodes (unknown ids ignored) and the path to them are marked (``highlighted``, ``on_path``)."""
    view = view or View()
    counts = subtree_counts(tree, counts or {})
    marked, path = highlight_path(tree, highlight)
    if selected is not None and selected not in tree.nodes:
        selected = None
    if view.focus is None and selected is not None:
        view = replace(view, focus=selected)
    sizes = subtree_sizes(tree)
    visible = visible_ids(tree, view, sizes)
    inactive = _inactive_ids(tree)
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    labels = {
        node_id: node_label(
            tree, tree.nodes[node_id], hidden=visible.folded.get(node_id, 0), samples=counts.get(node_id, 0)
        )
        for node_id in visible.ids
    }
    positions = tidy_layout(
        tree,
        visible.ids,
        {node_id: box_height(text) for node_id, text in labels.items()},
        {node_id: box_width(text) for node_id, text in labels.items()},
    )
    for node_id in visible.ids:
        node = tree.nodes[node_id]
        status = status_of(tree, node, node_id in inactive)
        hidden = visible.folded.get(node_id, 0)
        samples = counts.get(node_id, 0)
        item: dict[str, Any] = {
            "id": node_id,
            "label": labels[node_id],
            "x": positions[node_id][0],
            "y": positions[node_id][1],
            "level": node.depth,
            "status": status,
            "locked": node.locked,
            "sampled": bool(node.pool),
            "flagged": bool(node.flag),
            "folded": hidden,
            "highlighted": node_id in marked,
            "on_path": node_id in path,
            "tip": tooltip(tree, node, samples=samples, status=status),
        }
        item.update(
            node_style(
                status,
                locked=node.locked,
                sampled=bool(node.pool),
                highlighted=node_id in marked,
                on_path=node_id in path,
                flagged=bool(node.flag),
            )
        )
        nodes.append(item)
        if node.parent_id is not None:
            lit = node_id in marked or node_id in path
            edges.append(
                {
                    "id": f"{node.parent_id}>{node_id}",
                    "from": node.parent_id,
                    "to": node_id,
                    "dashes": status == "pruned",
                    "highlighted": lit,
                    "color": {
                        "color": HIGHLIGHT_BORDER if lit else EDGE_COLOR,
                        "highlight": SELECTED_BORDER,
                        "hover": EDGE_HOVER,
                    },
                    "width": 3 if lit else 1.5,
                }
            )
    digest = hashlib.blake2b(
        json.dumps([nodes, edges], sort_keys=True, ensure_ascii=False).encode(), digest_size=8
    ).hexdigest()
    return GraphData(nodes, edges, len(tree.nodes), visible.by_budget, digest, selected, view.focus, len(marked))


# -- search ---------------------------------------------------------------------------------------


def search(tree: T.Tree, query: str, *, limit: int = 50) -> list[str]:
    """Node ids whose value, criterion or path matches ``query`` (case- and punctuation-blind),
    shallowest first; every node (breadth-first) for an empty query."""
    needle = T.normalize(query)
    ordered = sorted(tree.nodes.values(), key=lambda n: (n.depth, n.rank, n.id))
    if not needle:
        return [n.id for n in ordered][:limit]
    hits = []
    for node in ordered:
        texts: Iterable[str] = (node.value or "", node.criterion or "", node.split_criterion or "")
        if node.is_root:
            texts = (tree.task,)
        if any(needle in T.normalize(t) for t in texts) or needle in T.normalize(path_text(tree, node.id)):
            hits.append(node.id)
            if len(hits) >= limit:
                break
    return hits


def node_options(tree: T.Tree) -> list[str]:
    """Every node id in reading order (depth-first, siblings by rank): the search box's options."""
    return [n.id for n in tree.subtree(tree.root_id)]


def option_label(tree: T.Tree, node_id: str) -> str:
    """How a node reads in a search box: its path. Not its status: a browser sends a choice back as its
    text, so a choice whose text changed (the node approved) would be reset; :func:`status_label` goes
    beside the box."""
    node = tree.nodes.get(node_id)
    if node is None:
        return node_id
    if node.is_root:
        return f"(root) {shorten(tree.task, 60)}"
    return shorten(path_text(tree, node_id), 90)


STATUS_MARKS = {"approved": "\u2713 approved", "proposed": "? awaiting review", "pruned": "\u2717 pruned"}


def status_label(tree: T.Tree, node_id: str | None) -> str:
    """A node's status with its mark ("\u2713 approved"), shown beside a node picker; "" for the root or
    no node."""
    node = tree.nodes.get(node_id or "")
    if node is None or node.is_root:
        return ""
    return STATUS_MARKS[node.status]
