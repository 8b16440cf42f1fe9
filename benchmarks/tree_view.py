"""How fast the Tree page's graph is built for a big tree (numbers printed from one run; not a timed test).

The graph of a 2,380-node tree (fanout 13, depth 3) is built within a budget of 300 drawn nodes, with
and without a focused deep node; then the overview's arrays of every node (the icicle), and the graph
of a subtree focused from it. Each is timed against a floor measured in the same run: every node as
JSON (what any view of the whole tree costs at least). The target is a ratio, since
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
from studio.tree_overview import overview_of  # noqa: E402
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
    counts = {node_id: 3 for node_id in tree.nodes if not tree.children(node_id)}
    overview = best_of(lambda: overview_of(tree, counts), args.repeat)
    middle = sorted(n.id for n in tree.nodes.values() if n.depth == 1)[len(tree.children(tree.root_id)) // 2]
    subtree = best_of(lambda: G.build_graph(tree, G.focus_subtree(tree, middle)), args.repeat)
    result = {
        "nodes": len(tree.nodes),
        "budget": args.budget,
        "floor_s": floor,
        "build_s": plain,
        "focused_build_s": focused,
        "build_ratio": plain / floor,
        "focused_ratio": focused / floor,
        "overview_s": overview,
        "overview_ratio": overview / floor,
        "subtree_build_s": subtree,
        "subtree_ratio": subtree / floor,
        "target_ratio": TARGET_RATIO,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['nodes']} nodes, budget {args.budget}; floor (every node as JSON) {floor * 1e3:.2f} ms")
        for label, seconds in (
            ("build", plain),
            ("build with a focused deep node", focused),
            ("overview arrays of every node", overview),
            ("build of a subtree focused from the overview", subtree),
        ):
            ratio = seconds / floor
            verdict = "ok" if ratio <= TARGET_RATIO else "SLOW"
            print(
                f"  {label}: {seconds * 1e3:.1f} ms = {ratio:.1f}x the floor (target <= {TARGET_RATIO:.0f}x) {verdict}"
            )
    ratios = (result["build_ratio"], result["focused_ratio"], result["overview_ratio"], result["subtree_ratio"])
    return 0 if max(ratios) <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
