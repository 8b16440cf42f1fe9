"""How a node of the tree graph looks: colours by status, marks, the legend, the text in its box
and its tooltip.

Pure functions over :class:`~treesynth_core.tree.model.Tree` values; no Streamlit. Nothing here is
HTML: a ``label`` is drawn on a canvas by vis-network (text only), and a tooltip is *structured*
(a heading, key/value rows and pivot samples) that the component turns into DOM nodes with
``textContent``; :func:`tooltip_html` escapes every piece for consumers that want one HTML string.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from treesynth_core.progress import plural
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
        info.append(plural(samples, "sample"))
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


# -- style ----------------------------------------------------------------------------------------


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
