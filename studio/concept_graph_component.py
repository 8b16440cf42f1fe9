"""The concept graph drawn by the vendored vis-network: a Streamlit v2 (bidirectional) component.

It draws :class:`~studio.concept_graph.ConceptView` (positions come from Python, nothing moves on
its own) and reports a click on a node back to Python as the trigger value ``select``. The
vis-network build itself is loaded by :func:`studio.graph_component.vis_library` (no CDN).

Text safety: labels are drawn on a canvas; tooltips and the legend are built with ``textContent``
(edge tooltips are plain strings, which vis-network sets with ``innerText``). No LLM- or
file-written text ever reaches ``innerHTML``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import streamlit as st

from studio.concept_graph import ConceptView
from studio.graph_component import vis_library
from studio.vis_component import VIS_JS, frame_css, frame_html, on_trigger

_HTML = frame_html(
    "ts-cgraph",
    "treesynth-concept-graph",
    "Click a topic or concept for its documents &middot; scroll to zoom &middot; drag",
)

_CSS = (
    frame_css("ts-cgraph")
    + """
.ts-cgraph .ts-canvas { width: 100%; }
.ts-cgraph .ts-swatch { width: 14px; height: 12px; border-radius: 3px; border: 2px solid; display: inline-block; }
.ts-cgraph .ts-swatch.ts-dot { border-radius: 50%; width: 12px; }
.ts-cgraph div.vis-tooltip { position: absolute; max-width: 420px; white-space: normal; padding: 8px 10px;
  background: #ffffff; color: #0f172a; border: 1px solid #cbd5e1; border-radius: 8px;
  box-shadow: 0 8px 24px rgba(15, 23, 42, 0.18); font-size: 13px; pointer-events: none; z-index: 10;
  font-family: inherit; }
.ts-cgraph .ts-tip-title { font-weight: 700; margin-bottom: 4px; word-break: break-word; }
"""
)

_JS = (
    VIS_JS
    + r"""
const OPTIONS = {
  autoResize: true,
  physics: { enabled: false },
  layout: { improvedLayout: false },
  nodes: { font: { face: FONT }, margin: 8, shapeProperties: { borderRadius: 5 }, fixed: true },
  edges: { color: { color: "rgba(100, 116, 139, 0.35)", highlight: "#e11d48", hover: "#475569" },
    smooth: false, selectionWidth: 1.5 },
  interaction: { hover: true, tooltipDelay: 120, dragNodes: false, zoomView: true, dragView: true,
    hideEdgesOnDrag: true, navigationButtons: false, keyboard: false },
};

function tipElement(tip) {
  const box = el("div", "ts-tip");
  box.appendChild(el("div", "ts-tip-title", tip.title));
  for (const [key, value] of tip.rows || []) {
    const row = el("div");
    row.appendChild(el("span", "ts-tip-key", key));
    row.appendChild(el("span", null, value));
    box.appendChild(row);
  }
  return box;
}

function draw(state, vis) {
  const data = state.data;
  const root = state.root;
  const canvas = root.querySelector(".ts-canvas");
  canvas.style.height = (data.height || 600) + "px";
  if (!state.network) {
    state.nodes = new vis.DataSet();
    state.edges = new vis.DataSet();
    state.network = new vis.Network(canvas, { nodes: state.nodes, edges: state.edges }, OPTIONS);
    state.network.on("click", (params) => {
      if (!params.nodes || !params.nodes.length) return;
      state.clicked = String(params.nodes[0]);  // already in view: no need to move to it
      state.trigger("select", state.clicked);
    });
    state.network.on("zoom", () => { state.userMoved = true; });
    state.network.on("dragEnd", () => { state.userMoved = true; });
    state.network.on("hoverNode", () => { canvas.style.cursor = "pointer"; });
    state.network.on("blurNode", () => { canvas.style.cursor = "default"; });
    root.querySelector(".ts-fit").addEventListener("click", () => {
      state.userMoved = false;
      state.network.fit({ animation: { duration: 250 } });
    });
    // For end-to-end tests and debugging: the network and a way to find a node on screen.
    window.treesynthConceptGraph = {
      network: state.network,
      nodes: state.nodes,
      edges: state.edges,
      nodeCenter: (id) => {
        const dom = state.network.canvasToDOM(state.network.getPosition(id));
        const rect = canvas.getBoundingClientRect();
        return { x: rect.left + dom.x, y: rect.top + dom.y };
      },
    };
  }
  if (state.version !== data.version) {
    sync(state.nodes, data.nodes.map((n) => ({ ...n, title: tipElement(n.tip) })));
    sync(state.edges, data.edges);
    state.version = data.version;
    if (!state.userMoved) state.network.fit({ animation: false });
  }
  const legendKey = JSON.stringify(data.legend || []);
  if (state.legendKey !== legendKey) {
    root.querySelector(".ts-legend").replaceChildren(legendElement(data.legend || []));
    state.legendKey = legendKey;
  }
  root.querySelector(".ts-count").textContent =
    (data.shown === data.total ? data.total + " nodes" : "Showing " + data.shown + " of " + data.total + " nodes")
    + " \u00b7 " + (data.shown_edges === data.total_edges ? data.total_edges + " edges"
      : data.shown_edges + " of " + data.total_edges + " edges");
  if (data.selected && state.nodes.get(data.selected)) {
    state.network.selectNodes([data.selected], true);
    if (data.selected !== state.focused && data.selected !== state.clicked) {  // found by a search
      const scale = Math.max(state.network.getScale(), 0.8);
      state.network.focus(data.selected, { scale, animation: { duration: 300 } });
      state.userMoved = true;
    }
  } else state.network.unselectAll();
  state.focused = data.selected;
}

export default function (component) {
  mount(component, ".ts-cgraph", 14, { focused: null }, draw);
}
"""
)


@functools.cache
def _component() -> Any:
    return st.components.v2.component("treesynth.concept_graph", html=_HTML, css=_CSS, js=_JS, isolate_styles=False)


def concept_graph(
    view: ConceptView, *, key: str, height: int = 600, on_select: Callable[[str], None] | None = None
) -> None:
    """Draw the view; ``on_select(node_id)`` runs (as a widget callback, before the rerun) on a click."""
    vis_library(key)

    _component()(
        key=key,
        data=view.payload() | {"height": height},
        height="content",
        on_select_change=on_trigger(key, "select", on_select),
    )
