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

VENDOR_DIR = Path(__file__).resolve().parents[1] / "assets" / "vendor"
VIS_FILE = "vis-network.min.js"

_HTML = """
<div class="ts-graph" data-testid="treesynth-graph">
  <div class="ts-bar">
    <span class="ts-count"></span>
    <span class="ts-hint">Click a node to edit it &middot; double-click to fold or unfold &middot; scroll to zoom</span>
    <button class="ts-fit" type="button" title="Fit the whole graph in view">Fit</button>
  </div>
  <div class="ts-canvas"></div>
  <div class="ts-legend"></div>
  <div class="ts-error" hidden></div>
</div>
"""

_CSS = """
.ts-graph { position: relative; font-family: "Source Sans Pro", system-ui, -apple-system, "Segoe UI", sans-serif;
  border: 1px solid #e2e8f0; border-radius: 10px; background: #ffffff; overflow: hidden; }
.ts-graph .ts-bar { display: flex; align-items: center; gap: 12px; padding: 6px 10px;
  border-bottom: 1px solid #e2e8f0; background: #f8fafc; font-size: 13px; color: #475569; }
.ts-graph .ts-count { font-weight: 600; color: #0f172a; }
.ts-graph .ts-hint { flex: 1; color: #64748b; }
.ts-graph .ts-fit { border: 1px solid #cbd5e1; background: #fff; border-radius: 6px; padding: 2px 10px;
  font-size: 13px; cursor: pointer; color: #0f172a; }
.ts-graph .ts-fit:hover { background: #f1f5f9; }
.ts-graph .ts-canvas { width: 100%; background:
  radial-gradient(circle, #e2e8f0 1px, transparent 1px) 0 0 / 22px 22px; }
.ts-graph .ts-legend { position: absolute; left: 10px; bottom: 10px; display: flex; flex-wrap: wrap; gap: 6px 14px;
  background: rgba(255,255,255,0.92); border: 1px solid #e2e8f0; border-radius: 8px; padding: 6px 10px;
  font-size: 12.5px; color: #334155; max-width: calc(100% - 20px); pointer-events: auto; }
.ts-graph .ts-legend-item { display: inline-flex; align-items: center; gap: 6px; }
.ts-graph .ts-swatch { width: 16px; height: 12px; border-radius: 3px; border: 2px solid; display: inline-block; }
.ts-graph .ts-error { padding: 16px; color: #b91c1c; font-size: 14px; }
.ts-graph div.vis-tooltip { position: absolute; max-width: 440px; white-space: normal; padding: 10px 12px;
  background: #ffffff; color: #0f172a; border: 1px solid #cbd5e1; border-radius: 8px;
  box-shadow: 0 8px 24px rgba(15, 23, 42, 0.18); font-size: 13px; line-height: 1.4; pointer-events: none;
  z-index: 10; font-family: inherit; }
.ts-graph .ts-tip-title { font-weight: 700; font-size: 14px; margin-bottom: 6px; word-break: break-word; }
.ts-graph .ts-tip-row { margin: 2px 0; word-break: break-word; }
.ts-graph .ts-tip-key { color: #64748b; margin-right: 6px; }
.ts-graph .ts-tip-pivots { margin: 6px 0 0 0; padding-left: 18px; color: #334155; }
.ts-graph .ts-tip-pivots li { margin: 2px 0; word-break: break-word; }
"""

_JS = (
    f"const BOX_MAX_WIDTH = {G.BOX_MAX_WIDTH};\n"
    + r"""
const FONT = '"Source Sans", "Source Sans Pro", system-ui, -apple-system, "Segoe UI", sans-serif';
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
  interaction: { hover: true, tooltipDelay: 120, dragNodes: false, zoomView: true, dragView: true,
    selectConnectedEdges: false, navigationButtons: false, keyboard: false },
};

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);  // text only, never HTML
  return node;
}

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

function legendElement(items) {
  const frag = document.createDocumentFragment();
  for (const item of items) {
    const entry = el("span", "ts-legend-item");
    entry.title = item.text;
    const swatch = el("span", "ts-swatch");
    swatch.style.background = item.background;
    swatch.style.borderColor = item.border;
    if (item.dashed) swatch.style.borderStyle = "dashed";
    entry.appendChild(swatch);
    entry.appendChild(el("span", null, item.title));
    frag.appendChild(entry);
  }
  return frag;
}

function waitForVis(timeoutMs) {
  return new Promise((resolve, reject) => {
    const ready = () => globalThis.vis && globalThis.vis.Network && globalThis.vis.DataSet;
    if (ready()) return resolve(globalThis.vis);
    const started = Date.now();
    const timer = setInterval(() => {
      if (ready()) { clearInterval(timer); resolve(globalThis.vis); }
      else if (Date.now() - started > timeoutMs) {
        clearInterval(timer);
        reject(new Error("vis-network did not load"));
      }
    }, 25);
  });
}

function fit(state, animate) {
  // Fit, then leave a margin so the outer boxes clear the canvas edges and the legend.
  state.network.fit({ animation: false, maxZoomLevel: 1.1 });
  const scale = state.network.getScale() * 0.95;
  const view = state.network.getViewPosition();
  state.network.moveTo({ position: { x: view.x, y: view.y + 18 / scale }, scale,
    animation: animate ? { duration: 250 } : false });
}

function sync(dataset, items) {
  const wanted = new Set(items.map((item) => item.id));
  const stale = dataset.getIds().filter((id) => !wanted.has(id));
  if (stale.length) dataset.remove(stale);
  dataset.update(items);
}

function draw(state, vis) {
  const data = state.data;
  const root = state.root;
  const canvas = root.querySelector(".ts-canvas");
  canvas.style.height = (data.height || 620) + "px";
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
    state.network.on("zoom", () => { state.userMoved = true; });
    state.network.on("hoverNode", () => { canvas.style.cursor = "pointer"; });
    state.network.on("blurNode", () => { canvas.style.cursor = "default"; });
    root.querySelector(".ts-fit").addEventListener("click", () => {
      state.userMoved = false;
      fit(state, true);
    });
    // For end-to-end tests and debugging: the network and a way to find a node on screen.
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
    };
  }
  if (state.version !== data.version) {
    sync(state.nodes, data.nodes.map((n) => ({ ...n, title: tipElement(n.tip) })));
    sync(state.edges, data.edges);
    state.version = data.version;
    // A tooltip open during the update shows the old text: hide it until the next hover.
    root.querySelectorAll("div.vis-tooltip").forEach((tip) => { tip.style.visibility = "hidden"; });
    if (!state.userMoved) fit(state, false);
  }
  // The legend changes only when highlighted leaves come or go; rebuild it then.
  const legendKey = JSON.stringify(data.legend || []);
  if (state.legendKey !== legendKey) {
    root.querySelector(".ts-legend").replaceChildren(legendElement(data.legend || []));
    state.legendKey = legendKey;
  }
  const count = root.querySelector(".ts-count");
  count.textContent = data.shown === data.total
    ? data.total + " nodes"
    : "Showing " + data.shown + " of " + data.total + " nodes";
  if (data.selected && state.nodes.get(data.selected)) state.network.selectNodes([data.selected], false);
  else state.network.unselectAll();
  if (data.focus_key && data.focus_key !== state.focusKey && data.focus && state.nodes.get(data.focus)) {
    state.network.focus(data.focus, { scale: Math.max(state.network.getScale(), 0.9), animation: { duration: 400 } });
    state.userMoved = true;
  }
  state.focusKey = data.focus_key;
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const root = parentElement.querySelector(".ts-graph");
  let state = root.__treesynth;
  if (!state) state = root.__treesynth = { network: null, version: null, userMoved: false, focusKey: null, root };
  state.data = data;
  state.trigger = setTriggerValue;
  const fonts = document.fonts ? document.fonts.load("16px " + FONT).catch(() => null) : Promise.resolve();
  Promise.all([waitForVis(20000), fonts])
    .then(([vis]) => draw(state, vis))
    .catch((err) => {
      const box = root.querySelector(".ts-error");
      box.hidden = false;
      box.textContent = "The graph could not be drawn: " + err.message;
    });
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
    focus_key: str | None = None,
    on_select: Callable[[str], None] | None = None,
    on_toggle: Callable[[str], None] | None = None,
) -> None:
    """Draw the graph; ``on_select(node_id)`` / ``on_toggle(node_id)`` run (as widget callbacks,
    before the rerun) when a node is clicked / double-clicked."""
    lib, graph = _components()
    lib(key=f"{key}-lib", height=0)
    legend = legend_items(highlighted=data.highlighted > 0)
    payload = data.payload() | {"height": height, "legend": legend, "focus_key": focus_key}

    def handler(event: str, fn: Callable[[str], None] | None) -> Callable[[], None]:
        def run() -> None:
            value = (st.session_state.get(key) or {}).get(event)
            if fn is not None and isinstance(value, str):
                fn(value)

        return run

    graph(
        key=key,
        data=payload,
        height="content",
        on_select_change=handler("select", on_select),
        on_toggle_change=handler("toggle", on_toggle),
    )
