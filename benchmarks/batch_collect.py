"""``batch collect``'s storing alone: N replies read from output files into a project, against a floor.

Writes ``--requests`` lines of ``vllm run-batch`` output (``benchmarks/coding_replies.py`` bodies,
10 samples a reply as the 1M walk asks), split into files of at most 50,000 lines, then times
``treesynth_core.batch.collect.collect`` over them into a fresh project (parse, keep each reply by its
``custom_id``, log each as a call), and again over the same files (everything known: the rerun).
The floor is ``benchmarks/batch_walk.py``'s: a bare parse of the same files and one ``executemany``
of ``(custom_id, body)`` into a plain SQLite table. The replay that turns replies into samples is
not timed here (``batch_walk.py`` times the whole ``collect``).

    .venv/bin/python benchmarks/batch_collect.py [--requests 5500] [--json]
    .venv/bin/python benchmarks/batch_collect.py --requests 100045   # the 1M walk's first round
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.batch_walk import collect_floor  # noqa: E402
from benchmarks.coding_replies import coding_reply  # noqa: E402
from tests.helpers_batch import output_line  # noqa: E402
from treesynth_core.batch.collect import collect, read_outcomes  # noqa: E402
from treesynth_core.store import Project  # noqa: E402

MODEL = "gpt-4o-mini"
LINES_PER_FILE = 50_000


def write_outputs(folder: Path, requests: int) -> list[Path]:
    """``requests`` output lines, one reply of 10 samples each, in files of at most 50,000 lines."""
    paths: list[Path] = []
    for start in range(0, requests, LINES_PER_FILE):
        path = folder / f"out-{len(paths) + 1}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for i in range(start, min(requests, start + LINES_PER_FILE)):
                body = {
                    "model": MODEL,
                    "seed": i,
                    "messages": [{"role": "user", "content": f"Write 10 samples for leaf {i % 55}."}],
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"schema": {"properties": {"samples": {"maxItems": 10}}}},
                    },
                }
                line = output_line(f"b2v1:{i:012x}", body, i, coding_reply)
                handle.write(json.dumps(line) + "\n")
        paths.append(path)
    return paths


def timed_collect(project: Project, paths: list[Path]) -> tuple[float, int, int]:
    """Seconds to collect ``paths`` into ``project`` under one run; (seconds, new replies, known)."""
    run_id = project.start_run("batch-collect", {"from": [str(p) for p in paths]})
    start = time.perf_counter()
    replies = known = 0
    for path in paths:
        got = collect(project, read_outcomes(path), model=MODEL, calls={}, batch_id=None, run_id=run_id)
        replies, known = replies + got.replies, known + got.known
    seconds = time.perf_counter() - start
    project.finish_run(run_id, "ok")
    return seconds, replies, known


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5_500, help="output lines (replies) in all")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="batch-collect-") as tmp:
        folder = Path(tmp)
        paths = write_outputs(folder, args.requests)
        floor = collect_floor(paths, folder)
        with Project.create(folder / "proj", task="Python coding questions") as project:
            first, replies, _ = timed_collect(project, paths)
            again, _, known = timed_collect(project, paths)
            calls = project.stats().by_command["batch-collect"].calls
    result = {
        "requests": args.requests,
        "collect_s": round(first, 3),
        "recollect_s": round(again, 3),
        "floor_s": round(floor, 3),
        "ratio": round(first / floor, 2),
        "replies": replies,
        "known_on_rerun": known,
        "calls_logged": calls,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.requests:,} replies: collect {first:.2f} s = {first / floor:.1f}x the floor "
            f"(bare parse + executemany, {floor:.2f} s); again (all known) {again:.2f} s; "
            f"{replies:,} new, {known:,} known on the rerun, {calls:,} calls logged"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
