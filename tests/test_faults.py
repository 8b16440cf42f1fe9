"""Transport faults, end to end: ``treesynth synth`` on a three-leaf tree through a FakeOpenAIServer
that breaks in one way at a time (issue 12, item 3, and the request counting of item 8).

For each fault, two runs:

- a *burst* the retries ride out (two bad tries, three allowed): the run succeeds, and ``stats``
  counts the failed requests and the retries;
- a *persistent* fault after one good call: the run ends with one clean error line naming the
  endpoint and what came back, exit 1, the first leaf's samples kept; then the server is healthy
  again (or, after its death, starts again on the same port) and a rerun fills every leaf, with no
  duplicates.

Every time, the requests ``stats`` counts equal those the server saw. Retries back off for a
millisecond and a hung request times out after half a second, so the module runs in seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.helpers_http import FakeOpenAIServer, RecordedRequest, Reply, openai_flags
from tests.trees import split_root
from treesynth_core.cli.app import app
from treesynth_core.errors import EndpointError
from treesynth_core.llm import openai_retry
from treesynth_core.llm.base import ChatRequest, in_completion_order
from treesynth_core.llm.openai_compat import OpenAICompatLLM
from treesynth_core.llm.recording import recording
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.store import Project

PER_LEAF = 2
LEAVES = ["addition", "subtraction", "multiplication"]
#: TREESYNTH_MAX_RETRIES: three tries a call.
RETRIES = 2
TIMEOUT_S = 0.5

runner = CliRunner()


def samples_text(n: int) -> str:
    """The JSON of a reply with two samples no other reply repeats (nor nearly repeats)."""
    words = [hashlib.sha256(f"{n}-{i}".encode()).hexdigest()[:12] for i in range(PER_LEAF * 6)]
    return json.dumps({"samples": [" ".join(words[:6]) + "?", " ".join(words[6:]) + "?"]})


class Faulty:
    """A ``respond`` callback: good replies for the first ``ok_first`` requests, then ``fault`` for
    ``times`` requests (None: until :meth:`heal`), then good replies again."""

    def __init__(self, fault: Callable[[], Reply], *, ok_first: int, times: int | None) -> None:
        self.fault, self.ok_first, self.times = fault, ok_first, times
        self.served = 0
        self.faults = 0

    def heal(self) -> None:
        self.times = self.faults

    def __call__(self, request: RecordedRequest) -> Reply:
        self.served += 1
        if self.served > self.ok_first and (self.times is None or self.faults < self.times):
            self.faults += 1
            return self.fault()
        return Reply.ok(samples_text(self.served))


@dataclass(frozen=True)
class Fault:
    reply: Callable[[], Reply]
    #: What the error line says when the fault does not pass (a regular expression).
    message: str


HTML = "<html>\n<head><title>Sign in</title></head>\n<body>[/b] Please sign in to use this network.</body>\n</html>"
NO_CONTENT = {"choices": [{"index": 0, "message": {"role": "assistant"}, "finish_reason": "stop"}]}

FAULTS = {
    "non-JSON 200 body": Fault(
        lambda: Reply.raw("upstream said: this is not json {"),
        r"sent no usable chat completion in 3 attempts; the last was a body that is not JSON: "
        r"'upstream said: this is not json \{'",
    ),
    "HTML body": Fault(
        lambda: Reply.raw(HTML, content_type="text/html"),
        r"the last was an HTML page: '<html> <head><title>Sign in</title></head> <body>\[/b\] Please sign in",
    ),
    "empty choices": Fault(lambda: Reply(body={"choices": []}), r"the last was a reply with no choices"),
    "no message content": Fault(lambda: Reply(body=NO_CONTENT), r"the last was a reply without content"),
    "429 with Retry-After": Fault(
        lambda: Reply.error(429, "slow down", headers={"Retry-After": "0"}),
        r"kept failing after 3 attempts: HTTP 429: slow down",
    ),
    "429 without Retry-After": Fault(lambda: Reply.error(429), r"kept failing after 3 attempts: HTTP 429"),
    "5xx burst": Fault(lambda: Reply.error(503, "overloaded"), r"kept failing after 3 attempts: HTTP 503: overloaded"),
    "connection reset": Fault(Reply.reset, r"could not reach http://127\.0\.0\.1:\d+/v1 after 3 attempts"),
    "hang past the timeout": Fault(Reply.hang, rf"after 3 attempts: timed out after {TIMEOUT_S:g}s"),
}


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three tries a call, a millisecond of backoff, a half-second timeout; no other TREESYNTH_ setting."""
    for name in list(os.environ):
        if name.startswith("TREESYNTH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TREESYNTH_MAX_RETRIES", str(RETRIES))
    monkeypatch.setenv("TREESYNTH_TIMEOUT", str(TIMEOUT_S))
    monkeypatch.setattr(openai_retry, "BACKOFF_BASE_S", 0.001)


def make_project(tmp_path: Path, server: FakeOpenAIServer) -> Path:
    """A project on ``server`` whose root is split into :data:`LEAVES` (approved)."""
    proj = tmp_path / "p"
    result = runner.invoke(app, ["new", str(proj), "--task", "Math word problems", *openai_flags(server.base_url, "m")])
    assert result.exit_code == 0, result.output
    with Project.open(proj) as project:
        split_root(project, "operation", LEAVES)
    return proj


def synth(proj: Path) -> Any:
    args = ["synth", str(proj), "--per-leaf", str(PER_LEAF), "--per-call", str(PER_LEAF), "--concurrency", "1", "-q"]
    return runner.invoke(app, args)


def samples(proj: Path) -> list[str]:
    with Project.open(proj) as project:
        return [s.instruction for s in project.samples()]


def stats(proj: Path) -> dict[str, Any]:
    result = runner.invoke(app, ["stats", str(proj), "--json"])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def settled(*servers: FakeOpenAIServer) -> int:
    """The chat requests the servers saw, once the count stops moving (a request cancelled with the
    run may still be on its way into the server's thread)."""
    seen, deadline = -1, time.monotonic() + 5
    while time.monotonic() < deadline:
        count = sum(len(server.chat_requests) for server in servers)
        if count == seen:
            return count
        seen = count
        time.sleep(0.05)
    return seen


def error_line(output: str) -> str:
    """The run's error: one line, the output's last."""
    assert "Traceback" not in output
    [line] = [line for line in output.splitlines() if "error:" in line]
    assert output.rstrip("\n").endswith(line) and line.startswith("error: "), output
    return line


def assert_full_and_distinct(proj: Path) -> None:
    texts = samples(proj)
    assert len(texts) == PER_LEAF * len(LEAVES) and len(set(texts)) == len(texts)


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_burst_of_faults_is_retried_and_counted(tmp_path: Path, name: str) -> None:
    responder = Faulty(FAULTS[name].reply, ok_first=1, times=RETRIES)
    with FakeOpenAIServer(respond=responder) as server:
        proj = make_project(tmp_path, server)
        result = synth(proj)
        assert result.exit_code == 0, result.output
        assert_full_and_distinct(proj)
        counted = stats(proj)
        assert counted["requests"] == settled(server) == len(LEAVES) + RETRIES
        assert (counted["failed_requests"], counted["retries"], counted["failed"]) == (RETRIES, RETRIES, 0)
        assert counted["runs"][0]["retries"] == RETRIES


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_fault_that_persists_ends_the_run_with_one_line_and_a_rerun_resumes(tmp_path: Path, name: str) -> None:
    fault = FAULTS[name]
    responder = Faulty(fault.reply, ok_first=1, times=None)
    with FakeOpenAIServer(respond=responder) as server:
        proj = make_project(tmp_path, server)
        result = synth(proj)
        assert result.exit_code == 1, result.output
        line = error_line(result.output)
        assert re.search(fault.message, line), line
        assert server.base_url in line
        assert len(samples(proj)) == PER_LEAF  # the first leaf, made before the fault
        counted = stats(proj)
        # one good call, then three tries; the next leaf's call is not sent once the endpoint gave up
        seen = settled(server)
        assert counted["requests"] == seen == 1 + RETRIES + 1
        assert (counted["failed_requests"], counted["retries"], counted["failed"]) == (RETRIES + 1, RETRIES, 1)
        assert counted["runs"][0]["status"] == "failed"

        responder.heal()
        result = synth(proj)
        assert result.exit_code == 0, result.output
        assert_full_and_distinct(proj)
        assert stats(proj)["requests"] == settled(server) == seen + len(LEAVES) - 1


def test_server_death_mid_run_keeps_the_work_and_a_rerun_resumes(tmp_path: Path) -> None:
    responder = Faulty(Reply.die, ok_first=1, times=1)
    with FakeOpenAIServer(respond=responder) as server:
        proj = make_project(tmp_path, server)
        result = synth(proj)
        assert result.exit_code == 1, result.output
        line = error_line(result.output)
        assert re.search(rf"could not reach {re.escape(server.base_url)} after 3 attempts: connection refused", line)
        assert len(samples(proj)) == PER_LEAF
        counted = stats(proj)
        # the request that killed it reached the server; the tries after it were refused
        assert counted["requests"] == settled(server) == 2
        assert (counted["failed_requests"], counted["retries"]) == (1, RETRIES)

    with FakeOpenAIServer(respond=responder, port=server.port) as again:
        result = synth(proj)
        assert result.exit_code == 0, result.output
        assert_full_and_distinct(proj)
        assert stats(proj)["requests"] == settled(server, again) == 2 + len(LEAVES) - 1


# -- the call log, one level down -------------------------------------------------------------------


def logged_backend(project: Project, server: FakeOpenAIServer, concurrency: int = 1) -> Any:
    settings = BackendSettings(backend="openai", base_url=server.base_url, model="m", concurrency=concurrency)
    settings = settings.model_copy(update={"max_retries": RETRIES, "timeout_s": 5.0})
    return recording(OpenAICompatLLM(settings), project, project.start_run("synth"))


def question(text: str) -> ChatRequest:
    return ChatRequest.chat(None, text)


def test_once_the_endpoint_gave_up_a_run_sends_nothing_more(project: Project) -> None:
    with FakeOpenAIServer(default=Reply.error(503, "overloaded")) as server:
        llm = logged_backend(project, server)

        async def go() -> None:
            with pytest.raises(EndpointError, match="kept failing after 3 attempts: HTTP 503: overloaded"):
                await llm.complete(question("first"))
            with pytest.raises(EndpointError, match="not sent, an earlier call failed: .* kept failing"):
                await llm.complete(question("second"))
            await llm.aclose()

        asyncio.run(go())
        assert len(server.chat_requests) == 1 + RETRIES
        counted = project.stats()
        assert (counted.requests, counted.failed) == (1 + RETRIES, 1)


def test_a_request_cancelled_in_flight_is_counted(project: Project) -> None:
    def respond(request: RecordedRequest) -> Reply:
        return Reply.hang() if request.last_user_message() == "slow" else Reply.error(500)

    with FakeOpenAIServer(respond=respond) as server:
        llm = logged_backend(project, server, concurrency=2)

        async def failing_once_slow_is_out() -> None:
            while not server.chat_requests:  # the slow request has reached the server
                await asyncio.sleep(0.01)
            await llm.complete(question("fails"))

        async def go() -> None:
            with pytest.raises(EndpointError, match="HTTP 500"):
                async with in_completion_order([llm.complete(question("slow")), failing_once_slow_is_out()]) as done:
                    for next_done in done:
                        await next_done
            await llm.aclose()

        asyncio.run(go())
        counted = project.stats()
        assert counted.requests == len(server.chat_requests) == 1 + 1 + RETRIES
        assert (counted.failed, counted.failed_requests) == (2, 1 + 1 + RETRIES)
        with sqlite3.connect(project.path / "treesynth.db") as conn:
            rows = dict(conn.execute("SELECT error, attempts FROM llm_calls WHERE cached = 0").fetchall())
        assert rows.pop("cancelled") == 1
        assert list(rows.values()) == [1 + RETRIES] and "kept failing after 3 attempts" in next(iter(rows))
