"""The report as one self-contained HTML page, and writing it.

Safety: every text from the project (the task, values, samples, LLM replies) is escaped where it
reaches markup; the tree's data travels as JSON in a ``<script type="application/json">`` island with
``<``, ``>`` and ``&`` written as ``\\u003c``, ``\\u003e`` and ``\\u0026`` (so no text can close the
island), and the page's script builds the graph with ``textContent`` only. A Content-Security-Policy
allows nothing but the page's own two scripts (by hash) and inline styles: no request leaves the page.
The vendored vis-network build (``assets/vendor``) is inlined, so the file opens offline.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import tempfile
from html import escape
from pathlib import Path
from typing import Any

from ..errors import TreeSynthError
from . import markdown, svg
from .model import Report, ScoreRow

VIS_FILE = Path(__file__).resolve().parents[2] / "assets" / "vendor" / "vis-network.min.js"
#: Node colours by status: (background, border, text); as the app's graph (studio/graph.py).
STATUS_COLORS: dict[str, tuple[str, str, str]] = {
    "approved": ("#dcfce7", "#16a34a", "#14532d"),
    "proposed": ("#fef3c7", "#d97706", "#78350f"),
    "pruned": ("#f1f5f9", "#94a3b8", "#64748b"),
    "root": ("#1e293b", "#0f172a", "#f8fafc"),
}
LABEL_MAX = 40

_CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #f8fafc; color: #0f172a;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 28px 24px 60px; }
header h1 { margin: 0 0 4px; font-size: 28px; }
header .task { font-size: 18px; color: #334155; margin: 0; }
header .meta { color: #64748b; font-size: 13px; margin-top: 6px; }
section { background: #fff; border: 1px solid #e2e8f0; border-radius: 12px; padding: 18px 22px; margin-top: 20px; }
section h2 { margin: 0 0 10px; font-size: 20px; }
.note { color: #64748b; font-size: 13px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; margin-top: 18px; }
.tile { background: #fff; border: 1px solid #e2e8f0; border-radius: 12px; padding: 12px 16px; }
.tile .k { color: #64748b; font-size: 13px; }
.tile .v { font-size: 26px; font-weight: 650; }
.tile .v.good { color: #15803d; } .tile .v.bad { color: #b91c1c; }
table { border-collapse: collapse; width: 100%; font-size: 14px; margin: 8px 0; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e2e8f0; vertical-align: top; }
th { background: #f8fafc; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.good { color: #15803d; } .bad { color: #b91c1c; }
.charts { display: flex; flex-wrap: wrap; gap: 20px; align-items: flex-start; }
.chart { max-width: 100%; height: auto; }
#graph { border: 1px solid #e2e8f0; border-radius: 10px;
  background: radial-gradient(circle, #e2e8f0 1px, transparent 1px) 0 0 / 22px 22px; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 16px; font-size: 13px; color: #334155; margin-top: 8px; }
#fit { margin-left: auto; border: 1px solid #cbd5e1; background: #fff; border-radius: 6px; padding: 2px 10px;
  font: inherit; cursor: pointer; }
.sw { display: inline-block; width: 14px; height: 11px; border-radius: 3px; border: 2px solid; margin-right: 6px;
  vertical-align: -1px; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 6px; }
details { border-top: 1px solid #e2e8f0; padding: 6px 0; }
summary { cursor: pointer; font-weight: 600; }
summary .count { color: #64748b; font-weight: 400; margin-left: 6px; }
.sample { margin: 8px 0 8px 14px; padding: 8px 12px; background: #f8fafc; border-radius: 8px;
  white-space: pre-wrap; word-break: break-word; }
.sample .resp { color: #334155; margin-top: 6px; border-top: 1px dashed #cbd5e1; padding-top: 6px; }
.outline ul { list-style: none; padding-left: 18px; margin: 0; } .outline li { margin: 2px 0; }
.outline .crit { color: #64748b; font-size: 13px; }
.card h1 { font-size: 22px; } .card h2 { font-size: 18px; }
.card code { background: #f1f5f9; padding: 1px 4px; border-radius: 4px; }
#graph div.vis-tooltip { position: absolute; max-width: 380px; white-space: normal; padding: 8px 10px;
  background: #fff; color: #0f172a; border: 1px solid #cbd5e1; border-radius: 8px;
  box-shadow: 0 6px 20px rgba(15,23,42,.16); font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
  word-break: break-word; }
"""

_JS = r"""
(function () {
  "use strict";
  const MIN_SCALE = 0.85;
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const box = document.getElementById("graph");
  function el(tag, text) {
    const n = document.createElement(tag);
    if (text != null) n.textContent = String(text);  // text only, never HTML
    return n;
  }
  function tip(node) {
    const div = el("div");
    div.appendChild(el("strong", node.full));
    if (node.criterion) div.appendChild(el("div", node.criterion + ": " + node.full));
    div.appendChild(el("div", node.samples + " samples" + (node.leaf ? " (leaf)" : "")));
    div.appendChild(el("div", node.status));
    return div;
  }
  if (!window.vis || !window.vis.Network) { box.textContent = "The graph library did not load."; return; }
  const nodes = new vis.DataSet(data.nodes.map(function (n) {
    return { id: n.id, label: n.label + "\n" + n.samples + (n.samples === 1 ? " sample" : " samples"),
      level: n.depth, title: tip(n), color: { background: n.bg, border: n.border,
      highlight: { background: n.bg, border: "#e11d48" }, hover: { background: n.bg, border: n.border } },
      font: { color: n.fg }, borderWidth: n.leaf ? 2 : 1.5,
      shapeProperties: { borderDashes: n.status === "pruned" ? [5, 4] : false } };
  }));
  const edges = new vis.DataSet(data.nodes.filter(function (n) { return n.parent; }).map(function (n) {
    return { from: n.parent, to: n.id };
  }));
  const network = new vis.Network(box, { nodes: nodes, edges: edges }, {
    layout: { hierarchical: { enabled: true, direction: "LR", sortMethod: "directed", levelSeparation: 260,
      nodeSpacing: 60, treeSpacing: 80 } },
    physics: { enabled: false },
    nodes: { shape: "box", margin: 8, widthConstraint: { maximum: 220 }, font: { size: 15, multi: false,
      face: "system-ui, -apple-system, Segoe UI, sans-serif" }, shapeProperties: { borderRadius: 6 } },
    edges: { color: { color: "#94a3b8" }, width: 1.5, arrows: { to: { enabled: true, scaleFactor: 0.4 } },
      smooth: { enabled: true, type: "cubicBezier", forceDirection: "horizontal", roundness: 0.5 } },
    interaction: { hover: true, tooltipDelay: 120, dragNodes: false, zoomView: true, dragView: true, keyboard: false },
  });
  // A big tree fitted whole is too small to read: start at a readable zoom on the root; Fit shows it all.
  function start() {
    network.fit({ animation: false });
    if (network.getScale() >= MIN_SCALE) return;
    const root = network.getPosition(data.nodes[0].id);
    network.moveTo({ position: { x: root.x + (box.clientWidth / 2 - 140) / MIN_SCALE, y: root.y },
      scale: MIN_SCALE, animation: false });
  }
  start();
  document.getElementById("fit").addEventListener("click", function () { network.fit({ animation: true }); });
  network.once("afterDrawing", function () { box.setAttribute("data-drawn", String(nodes.length)); });
  window.treesynthReport = { network: network, nodes: nodes };
})();
"""


@functools.cache
def vis_js() -> str:
    """The vendored vis-network build, without its source-map comment (nothing to fetch)."""
    try:
        source = VIS_FILE.read_text(encoding="utf-8")
    except OSError as exc:
        raise TreeSynthError(f"the vendored graph library is missing ({VIS_FILE}): reinstall TreeSynth") from exc
    lines = [line for line in source.splitlines() if not line.startswith("//# sourceMappingURL")]
    text = "\n".join(lines)
    if "</script" in text.lower():
        raise TreeSynthError("the vendored graph library cannot be inlined (it holds </script)")
    return text


def json_island(data: Any) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` left."""
    text = json.dumps(data, ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"


def csp(scripts: list[str]) -> str:
    """The page's Content-Security-Policy: nothing from anywhere, but these inline scripts and styles
    (and data: images, which vis-network's CSS uses)."""
    hashes = " ".join(_hash(s) for s in scripts)
    return (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )


def _num(value: float | None, digits: int = 2) -> str:
    return "\u2013" if value is None else f"{value:.{digits}f}"


def _gain_class(row: ScoreRow) -> str:
    gain = row.gain
    if gain is None or abs(gain) < 1e-12:
        return ""
    better = gain > 0 if row.higher_is_better else gain < 0
    return "good" if better else "bad"


def _short(text: str, limit: int = LABEL_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def graph_data(report: Report) -> dict[str, Any]:
    """What the page's script draws: one entry per node (text is data, drawn with textContent)."""
    nodes = []
    for node in report.nodes:
        bg, border, fg = STATUS_COLORS.get(node.status, STATUS_COLORS["proposed"])
        nodes.append(
            {
                "id": node.id,
                "parent": node.parent_id,
                "depth": node.depth,
                "label": _short(node.label, 36 if node.status == "root" else LABEL_MAX),
                "full": node.label,
                "criterion": node.criterion,
                "status": node.status,
                "samples": node.samples,
                "leaf": node.is_leaf,
                "bg": bg,
                "border": border,
                "fg": fg,
            }
        )
    return {"nodes": nodes}


def _tiles(report: Report) -> str:
    tiles = [
        ("Leaves", f"{report.leaf_count:,}", ""),
        ("Samples (tree)", f"{report.samples:,}", ""),
        ("Flat baseline", f"{report.baseline_samples:,}", ""),
    ]
    if report.scores is not None:
        vendi = next((r for r in report.scores.rows if r.name.startswith("Vendi")), None)
        if vendi is not None:
            tiles.append((f"Vendi at n = {report.scores.n}", _num(vendi.tree), ""))
            if vendi.gain is not None:
                tiles.append(("Vendi gain over baseline", f"{vendi.gain:+.2f}", _gain_class(vendi)))
    cells = "".join(
        f'<div class="tile"><div class="k">{escape(k)}</div><div class="v {cls}">{escape(v)}</div></div>'
        for k, v, cls in tiles
    )
    return f'<div class="tiles">{cells}</div>'


def graph_height(report: Report) -> int:
    """Pixels for the graph: room for the widest level, between 300 and 640."""
    widths: dict[int, int] = {}
    for node in report.nodes:
        widths[node.depth] = widths.get(node.depth, 0) + 1
    return max(300, min(640, 70 * max(widths.values(), default=1) + 60))


def _tree_section(report: Report) -> str:
    legend = "".join(
        f'<span><span class="sw" style="background:{bg};border-color:{border}"></span>{escape(name)}</span>'
        for name, (bg, border, _) in STATUS_COLORS.items()
        if name != "root"
    )
    return (
        '<section id="tree"><h2>The tree</h2>'
        '<p class="note">Each box is a value of its criterion, with the samples in its subtree. '
        "Scroll to zoom, drag to pan, hover for details; a big tree opens on its root (Fit shows it whole).</p>"
        f'<div id="graph" style="height:{graph_height(report)}px"></div><div class="legend">{legend}'
        '<button id="fit" type="button" title="Show the whole tree">Fit the whole tree</button></div>'
        f"<details><summary>The tree as a list</summary>{_outline(report)}</details></section>"
    )


def _outline(report: Report) -> str:
    children: dict[str | None, list[Any]] = {}
    for node in report.nodes:
        children.setdefault(node.parent_id, []).append(node)

    def walk(parent: str | None) -> str:
        items = children.get(parent, [])
        if not items:
            return ""
        out = []
        for node in items:
            crit = f'<span class="crit">{escape(node.criterion)}:</span> ' if node.criterion else ""
            out.append(
                f'<li>{crit}{escape(node.label)} <span class="note">({node.samples:,})</span>{walk(node.id)}</li>'
            )
        return "<ul>" + "".join(out) + "</ul>"

    return f'<div class="outline">{walk(None)}</div>'


def _scores_section(report: Report) -> str:
    scores = report.scores
    if scores is None:
        return f'<section id="scores"><h2>Diversity</h2><p class="note">{escape(report.scores_note)}</p></section>'
    head = "<tr><th>Figure</th><th class=num>Tree</th>"
    if scores.has_baseline:
        head += "<th class=num>Flat baseline</th><th class=num>Tree \u2212 baseline</th>"
    rows = []
    for row in scores.rows:
        cells = f"<td>{escape(row.name)}{'' if row.higher_is_better else ' (lower is better)'}</td>"
        cells += f"<td class=num>{_num(row.tree, 3)}</td>"
        if scores.has_baseline:
            gain = "\u2013" if row.gain is None else f"{row.gain:+.3f}"
            cells += f"<td class=num>{_num(row.baseline, 3)}</td><td class='num {_gain_class(row)}'>{gain}</td>"
        rows.append(f"<tr>{cells}</tr>")
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in (*scores.notes, report.scores_note) if n)
    curve = svg.curve_svg(scores.curves)
    return (
        '<section id="scores"><h2>Diversity against the flat baseline</h2>'
        f'<p class="note">Embeddings: {escape(scores.embedder)}; every set scored at equal n = {scores.n}.</p>'
        f'<div class="charts"><div style="flex:1;min-width:320px"><table>{head}</tr>{"".join(rows)}</table>{notes}'
        f"</div><figure>{curve}<figcaption class=note>Vendi at growing n (nested seeded subsamples)."
        "</figcaption></figure></div></section>"
    )


def _map_section(report: Report) -> str:
    if not report.map_dots:
        return f'<section id="map"><h2>Coverage map</h2><p class="note">{escape(report.map_note)}</p></section>'
    legend = "".join(
        f'<span><span class="dot" style="background:{color}"></span>{escape(_short(group))} ({count:,})</span>'
        for group, color, count in svg.map_legend(report.map_dots)
    )
    return (
        '<section id="map"><h2>Coverage map</h2>'
        f'<p class="note">{escape(report.map_note)} Colour: the first value of each sample\'s path; hover a dot '
        "for its sample.</p>"
        f'{svg.map_svg(report.map_dots, width=860, height=520)}<div class="legend">{legend}</div></section>'
    )


def _samples_section(report: Report) -> str:
    parts = []
    for leaf in report.leaves:
        shown = "".join(
            f'<div class="sample">{escape(s.instruction)}'
            + (f'<div class="resp">{escape(s.response)}</div>' if s.response else "")
            + "</div>"
            for s in leaf.samples
        )
        more = leaf.count - len(leaf.samples)
        extra = f'<p class="note">\u2026 and {more:,} more.</p>' if more > 0 and leaf.samples else ""
        parts.append(
            f"<details><summary>{escape(leaf.path)}<span class=count>{leaf.count:,} samples</span></summary>"
            f"{shown or '<p class=note>No samples.</p>'}{extra}</details>"
        )
    return (
        '<section id="samples"><h2>Samples per leaf</h2>'
        f'<p class="note">{len(report.leaves):,} leaves; open one to read its first samples.</p>'
        f"{''.join(parts)}</section>"
    )


def _sets_section(report: Report) -> str:
    if not report.sets:
        return ""
    head = (
        "<tr><th>Sample set</th><th class=num>Samples</th><th class=num>Routed to a leaf</th>"
        "<th class=num>Not routed</th><th class=num>Leaves</th><th class=num>Original</th>"
        "<th class=num>Synthesized</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{escape(s.name)}</td><td class=num>{s.total:,}</td><td class=num>{s.routed:,}</td>"
        f"<td class=num>{s.unrouted:,}</td><td class=num>{s.leaves:,}</td><td class=num>{s.original:,}</td>"
        f"<td class=num>{s.synthesized:,}</td></tr>"
        for s in report.sets
    )
    return (
        '<section id="sets"><h2>Routing and balance</h2><p class="note">Imported datasets routed into the tree, '
        f"and rebalanced sets (originals kept, short leaves synthesized).</p><table>{head}{rows}</table></section>"
    )


def render_html(report: Report) -> str:
    """The whole page (see the module docstring)."""
    library = vis_js()
    island = json_island(graph_data(report))
    title = f"TreeSynth report: {report.name}"
    style = f" &middot; style: {escape(report.style)}" if report.style else ""
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{escape(csp([library, _JS]))}">'
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body><main>"
        f'<header><h1>{escape(title)}</h1><p class="task">{escape(report.task)}</p>'
        f'<div class="meta">Made with TreeSynth Studio on {escape(report.created)}{style}</div></header>'
        f"{_tiles(report)}{_tree_section(report)}{_scores_section(report)}{_map_section(report)}"
        f"{_samples_section(report)}{_sets_section(report)}"
        f'<section id="card" class="card"><h2>Dataset card</h2>{markdown.to_html(report.card)}</section>'
        f'</main><script type="application/json" id="report-data">{island}</script>'
        f"<script>{library}</script><script>{_JS}</script></body></html>\n"
    )


def check_out_path(out: Path) -> Path:
    """``out`` when a report can be written there, else one clear error (checked before the work)."""
    out = Path(out)
    if out.is_dir():
        raise TreeSynthError(f"{out} is a folder: give a file name for the report, e.g. {out / 'report.html'}")
    if not out.parent.is_dir():
        raise TreeSynthError(f"could not write {out}: the folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise TreeSynthError(f"could not write {out}: the folder {out.parent} is not writable")
    return out


def write_html(text: str, out: Path) -> Path:
    """Write the page to ``out`` all or nothing (a temporary file beside it, then a rename)."""
    out = check_out_path(out)
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        tmp = Path(name)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
        tmp = None
    except OSError as exc:
        raise TreeSynthError(f"could not write {out}: {exc.strerror or exc}: choose a folder you can write to") from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return out.resolve()
