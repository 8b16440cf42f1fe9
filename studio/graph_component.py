"""The interactive tree graph: a Streamlit v2 (bidirectional) component around vis-network.

Two components work together:

* ``treesynth.vis_network`` carries the vendored vis-network build (``assets/vendor``, no CDN).
  Its message never changes, so Streamlit's message cache sends the 650 KB once per page; its
  module defines ``window.vis`` when first imported.
* ``treesynth.tree_graph`` draws :class:`~studio.graph.GraphData` and reports clicks
  back to Python as trigger values: ``select`` (a click on a node) and ``toggle`` (a double-click,
  folding or unfolding the node's subtree). It keeps one vis-network instance per element and
  updates its data sets in place, so the graph fills in as growth adds nodes without losing the
  user's zoom.

Readable at any size: the view never zooms out so far that labels shrink below about 10 px
(``MIN_SCALE``): a graph too big to fit at that scale opens on its root (or the focused node) and is
panned; the Tree page's overview is the place to see a big tree whole. With ``full_screen`` the
canvas takes the window's height.

Text safety: labels are drawn on a canvas; tooltips and the legend are built with
``textContent``. No LLM- or user-written text ever reaches ``innerHTML``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from studio import graph as G
from studio.vis_component import VIS_JS, frame_css, frame_html, on_trigger

VENDOR_DIR = Path(__file__).resolve().parents[1] / "assets" / "vendor"
VIS_FILE = "vis-network.min.js"
#: The smallest zoom: 16 px labels stay over 10 px tall on screen.
MIN_SCALE = 0.66
#: The graph is never shorter than this (px), however little of the window is left below it.
MIN_HEIGHT = 420

_HTML = frame_html(
    "ts-graph",
    "treesynth-graph",
    "Click a node to edit it &middot; double-click to fold or unfold &middot; scroll to zoom",
)

_CSS = (
    frame_css("ts-graph")
    + """
.ts-graph .ts-fit:hover { background: #f1f5f9; }
.ts-graph .ts-canvas { width: 100%; background:
  radial-gradient(circle, #e2e8f0 1px, transparent 1px) 0 0 / 22px 22px; }
.ts-graph .ts-legend { max-width: calc(100% - 20px); pointer-events: auto; }
.ts-graph .ts-swatch { width: 16px; height: 12px; border-radius: 3px; border: 2px solid; display: inline-block; }
.ts-graph div.vis-tooltip { position: absolute; max-width: 440px; white-space: normal; padding: 10px 12px;
  background: #ffffff; color: #0f172a; border: 1px solid #cbd5e1; border-radius: 8px;
  box-shadow: 0 8px 24px rgba(15, 23, 42, 0.18); font-size: 13px; line-height: 1.4; pointer-events: none;
  z-index: 10; font-family: inherit; }
.ts-graph .ts-tip-title { font-weight: 700; font-size: 14px; margin-bottom: 6px; word-break: break-word; }
.ts-graph .ts-tip-row { margin: 2px 0; word-break: break-word; }
.ts-graph .ts-tip-pivots { margin: 6px 0 0 0; padding-left: 18px; color: #334155; }
.ts-graph .ts-tip-pivots li { margin: 2px 0; word-break: break-word; }
"""
)

_JS = (
    VIS_JS
    + f"const BOX_MAX_WIDTH = {G.BOX_MAX_WIDTH};\nconst MIN_SCALE = {MIN_SCALE};\nconst MIN_HEIGHT = {MIN_HEIGHT};\n"
    + r"""
const ABOVE = 64;  // px kept above the graph in full screen: the Graph/Overview and Full screen row
const OPTIONS = {
  autoResize: true,
  // Positions come from Python (a tidy left-to-right tree); nothing moves on its own.
  layout: { hierarchical: { enabled: false } },
  physics: { enabled: false },
  nodes: { shape: "box", margin: { top: 6, bottom: 6, left: 12, right: 12 },
    widthConstraint: { maximum: BOX_MAX_WIDTH }, font: { size: 16, face: FONT },
    shapeProperties: { borderRadius: 6 }, fixed: true },
  edges: { color: { color: "#94a3b8", highlight: "#e11d48", hover: "#64748b" }, width: 1.5,
    arrows: { to: { enabled: true, scaleFactor: 0.45 } },
    smooth: { enabled: true, type: "cubicBezier", forceDirection: "horizontal", roundness: 0.55 } },
  interaction: { hover: true, tooltipDelay: 250, dragNodes: false, zoomView: true, dragView: true,
    selectConnectedEdges: false, navigationButtons: false, keyboard: false },
};

function tipElement(tip) {
  const box = el("div", "ts-tip");
  box.appendChild(el("div", "ts-tip-title", tip.title));
  for (const [key, value] of tip.rows || []) {
    const row = el("div", "ts-tip-row");
    row.appendChild(el("span", "ts-tip-key", key));
    row.appendChild(el("span", "ts-tip-value", value));
    box.appendChild(row);
  }
  if (tip.pivots && tip.pivots.length) {
    box.appendChild(el("div", "ts-tip-row ts-tip-key", "pivot samples"));
    const list = el("ul", "ts-tip-pivots");
    for (const p of tip.pivots) list.appendChild(el("li", null, p));
    if (tip.more_pivots) list.appendChild(el("li", null, "\u2026 and " + tip.more_pivots + " more"));
    box.appendChild(list);
  }
  return box;
}

function fit(state, animate) {
  // Fit, then leave a margin so the outer boxes clear the canvas edges and the legend.
  state.network.fit({ animation: false, maxZoomLevel: 1.1 });
  let scale = state.network.getScale() * 0.95;
  const view = state.network.getViewPosition();
  let position = { x: view.x, y: view.y + 18 / scale };
  if (scale < MIN_SCALE) {
    scale = MIN_SCALE;
    position = readableView(state, scale) || position;
  }
  state.network.moveTo({ position, scale, animation: animate ? { duration: 250 } : false });
}

function readableView(state, scale) {
  // The graph does not fit with readable labels: show the part around the focused node (else the
  // root), that node a third in from the left, without showing empty space past the graph's edges.
  const ids = state.nodes.getIds();
  if (!ids.length) return null;
  const focus = state.data.focus;
  const root = state.data.nodes.length ? state.data.nodes[0].id : ids[0];  // the root comes first
  const anchor = focus && state.nodes.get(focus) ? focus : root;
  const at = state.network.getPosition(anchor);
  const bounds = { left: Infinity, right: -Infinity, top: Infinity, bottom: -Infinity };
  for (const id of ids) {
    const box = state.network.getBoundingBox(id);
    bounds.left = Math.min(bounds.left, box.left);
    bounds.right = Math.max(bounds.right, box.right);
    bounds.top = Math.min(bounds.top, box.top);
    bounds.bottom = Math.max(bounds.bottom, box.bottom);
  }
  const canvas = state.root.querySelector(".ts-canvas");
  const w = canvas.clientWidth / scale, h = canvas.clientHeight / scale, m = 24 / scale, legend = 48 / scale;
  const within = (value, low, high) => (low > high ? (low + high) / 2 : Math.min(Math.max(value, low), high));
  return {
    x: within(at.x + w / 6, bounds.left - m + w / 2, bounds.right + m - w / 2),
    y: within(at.y, bounds.top - m + h / 2, bounds.bottom + legend - h / 2),
  };
}

function canvasHeight(state) {
  // Full screen: the window's height. Else at most ``height``, and no taller than what is left of the
  // window below the canvas's top (as the page opens), so the whole graph shows without scrolling.
  const data = state.data;
  const bar = state.root.querySelector(".ts-bar");
  if (data.full_screen) return Math.max(360, window.innerHeight - (bar ? bar.offsetHeight : 36) - 24 - ABOVE);
  const canvas = state.root.querySelector(".ts-canvas");
  const top = canvas.getBoundingClientRect().top + window.scrollY;
  return Math.round(Math.max(MIN_HEIGHT, Math.min(data.height || 620, window.innerHeight - top - 16)));
}

function resize(state) {
  const canvas = state.root.querySelector(".ts-canvas");
  const height = canvasHeight(state) + "px";
  if (canvas.style.height === height) return;
  canvas.style.height = height;
  if (!state.network) return;
  state.network.setSize("100%", height);  // vis-network rescales the view to the new size: redo it
  if (!state.userMoved) fit(state, false);
  else if (state.network.getScale() < MIN_SCALE) state.network.moveTo({ scale: MIN_SCALE });
}

function scrollParent(node) {
  for (let el = node.parentElement; el; el = el.parentElement) {
    const overflow = getComputedStyle(el).overflowY;
    if ((overflow === "auto" || overflow === "scroll") && el.scrollHeight > el.clientHeight) return el;
  }
  return window;
}

function placeTip(state, frame) {
  // Beside the hovered node's box (right of it, else left of it), not at the pointer, so that the
  // tooltip never covers the node's neighbours in its column.
  const id = state.tipNode;
  if (id === null || id === undefined || !state.nodes.get(id)) return;
  const box = state.network.getBoundingBox(id);
  const topLeft = state.network.canvasToDOM({ x: box.left, y: box.top });
  const bottomRight = state.network.canvasToDOM({ x: box.right, y: box.bottom });
  const area = frame.parentNode;
  const width = frame.offsetWidth, height = frame.offsetHeight, pad = 8;
  let left = bottomRight.x + 12;
  if (left + width > area.clientWidth - pad) left = topLeft.x - width - 12;
  let top = topLeft.y;
  if (left < pad) {  // no room on either side: below the box
    left = Math.max(pad, Math.min(topLeft.x, area.clientWidth - width - pad));
    top = bottomRight.y + 8;
  }
  top = Math.max(pad, Math.min(top, area.clientHeight - height - pad));
  frame.style.left = left + "px";
  frame.style.top = top + "px";
}

function besideNodes(state, id) {
  // vis-network draws its tooltip at the pointer; move it beside the node each time it shows.
  state.tipNode = id;
  const popup = state.network.interactionHandler && state.network.interactionHandler.popup;
  if (!popup || !popup.frame) return;
  if (!popup.__treesynth) {
    const show = popup.show.bind(popup);
    popup.show = (doShow) => { show(doShow); if (doShow !== false) placeTip(state, popup.frame); };
    popup.__treesynth = true;
  }
  placeTip(state, popup.frame);
}

function hideTips(root) {
  root.querySelectorAll("div.vis-tooltip").forEach((tip) => { tip.style.visibility = "hidden"; });
}

function draw(state, vis) {
  const data = state.data;
  const root = state.root;
  const canvas = root.querySelector(".ts-canvas");
  resize(state);
  if (!state.network) {
    state.nodes = new vis.DataSet();
    state.edges = new vis.DataSet();
    state.network = new vis.Network(canvas, { nodes: state.nodes, edges: state.edges }, OPTIONS);
    state.network.on("click", (params) => {
      if (params.nodes && params.nodes.length) state.trigger("select", String(params.nodes[0]));
    });
    state.network.on("doubleClick", (params) => {
      if (params.nodes && params.nodes.length) state.trigger("toggle", String(params.nodes[0]));
    });
    state.network.on("dragEnd", (params) => { if (!params.nodes || !params.nodes.length) state.userMoved = true; });
    state.network.on("zoom", () => {
      state.userMoved = true;
      hideTips(root);
      if (state.network.getScale() < MIN_SCALE) state.network.moveTo({ scale: MIN_SCALE });  // labels stay readable
    });
    state.network.on("dragStart", () => hideTips(root));
    state.network.on("showPopup", (id) => besideNodes(state, id));
    state.network.on("hidePopup", () => { state.tipNode = null; });
    state.network.on("hoverNode", () => { canvas.style.cursor = "pointer"; });
    state.network.on("blurNode", () => {
      canvas.style.cursor = "default";
      hideTips(root);  // leave no tooltip over the neighbours
    });
    // vis fires no blurNode when the pointer leaves the canvas straight from a node (one at its edge):
    // the tooltip would stay. Leaving the graph hides it too (the tooltip is inside it: no leave onto it).
    for (const type of ["pointerleave", "mouseleave"]) {
      canvas.addEventListener(type, () => {
        canvas.style.cursor = "default";
        hideTips(root);
      });
    }
    window.addEventListener("resize", () => { if (state.data.full_screen) resize(state); });
    // The page above the graph may still be settling (fonts, widgets): measure again shortly.
    setTimeout(() => resize(state), 600);
    root.querySelector(".ts-fit").addEventListener("click", () => {
      state.userMoved = false;
      fit(state, true);
    });
    // For end-to-end tests and debugging: the network, where a node is on screen and which node is where.
    window.treesynthGraph = {
      network: state.network,
      nodes: state.nodes,
      version: () => state.version,
      nodeCenter: (id) => {
        const pos = state.network.getPosition(id);
        const dom = state.network.canvasToDOM(pos);
        const rect = canvas.getBoundingClientRect();
        return { x: rect.left + dom.x, y: rect.top + dom.y };
      },
      nodeAt: (x, y) => {
        const rect = canvas.getBoundingClientRect();
        const id = state.network.getNodeAt({ x: x - rect.left, y: y - rect.top });
        return id === undefined ? null : String(id);
      },
    };
  }
  if (state.version !== data.version) {
    sync(state.nodes, data.nodes.map((n) => ({ ...n, title: tipElement(n.tip) })));
    sync(state.edges, data.edges);
    state.version = data.version;
    // A tooltip open during the update shows the old text: hide it until the next hover.
    hideTips(root);
    if (!state.userMoved) fit(state, false);
  }
  // A new view was asked for (a focused subtree, other levels, full screen): fit it.
  // A graph drawn for the first time was just fitted (on its focused node when it is too big).
  const fresh = !state.drawn;
  const refit = !fresh && data.fit_key !== state.fitKey;
  state.drawn = true;
  if (refit) { state.userMoved = false; fit(state, true); }
  state.fitKey = data.fit_key;
  if (data.full_screen && !state.fullScreen) {
    // The window shows the graph, with the row of switches above it (to leave full screen).
    const box = scrollParent(root);
    const top = root.getBoundingClientRect().top - (box === window ? 0 : box.getBoundingClientRect().top);
    box.scrollBy({ top: top - ABOVE, behavior: "smooth" });
  }
  state.fullScreen = !!data.full_screen;
  // The legend changes only when highlighted leaves come or go; rebuild it then.
  const legendKey = JSON.stringify(data.legend || []);
  if (state.legendKey !== legendKey) {
    root.querySelector(".ts-legend").replaceChildren(legendElement(data.legend || []));
    state.legendKey = legendKey;
  }
  const count = root.querySelector(".ts-count");
  const nodes = (n) => n.toLocaleString("en-US") + (n === 1 ? " node" : " nodes");
  count.textContent = data.shown === data.total
    ? nodes(data.total)
    : "Showing " + data.shown.toLocaleString("en-US") + " of " + nodes(data.total);
  if (data.selected && state.nodes.get(data.selected)) state.network.selectNodes([data.selected], false);
  else state.network.unselectAll();
  const focusAsked = data.focus_key && data.focus_key !== state.focusKey && data.focus && state.nodes.get(data.focus);
  if (focusAsked && !fresh && !refit) {
    // The node with its parent and its shown children, as large as they fit (no closer than now,
    // no farther than readable labels): centring the node alone left half the canvas empty.
    const near = [data.focus, ...state.network.getConnectedNodes(data.focus)];
    const closest = Math.max(state.network.getScale(), MIN_SCALE);
    state.network.fit({ nodes: near, minZoomLevel: MIN_SCALE, maxZoomLevel: closest, animation: { duration: 400 } });
    state.userMoved = true;
  }
  state.focusKey = data.focus_key;
}

export default function (component) {
  mount(component, ".ts-graph", 16, { focusKey: null }, draw);
}
"""
)


@functools.cache
def _vis_js() -> str:
    path = VENDOR_DIR / VIS_FILE
    source = path.read_text(encoding="utf-8")
    lines = [line for line in source.splitlines() if not line.startswith("//# sourceMappingURL")]
    # The UMD build sets globalThis.vis when imported as a module; the component needs a default export.
    return "\n".join(lines) + "\nexport default function () {}\n"


@functools.cache
def _components() -> tuple[Any, Any]:
    lib = st.components.v2.component("treesynth.vis_network", js=_vis_js(), isolate_styles=False)
    graph = st.components.v2.component("treesynth.tree_graph", html=_HTML, css=_CSS, js=_JS, isolate_styles=False)
    return lib, graph


def vis_library(key: str) -> None:
    """Load the vendored vis-network for another graph component on the page (sent once per page)."""
    lib, _ = _components()
    lib(key=f"{key}-lib", height=0)


def legend_items(highlighted: bool = False) -> list[dict[str, Any]]:
    """The legend's swatches, from the graph module's colours (with ``highlighted`` while leaves are)."""
    items = []
    for key, title, text in (*G.LEGEND, G.HIGHLIGHT_LEGEND) if highlighted else G.LEGEND:
        if key in G.STATUS_COLORS:
            background, border, _ = G.STATUS_COLORS[key]
        elif key == "locked":
            background, border = G.STATUS_COLORS["approved"][0], G.LOCKED_BORDER
        elif key == "highlighted":
            background, border = G.STATUS_COLORS["approved"][0], G.HIGHLIGHT_BORDER
        elif key == "flagged":
            background, border = G.STATUS_COLORS["proposed"][0], G.FLAG_BORDER
        else:
            background, border = G.STATUS_COLORS["approved"][0], G.SAMPLED_BORDER
        items.append(
            {
                "key": key,
                "title": title,
                "text": text,
                "background": background,
                "border": border,
                "dashed": key == "pruned",
            }
        )
    return items


def tree_graph(
    data: G.GraphData,
    *,
    key: str,
    height: int = 620,
    full_screen: bool = False,
    focus_key: str | None = None,
    fit_key: str | None = None,
    on_select: Callable[[str], None] | None = None,
    on_toggle: Callable[[str], None] | None = None,
) -> None:
    """Draw the graph; ``on_select(node_id)`` / ``on_toggle(node_id)`` run (as widget callbacks,
    before the rerun) when a node is clicked / double-clicked. ``full_screen``: the canvas takes the
    window's height (``height`` otherwise); a new ``fit_key`` fits the graph to its view again."""
    lib, graph = _components()
    lib(key=f"{key}-lib", height=0)
    legend = legend_items(highlighted=data.highlighted > 0)
    payload = data.payload() | {
        "height": height,
        "full_screen": full_screen,
        "legend": legend,
        "focus_key": focus_key,
        "fit_key": fit_key,
    }

    graph(
        key=key,
        data=payload,
        height="content",
        on_select_change=on_trigger(key, "select", on_select),
        on_toggle_change=on_trigger(key, "toggle", on_toggle),
    )
