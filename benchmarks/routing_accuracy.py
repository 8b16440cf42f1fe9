"""Routing accuracy on a labelled set: samples whose true leaf is known.

Routes the hand-written samples of ``benchmarks/data/python_coding_routes.jsonl`` (4 per leaf of
``assets/trees/python_coding.json``, 55 leaves, written the way Code Alpaca-style instructions look)
with the embedding router (the real all-MiniLM-L6-v2 embedder): level by level with each value
described as ``criterion: value`` (the router before) or by its whole path, and straight to the
nearest whole leaf path (the router now). It prints per variant the accuracy at the leaf and at the
first level and the "none fits" count, the majority-class baseline (always the most common leaf /
first value) and the agreement between the variants.

The LLM router is not run: a scripted fake would either be an oracle (it reads the labels) or
measure only the fake; run ``treesynth route --router llm`` on a real model for that.

    .venv/bin/python benchmarks/routing_accuracy.py [--data FILE] [--tree FILE] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from treesynth_core.coverage.features.embeddings import SentenceTransformerEmbedder  # noqa: E402
from treesynth_core.data import route_eval as E  # noqa: E402
from treesynth_core.data import routing as R  # noqa: E402
from treesynth_core.tree.file import read_tree_file  # noqa: E402

#: The embedding router's variants, by name: how it walks the tree and describes a value.
VARIANTS: dict[str, dict[str, Any]] = {
    "embedding, levels, criterion: value": {"walk": "levels", "describe": R.description},
    "embedding, levels, whole path": {"walk": "levels", "describe": R.path_description},
    "embedding, nearest leaf path (default)": {"walk": "leaves"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT / "benchmarks" / "data" / "python_coding_routes.jsonl"))
    parser.add_argument("--tree", default=str(ROOT / "assets" / "trees" / "python_coding.json"))
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()

    tree = read_tree_file(args.tree)
    labelled = E.read_labelled(args.data)
    truth = [E.leaf_for(tree, s.leaf_path) for s in labelled]
    embedder = SentenceTransformerEmbedder()
    started = time.perf_counter()
    X = np.asarray(embedder.embed([s.text for s in labelled]), dtype=np.float32)
    ids = list(range(len(labelled)))

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(embedder.embed(texts), dtype=np.float32)

    scores: dict[str, E.RouterScore] = {}
    answers: dict[str, list[str | None]] = {}
    for name, variant in VARIANTS.items():
        routes = R.EmbeddingRouter(embed, tree, **variant).route_all(ids, X)
        scores[name] = E.score_routes(tree, routes, labelled)
        answers[name] = [r.leaf_id for r in routes]
    names = list(scores)
    result = {
        "samples": len(labelled),
        "leaves": len(tree.leaves()),
        "majority_leaf": E.majority_baseline(truth),
        "majority_first_level": E.majority_baseline([s.leaf_path[0] for s in labelled]),
        "routers": {name: asdict(score) for name, score in scores.items()},
        "agreement": {
            f"{a} vs {b}": E.agreement_rate(answers[a], answers[b]) for i, a in enumerate(names) for b in names[i + 1 :]
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['samples']} labelled samples over {result['leaves']} leaves ({args.data})")
    print(f"{'router':<40} {'leaf acc':>9} {'1st level':>10} {'none fits':>10}")
    print(f"{'majority-class baseline':<40} {result['majority_leaf']:>9.1%} {result['majority_first_level']:>10.1%}")
    for name, score in scores.items():
        print(f"{name:<40} {score.leaf_accuracy:>9.1%} {score.first_level_accuracy:>10.1%} {score.none_fits:>10}")
    for pair, rate in result["agreement"].items():
        print(f"agreement, {pair}: {rate:.1%}")
    print("LLM router: not run (a scripted fake would be an oracle or measure only itself).")
    print(f"{result['seconds']} s")


if __name__ == "__main__":
    main()
