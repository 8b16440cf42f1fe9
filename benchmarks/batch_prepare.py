"""``batch prepare`` on a project that already holds many samples, against the same prepare on an empty one.

Creates a project whose root splits into ``--leaves`` approved leaves, fills all but ``--open``
of them with ``--n`` samples in all (templated text of about 1 KB with its response, like a
synthesized sample), and times ``batch.prepare.synth_requests`` for ``--per-leaf`` samples a
leaf on the open project: the full leaves need nothing, so the requests are those of the open
leaves. The floor, measured in the same run: the same call on a project whose tree has just the
open leaves and no samples (the same requests, nothing stored to read or copy), plus what synthesis
itself reads of the full project, its per-leaf counts (an SQL ``GROUP BY``, twice: the plan and the
report). The ratio says what the stored samples add beyond that (target <= 1.5; a dry run on a copy
of the database pays the copy). It also prints the database's size and how long a plain copy of it
takes (SQLite's backup API). Opening a project (its integrity check) is not timed.

    .venv/bin/python benchmarks/batch_prepare.py [--n 200000] [--leaves 50] [--open 10] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from treesynth_core.batch.prepare import synth_requests  # noqa: E402
from treesynth_core.generate.synth import SynthOptions  # noqa: E402
from treesynth_core.llm.settings import BackendSettings  # noqa: E402
from treesynth_core.store.db import DB_NAME  # noqa: E402
from treesynth_core.store.project import Project  # noqa: E402
from treesynth_core.store.samples import NewSample  # noqa: E402
from treesynth_core.tree import model as T  # noqa: E402

TARGET = 1.5
CHUNK = 20_000
SETTINGS = BackendSettings(backend="openai", model="gpt-4o-mini")
WORDS = "tree leaf criterion value sample dataset model prompt answer question coverage diverse".split()


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def make(folder: Path, leaves: int) -> list[str]:
    """A project whose root splits into ``leaves`` approved leaves; returns their ids."""
    with Project.create(folder, task="Grade-school math word problems") as project:

        def build(tree: T.Tree) -> T.Tree:
            values = [f"Topic {i}" for i in range(leaves)]
            tree = T.attach_split(
                tree, tree.root_id, criterion="Topic", values=values, provenance=T.Provenance("llm", model="m")
            )
            return T.approve(tree, [k.id for k in tree.children(tree.root_id)])

        tree = project.apply("grow", build)
        return [leaf.id for leaf in tree.leaves()]


def fill(folder: Path, leaf_ids: list[str], n: int) -> None:
    """Store ``n`` samples of about 1 KB each, spread over ``leaf_ids``."""
    rng = random.Random(0)
    with Project.open(folder) as project:
        for start in range(0, n, CHUNK):
            rows = []
            for i in range(start, min(n, start + CHUNK)):
                text = " ".join(rng.choice(WORDS) for _ in range(25))
                answer = " ".join(rng.choice(WORDS) for _ in range(120))
                leaf = leaf_ids[i % len(leaf_ids)]
                rows.append(NewSample(leaf, f"0:{i}", f"{i}: {text}?", [], response=answer, model="m"))
            project.add_samples(rows)


def prepare(project: Project, options: SynthOptions) -> int:
    return len(synth_requests(project, SETTINGS, options).requests)


def copy_time(folder: Path) -> float:
    with tempfile.TemporaryDirectory() as target:
        start = time.perf_counter()
        src, dst = sqlite3.connect(folder / DB_NAME), sqlite3.connect(Path(target) / DB_NAME)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="samples already in the project")
    parser.add_argument("--leaves", type=int, default=50)
    parser.add_argument("--open", type=int, default=10, help="leaves with no samples, which the run fills")
    parser.add_argument("--per-leaf", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    options = SynthOptions(per_leaf=args.per_leaf, per_call=10)

    with tempfile.TemporaryDirectory(prefix="treesynth-bench-") as scratch:
        empty, full = Path(scratch) / "empty", Path(scratch) / "full"
        make(empty, args.open)  # just the leaves the run fills
        leaf_ids = make(full, args.leaves)
        fill_s = best_of(1, lambda: fill(full, leaf_ids[args.open :], args.n))[0]
        with Project.open(empty) as small, Project.open(full) as big:  # opening (its quick_check) is not timed
            empty_s, floor_requests = best_of(args.repeat, lambda: prepare(small, options))
            counts_s = best_of(args.repeat, big.sample_counts)[0]
            prepare_s, requests = best_of(args.repeat, lambda: prepare(big, options))
        floor_s = empty_s + 2 * counts_s
        result = {
            "samples": args.n,
            "db_mb": round((full / DB_NAME).stat().st_size / 2**20, 1),
            "fill_s": round(fill_s, 2),
            "requests": requests,
            "prepare_s": round(prepare_s, 3),
            "floor_s": round(floor_s, 3),
            "empty_prepare_s": round(empty_s, 3),
            "counts_s": round(counts_s, 3),
            "ratio": round(prepare_s / floor_s, 2),
            "copy_s": round(copy_time(full), 3),
            "target": TARGET,
        }
    if floor_requests != args.open * args.per_leaf // 10 or requests != floor_requests:
        raise SystemExit(f"unexpected request counts: {requests} and {floor_requests} (floor)")
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"batch prepare with {result['samples']:,} samples stored ({result['db_mb']} MB): {result['prepare_s']} s for "
        f"{requests} requests; floor {result['floor_s']} s (the same prepare on just the open leaves "
        f"{result['empty_prepare_s']} s + 2 x the per-leaf counts {result['counts_s']} s); ratio {result['ratio']} "
        f"(target <= {TARGET}); a plain copy of the database takes {result['copy_s']} s"
    )


if __name__ == "__main__":
    main()
