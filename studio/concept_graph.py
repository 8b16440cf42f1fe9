"""The concept graph (SynthLLM) as a vis-network graph: which nodes to draw, where, and how.

Pure functions over the networkx graph of :func:`treesynth_core.concepts.graph.build_graph`; no
Streamlit, no HTML. :mod:`studio.concept_graph_component` draws what :func:`concept_view` returns.

**Topics and concepts** are told apart by shape and colour (topics: amber boxes, concepts: blue
dots sized by degree); an edge's width grows with the number of documents the two share (its
``count``; the paper's weight is log(count + eps)).

**Big graphs.** A few hundred documents give thousands of nodes and a dense web of edges, so the
view draws the ``top_n`` nodes by degree (plus the search matches and the selected node, wherever
they rank), and of the edges among them the :data:`MAX_EDGES` heaviest.

**Safe text.** Labels come from an LLM or a file. They are drawn on a canvas by vis-network (text
only); tooltips are structured (``tip``: a heading and key/value rows) and built in the browser
with ``textContent``. Nothing here is HTML.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

from treesynth_core.concepts.graph import node_id
from treesynth_core.concepts.model import DocConcepts, label_key
from treesynth_core.store.samples import Sample

#: (background, border) by kind, and the border of a search match.
TOPIC_COLORS = ("#fef3c7", "#d97706")
CONCEPT_COLORS = ("#dbeafe", "#2563eb")
MATCH_BORDER = "#e11d48"
EDGE_COLOR = "rgba(100, 116, 139, 0.35)"
#: Nodes drawn by default, and the most edges drawn among them (the heaviest).
DEFAULT_TOP_N = 60
MAX_EDGES = 1500
LABEL_MAX = 40
#: Pixels of layout per sqrt(node) and how much wider than high (the graph sits in a wide panel).
SPREAD, WIDE = 60.0, 1.7
#: The legend: (key, title, explanation).
LEGEND: tuple[tuple[str, str, str], ...] = (
    ("topic", "topic", "a topic a document covers"),
    ("concept", "concept", "a key concept of a topic; bigger: more neighbours"),
    ("match", "search match", "matches the search"),
)


@dataclass(frozen=True)
class ConceptView:
    """What the component draws: vis-network nodes and edges, and counts for its bar."""

    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    total_nodes: int
    total_edges: int
    selected: str | None

    @property
    def version(self) -> str:
        """Changes whenever the drawn nodes or edges do (the component redraws only then)."""
        blob = json.dumps([self.nodes, self.edges], sort_keys=True).encode("utf-8")
        return hashlib.sha1(blob).hexdigest()[:16]

    def payload(self) -> dict[str, Any]:
        """The JSON the component receives."""
        return {
            "nodes": self.nodes,
            "edges": self.edges,
            "version": self.version,
            "selected": self.selected,
            "shown": len(self.nodes),
            "total": self.total_nodes,
            "shown_edges": len(self.edges),
            "total_edges": self.total_edges,
            "legend": legend(),
        }


def legend() -> list[dict[str, Any]]:
    colours = {"topic": TOPIC_COLORS, "concept": CONCEPT_COLORS, "match": (CONCEPT_COLORS[0], MATCH_BORDER)}
    return [
        {
            "key": key,
            "title": title,
            "text": text,
            "background": colours[key][0],
            "border": colours[key][1],
            "dot": key != "topic",  # concepts are drawn as dots
        }
        for key, title, text in LEGEND
    ]


def by_degree(graph: nx.Graph) -> list[str]:
    """Every node, highest degree first (ties: topics first, then by id, so the order is stable)."""
    kind = dict(graph.nodes(data="kind"))
    return sorted(graph.nodes, key=lambda n: (-graph.degree(n), kind[n] != "topic", n))


def search(graph: nx.Graph, text: str) -> list[str]:
    """The nodes whose label contains ``text`` (case and extra spaces ignored), highest degree first;
    a label equal to it comes first."""
    needle = label_key(text) if text.strip() else ""
    if not needle:
        return []
    hits = [n for n in by_degree(graph) if needle in label_key(graph.nodes[n]["label"])]
    return sorted(hits, key=lambda n: label_key(graph.nodes[n]["label"]) != needle)


def shown_nodes(graph: nx.Graph, top_n: int, also: Iterable[str] = ()) -> list[str]:
    """The ``top_n`` nodes by degree, and ``also`` (search matches, the selection) wherever they rank."""
    top = by_degree(graph)[: max(0, top_n)]
    extra = [n for n in dict.fromkeys(also) if n in graph and n not in top]
    return top + extra


def edge_width(count: int) -> float:
    """1 px for an edge one document makes, growing with log2 of the count, at most 8 px."""
    return round(min(8.0, 1.0 + 1.5 * math.log2(max(1, count))), 2)


def layout(graph: nx.Graph, nodes: Sequence[str], seed: int = 0) -> dict[str, tuple[float, float]]:
    """Seeded force-directed positions of ``nodes`` (pixels) over the edges of ``graph`` among them:
    the same nodes and edges, the same picture."""
    sub = graph.subgraph(nodes)
    if not nodes:
        return {}
    if len(nodes) == 1:
        return {nodes[0]: (0.0, 0.0)}
    rounds = 80 if len(nodes) <= 150 else 40  # the dense solver is quadratic: fewer rounds on big views
    pos = nx.spring_layout(sub, seed=seed, weight=None, iterations=rounds, k=1.6 / math.sqrt(len(nodes)))
    scale = SPREAD * math.sqrt(len(nodes))  # labels stay readable when the view fits the graph
    return {n: (round(float(x) * scale * WIDE, 1), round(float(y) * scale, 1)) for n, (x, y) in pos.items()}


def _cut(text: str, limit: int = LABEL_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def concept_view(
    graph: nx.Graph, *, top_n: int = DEFAULT_TOP_N, matches: Sequence[str] = (), selected: str | None = None
) -> ConceptView:
    """The nodes and edges to draw: the top ``top_n`` by degree, the matches (outlined) and the selection."""
    selected = selected if selected in graph else None
    nodes = shown_nodes(graph, top_n, [*matches, *([selected] if selected else [])])
    keep = set(nodes)
    among = [(u, v, d["count"]) for u in nodes for v, d in graph.adj[u].items() if v in keep and u < v]
    heaviest = sorted(among, key=lambda e: (-e[2], e[0], e[1]))[:MAX_EDGES]
    drawn_graph = nx.Graph()
    drawn_graph.add_nodes_from(nodes)
    drawn_graph.add_edges_from((u, v) for u, v, _ in heaviest)
    pos = layout(drawn_graph, nodes)  # over the drawn edges only: fast on dense graphs
    degree_max = max((graph.degree(n) for n in nodes), default=1) or 1
    matched = set(matches)
    drawn = []
    for n in nodes:
        data = graph.nodes[n]
        topic = data["kind"] == "topic"
        background, border = TOPIC_COLORS if topic else CONCEPT_COLORS
        if n in matched:
            border = MATCH_BORDER
        degree = graph.degree(n)
        x, y = pos[n]
        drawn.append(
            {
                "id": n,
                "label": _cut(data["label"]),
                "kind": data["kind"],
                "shape": "box" if topic else "dot",
                "size": round(8 + 18 * math.sqrt(degree / degree_max), 1),
                "color": {
                    "background": background,
                    "border": border,
                    "highlight": {"background": background, "border": MATCH_BORDER},
                },
                "borderWidth": 3 if n in matched else 1.5,
                "font": {"size": 15 if topic else 13, "color": "#0f172a"},
                "x": x,
                "y": y,
                "tip": {"title": data["label"], "rows": [["kind", data["kind"]], ["neighbours", str(degree)]]},
            }
        )
    edges = [
        {
            "id": f"{u}|{v}",
            "from": u,
            "to": v,
            "width": edge_width(count),
            "count": count,
            "title": f"shared by {count} document{'s' if count != 1 else ''}",
        }
        for u, v, count in heaviest
    ]
    return ConceptView(drawn, edges, graph.number_of_nodes(), graph.number_of_edges(), selected)


# -- what a selected node is about ---------------------------------------------------------------


def documents_of(docs: Sequence[DocConcepts], node: str) -> list[str]:
    """The ids of the documents that name this topic or concept, in the documents' order."""
    kind, _, key = node.partition(":")
    return [d.doc_id for d in docs if key in (d.topic_keys() if kind == "topic" else d.concept_keys())]


def questions_using(samples: Iterable[Sample], node: str) -> list[Sample]:
    """The questions whose recorded concepts (levels 2-3) or topics (level 3) include ``node``."""
    kind, _, key = node.partition(":")
    field = "topics" if kind == "topic" else "concepts"
    out = []
    for sample in samples:
        names = (sample.extra or {}).get(field) or []
        if any(isinstance(name, str) and label_key(name) == key for name in names):
            out.append(sample)
    return out


def node_for(kind: str, label: str) -> str:
    """The node id of a topic or concept label (as :func:`build_graph` names it)."""
    return node_id("topic" if kind == "topic" else "concept", label)
