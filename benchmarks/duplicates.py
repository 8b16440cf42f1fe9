"""The within-leaf near-duplicate check on one leaf of templated text, against the floor of merely
computing each text's shingles, in one run.

Builds N instructions for one leaf of the ``python_coding`` tree as ``benchmarks/coding_replies.py``
writes them (the text the 1M batch walk replays: 10 a request, each request its own seed), then times
``DuplicateFilter.admit`` over them in order, as leaf synthesis does, at each N. The floor is
``shingles`` of every text (what any check must compute); the ratio says what finding the near
duplicates costs on top. Times are CPU seconds of this process (``time.process_time``), so a busy
machine does not inflate them.

    .venv/bin/python benchmarks/duplicates.py [--n 1000 4000 9000 18182] [--threshold 0.85] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.coding_replies import coding_reply  # noqa: E402
from treesynth_core.generate.duplicates import DuplicateFilter, shingles  # noqa: E402

#: One leaf of the python_coding tree: what its sample requests list as the leaf's attributes.
LEAF = [
    {"criterion": "Task type", "value": "write a function"},
    {"criterion": "Main input type", "value": "list"},
    {"criterion": "Difficulty", "value": "beginner"},
]


def leaf_texts(n: int, attributes: list[dict[str, str]] = LEAF) -> list[str]:
    """``n`` instructions of one leaf, 10 a request, as the stand-in model answers them."""
    prompt = f"Write samples with ALL of these attributes, each of them clearly: {json.dumps(attributes)}\n"
    schema = {"json_schema": {"schema": {"properties": {"samples": {"maxItems": 10}}}}}
    texts: list[str] = []
    seed = 0
    while len(texts) < n:
        body = {"seed": seed, "messages": [{"role": "user", "content": prompt}], "response_format": schema}
        texts += json.loads(coding_reply(body)["choices"][0]["message"]["content"])["samples"]
        seed += 1
    return texts[:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000, 4_000, 9_000, 18_182])
    parser.add_argument("--threshold", type=float, default=0.85)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for n in args.n:
        texts = leaf_texts(n)
        start = time.process_time()
        for text in texts:
            shingles(text)
        floor = time.process_time() - start
        dupes = DuplicateFilter(args.threshold)
        start = time.process_time()
        admitted = sum(dupes.admit(text) for text in texts)
        seconds = time.process_time() - start
        row = {"n": n, "admit_s": seconds, "floor_s": floor, "admitted": admitted, "comparisons": dupes.comparisons}
        rows.append(row)
        if not args.json:
            print(
                f"  n={n:>7,}  admit {seconds:7.2f} s cpu ({1000 * seconds / n:.3f} ms a text) = "
                f"{seconds / floor:5.1f}x the floor (shingles, {floor:.2f} s); admitted {admitted:,}, "
                f"exact comparisons {dupes.comparisons:,}",
                flush=True,
            )
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
