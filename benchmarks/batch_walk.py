"""From a 55-leaf tree to N samples through the batch path, end to end, with the README's commands.

Each stage runs the ``treesynth`` command line in a subprocess, as a user would:

1. ``new --from-tree assets/trees/python_coding.json --llm openai --model M --base-url ENGINE``;
2. ``batch prepare --synth --per-leaf ceil(N/55)``, then a local batch engine, then ``batch collect``,
   repeated until ``prepare`` finds nothing left to ask (synthesis runs in rounds: a leaf that lost
   samples to duplicates asks again);
   - ``--engine openai`` (default): a fake OpenAI Files/Batches server over real HTTP on 127.0.0.1
     (``tests/helpers_batch.py``) with ``batch submit``, ``batch status`` until every batch is done,
     ``batch collect``;
   - ``--engine vllm``: ``vllm run-batch``'s output format written for each shard, then
     ``batch collect --from OUT...``;
   either answers each request as a capable model would (``benchmarks/coding_replies.py``: valid JSON
   samples written for the leaf, different in every request);
3. ``synth`` with the same options: it must complete from the collected replies with 0 requests sent;
4. ``score`` (embeddings, the embedded MiniLM) and ``map`` on every sample while N <= ``--embed-max``;
   above it, the embedder on a seeded sample of ``--score-sample`` samples (the score's and map's
   cost is embedding every sample: the rate says how long, and ``score --engine ray --gpus-per-worker 1``
   is the way for the full set).

Each stage prints its wall seconds, requests/s and samples/s, and a floor measured in the same run
where one makes sense: for prepare, a bare ``json.dumps`` + write of the same lines; for collect, a
bare parse of the same output files + one ``executemany`` of (custom_id, body) into a plain SQLite
table; for synth, one bare ``executemany`` of the same sample rows.

    .venv/bin/python benchmarks/batch_walk.py [--n 5500] [--engine openai|vllm] [--keep DIR] [--json]
    .venv/bin/python benchmarks/batch_walk.py --n 1000000      # the full scale (see the README for times)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.coding_replies import coding_reply  # noqa: E402
from tests.helpers_batch import FakeBatchServer, output_line  # noqa: E402
from treesynth_core.store import schema  # noqa: E402
from treesynth_core.store.db import DB_NAME  # noqa: E402

TREE = ROOT / "assets" / "trees" / "python_coding.json"
LEAVES = 55
MODEL = "gpt-4o-mini"


@dataclass
class Stage:
    """One stage's wall time, what it moved, and its floor (0: none)."""

    name: str
    seconds: float
    requests: int = 0
    samples: int = 0
    floor_s: float = 0.0
    floor: str = ""
    #: CPU seconds of the stage's treesynth process (user + system): what a busy machine does not inflate.
    cpu_s: float = 0.0

    def line(self) -> str:
        rates = []
        if self.requests:
            rates.append(f"{self.requests:,} requests, {self.requests / self.seconds:,.0f}/s")
        if self.samples:
            rates.append(f"{self.samples:,} samples, {self.samples / self.seconds:,.0f}/s")
        cpu = f" (cpu {self.cpu_s:.1f})" if self.cpu_s else ""
        text = f"  {self.name:<36} {self.seconds:8.1f} s{cpu:<12} " + "; ".join(rates)
        if self.floor_s:
            text += f"  = {self.seconds / self.floor_s:.1f}x {self.floor} ({self.floor_s:.1f} s)"
        return text


#: CPU seconds of every treesynth process run so far (see :func:`cli`).
CPU = [0.0]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli(*args: str, ok: tuple[int, ...] = (0,)) -> tuple[float, Any]:
    """Run ``treesynth ARGS --json``; returns (seconds, the JSON it printed); its CPU seconds go to ``CPU[0]``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-batch-walk", "TREESYNTH_OWNER": "bench"}
    start, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(
        [sys.executable, "-m", "treesynth_core.cli", *args, "--json"], capture_output=True, text=True, env=env
    )
    seconds = time.perf_counter() - start
    CPU[0] = children_cpu() - cpu
    if done.returncode not in ok:
        raise SystemExit(f"treesynth {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return seconds, json.loads(done.stdout) if done.stdout.strip() else None


def read_lines(paths: list[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            for text in handle:
                if text.strip():
                    yield json.loads(text)


def timed_floor(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def write_floor(files: list[Path], scratch: Path) -> float:
    """A bare JSONL write of the same request lines: ``json.dumps`` each and write them."""
    lines = list(read_lines(files))
    target = scratch / "floor.jsonl"

    def write() -> None:
        with target.open("w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")

    seconds = timed_floor(write)
    target.unlink()
    return seconds


def scratch_db(scratch: Path) -> sqlite3.Connection:
    """A throwaway SQLite database for a floor, with the project's write settings (WAL, synchronous NORMAL)."""
    conn = sqlite3.connect(scratch / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def timed_on_scratch(conn: sqlite3.Connection, run: Callable[[], None], scratch: Path) -> float:
    """:func:`timed_floor` of ``run``, then the scratch database closed and deleted."""
    seconds = timed_floor(run)
    conn.close()
    for path in scratch.glob("floor.db*"):
        path.unlink()
    return seconds


def collect_floor(outputs: list[Path], scratch: Path) -> float:
    """A bare collect of the same output files: parse each line, one ``executemany`` of (custom_id, body)."""
    conn = scratch_db(scratch)
    conn.execute("CREATE TABLE replies (key TEXT PRIMARY KEY, body TEXT NOT NULL)")

    def run() -> None:
        rows = [(r["custom_id"], json.dumps(r["response"]["body"])) for r in read_lines(outputs)]
        conn.execute("BEGIN")
        conn.executemany("INSERT OR IGNORE INTO replies VALUES (?, ?)", rows)
        conn.execute("COMMIT")

    return timed_on_scratch(conn, run, scratch)


def synth_floor(project: Path, scratch: Path) -> float:
    """One bare ``executemany`` of the project's sample rows into a plain samples table."""
    src = sqlite3.connect(project / DB_NAME)
    rows = src.execute(f"SELECT {', '.join(schema.SAMPLE_COLUMNS)} FROM samples").fetchall()
    src.close()
    conn = scratch_db(scratch)
    schema.m004_samples(conn)
    columns = schema.SAMPLE_COLUMNS
    sql = f"INSERT INTO samples ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"

    def run() -> None:
        conn.execute("BEGIN")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")

    return timed_on_scratch(conn, run, scratch)


def run_engine(
    engine: str, project: Path, files: list[Path], server: FakeBatchServer | None, scratch: Path, round_no: int
) -> tuple[list[Stage], list[Path]]:
    """Run the round's shards on the local engine; returns its stages and the output files to collect
    (vllm) or that the fake server holds (openai, for the floor)."""
    requests = sum(1 for _ in read_lines(files))
    if engine == "vllm":
        outputs = []
        start = time.perf_counter()
        for shard in files:  # what `vllm run-batch -i SHARD -o OUT --model M` writes, one process a shard
            out = scratch / f"r{round_no}-{shard.stem}.out.jsonl"
            with shard.open() as src, out.open("w") as dst:
                for i, text in enumerate(src):
                    line = json.loads(text)
                    dst.write(json.dumps(output_line(line["custom_id"], line["body"], i, coding_reply)) + "\n")
            outputs.append(out)
        return [Stage("engine: vllm run-batch stand-in", time.perf_counter() - start, requests)], outputs
    assert server is not None
    submit_s, _ = cli("batch", str(project), "submit")
    submit_cpu = CPU[0]
    status_s, status_cpu, polls = 0.0, 0.0, 0
    while True:  # each GET moves a fake batch one status on; the last builds its output file
        seconds, data = cli("batch", str(project), "status")
        status_s, status_cpu, polls = status_s + seconds, status_cpu + CPU[0], polls + 1
        if all(b["status"] not in {"validating", "in_progress", "finalizing"} for b in data["batches"]):
            break
    outputs = []
    for file_id, content in server.state.files.items():
        if file_id.startswith("file-output-"):
            path = scratch / f"r{round_no}-{file_id}.jsonl"
            if not path.exists():
                path.write_bytes(content)
                outputs.append(path)
    return [
        Stage("batch submit (upload)", submit_s, requests, cpu_s=submit_cpu),
        Stage(f"batch status x{polls} (engine runs)", status_s, requests, cpu_s=status_cpu),
    ], outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5_500, help="samples in all (ceil(n/55) per leaf)")
    parser.add_argument("--engine", choices=("openai", "vllm"), default="openai")
    parser.add_argument("--embed-max", type=int, default=6_000, help="score and map every sample up to this n")
    parser.add_argument("--score-sample", type=int, default=1_000, help="MiniLM's rate on this many (0: skip)")
    parser.add_argument("--max-rounds", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build the project here (kept) instead of a temporary folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    per_leaf = math.ceil(args.n / LEAVES)
    stages: list[Stage] = []
    result: dict[str, Any] = {"n": args.n, "per_leaf": per_leaf, "engine": args.engine}

    with tempfile.TemporaryDirectory(prefix="batch-walk-") as tmp, FakeBatchServer(model=coding_reply) as server:
        scratch = Path(tmp)
        project = args.keep or scratch / "proj"
        engine_url = server.base_url if args.engine == "openai" else "http://127.0.0.1:8000/v1"
        seconds, _ = cli(
            "new", str(project), "--from-tree", str(TREE), "--llm", "openai", "--model", MODEL, "--base-url", engine_url
        )
        stages.append(Stage("new --from-tree", seconds, cpu_s=CPU[0]))
        synth_opts = ["--per-leaf", str(per_leaf)]
        rounds = 0
        while rounds < args.max_rounds:
            seconds, prepared = cli("batch", str(project), "prepare", "--synth", *synth_opts)
            files = [Path(f) for f in prepared["files"]]
            if not files:
                stages.append(Stage(f"prepare (round {rounds + 1}: nothing left)", seconds, cpu_s=CPU[0]))
                break
            rounds += 1
            requests = prepared["requests"]
            result.setdefault("cost_usd", prepared["run_cost_usd"])
            prepare_cpu = CPU[0]
            floor = write_floor(files, scratch)
            stages.append(
                Stage(f"prepare round {rounds}", seconds, requests, 0, floor, "bare JSONL write", prepare_cpu)
            )
            engine_stages, outputs = run_engine(args.engine, project, files, server, scratch, rounds)
            stages += engine_stages
            collect_args = [a for o in outputs for a in ("--from", str(o))] if args.engine == "vllm" else []
            seconds, got = cli("batch", str(project), "collect", *collect_args)
            assert got["replies"] == requests, got
            collect_cpu = CPU[0]
            floor = collect_floor(outputs, scratch)
            stages.append(
                Stage(f"collect round {rounds}", seconds, requests, 0, floor, "bare parse + executemany", collect_cpu)
            )
        result["rounds"] = rounds

        seconds, report = cli("synth", str(project), *synth_opts, ok=(0, 3))
        synth_cpu = CPU[0]
        with sqlite3.connect(project / DB_NAME) as conn:
            samples = conn.execute("SELECT COUNT(*) FROM samples WHERE sample_set = 'tree'").fetchone()[0]
        floor = synth_floor(project, scratch)
        stages.append(Stage("synth (from the cache)", seconds, 0, samples, floor, "bare executemany", synth_cpu))
        _, stats = cli("stats", str(project))
        sent = stats["by_command"].get("synth", {}).get("requests", 0)
        chat_posts = sum(1 for method, path in server.state.requests if path.endswith("/chat/completions"))
        result.update(samples=samples, requests_sent_by_synth=sent, chat_posts=chat_posts, synth=report)

        if args.score_sample:
            stages.append(embed_rate(project, args.score_sample, result))
        if samples <= args.embed_max:
            seconds, scored = cli("score", str(project), "--no-baseline")
            stages.append(Stage("score (MiniLM, every sample; loads)", seconds, 0, samples, cpu_s=CPU[0]))
            result["vendi"] = scored["sets"]["tree"]["vendi_q"]["1"]
            seconds, _ = cli("map", str(project), "--out", str(scratch / "map.html"), "--no-baseline")
            stages.append(Stage("map (UMAP, every sample)", seconds, 0, samples, cpu_s=CPU[0]))

    result["stages"] = [asdict(s) for s in stages]
    result["load_average"] = os.getloadavg()
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(f"{LEAVES}-leaf python_coding tree -> {args.n:,} samples ({per_leaf:,} a leaf), engine {args.engine}:")
    for stage in stages:
        print(stage.line())
    total, cpu = sum(s.seconds for s in stages), sum(s.cpu_s for s in stages)
    print(f"  {'total':<36} {total:8.1f} s (cpu {cpu:.1f} in treesynth); load average now {os.getloadavg()[0]:.1f}")
    print(
        f"{samples:,} samples in the project after {rounds} batch rounds; synth sent {sent} requests "
        f"({chat_posts} chat completions reached the engine's server); estimate ~${result.get('cost_usd') or 0:,.2f} "
        "at the batch price."
    )
    rate = result.get("embed_rate")
    if rate:
        print(
            f"MiniLM (warm) embedded a seeded sample of {rate['n']:,} at {rate['rate']:.0f} samples/s: "
            f"every one of the {samples:,} samples takes ~{samples / rate['rate'] / 60:.0f} min here "
            "(score --engine ray --gpus-per-worker 1 for the full set); Vendi of the sample {rate['vendi']:.2f}."
        )
    return 0 if sent == 0 and chat_posts == 0 else 1


def embed_rate(project: Path, n: int, result: dict[str, Any]) -> Stage:
    """The embedded MiniLM's rate, warm, on a seeded sample of the project's samples (nothing stored):
    what ``score`` and ``map`` spend per sample, beyond loading the model once."""
    from treesynth_core.coverage.diversity import vendi_score
    from treesynth_core.coverage.features.embeddings import SentenceTransformerEmbedder, sample_text
    from treesynth_core.store import Project

    with Project.open(project) as p:
        everything = p.samples()
    texts = [sample_text(s) for s in random.Random(0).sample(everything, min(n, len(everything)))]
    del everything
    embedder = SentenceTransformerEmbedder()
    embedder.embed(["warm up"])  # loading the model is not the rate
    start = time.perf_counter()
    X = embedder.embed(texts)
    seconds = time.perf_counter() - start
    result["embed_rate"] = {"n": len(texts), "seconds": seconds, "rate": len(texts) / seconds, "vendi": vendi_score(X)}
    return Stage(f"MiniLM (warm) on a sample of {len(texts):,}", seconds, 0, len(texts))


if __name__ == "__main__":
    sys.exit(main())
