"""Concept graph (SynthLLM level 3): build time, walks/s and grounding/s on the corpus that ships with
Python, each against a floor measured in the same run.

The documents are ``example:python-docs`` (``pydoc_data.topics``), chunked as extraction chunks them
for capable models. Their concepts come from ``--jsonl`` (a ``treesynth concepts DIR export``, i.e. a
real extraction) or, by default, from a stand-in with the paper's shape and no LLM: per document,
``--topics`` topics of ``--concepts`` concepts each, the document's most frequent words of 5+ letters
(so documents share concepts as real ones do). Timings:

- build: :func:`treesynth_core.concepts.graph.build_graph`; floor: counting the same co-occurring
  pairs with ``collections.Counter`` (what any build must do), ratio = build / floor.
- walks: ``--walks`` walks of :class:`~treesynth_core.concepts.walks.Walker` (neighbour tables
  included); floor: as many bare ``random.choices(..., cum_weights=...)`` draws as the walks took
  steps, ratio = walks / floor.
- grounding: the top-2 documents by Jaccard for each walk (:func:`~treesynth_core.concepts.walks.ground`).

    .venv/bin/python benchmarks/concepts_graph.py [--jsonl concepts.jsonl] [--walks 20000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from itertools import accumulate, combinations, islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from treesynth_core.concepts.documents import CHUNK_CHARS, PYTHON_DOCS, read_documents  # noqa: E402
from treesynth_core.concepts.graph import build_graph, doc_nodes, graph_stats  # noqa: E402
from treesynth_core.concepts.model import DocConcepts, Topic, read_jsonl  # noqa: E402
from treesynth_core.concepts.walks import Walker, ground  # noqa: E402

STOP = {"which", "there", "their", "these", "those", "other", "where", "about", "would", "should", "value"}


def stand_in_concepts(topics: int, concepts: int) -> list[DocConcepts]:
    """Per chunk of the shipped corpus: its most frequent words as ``topics`` x ``concepts`` labels."""
    out = []
    for doc in read_documents(PYTHON_DOCS, chunk_chars=CHUNK_CHARS).documents:
        words = [w for w in re.findall(r"[a-z_]{5,}", doc.text.lower()) if w not in STOP]
        common = [w for w, _ in Counter(words).most_common(topics * (concepts + 1))]
        groups = [common[i::topics] for i in range(topics)]
        parts = tuple(Topic(g[0], tuple(g[1 : concepts + 1])) for g in groups if len(g) > 1)
        if parts:
            out.append(DocConcepts(doc.doc_id, "professional", "Python", parts))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jsonl", type=Path, help="Concepts JSONL of a real extraction (concepts DIR export).")
    parser.add_argument("--topics", type=int, default=3, help="Stand-in topics per document.")
    parser.add_argument("--concepts", type=int, default=10, help="Stand-in concepts per topic.")
    parser.add_argument("--walks", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="Best of this many builds (and floors).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    docs = read_jsonl(args.jsonl) if args.jsonl else stand_in_concepts(args.topics, args.concepts)

    floor_s = build_s = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        counts: Counter[tuple[str, str]] = Counter()
        for doc in docs:
            counts.update(combinations(sorted(doc_nodes(doc)), 2))
        floor_s = min(floor_s, time.perf_counter() - start)
        start = time.perf_counter()
        graph = build_graph(docs)
        build_s = min(build_s, time.perf_counter() - start)
    assert graph.number_of_edges() == len(counts)
    stats = graph_stats(graph)

    start = time.perf_counter()
    walker = Walker(graph)
    walks = list(islice(walker.walks(seed=0), args.walks))
    walks_s = time.perf_counter() - start
    # every walk draws its topic steps, one topic->concept step and its concept steps (first visits
    # are what a walk keeps; the draws are at least as many): the floor draws that many times
    steps = sum(len(w.topics) - 1 + len(w.concepts) for w in walks)
    rng = random.Random(0)
    names = [f"n{i}" for i in range(int(stats.mean_degree) or 1)]
    cum = list(accumulate(float(i + 1) for i in range(len(names))))
    start = time.perf_counter()
    for _ in range(steps):
        rng.choices(names, cum_weights=cum)
    draws_s = time.perf_counter() - start

    start = time.perf_counter()
    grounded = sum(1 for w in walks[: min(len(walks), 2_000)] if ground(w.concepts, docs))
    ground_n = min(len(walks), 2_000)
    ground_s = time.perf_counter() - start

    out = {
        "source": str(args.jsonl) if args.jsonl else f"stand-in {args.topics}x{args.concepts} on {PYTHON_DOCS}",
        "documents": len(docs),
        **{k: stats.to_json()[k] for k in ("topics", "concepts", "nodes", "edges", "edges_by_part", "mean_degree")},
        "build_s": round(build_s, 4),
        "count_floor_s": round(floor_s, 4),
        "build_ratio": round(build_s / floor_s, 2),
        "walks": len(walks),
        "walks_per_s": round(len(walks) / walks_s),
        "draws_floor_s": round(draws_s, 4),
        "walk_ratio": round(walks_s / draws_s, 2),
        "groundings_per_s": round(ground_n / ground_s),
        "grounded": grounded,
    }
    if args.json:
        print(json.dumps(out))
        return
    print(
        f"Concept graph of {len(docs)} documents ({out['source']}): {stats.topics:,} topics, "
        f"{stats.concepts:,} concepts, {stats.edges:,} edges {stats.edges_by_part}, mean degree {stats.mean_degree}\n"
        f"  build (networkx):           {build_s:.3f} s = {out['build_ratio']:.2f}x counting the pairs "
        f"({floor_s:.3f} s)\n"
        f"  walks:                      {len(walks):,} in {walks_s:.3f} s = {out['walks_per_s']:,} walks/s, "
        f"{out['walk_ratio']:.2f}x their {steps:,} bare weighted draws ({draws_s:.3f} s)\n"
        f"  grounding (top-2 Jaccard):  {out['groundings_per_s']:,} walks/s over {len(docs)} documents "
        f"({grounded} of {ground_n} grounded)"
    )


if __name__ == "__main__":
    main()
