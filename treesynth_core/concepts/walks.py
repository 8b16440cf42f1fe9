"""Random walks on the concept graph and the documents that ground them (SynthLLM, level 3).

A walk starts at a topic; every topic is a start once per epoch (in a seeded, shuffled order). It
takes 1-2 steps on the topic-topic graph, one step from its last topic to a concept on the
topic-concept graph, then 3-4 steps on the concept-concept graph. Each step goes to a neighbour of
the needed kind with probability proportional to their co-occurrence count (the softmax of
``log(count + eps)``); a node with no such neighbour ends that stage early. The concepts visited
(each once) are the walk's K^g; its grounding is the top-2 documents by Jaccard similarity between
K^g and each document's concept set.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, islice

import networkx as nx

from .graph import transition_weight
from .model import DocConcepts

#: The paper's step counts: 1-2 on topics, 3-4 on concepts.
TOPIC_STEPS, CONCEPT_STEPS = (1, 2), (3, 4)


@dataclass(frozen=True)
class Walk:
    """A walk's nodes: the topics it went through, then its concepts (first visits, in order)."""

    start: str
    topics: tuple[str, ...]
    concepts: tuple[str, ...]


class Walker:
    """Samples walks on ``graph``; neighbour lists and their weights by kind are built once."""

    def __init__(self, graph: nx.Graph) -> None:
        self.graph = graph
        kind_of = dict(graph.nodes(data="kind"))
        self.next: dict[tuple[str, str], tuple[list[str], list[float]]] = {}
        for node, nbrs in graph.adj.items():
            by_kind: dict[str, list[str]] = {"topic": [], "concept": []}
            for n in nbrs:
                by_kind[kind_of[n]].append(n)
            for kind, names in by_kind.items():
                names.sort()
                self.next[node, kind] = (names, list(accumulate(transition_weight(nbrs[n]["count"]) for n in names)))
        self.topics = sorted(n for n, kind in graph.nodes(data="kind") if kind == "topic")

    def step(self, node: str, kind: str, rng: random.Random) -> str | None:
        """A neighbour of ``node`` of ``kind``, drawn in proportion to the co-occurrence counts."""
        nbrs, cum = self.next[node, kind]
        return rng.choices(nbrs, cum_weights=cum)[0] if nbrs else None

    def walk(self, start: str, rng: random.Random) -> Walk:
        topics = [start]
        for _ in range(rng.choice(TOPIC_STEPS)):
            nxt = self.step(topics[-1], "topic", rng)
            if nxt is None:
                break
            topics.append(nxt)
        concepts: list[str] = []
        node = self.step(topics[-1], "concept", rng)
        if node is not None:
            concepts.append(node)
            for _ in range(rng.choice(CONCEPT_STEPS)):
                nxt = self.step(node, "concept", rng)
                if nxt is None:
                    break
                node = nxt
                if node not in concepts:
                    concepts.append(node)
        return Walk(start, tuple(topics), tuple(concepts))

    def walks(self, *, seed: int = 0, epochs: int | None = None) -> Iterator[Walk]:
        """Walks epoch after epoch (every topic starts one walk per epoch, in a shuffled order);
        ``epochs=None`` goes on for as long as the caller takes walks."""
        rng = random.Random(seed)
        epoch = 0
        while self.topics and (epochs is None or epoch < epochs):
            order = list(self.topics)
            rng.shuffle(order)
            for start in order:
                yield self.walk(start, rng)
            epoch += 1


def usable_walks(walker: Walker, *, seed: int = 0, min_concepts: int = 2) -> Iterator[Walk]:
    """The walks with at least ``min_concepts`` concepts, epoch after epoch; ends after an epoch with
    none (a graph whose walks never reach that many concepts never will)."""
    walks = walker.walks(seed=seed)
    while True:
        usable = [w for w in islice(walks, len(walker.topics)) if len(w.concepts) >= min_concepts]
        if not usable:
            return
        yield from usable


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def ground(concepts: Sequence[str], docs: Sequence[DocConcepts], k: int = 2) -> list[tuple[str, float]]:
    """The ``k`` documents whose concept sets are most similar (Jaccard) to the walk's concepts
    (node ids or keys), as (doc_id, similarity); ties keep the documents' order; none with no overlap."""
    keys = frozenset(c.split(":", 1)[1] if c.startswith("concept:") else c for c in concepts)
    scored = [(doc.doc_id, jaccard(keys, doc.concept_keys())) for doc in docs]
    ranked = sorted(enumerate(scored), key=lambda item: (-item[1][1], item[0]))
    return [pair for _, pair in ranked[:k] if pair[1] > 0]
