"""Embedding + UMAP of 10,000 samples on the embedded defaults (numbers printed from one run).

The texts are made from templates (no dataset download): 10,000 distinct math-word-problem-like
sentences. They are stored as samples of a throw-away project, embedded with the embedded
all-MiniLM-L6-v2 through ``ensure_features`` (storage included), laid out with ``map_points``
(UMAP, cosine, seeded), then both are asked again to show what the cache saves.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/embed_umap.py [--n 10000] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from treesynth_core.store import Project  # noqa: E402
from treesynth_core.store.samples import NewSample  # noqa: E402

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jonas", "Kemi", "Liam"]
THINGS = ["apples", "marbles", "stickers", "books", "coins", "pencils", "cupcakes", "seashells", "tickets", "stamps"]
PLACES = ["at the market", "in the library", "on the farm", "at school", "at the fair", "in the garden"]
TEMPLATES = [
    "{a} has {x} {t} {p}. {b} gives {a} {y} more. How many {t} does {a} have now?",
    "{a} buys {x} packs of {t} {p}, each with {y} {t}. How many {t} is that in total?",
    "{a} shares {x} {t} equally among {y} friends {p}. How many does each friend get?",
    "There were {x} {t} {p}. {a} took {y} of them away. How many {t} are left?",
    "{a} earns {x} dollars a day selling {t} {p}. How much does {a} earn in {y} days?",
    "If {y} {t} cost {x} dollars {p}, what do {a} and {b} pay for twice as many?",
]


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    combos = itertools.product(TEMPLATES, NAMES, THINGS, PLACES)
    out: list[str] = []
    seen: set[str] = set()
    for template, a, t, p in itertools.cycle(combos):
        text = template.format(a=a, b=rng.choice(NAMES), t=t, p=p, x=rng.randint(2, 99), y=rng.randint(2, 12))
        if text not in seen:
            seen.add(text)
            out.append(text)
        if len(out) == n:
            return out
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    timings: dict[str, float] = {}

    def lap(name: str, start: float) -> None:
        timings[name] = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as folder, Project.create(Path(folder) / "p", task="Math word problems") as p:
        root = p.tree().root_id
        made = texts(args.n)
        p.add_samples(NewSample(leaf_id=root, key=f"0:{i}", instruction=t, path=[]) for i, t in enumerate(made))
        samples = p.samples()

        start = time.perf_counter()
        from treesynth_core.coverage.features.embeddings import SentenceTransformerEmbedder, ensure_features
        from treesynth_core.coverage.maps import map_points, umap_2d

        embedder = SentenceTransformerEmbedder()
        dim = embedder.dim
        lap("import_and_load_s", start)

        start = time.perf_counter()
        X = ensure_features(p, samples, embedder, batch_size=args.batch_size)
        lap("embed_and_store_s", start)
        start = time.perf_counter()
        ensure_features(p, samples, embedder)
        lap("embed_again_cached_s", start)

        start = time.perf_counter()
        points = map_points(p, samples, X, embedder.name)
        lap("umap_first_s", start)  # includes numba's one-time compilation
        start = time.perf_counter()
        umap_2d(X, seed=1)
        lap("umap_warm_s", start)
        start = time.perf_counter()
        map_points(p, samples, X, embedder.name)
        lap("map_again_cached_s", start)

    data = {
        "n": args.n,
        "dim": dim,
        "points": len(points),
        **timings,
        "texts_per_s": args.n / timings["embed_and_store_s"],
        "total_first_run_s": timings["import_and_load_s"] + timings["embed_and_store_s"] + timings["umap_first_s"],
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"{args.n:,} samples, all-MiniLM-L6-v2 ({dim}-d), {os.cpu_count()} CPUs")
        print(f"  import + load model      {timings['import_and_load_s']:7.2f} s")
        print(f"  embed + store            {timings['embed_and_store_s']:7.2f} s  ({data['texts_per_s']:.0f} texts/s)")
        print(f"  embed again (stored)     {timings['embed_again_cached_s']:7.2f} s")
        print(f"  UMAP, first in process   {timings['umap_first_s']:7.2f} s  (numba compilation included)")
        print(f"  UMAP, warm               {timings['umap_warm_s']:7.2f} s")
        print(f"  map again (cached)       {timings['map_again_cached_s']:7.2f} s")
        print(f"  first run in total       {data['total_first_run_s']:7.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
