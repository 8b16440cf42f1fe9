"""Stop reaches the LLM call in flight (``treesynth_core.llm.stop``), on the real pieces: the ``openai``
backend over real HTTP to a FakeOpenAIServer that never answers, a background job stopped while its
call hangs, and (slow) the real embedded llama.cpp model stopped mid-generation, by Stop or by the
cancel Ctrl-C makes, and ``treesynth synth`` interrupted by SIGINT while the model generates.

No timing asserts: the timeouts below only bound a failure (a call that ignores Stop hangs forever).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers_http import FakeOpenAIServer, Reply
from tests.trees import split_root
from treesynth_core.errors import Cancelled
from treesynth_core.jobs import background as jobs
from treesynth_core.llm.base import ChatRequest, cache_key
from treesynth_core.llm.openai_compat import OpenAICompatLLM
from treesynth_core.llm.recording import recording
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.llm.stop import STOPPED_IN_FLIGHT, stop_event, stopping, unless_stopped
from treesynth_core.store import Project

#: Bounds a failure only: a call that ignores Stop would hang until the server stops.
BOUND_S = 60.0
STACKS = [
    "httpx",
    pytest.param("aiohttp", marks=pytest.mark.skipif(not importlib.util.find_spec("aiohttp"), reason="no aiohttp")),
]


def openai_settings(server: FakeOpenAIServer, **values: Any) -> BackendSettings:
    return BackendSettings(backend="openai", base_url=server.base_url, model="m", timeout_s=BOUND_S * 2, **values)


def call_rows(project: Project) -> list[tuple[Any, ...]]:
    with sqlite3.connect(project.path / "treesynth.db") as conn:
        return conn.execute("SELECT error, response, attempts, cached FROM llm_calls ORDER BY rowid").fetchall()


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + BOUND_S
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        await asyncio.sleep(0.01)


def stop_when_sent(project: Project, server: FakeOpenAIServer, backend: OpenAICompatLLM, sent: int) -> None:
    """Send one logged call; once ``sent`` requests reached the server, press Stop; the call must end
    with Cancelled."""
    llm = recording(backend, project, project.start_run("synth"))
    request = ChatRequest.chat(None, "Write a long story.")
    stop = threading.Event()

    async def go() -> None:
        with stopping(stop):
            call = asyncio.ensure_future(llm.complete(request))
            await until(lambda: len(server.chat_requests) >= sent)
            stop.set()
            with pytest.raises(Cancelled, match="call in flight was abandoned"):
                await asyncio.wait_for(call, BOUND_S)
        await llm.aclose()

    asyncio.run(go())
    assert len(server.chat_requests) == sent  # nothing more was sent after Stop
    assert project.cache_get(cache_key(llm.backend, llm.model, request)) is None


# -- the openai backend over real HTTP -----------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_stop_aborts_the_request_out_and_logs_the_call_cancelled(project: Project, stack: str) -> None:
    with FakeOpenAIServer(default=Reply.hang()) as server:
        stop_when_sent(project, server, OpenAICompatLLM(openai_settings(server), http_stack=stack), sent=1)
    assert call_rows(project) == [("cancelled", None, 1, 0)]
    assert project.stats().failed_requests == 1  # the request out was answered by no one


def test_stop_cuts_the_retry_backoff_short(project: Project) -> None:
    """A 503 asks for a minute's wait before the retry; Stop ends the wait and sends no retry."""
    with FakeOpenAIServer(default=Reply.error(503, headers={"Retry-After": "60"})) as server:
        stop_when_sent(project, server, OpenAICompatLLM(openai_settings(server)), sent=1)
    assert call_rows(project) == [("cancelled", None, 1, 0)]


def test_a_reply_that_comes_before_stop_is_kept(project: Project) -> None:
    with FakeOpenAIServer() as server:
        llm = recording(OpenAICompatLLM(openai_settings(server)), project, project.start_run("synth"))
        stop = threading.Event()

        async def go() -> str:
            with stopping(stop):
                result = await llm.complete(ChatRequest.chat(None, "hi"))
            stop.set()  # too late for that call
            await llm.aclose()
            return result.text

        assert asyncio.run(go()) == "ok"
    assert call_rows(project) == [(None, "ok", 1, 0)]


def test_outside_a_run_there_is_no_stop_event_and_calls_just_run() -> None:
    async def go() -> str:
        assert stop_event() is None
        return await unless_stopped(asyncio.sleep(0, result="done"))

    assert asyncio.run(go()) == "done"


def test_a_call_started_after_stop_is_never_sent() -> None:
    async def never() -> None:
        raise AssertionError("sent after Stop")

    async def go() -> None:
        stop = threading.Event()
        stop.set()
        with stopping(stop), pytest.raises(Cancelled, match="call in flight was abandoned"):
            await unless_stopped(never())

    asyncio.run(go())


# -- a background job ----------------------------------------------------------------------------


def test_a_job_stopped_while_its_call_hangs_reads_cancelled(tmp_path: Path) -> None:
    Project.create(tmp_path / "p", task="Math word problems").close()
    with FakeOpenAIServer(default=Reply.hang()) as server:
        settings = openai_settings(server)
        jobs.set_llm_factory(None)  # the real backend from the settings
        state = jobs.start_job(tmp_path / "p", "grow", {"max_depth": 1}, settings=settings)
        deadline = time.monotonic() + BOUND_S
        while not server.chat_requests:  # the growth's first call is out, and hangs
            assert time.monotonic() < deadline, "the job sent no request"
            time.sleep(0.01)
        with Project.open(tmp_path / "p") as project:
            jobs.cancel_job(project, state.id)
        final = jobs.wait_job(tmp_path / "p", state.id, timeout=BOUND_S)
        assert len(server.chat_requests) == 1
    assert final.status == "cancelled" and final.result == STOPPED_IN_FLIGHT
    with Project.open(tmp_path / "p") as project:
        assert [r.status for r in project.stats().runs] == ["cancelled"]
        assert call_rows(project) == [("cancelled", None, 1, 0)]


# -- the embedded model (real llama.cpp) ---------------------------------------------------------

#: A reply the grammar keeps from ending early: at least 600 characters of text.
LONG_SCHEMA = {"type": "object", "properties": {"story": {"type": "string", "minLength": 600}}, "required": ["story"]}


def long_request() -> ChatRequest:
    return ChatRequest.chat(None, "Tell a long story about a dragon.", seed=3, max_tokens=1500, schema=LONG_SCHEMA)


def stop_after_a_few_tokens(llama: Any, press: Callable[[], None]) -> threading.Thread:
    """A thread that waits until ``llama`` has generated a few tokens, then calls ``press`` and notes
    how many tokens the context held at that moment (in ``thread.at_press``)."""

    def watch() -> None:
        deadline = time.monotonic() + BOUND_S
        start = 0
        while time.monotonic() < deadline:
            tokens = llama.n_tokens
            if start == 0:
                start = tokens  # the prompt, evaluated in one batch
            elif tokens >= start + 3:
                thread.at_press = tokens  # type: ignore[attr-defined]
                press()
                return
            time.sleep(0.001)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_stop_ends_embedded_generation_within_a_few_tokens(project: Project) -> None:
    from treesynth_core.llm.embedded import EmbeddedLLM

    backend = EmbeddedLLM(BackendSettings())
    llama = backend.load().llama
    llm = recording(backend, project, project.start_run("synth"))
    stop = threading.Event()

    async def go() -> None:
        with stopping(stop):
            with pytest.raises(Cancelled, match="call in flight was abandoned"):
                await asyncio.wait_for(llm.complete(long_request()), BOUND_S * 3)

    llama.reset()
    watcher = stop_after_a_few_tokens(llama, stop.set)
    asyncio.run(go())
    watcher.join(BOUND_S)
    assert llama.n_tokens - watcher.at_press <= 8  # type: ignore[attr-defined]
    assert call_rows(project) == [("cancelled", None, 1, 0)]
    assert project.cache_get(cache_key(llm.backend, llm.model, long_request())) is None
    reply = asyncio.run(backend.complete(ChatRequest.chat(None, "Name a fruit.", seed=1, max_tokens=8)))
    assert reply.text.strip()  # the model and its lock are free for the next call


@pytest.mark.slow
def test_cancelling_the_awaiting_task_stops_the_embedded_thread() -> None:
    """What Ctrl-C does: ``asyncio.run`` cancels its main task, then waits for the worker thread of
    the call in flight. The thread stops at the next token, so the wait ends at once."""
    from treesynth_core.llm.embedded import EmbeddedLLM

    backend = EmbeddedLLM(BackendSettings())
    loaded = backend.load()

    async def go() -> threading.Thread:
        call = asyncio.ensure_future(backend.complete(long_request()))
        loop = asyncio.get_running_loop()
        watcher = stop_after_a_few_tokens(loaded.llama, lambda: loop.call_soon_threadsafe(call.cancel))
        with pytest.raises(asyncio.CancelledError, match=r"^$"):  # cancelled, no message
            await asyncio.wait_for(asyncio.shield(call), BOUND_S * 3)
        return watcher

    loaded.llama.reset()
    watcher = asyncio.run(go())  # returns once the worker thread has ended
    assert loaded.lock.acquire(timeout=BOUND_S)  # the thread let go of the model
    loaded.lock.release()
    assert loaded.llama.n_tokens - watcher.at_press <= 8  # type: ignore[attr-defined]


@pytest.mark.slow
def test_ctrl_c_interrupts_treesynth_synth_while_the_model_generates(tmp_path: Path) -> None:
    """``treesynth synth`` on the embedded model, sent SIGINT once its run has started: it exits 130
    without a traceback, and the run reads interrupted."""
    with Project.create(tmp_path / "p", task="Short stories about dragons") as project:
        split_root(project, "setting", ["mountains", "sea", "desert", "forest"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREESYNTH_")} | {"HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    command = [sys.executable, "-m", "treesynth_core.cli", "synth", str(tmp_path / "p"), "--per-leaf", "8"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + BOUND_S
        with Project.open(tmp_path / "p") as project:
            while not project.stats().runs:  # the run has started: its first call goes to the model
                assert child.poll() is None and time.monotonic() < deadline, "synth never started its run"
                time.sleep(0.05)
        time.sleep(1.0)  # the model loads and starts generating (a later SIGINT is as good)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=BOUND_S)
    finally:
        child.kill()
    assert "Traceback" not in stderr
    assert child.returncode == 130, stderr
    with Project.open(tmp_path / "p") as project:
        assert [r.status for r in project.stats().runs] == ["interrupted"]
