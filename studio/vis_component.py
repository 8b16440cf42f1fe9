"""The plumbing shared by the vis-network graph components (:mod:`studio.graph_component`,
:mod:`studio.concept_graph_component`): their common JavaScript and the Python side of their
click triggers. Each component keeps its own options, drawing, tooltips and legend.

Text safety: :data:`VIS_JS`'s ``el`` sets ``textContent`` only; no text reaches ``innerHTML``."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

#: Put first in a component's module: ``FONT``; ``el`` (a text-only element); ``waitForVis`` (the
#: vendored build, loaded by :func:`studio.graph_component.vis_library`); ``sync`` (a data set to
#: these items, in place); ``legendElement`` (the legend's items); ``mount`` (the component's entry:
#: its state on the root element, then ``draw(state, vis)`` once vis-network and the font are ready,
#: or the error in ``.ts-error``).
VIS_JS = r"""
const FONT = '"Source Sans", "Source Sans Pro", system-ui, -apple-system, "Segoe UI", sans-serif';

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);  // text only, never HTML
  return node;
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

function sync(dataset, items) {
  const wanted = new Set(items.map((item) => item.id));
  const stale = dataset.getIds().filter((id) => !wanted.has(id));
  if (stale.length) dataset.remove(stale);
  dataset.update(items);
}

function legendElement(items) {
  // An item: title, text (its tooltip), background and border colours; dot: a round swatch;
  // dashed: a dashed border.
  const frag = document.createDocumentFragment();
  for (const item of items) {
    const entry = el("span", "ts-legend-item");
    entry.title = item.text;
    const swatch = el("span", item.dot ? "ts-swatch ts-dot" : "ts-swatch");
    swatch.style.background = item.background;
    swatch.style.borderColor = item.border;
    if (item.dashed) swatch.style.borderStyle = "dashed";
    entry.appendChild(swatch);
    entry.appendChild(el("span", null, item.title));
    frag.appendChild(entry);
  }
  return frag;
}

function mount(component, selector, fontPx, fresh, draw) {
  const { data, parentElement, setTriggerValue } = component;
  const root = parentElement.querySelector(selector);
  let state = root.__treesynth;
  if (!state) state = root.__treesynth = Object.assign({ network: null, version: null, userMoved: false, root }, fresh);
  state.data = data;
  state.trigger = setTriggerValue;
  const fonts = document.fonts ? document.fonts.load(fontPx + "px " + FONT).catch(() => null) : Promise.resolve();
  Promise.all([waitForVis(20000), fonts])
    .then(([vis]) => draw(state, vis))
    .catch((err) => {
      const box = root.querySelector(".ts-error");
      box.hidden = false;
      box.textContent = "The graph could not be drawn: " + err.message;
    });
}
"""


def frame_html(cls: str, testid: str, hint: str) -> str:
    """A graph component's HTML: the bar (count, ``hint``, Fit), the canvas, the legend and the error
    box, in a ``div`` of class ``cls``. ``hint`` is the component's own fixed text (HTML entities allowed)."""
    return f"""
<div class="{cls}" data-testid="{testid}">
  <div class="ts-bar">
    <span class="ts-count"></span>
    <span class="ts-hint">{hint}</span>
    <button class="ts-fit" type="button" title="Fit the whole graph in view">Fit</button>
  </div>
  <div class="ts-canvas"></div>
  <div class="ts-legend"></div>
  <div class="ts-error" hidden></div>
</div>
"""


def frame_css(cls: str) -> str:
    """The CSS both graphs share for :func:`frame_html`'s parts, under ``.cls``; each component adds
    its canvas, legend, swatch and tooltip rules."""
    return f"""
.{cls} {{ position: relative; font-family: "Source Sans Pro", system-ui, -apple-system, "Segoe UI", sans-serif;
  border: 1px solid #e2e8f0; border-radius: 10px; background: #ffffff; overflow: hidden; }}
.{cls} .ts-bar {{ display: flex; align-items: center; gap: 12px; padding: 6px 10px;
  border-bottom: 1px solid #e2e8f0; background: #f8fafc; font-size: 13px; color: #475569; }}
.{cls} .ts-count {{ font-weight: 600; color: #0f172a; }}
.{cls} .ts-hint {{ flex: 1; color: #64748b; }}
.{cls} .ts-fit {{ border: 1px solid #cbd5e1; background: #fff; border-radius: 6px; padding: 2px 10px;
  font-size: 13px; cursor: pointer; color: #0f172a; }}
.{cls} .ts-legend {{ position: absolute; left: 10px; bottom: 10px; display: flex; flex-wrap: wrap; gap: 6px 14px;
  background: rgba(255,255,255,0.92); border: 1px solid #e2e8f0; border-radius: 8px; padding: 6px 10px;
  font-size: 12.5px; color: #334155; }}
.{cls} .ts-legend-item {{ display: inline-flex; align-items: center; gap: 6px; }}
.{cls} .ts-error {{ padding: 16px; color: #b91c1c; font-size: 14px; }}
.{cls} .ts-tip-key {{ color: #64748b; margin-right: 6px; }}
"""


def on_trigger(key: str, event: str, fn: Callable[[str], None] | None) -> Callable[[], None]:
    """A widget callback for the component at ``key``: ``fn(node_id)`` when its ``event`` trigger
    (``select``, ``toggle``) carries a node id."""

    def run() -> None:
        value = (st.session_state.get(key) or {}).get(event)
        if fn is not None and isinstance(value, str):
            fn(value)

    return run
