"""The partition tree as a vis-network graph: nodes, edges, colors, tooltips and what is shown.

Pure functions over :class:`~treesynth_core.tree.model.Tree` values; no Streamlit, no HTML. The app's
graph component draws what :func:`build_graph` returns.

**Safe text.** Values and criteria come from LLMs and people. Nothing here is HTML: a node's
``label`` is drawn on a canvas by vis-network (text only), and its tooltip is *structured*
(``tip``: a heading, key/value rows and pivot samples) that the component turns into DOM nodes
with ``textContent``. Never pass these strings to ``innerHTML``; :func:`tooltip_html` exists for
any consumer that wants one HTML string, and escapes every piece.

**Big trees.** A tree of thousands of nodes is unreadable (and slow) drawn at once, so
:class:`View` says which subtrees are collapsed or expanded, down to which level the tree shows by
default, and a budget of visible nodes. :func:`visible_ids` walks the tree breadth-first, honouring
explicit expansions and the path to the focused node, and stops opening further subtrees once
the budget is used; a collapsed node shows how many nodes hide below it.

**Highlights.** :func:`build_graph` can mark a set of leaves (the Coverage map's selection): each
is drawn with a distinct border and a glow, and the nodes and edges on the way from the root to it
with the same colour, so a highlighted leaf hidden in a folded subtree still shows where it is.
:meth:`View.reveal` opens the paths to them.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from treesynth_core.tree import model as T

#: Colours by status: (background, border, text). Chosen to read at demo distance on white.
STATUS_COLORS: dict[str, tuple[str, str, str]] = {
    "approved": ("#dcfce7", "#16a34a", "#14532d"),
    "proposed": ("#fef3c7", "#d97706", "#78350f"),
    "pruned": ("#f1f5f9", "#94a3b8", "#64748b"),
    "root": ("#1e293b", "#0f172a", "#f8fafc"),
}
LOCKED_BORDER = "#2563eb"
SAMPLED_BORDER = "#7c3aed"
FLAG_BORDER = "#db2777"  # flagged for a person's review
SELECTED_BORDER = "#e11d48"
HIGHLIGHT_BORDER = "#0891b2"  # leaves picked on the Coverage map, and the path to them
EDGE_COLOR = "#94a3b8"
EDGE_HOVER = "#64748b"

LOCK_MARK = "\U0001f512"  # shown before a locked node's value
SAMPLED_MARK = "\u221e"  # "infinite" dimension: one value drawn per prompt
FLAG_MARK = "\u2691"  # flagged for review (e.g. a value that may combine two)

#: The legend, as (key, title, explanation); the component draws swatches from the colours above.
LEGEND: tuple[tuple[str, str, str], ...] = (
    ("approved", "approved", "reviewed; grows and gives leaves for synthesis"),
    ("proposed", "proposed", "suggested by the LLM, waiting for review"),
    ("pruned", "pruned", "switched off with its subtree (restore brings it back)"),
    ("locked", "locked", "protected from edits and regrowth"),
    ("sampled", "sampled \u221e", "too many values: one is drawn at random per prompt"),
    ("flagged", "flagged \u2691", "worth a look (e.g. may combine two values): approve, rename or merge it"),
)
#: Shown in the legend only while leaves are highlighted.
HIGHLIGHT_LEGEND = ("highlighted", "highlighted", "a leaf of the Coverage map selection, and the path to it")

LABEL_MAX = 48
ROOT_LABEL_MAX = 36
TIP_TEXT_MAX = 300
TIP_PIVOTS = 5
DEFAULT_BUDGET = 400


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


# -- text -----------------------------------------------------------------------------------------


def shorten(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def path_text(tree: T.Tree, node_id: str, *, sep: str = " \u203a ") -> str:
    """The node's values from the root down, e.g. ``addition › fruit``; ``(root)`` for the root."""
    steps = tree.path(node_id)
    return sep.join(s.value for s in steps) if steps else "(root)"


def status_of(tree: T.Tree, node: T.Node, inactive: bool = False) -> str:
    """``root``, ``pruned`` (itself or under a pruned node), ``approved`` or ``proposed``."""
    if node.is_root:
        return "root"
    if node.pruned or inactive:
        return "pruned"
    return node.status


def node_label(tree: T.Tree, node: T.Node, *, hidden: int = 0, samples: int = 0) -> str:
    """The text drawn in a node's box (plain text: vis-network draws it on a canvas): the value,
    then one line with the node's split criterion, folded nodes and samples."""
    if node.is_root:
        first = shorten(tree.task, ROOT_LABEL_MAX)
    elif node.pool:
        first = f"{SAMPLED_MARK} {shorten(node.value or '', LABEL_MAX - 8)} ({len(node.pool)})"
    else:
        first = shorten(node.value or "", LABEL_MAX)
    if node.flag:
        first = f"{FLAG_MARK} {first}"
    if node.locked:
        first = f"{LOCK_MARK} {first}"
    info = []
    if node.split_criterion and tree.children(node.id):
        info.append(f"by {shorten(node.split_criterion, 28)}")
    if hidden:
        info.append(f"+{hidden} more")
    if samples:
        info.append(f"{samples} sample{'s' if samples != 1 else ''}")
    return "\n".join([first, " \u00b7 ".join(info)] if info else [first])


def tooltip(tree: T.Tree, node: T.Node, *, samples: int = 0, status: str | None = None) -> dict[str, Any]:
    """A node's tooltip as plain-text parts: ``{"title", "rows": [[key, value]], "pivots": [...]}``."""
    rows: list[list[str]] = []
    if not node.is_root:
        rows.append(["criterion", shorten(node.criterion or "", TIP_TEXT_MAX)])
    rows.append(["path", shorten(path_text(tree, node.id), TIP_TEXT_MAX)])
    state = status or status_of(tree, node)
    if state == "pruned" and not node.pruned:
        state = "inside a pruned subtree"
    rows.append(["status", state + (", locked" if node.locked else "")])
    if node.flag:
        rows.append(["flagged", shorten(node.flag, TIP_TEXT_MAX)])
    if node.split_criterion:
        rows.append(["splits by", shorten(node.split_criterion, TIP_TEXT_MAX)])
    if node.pool:
        rows.append(["sampled from", f"{len(node.pool)} values, e.g. " + shorten(", ".join(node.pool[:6]), 160)])
    rows.append(["samples", str(samples)])
    if node.provenance.source == "llm":
        rows.append(["proposed by", shorten(node.provenance.model or "an LLM", 80)])
    if node.note:
        rows.append(["note", shorten(node.note, TIP_TEXT_MAX)])
    title = tree.task if node.is_root else (node.value or "")
    pivots = [shorten(p, 160) for p in node.pivots[:TIP_PIVOTS]]
    return {
        "title": shorten(title, TIP_TEXT_MAX),
        "rows": rows,
        "pivots": pivots,
        "more_pivots": max(0, len(node.pivots) - TIP_PIVOTS),
    }


def tooltip_html(tip: Mapping[str, Any]) -> str:
    """One HTML string for a :func:`tooltip`, every piece escaped (for consumers that need HTML)."""
    e = html.escape
    parts = [f"<b>{e(str(tip['title']))}</b>"]
    parts += [f"<div><i>{e(str(k))}</i>: {e(str(v))}</div>" for k, v in tip.get("rows", [])]
    if tip.get("pivots"):
        parts.append("<div><i>pivot samples</i></div><ul>")
        parts += [f"<li>{e(str(p))}</li>" for p in tip["pivots"]]
        parts.append("</ul>")
    return "".join(parts)


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


def node_style(
    status: str,
    *,
    locked: bool,
    sampled: bool,
    highlighted: bool = False,
    on_path: bool = False,
    flagged: bool = False,
) -> dict[str, Any]:
    """vis-network colour, border and font options for one node (selection is drawn by vis-network
    with the ``highlight`` colours, so selecting a node does not change the data). A highlighted
    node (or one on the path to one) takes :data:`HIGHLIGHT_BORDER`; a highlighted one also glows.
    Every key is always present: the component updates its data set in place, so a key left out
    would keep its old value. A flagged node takes :data:`FLAG_BORDER` (locked and highlighted
    borders win over it)."""
    background, border, text = STATUS_COLORS[status]
    if sampled:
        border = SAMPLED_BORDER
    if flagged:
        border = FLAG_BORDER
    if locked:
        border = LOCKED_BORDER
    width = 3 if locked or sampled or flagged else 2
    if highlighted or on_path:
        border = HIGHLIGHT_BORDER
        width = 5 if highlighted else 3
    style: dict[str, Any] = {
        "color": {
            "background": background,
            "border": border,
            "highlight": {"background": background, "border": SELECTED_BORDER},
            "hover": {"background": background, "border": border},
        },
        "font": {"color": text},
        "borderWidth": width,
        "borderWidthSelected": 4,
        "shapeProperties": {"borderDashes": [6, 4] if status == "pruned" else False},
        "shadow": {"enabled": highlighted, "color": HIGHLIGHT_BORDER, "size": 14, "x": 0, "y": 0},
    }
    if sampled:
        style["shape"] = "ellipse"
    return style


# -- layout ---------------------------------------------------------------------------------------

#: The widest a box may be, and the gaps between levels and between boxes (px).
BOX_MAX_WIDTH = 260
COLUMN_GAP = 80
ROW_GAP = 10
_LINE_HEIGHT = 20
_BOX_PADDING = 14
_CHARS_PER_LINE = 28
_CHAR_WIDTH = 8.2
_BOX_SIDES = 26


def box_height(label: str) -> int:
    """About how tall vis-network draws a box with this label (lines wrap at ``BOX_MAX_WIDTH``)."""
    lines = sum(max(1, -(-len(line) // _CHARS_PER_LINE)) for line in label.split("\n"))
    return _BOX_PADDING + _LINE_HEIGHT * lines


def box_width(label: str) -> int:
    """About how wide vis-network draws a box with this label."""
    longest = max((len(line) for line in label.split("\n")), default=0)
    return min(BOX_MAX_WIDTH, round(_BOX_SIDES + _CHAR_WIDTH * longest))


def column_positions(depths: Mapping[int, int]) -> dict[int, int]:
    """x of each level's centre, given each level's widest box: levels as close as they fit."""
    xs: dict[int, int] = {}
    x = 0.0
    previous: int | None = None
    for depth in sorted(depths):
        if previous is not None:
            x += previous / 2 + COLUMN_GAP + depths[depth] / 2
        xs[depth] = round(x)
        previous = depths[depth]
    return xs


def tidy_layout(
    tree: T.Tree, shown: Iterable[str], heights: Mapping[str, int], widths: Mapping[str, int] | None = None
) -> dict[str, tuple[int, int]]:
    """Positions (x, y) for the shown nodes, left to right by level: every subtree gets its own
    band of rows, a parent sits level with the middle of its children, and no two boxes overlap.
    Deterministic, so the graph does not jump when growth adds nodes."""
    visible = set(shown)
    y: dict[str, float] = {}
    cursor = 0.0

    def shift(node_id: str, delta: float) -> None:
        stack = [node_id]
        while stack:
            current = stack.pop()
            y[current] += delta
            stack.extend(k.id for k in tree.children(current) if k.id in visible)

    def place(node_id: str) -> None:
        nonlocal cursor
        start = cursor
        half = heights[node_id] / 2
        kids = [k.id for k in tree.children(node_id) if k.id in visible]
        if not kids:
            y[node_id] = cursor + half
            cursor += heights[node_id] + ROW_GAP
            return
        for kid in kids:
            place(kid)
        y[node_id] = (y[kids[0]] + y[kids[-1]]) / 2
        overlap = start - (y[node_id] - half)
        if overlap > 0:  # a parent taller than its children's band: move the band down
            shift(node_id, overlap)
            cursor += overlap
        cursor = max(cursor, y[node_id] + half + ROW_GAP)

    # Recursion depth is the tree's depth (growth caps it at 8 levels).
    place(tree.root_id)
    level_widths: dict[int, int] = {}
    for node_id in y:
        depth = tree.nodes[node_id].depth
        width = (widths or {}).get(node_id, BOX_MAX_WIDTH)
        level_widths[depth] = max(level_widths.get(depth, 0), width)
    xs = column_positions(level_widths)
    return {node_id: (xs[tree.nodes[node_id].depth], round(y[node_id])) for node_id in y}


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
    """How a node reads in a search box: its path, with its status."""
    node = tree.nodes.get(node_id)
    if node is None:
        return node_id
    if node.is_root:
        return f"(root) {shorten(tree.task, 60)}"
    mark = {"approved": "\u2713", "proposed": "?", "pruned": "\u2717"}[node.status]
    return f"{mark} {shorten(path_text(tree, node_id), 90)}"
