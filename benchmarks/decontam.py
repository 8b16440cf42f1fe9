"""Decontamination throughput: a synthetic sample set against a synthetic eval set, against the floor of
merely tokenizing both, in one run.

Makes ``--samples`` samples (instruction + response, 30-90 words, default 1,000,000) and ``--items``
eval items (20-200 words, default 10,000) from a 20,000-word vocabulary, copies a 13-word run of an
eval item into every 1,000th sample, then times
``treesynth_core.data.decontam``: building the index of the eval items and scanning every sample, in
chunks, as ``treesynth decontaminate`` does (without SQLite). The floor is the time to normalize and
split both sets into words (``decontam.tokenize_only``); the ratio says what hashing and lookup cost on
top. It checks that every planted copy is found.

    .venv/bin/python benchmarks/decontam.py [--samples 1000000] [--items 10000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from treesynth_core.data import decontam as D  # noqa: E402

VOCAB = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze") for b in range(2_000)]


def text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(VOCAB, k=rng.randint(lo, hi))).capitalize() + "."


def eval_items(n: int, seed: int = 1) -> list[D.EvalItem]:
    rng = random.Random(seed)
    return [D.EvalItem(f"row {i}", text(rng, 20, 200)) for i in range(n)]


def samples(n: int, items: list[D.EvalItem], seed: int = 2) -> Iterator[tuple[int, str]]:
    """``(id, text)`` pairs; every 1,000th carries 13 consecutive words of an eval item."""
    rng = random.Random(seed)
    for i in range(n):
        body = text(rng, 30, 90)
        if i % 1_000 == 0:
            words = items[rng.randrange(len(items))].text.split()
            at = rng.randrange(len(words) - 13)
            body = f"{body} {' '.join(words[at : at + 13])} {text(rng, 1, 5)}"
        yield i, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    items = eval_items(args.items)
    texts = list(samples(args.samples, items))  # made before the clocks start: neither timing includes it
    planted = len(range(0, args.samples, 1_000))

    start = time.perf_counter()
    words = D.tokenize_only(i.text for i in items) + D.tokenize_only(t for _, t in texts)
    floor_s = time.perf_counter() - start

    start = time.perf_counter()
    index = D.EvalIndex("bench", items)
    index_s = time.perf_counter() - start
    result = D.scan([index], texts)
    total_s = time.perf_counter() - start

    found = result.flagged()
    assert found >= planted, f"only {found} of the {planted} planted copies were found"
    out = {
        "samples": args.samples,
        "eval_items": args.items,
        "words": words,
        "index_grams": index.grams,
        "tokenize_s": round(floor_s, 2),
        "index_s": round(index_s, 2),
        "decontaminate_s": round(total_s, 2),
        "ratio": round(total_s / floor_s, 2),
        "samples_per_s": round(args.samples / total_s),
        "planted": planted,
        "found": found,
    }
    if args.json:
        print(json.dumps(out))
        return
    print(
        f"{args.samples:,} samples ({words:,} words with the eval set) against {args.items:,} eval items "
        f"({index.grams:,} n-grams):\n"
        f"  tokenize only (normalize + split both sets): {floor_s:.1f} s\n"
        f"  decontaminate (index {index_s:.1f} s + scan):   {total_s:.1f} s = {total_s / floor_s:.2f}x the floor, "
        f"{args.samples / total_s:,.0f} samples/s\n"
        f"  planted copies found: {found:,} of {planted:,}"
    )


if __name__ == "__main__":
    main()
