"""How fast the Tree page's graph is built for a big tree (numbers printed from one run; not a timed test).

The graph of a 2,380-node tree (fanout 13, depth 3) is built within a budget of 300 drawn nodes, with
and without a focused deep node, and timed against a floor measured in the same run: one walk over
every node's children (what any view of the whole tree costs at least). The target is a ratio, since
this machine is shared and noisy.

    .venv/bin/python benchmarks/tree_view.py [--fanout 13] [--depth 3] [--budget 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from studio import graph as G  # noqa: E402
from tests.trees import wide_tree  # noqa: E402
from treesynth_core.tree.changes import node_to_dict  # noqa: E402

#: The budgeted build may cost at most this many floors.
TARGET_RATIO = 5.0


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fanout", type=int, default=13)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    tree = wide_tree(args.fanout, args.depth)
    deep = max(tree.nodes.values(), key=lambda node: (node.depth, node.id)).id
    floor = best_of(lambda: json.dumps([node_to_dict(node) for node in tree.nodes.values()]), args.repeat)
    plain = best_of(lambda: G.build_graph(tree, G.View(budget=args.budget)), args.repeat)
    focused = best_of(lambda: G.build_graph(tree, G.View(budget=args.budget, focus=deep)), args.repeat)
    result = {
        "nodes": len(tree.nodes),
        "budget": args.budget,
        "floor_s": floor,
        "build_s": plain,
        "focused_build_s": focused,
        "build_ratio": plain / floor,
        "focused_ratio": focused / floor,
        "target_ratio": TARGET_RATIO,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['nodes']} nodes, budget {args.budget}; floor (every node as JSON) {floor * 1e3:.2f} ms")
        for label, seconds in (("build", plain), ("build with a focused deep node", focused)):
            ratio = seconds / floor
            verdict = "ok" if ratio <= TARGET_RATIO else "SLOW"
            print(
                f"  {label}: {seconds * 1e3:.1f} ms = {ratio:.1f}x the floor (target <= {TARGET_RATIO:.0f}x) {verdict}"
            )
    return 0 if max(result["build_ratio"], result["focused_ratio"]) <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
