"""One run per project (issue 12, items 1, 2, 6 and the run parts of 8): the run lease refuses or
waits for a second run, a killed run reads ``killed`` and resumes without loss or duplicates, an
import's staging leftovers go when the lease is taken, and samples of a leaf pruned mid-run are
neither stored nor exported."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fakes import ScriptedLLM
from tests.helpers_http import FakeOpenAIServer, RecordedRequest, Reply
from tests.trees import with_leaves
from treesynth_core.data.export import export_samples
from treesynth_core.generate.synth import SynthOptions, synthesize
from treesynth_core.jobs import background as jobs
from treesynth_core.jobs.lease import RunBusy, run_lease
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.store import Project
from treesynth_core.store.samples import NewSample
from treesynth_core.tree import model as T

ROOT = Path(__file__).resolve().parents[1]
LEAVES = ["l0", "l1", "l2", "l3"]


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREESYNTH_")}
    return env | {"PYTHONPATH": str(ROOT), "COLUMNS": "200", "NO_COLOR": "1"}


def treesynth(*args: object, **popen: object) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "treesynth_core.cli", *(str(a) for a in args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), **popen)  # type: ignore[call-overload]


class GatedSamples:
    """Replies to synthesis calls with distinct samples: the first ``free`` calls at once, later ones
    only after :attr:`gate` is set (the server stalls until then, so a run is held mid-way without
    any timing)."""

    def __init__(self, free: int = 0) -> None:
        self.free = free
        self.gate = threading.Event()
        self.counter = itertools.count()

    def __call__(self, request: RecordedRequest) -> Reply:
        n = next(self.counter)
        if n >= self.free:
            self.gate.wait(60)
        prompt = request.last_user_message()
        want = int(prompt.split("exactly ", 1)[1].split(" ", 1)[0]) if "exactly " in prompt else 10
        words = [f"{n * 100 + i:x}{'qzvkw'[i % 5]}" for i in range(want)]
        samples = [f"Task {w}: how many {w[::-1]} stones fit in crate {n}-{i}?" for i, w in enumerate(words)]
        return Reply.ok(json.dumps({"samples": samples}))


def make_project(path: Path, server: FakeOpenAIServer) -> None:
    settings = BackendSettings(backend="openai", base_url=server.base_url, model="m", concurrency=1)
    with Project.create(path, task="Grade-school math word problems", settings=settings) as project:
        with_leaves(project, LEAVES)


def tree_samples(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path / "treesynth.db")
    try:
        return conn.execute("SELECT leaf_id, key, instruction FROM samples WHERE sample_set = 'tree'").fetchall()
    finally:
        conn.close()


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def running_job(path: Path) -> bool:
    conn = sqlite3.connect(path / "treesynth.db")
    try:
        return conn.execute("SELECT 1 FROM jobs WHERE status = 'running'").fetchone() is not None
    finally:
        conn.close()


@pytest.mark.parametrize("wait", [False, True], ids=["refused", "waits"])
def test_two_synth_processes_fill_each_leaf_once_and_pay_once(tmp_path, wait):
    responder = GatedSamples()
    with FakeOpenAIServer(respond=responder) as server:
        path = tmp_path / "P"
        make_project(path, server)
        first = treesynth("synth", path, "--per-leaf", 10, "-q")
        try:
            wait_for(lambda: len(server.chat_requests) >= 1, "the first run's first call")  # it holds the lease
            second = treesynth("synth", path, "--per-leaf", 10, "-q", *(["--wait"] if wait else []))
            if wait:
                assert second.stderr is not None
                lines = []
                while not (line := second.stderr.readline()).startswith("waiting"):
                    assert line, "".join(lines)
                    lines.append(line)
                assert "another run is working on this project: synth" in line
                responder.gate.set()
                out2, err2 = second.communicate(timeout=120)
                assert second.returncode == 0, err2
            else:
                out2, err2 = second.communicate(timeout=120)
                responder.gate.set()
                assert second.returncode == 1
                errors = [line for line in err2.splitlines() if line.startswith("error:")]
                assert len(errors) == 1 and "Traceback" not in err2
                assert "another run is working on this project: synth, pid" in errors[0]
                assert "wait for it (--wait) or stop it" in errors[0]
            _, err1 = first.communicate(timeout=120)
            assert first.returncode == 0, err1
        finally:
            responder.gate.set()
            first.kill()
        samples = tree_samples(path)
        assert Counter(leaf for leaf, _, _ in samples) == {leaf: 10 for leaf in LEAVES}
        assert len({instruction for _, _, instruction in samples}) == len(samples)
        assert len(server.chat_requests) == len(LEAVES)  # one call of 10 per leaf, none paid twice


def test_a_killed_run_reads_killed_and_a_rerun_resumes_without_loss_or_duplicates(tmp_path):
    responder = GatedSamples(free=5)
    with FakeOpenAIServer(respond=responder) as server:
        path = tmp_path / "P"
        make_project(path, server)
        run = treesynth("synth", path, "--per-leaf", 4, "--per-call", 2, "-q")
        try:
            wait_for(lambda: len(tree_samples(path)) == 10, "five calls' samples")
            wait_for(lambda: len(server.chat_requests) == 6, "the sixth call, held by the server")
            run.send_signal(signal.SIGKILL)
            run.wait(timeout=30)
        finally:
            responder.gate.set()
            run.kill()
        stats = subprocess.run(
            [sys.executable, "-m", "treesynth_core.cli", "stats", str(path), "--json"],
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=120,
        )
        assert stats.returncode == 0, stats.stderr
        assert [r["status"] for r in json.loads(stats.stdout)["runs"]] == ["killed"]
        rerun = subprocess.run(
            [
                sys.executable,
                "-m",
                "treesynth_core.cli",
                "synth",
                str(path),
                "--per-leaf",
                "4",
                "--per-call",
                "2",
                "-q",
            ],
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=120,
        )
        assert rerun.returncode == 0, rerun.stderr  # the dead process's lease is taken over at once
        samples = tree_samples(path)
        assert Counter(leaf for leaf, _, _ in samples) == {leaf: 4 for leaf in LEAVES}
        assert len({instruction for _, _, instruction in samples}) == len(samples) == 16
        assert len(server.chat_requests) <= 8 + 1  # the call in flight at the kill is the only one asked twice
        with Project.open(path) as project:
            assert [r.status for r in project.stats().runs] == ["ok", "killed"]


# -- the lease through the API -----------------------------------------------------------------------


def test_two_threads_synthesizing_one_project_share_the_lease(tmp_path):
    path = tmp_path / "P"
    with Project.create(path, task="Grade-school math word problems") as project:
        with_leaves(project, LEAVES)
    llm = ScriptedLLM(delay=0.01)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def one(wait: bool) -> None:
        with Project.open(path) as project:
            barrier.wait()
            try:
                with run_lease(project, "synth", {}, wait=wait):
                    asyncio.run(synthesize(project, llm, SynthOptions(per_leaf=5, per_call=5)))
                outcomes.append("ran")
            except RunBusy as exc:
                outcomes.append(str(exc))

    threads = [threading.Thread(target=one, args=(True,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert outcomes == ["ran", "ran"]
    with Project.open(path) as project:
        assert project.sample_counts() == {leaf: 5 for leaf in LEAVES}
        assert [j.status for j in project.jobs()] == ["done", "done"]
    assert llm.calls("synth") == len(LEAVES)  # the second run found every leaf full


def test_a_live_lease_refuses_and_names_its_holder(project):
    held, created = project.claim_job("synth", {})
    assert created and held.pid == os.getpid() and held.host
    with pytest.raises(RunBusy, match=r"another run is working on this project: synth, pid \d+ on .*last beat"):
        with run_lease(project, "grow", {}):
            pass
    # the app's jobs see it as the live job too
    assert jobs.active_job(project) is not None and jobs.active_job(project).id == held.id


def test_a_stale_lease_is_taken_over_and_its_run_reads_killed(project, monkeypatch):
    old, _ = project.claim_job("synth", {})
    run_id = project.start_run("synth", {}, job_id=old.id)
    assert project.stats().runs[0].status == "running"
    monkeypatch.setenv("TREESYNTH_LEASE_STALE_S", "0.001")  # no beat for longer than this: stale
    wait_for(lambda: time.time() - old.heartbeat > 0.01, "the lease to age")
    assert project.stats().runs[0].status == "killed"
    with run_lease(project, "grow", {}) as beat:
        assert beat.job_id != old.id
    assert project.job(old.id).status == "interrupted"
    assert [(r.id, r.status) for r in project.stats().runs] == [(run_id, "killed")]


def test_a_lease_whose_process_is_gone_is_taken_over_at_once(project):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    old, _ = project.claim_job("synth", {})
    conn = sqlite3.connect(project.path / "treesynth.db")
    with conn:
        conn.execute("UPDATE jobs SET pid = ? WHERE id = ?", (int(dead.stdout), old.id))
    conn.close()
    _, created = project.claim_job("grow", {})
    assert created and project.job(old.id).status == "interrupted"


def test_taking_the_lease_clears_an_import_killed_half_way(project):
    staged = [
        NewSample(leaf_id="", key=str(i), instruction=f"row {i}", path=[], sample_set="~importing:big")
        for i in range(50)
    ]
    project.add_samples(staged)  # what a process killed during an import leaves behind
    assert len(project.samples(sample_set="~importing:big")) == 50
    with run_lease(project, "route", {}):
        pass
    assert project.samples(sample_set="~importing:big") == []


# -- a leaf pruned while synthesis runs --------------------------------------------------------------


class PruneAfterFirstBatch:
    """The project, pruning ``leaf`` right after the first batch of its samples is stored."""

    def __init__(self, project: Project, leaf: str) -> None:
        self.project, self.leaf, self.done = project, leaf, False

    def __getattr__(self, name: str):
        return getattr(self.project, name)

    def add_samples(self, samples):
        samples = list(samples)
        added = self.project.add_samples(samples)
        if not self.done and any(s.leaf_id == self.leaf for s in samples):
            self.done = True
            self.project.apply("prune", lambda tree: T.prune(tree, self.leaf))
        return added


def test_a_leaf_pruned_between_two_batches_gets_no_more_samples_and_is_not_exported(project, tmp_path):
    with_leaves(project, ["a", "b"])
    store = PruneAfterFirstBatch(project, "a")
    llm = ScriptedLLM()
    report = asyncio.run(synthesize(store, llm, SynthOptions(per_leaf=4, per_call=2), concurrency=1))
    counts = project.sample_counts()
    assert counts == {"a": 2, "b": 4}  # the first batch of "a" was stored before the prune
    assert report.dropped_pruned == 2
    result = export_samples(project.tree(), project.samples(), "jsonl", tmp_path / "out.jsonl")
    assert result.rows == 4 and result.left_out == 2
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert {row["leaf_id"] for row in rows} == {"b"}


def test_samples_of_a_pruned_or_missing_leaf_are_not_stored(project):
    with_leaves(project, ["a", "b"])
    project.apply("prune", lambda tree: T.prune(tree, "a"))
    added = project.add_samples(
        [NewSample(leaf_id=leaf, key="0:0", instruction=f"q {leaf}", path=[]) for leaf in ("a", "b", "gone")]
    )
    assert added == 1 and added.dropped == 2
    assert project.sample_counts() == {"b": 1}
