"""Write-behind of the call log and reply cache (issue 15 part 4): rows queued during a run are all
committed before the run reports (however it ends) and when the project closes, reads see them at
once, the log keeps the order calls ended in, and a crash leaves a consistent store that lost only
the rows queued since the last commit and holds no invalid cache row."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.fakes import ScriptedLLM
from tests.trees import with_leaves
from treesynth_core.errors import Cancelled, EndpointError, ProjectGone, TreeError
from treesynth_core.jobs.runs import run_llm_work
from treesynth_core.llm.base import ChatRequest, ChatResult
from treesynth_core.llm.recording import CallRecord, recording
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.store import Project
from treesynth_core.store import runs as runs_module
from treesynth_core.store import write_behind as write_behind_module
from treesynth_core.store.schema import dumps

ROOT = Path(__file__).resolve().parents[1]
#: Options under which nothing is committed by the writer thread: only by a flush, a write or the end.
HELD = {"max_delay_s": 3600.0, "max_rows": 10**9}


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs write behind with :data:`HELD` options (the writer thread commits nothing by itself)."""
    monkeypatch.setattr(write_behind_module, "MAX_DELAY_S", HELD["max_delay_s"])
    monkeypatch.setattr(write_behind_module, "MAX_ROWS", HELD["max_rows"])


def committed(path: Path, sql: str) -> list[tuple]:
    """What another connection (another process, a crash's survivor) sees in the project's file."""
    conn = sqlite3.connect(path / "treesynth.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def call(n: int, run_id: str | None = None) -> CallRecord:
    return CallRecord(run_id=run_id, backend="fake", model="m", purpose="plain", response=f"reply {n}")


# -- flushed before the run reports, and on close ----------------------------------------------------


@pytest.mark.parametrize("ending", ["ok", "failed", "cancelled"])
def test_every_queued_row_is_committed_before_the_run_reports(project: Project, held: None, ending: str) -> None:
    backend = ScriptedLLM()
    backend.enqueue("", ["one", "two", "three", EndpointError("the endpoint refused")])
    cancel = threading.Event()

    async def work(llm, stop):
        for question in ("q1", "q2", "q3"):
            await llm.complete(ChatRequest.chat(None, question))
        if ending == "failed":
            await llm.complete(ChatRequest.chat(None, "q4"))
        elif ending == "cancelled":
            stop.set()
            await llm.complete(ChatRequest.chat(None, "q4"))
        return None

    def run() -> None:
        run_llm_work(project, "synth", {}, BackendSettings(), work, cancel=cancel, llm_factory=lambda s: backend)

    if ending == "ok":
        run()
    else:
        with pytest.raises(EndpointError if ending == "failed" else Cancelled, match="refused|no further LLM call"):
            run()
    calls = committed(project.path, "SELECT response, error FROM llm_calls ORDER BY rowid")
    assert calls[:3] == [("one", None), ("two", None), ("three", None)]
    assert len(calls) == (4 if ending == "failed" else 3)
    assert committed(project.path, "SELECT COUNT(*) FROM llm_cache") == [(3,)]
    assert committed(project.path, "SELECT status FROM runs") == [(ending,)]


def test_closing_the_project_commits_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "p"
    with ExitStack() as stack:
        project = stack.enter_context(Project.create(path, task="Math word problems"))
        stack.enter_context(project.write_behind(**HELD))
        ids = [project.log_call(call(n)) for n in range(5)]
        project.cache_put("k", ChatResult(text="kept", model="m"))
        assert committed(path, "SELECT COUNT(*) FROM llm_calls") == [(0,)]  # queued, not yet written
        project.close()  # before the write-behind block is left
        assert [i for (i,) in committed(path, "SELECT id FROM llm_calls ORDER BY rowid")] == ids
        assert committed(path, "SELECT COUNT(*) FROM llm_cache") == [(1,)]


# -- read your writes ----------------------------------------------------------------------------------


def test_a_reply_put_or_evicted_moments_ago_is_seen_before_it_is_written(project: Project) -> None:
    project.cache_put("old", ChatResult(text="stale", model="m"))
    with project.write_behind(**HELD) as behind:
        assert behind is not None
        project.cache_put("new", ChatResult(text="fresh", model="m", prompt_tokens=3, call_id="c1"))
        project.cache_evict("old")
        got = project.cache_get("new")
        assert got is not None and (got.text, got.prompt_tokens, got.call_id, got.cached) == ("fresh", 3, "c1", True)
        assert project.cache_get("old") is None
        assert committed(project.path, "SELECT key FROM llm_cache") == [("old",)]  # both still queued
        project.log_call(call(1, "r"))
        assert behind.pending() == 3
        assert project.stats().calls == 1  # any other read commits the queue first
        assert behind.pending() == 0
        assert committed(project.path, "SELECT key FROM llm_cache") == [("new",)]


def test_a_repeated_request_in_one_run_is_served_from_the_queued_reply(project: Project, held: None) -> None:
    backend = ScriptedLLM()

    async def work(llm, stop):
        first = await llm.complete(ChatRequest.chat(None, "same question", seed=1))
        second = await llm.complete(ChatRequest.chat(None, "same question", seed=1))
        return first, second

    (first, second), stats = run_llm_work(project, "synth", {}, BackendSettings(), work, llm_factory=lambda s: backend)
    assert backend.calls() == 1 and second.cached and second.text == first.text
    assert (stats.calls, stats.cached) == (1, 1)


# -- order ----------------------------------------------------------------------------------------------


def test_call_rows_keep_the_order_the_calls_ended_in(project: Project) -> None:
    """Calls end in another order than they started; the log has them as they ended, across the
    writer's batches (one every 7 rows), with increasing ids and times."""
    order = [5, 0, 9, 3, 1, 8, 2, 7, 4, 6] * 3
    ended: list[int] = []

    class Backend(ScriptedLLM):
        def __init__(self) -> None:
            super().__init__()
            self.events = {i: asyncio.Event() for i in range(len(order))}

        async def complete(self, request: ChatRequest) -> ChatResult:
            i = int(request.messages[-1][1])
            await self.events[i].wait()
            ended.append(i)
            return ChatResult(text=f"answer {i}", model=self.model)

    async def main() -> None:
        backend = Backend()
        llm = recording(backend, project, project.start_run("synth"))
        tasks = [asyncio.ensure_future(llm.complete(ChatRequest.chat(None, str(i)))) for i in range(len(order))]
        for offset, i in enumerate(order):
            backend.events[i + 10 * (offset // 10)].set()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)

    with project.write_behind(max_delay_s=3600.0, max_rows=7):
        asyncio.run(main())
    rows = committed(project.path, "SELECT id, ts, response FROM llm_calls ORDER BY rowid")
    assert [int(text.split()[1]) for _, _, text in rows] == ended
    assert sorted(ended) == list(range(len(order)))
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)


def test_rows_a_rolled_back_write_took_in_go_back_ahead_of_later_ones(project: Project) -> None:
    with_leaves(project, ["l0"])
    with project.write_behind(**HELD) as behind:
        assert behind is not None
        first = [project.log_call(call(n)) for n in range(3)]
        during: list[str] = []

        def refuse(tree):
            during.append(project.log_call(call(3)))  # queued while that transaction runs
            raise TreeError("not on this tree")

        with pytest.raises(TreeError, match="not on this tree"):
            project.apply("rename", refuse)  # its transaction took in the queue, then rolled back
        assert behind.pending() == 4
        later = [project.log_call(call(n)) for n in range(4, 6)]
    assert [i for (i,) in committed(project.path, "SELECT id FROM llm_calls ORDER BY rowid")] == first + during + later


# -- the store's rules ----------------------------------------------------------------------------------


def test_a_project_deleted_under_queued_rows_says_so_and_no_thread_crashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashes: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashes.append(args.exc_value))
    path = tmp_path / "p"
    with Project.create(path, task="Math word problems") as project:
        with pytest.raises(ProjectGone, match="deleted or moved"):  # leaving: what is queued cannot be kept
            with project.write_behind(max_delay_s=3600.0, max_rows=2):
                project.log_call(call(0))
                shutil.rmtree(path)
                with pytest.raises(ProjectGone, match="deleted or moved"):
                    for n in range(1, 3000):  # the writer's refused commit is raised at the run's next call
                        project.log_call(call(n))
                        time.sleep(0.01)
        with pytest.raises(ProjectGone, match="deleted or moved"):
            with project.write_behind(**HELD):
                project.log_call(call(0))  # the first row of a batch checks at once
    assert crashes == []


def test_redacted_json_is_the_redacted_value_as_json() -> None:
    values = [
        {"messages": [{"role": "user", "content": "plain text"}], "meta": {"node_id": "n1"}},
        {"messages": [{"role": "user", "content": "my key is sk-abcdefghijklmnop"}]},
        {"meta": {"API_KEY": "hunter2hunter2"}, "x": 1},
        {"headers": {"Authorization": "Bearer\nabcdefgh12345678"}},
        {"content": "Bearer\tabcdefgh12345678 and more"},
        ["password", {"Password": "p"}],
    ]
    for value in values:
        assert runs_module.redacted_json(value) == dumps(runs_module.redact_secrets(value))
    assert "hunter2" not in runs_module.redacted_json(values[2])
    assert "abcdefgh12345678" not in runs_module.redacted_json(values[4])


# -- a crash ---------------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys, threading
    from treesynth_core.llm.base import ChatRequest, ChatResult
    from treesynth_core.llm.recording import recording
    from treesynth_core.store import Project
    from treesynth_core.store.samples import NewSample

    def validate(result):
        return "an odd answer" if int(result.text.split()[1]) % 2 else None

    class Backend:
        backend, model = "fake", "m"
        async def complete(self, request):
            return ChatResult(text="answer " + request.messages[-1][1], model="m")
        async def aclose(self):
            pass

    async def main(project):
        llm = recording(Backend(), project, project.start_run("synth"))
        replies = []
        for i in range(20):
            replies.append(await llm.complete(ChatRequest.chat(None, str(i), validate=validate)))
            if i == 9:  # a sample of this call: its transaction commits the queue so far
                project.add_samples([NewSample("l0", "k", "a task", [], call_id=replies[-1].call_id)])
        print("queued", flush=True)
        threading.Event().wait()  # killed here, the last ten calls' rows still queued

    with Project.open(sys.argv[1]) as project, project.write_behind(max_delay_s=3600.0, max_rows=10**9):
        asyncio.run(main(project))
    """
)


def test_a_crash_keeps_a_consistent_store_without_invalid_cache_rows(tmp_path: Path) -> None:
    path = tmp_path / "p"
    with Project.create(path, task="Math word problems") as project:
        with_leaves(project, ["l0"])
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == "queued\n", child.stderr.read() if child.stderr else line
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    assert committed(path, "PRAGMA integrity_check") == [("ok",)]
    calls = committed(path, "SELECT id, response, error FROM llm_calls ORDER BY rowid")
    assert [text for _, text, _ in calls] == [f"answer {i}" for i in range(10)]  # the queued ten were lost
    assert [error is None for _, _, error in calls] == [i % 2 == 0 for i in range(10)]
    valid = {call_id for call_id, _, error in calls if error is None}
    cached = [json.loads(result) for (result,) in committed(path, "SELECT result FROM llm_cache")]
    assert sorted(c["text"] for c in cached) == sorted(f"answer {i}" for i in range(0, 10, 2))
    assert {c["call_id"] for c in cached} <= valid  # each cache row: a reply that passed, its call logged
    (sample_call,) = committed(path, "SELECT call_id FROM samples")
    assert sample_call[0] == calls[9][0]
    with Project.open(path) as project:  # it opens, and a rerun's cache serves the kept replies
        hit = project.cache_get(_key_of("0"))
        assert hit is not None and hit.text == "answer 0"
        assert project.cache_get(_key_of("1")) is None and project.cache_get(_key_of("12")) is None


def _key_of(question: str) -> str:
    from treesynth_core.llm.base import cache_key

    return cache_key("fake", "m", ChatRequest.chat(None, question))


@pytest.fixture(autouse=True)
def _no_leftover_writer() -> Iterator[None]:
    yield
    assert not [t for t in threading.enumerate() if t.name == "treesynth-write-behind"]
