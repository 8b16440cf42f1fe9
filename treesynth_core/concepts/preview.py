"""A preview of level-3 walks: the topics and concepts each walk visits and the documents that would
ground its questions, by label (what ``treesynth concepts walks`` and the app's Concepts page show)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice

import networkx as nx

from .graph import build_graph
from .model import DocConcepts
from .walks import Walker, ground


@dataclass(frozen=True)
class WalkPreview:
    topics: tuple[str, ...]
    concepts: tuple[str, ...]
    #: (doc_id, Jaccard similarity) of the top-2 grounding documents, best first.
    documents: tuple[tuple[str, float], ...]


def preview_walks(
    docs: Sequence[DocConcepts], count: int, *, seed: int = 0, graph: nx.Graph | None = None
) -> list[WalkPreview]:
    """The first ``count`` walks with ``seed`` on the graph of ``docs`` (the same seed, the same walks);
    ``graph``: that graph when the caller has it built already."""
    graph = build_graph(docs) if graph is None else graph
    label = {n: graph.nodes[n]["label"] for n in graph.nodes}
    return [
        WalkPreview(
            tuple(label[t] for t in walk.topics),
            tuple(label[c] for c in walk.concepts),
            tuple(ground(walk.concepts, docs)),
        )
        for walk in islice(Walker(graph).walks(seed=seed), max(0, count))
    ]
