"""How long Stop and Ctrl-C take to end a run on the embedded model (SmolLM2-135M through llama.cpp).

Two paths, each on a fresh project whose root is split into three leaves, running ``synth``:

* ``app``: the app's path: a background job (:func:`treesynth_core.jobs.background.start_job`),
  stopped with :func:`~treesynth_core.jobs.background.cancel_job` (what the Stop button does); the
  time is from the cancel request to the job no longer reading ``running``;
* ``cli``: ``treesynth synth`` in a child process, sent SIGINT; the time is from the signal to the
  child's exit (and its exit code).

Each presses Stop (or Ctrl-C) right after the run's first call was logged, so the next call has just
started: the worst case of a run that lets the call in flight finish, which is about one call's
time (printed as ``call_s``: the logged calls' median latency). ``--code DIR`` imports
``treesynth_core`` from another checkout (e.g. main, to compare before and after).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/stop_latency.py [--code DIR] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: Bounds a wait that never ends (a run that never logs a call, a Stop that is never obeyed).
WAIT_S = 900.0


def make_project(folder: Path) -> Path:
    from treesynth_core.store import Project
    from treesynth_core.tree import model as T

    def split(tree: T.Tree) -> T.Tree:
        tree = T.attach_split(
            tree,
            tree.root_id,
            criterion="setting",
            values=["mountains", "sea", "desert"],
            provenance=T.Provenance("human"),
        )
        return T.approve(tree, [k.id for k in tree.children(tree.root_id)])

    with Project.create(folder, task="Short stories about dragons", style="one story per sample") as project:
        project.apply("grow", split)
    return folder


def logged_calls(folder: Path) -> list[float]:
    """The latencies of the calls logged so far (read-only, beside the run)."""
    try:
        with sqlite3.connect(f"file:{folder / 'treesynth.db'}?mode=ro", uri=True, timeout=5) as conn:
            return [row[0] for row in conn.execute("SELECT latency_s FROM llm_calls WHERE cached = 0")]
    except sqlite3.OperationalError:
        return []


def wait_for_a_call(folder: Path, running: Any) -> list[float]:
    deadline = time.monotonic() + WAIT_S
    while not (calls := logged_calls(folder)):
        if not running() or time.monotonic() > deadline:
            raise SystemExit("the run ended (or never started) before its first call was logged")
        time.sleep(0.05)
    return calls


def stop_the_app_job(folder: Path, per_leaf: int) -> dict[str, Any]:
    from treesynth_core.jobs import background as jobs
    from treesynth_core.store import Project

    state = jobs.start_job(folder, "synth", {"per_leaf": per_leaf})

    def running() -> bool:
        with Project.open(folder) as project:
            return jobs.get_job(project, state.id).status == "running"

    calls = wait_for_a_call(folder, running)
    started = time.perf_counter()
    with Project.open(folder) as project:
        jobs.cancel_job(project, state.id)
    final = jobs.wait_job(folder, state.id, timeout=WAIT_S, poll=0.02)
    seconds = time.perf_counter() - started
    return {"path": "app", "stop_s": round(seconds, 2), "status": final.status, "call_s": _median(calls)}


def interrupt_the_command(folder: Path, per_leaf: int, code: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREESYNTH_")}
    env["PYTHONPATH"] = str(code)
    command = [sys.executable, "-m", "treesynth_core.cli", "synth", str(folder), "--per-leaf", str(per_leaf)]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=code)
    try:
        calls = wait_for_a_call(folder, lambda: child.poll() is None)
        started = time.perf_counter()
        child.send_signal(signal.SIGINT)
        child.wait(timeout=WAIT_S)
        seconds = time.perf_counter() - started
    finally:
        child.kill()
    return {"path": "cli", "stop_s": round(seconds, 2), "exit": child.returncode, "call_s": _median(calls)}


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose treesynth_core runs")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--per-leaf", type=int, default=20, help="samples per leaf (longer replies)")
    parser.add_argument("--paths", default="app,cli", help="which of app,cli to measure")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    code = args.code.resolve()
    sys.path.insert(0, str(code))
    rows = []
    for _ in range(args.rounds):
        for path in args.paths.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                folder = make_project(Path(tmp) / "p")
                if path == "app":
                    rows.append(stop_the_app_job(folder, args.per_leaf))
                else:
                    rows.append(interrupt_the_command(folder, args.per_leaf, code))
            if not args.json:
                print(rows[-1], flush=True)
    if args.json:
        print(json.dumps({"code": str(code), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
