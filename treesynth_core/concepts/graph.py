"""The global concept graph (SynthLLM, level 3): topics and key concepts of every document.

Nodes are ``"topic:<key>"`` and ``"concept:<key>"`` (key: the label, case and whitespace ignored)
with attributes ``kind`` (topic|concept) and ``label`` (as first written). Every pair of nodes that
occur in the same document is an edge; ``count`` is the number of documents they share and
``weight = log(count + EPS)``, the paper's w(u, v). A transition's probability is the softmax of
the weights over the neighbours, i.e. proportional to ``count + EPS`` (:func:`transition_weight`).
The three subgraphs (topic-topic, topic-concept, concept-concept) are views on the edges by the
kinds of their ends (:func:`subgraph`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Literal

import networkx as nx

from .model import DocConcepts, clean, label_key

#: The paper's epsilon in log(freq + eps); small, so transitions follow the counts.
EPS = 1e-6
Kind = Literal["topic", "concept"]
Part = Literal["topic-topic", "topic-concept", "concept-concept"]
PARTS: tuple[Part, ...] = ("topic-topic", "topic-concept", "concept-concept")


def node_id(kind: Kind, label: str) -> str:
    return f"{kind}:{label_key(label)}"


def doc_nodes(doc: DocConcepts) -> dict[str, tuple[Kind, str]]:
    """The nodes one document brings: id -> (kind, label)."""
    nodes: dict[str, tuple[Kind, str]] = {}
    for topic in doc.topics:
        nodes.setdefault(node_id("topic", topic.topic), ("topic", clean(topic.topic)))
        for concept in topic.concepts:
            nodes.setdefault(node_id("concept", concept), ("concept", clean(concept)))
    return nodes


def build_graph(docs: Sequence[DocConcepts]) -> nx.Graph:
    """The co-occurrence graph of ``docs`` (see the module's docstring)."""
    graph = nx.Graph()
    counts: Counter[tuple[str, str]] = Counter()
    for doc in docs:
        nodes = doc_nodes(doc)
        for node, (kind, label) in nodes.items():
            if node not in graph:
                graph.add_node(node, kind=kind, label=label)
        counts.update(combinations(sorted(nodes), 2))
    for (u, v), count in counts.items():
        graph.add_edge(u, v, count=count, weight=math.log(count + EPS))
    return graph


def transition_weight(count: int) -> float:
    """exp(weight): the unnormalized probability of following an edge seen in ``count`` documents."""
    return count + EPS


def part_of(graph: nx.Graph, u: str, v: str) -> Part:
    kinds = sorted((graph.nodes[u]["kind"], graph.nodes[v]["kind"]), reverse=True)
    return f"{kinds[0]}-{kinds[1]}"  # type: ignore[return-value]


def subgraph(graph: nx.Graph, part: Part) -> nx.Graph:
    """The edges of one part (topic-topic, topic-concept or concept-concept), as a view."""
    return graph.edge_subgraph([(u, v) for u, v in graph.edges if part_of(graph, u, v) == part])


@dataclass(frozen=True)
class GraphStats:
    topics: int
    concepts: int
    nodes: int
    edges: int
    edges_by_part: dict[str, int]
    #: degree -> how many nodes have it
    degree_histogram: dict[int, int]
    mean_degree: float
    max_degree: int

    def to_json(self) -> dict:
        return {
            "topics": self.topics,
            "concepts": self.concepts,
            "nodes": self.nodes,
            "edges": self.edges,
            "edges_by_part": self.edges_by_part,
            "degree_histogram": {str(k): v for k, v in self.degree_histogram.items()},
            "mean_degree": self.mean_degree,
            "max_degree": self.max_degree,
        }


def graph_stats(graph: nx.Graph) -> GraphStats:
    kinds = Counter(kind for _, kind in graph.nodes(data="kind"))
    parts = Counter(part_of(graph, u, v) for u, v in graph.edges)
    degrees = [d for _, d in graph.degree()]
    return GraphStats(
        topics=kinds["topic"],
        concepts=kinds["concept"],
        nodes=graph.number_of_nodes(),
        edges=graph.number_of_edges(),
        edges_by_part={part: parts[part] for part in PARTS},
        degree_histogram=dict(sorted(Counter(degrees).items())),
        mean_degree=round(sum(degrees) / len(degrees), 3) if degrees else 0.0,
        max_degree=max(degrees, default=0),
    )


def write_graphml(graph: nx.Graph, path: Path) -> None:
    """GraphML with node attributes ``kind`` and ``label`` and edge attributes ``weight`` and ``count``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nx.write_graphml(graph, path)
