"""A tiny OpenAI-compatible HTTP server for tests and benchmarks.

:class:`FakeOpenAIServer` listens on 127.0.0.1 (a free port) from a background thread, speaks plain
HTTP/1.1 with keep-alive over asyncio streams, and serves ``POST /v1/chat/completions`` and
``GET /v1/models``. Each chat request is answered by the next scripted :class:`Reply`, else by the
``respond`` callback, else by the default reply; every request is recorded.

    with FakeOpenAIServer(delay_s=0.1) as server:
        server.script(Reply.error(429), Reply.ok("hello"))
        ...  # point a client at server.base_url
        assert server.requests[-1].body["seed"] == 7

:class:`ReplayByPurpose` is a ``respond`` callback that answers each request with the next scripted
reply for its purpose (told by the name of its JSON schema), e.g. the hand-written capable-model
replies of ``tests/fixtures/capable/``.

:class:`FakeServerProcess` runs the same server in a child process (``python tests/helpers_http.py``),
so that a benchmark's client and server do not share one interpreter lock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["respond", "hang", "close", "reset", "die"]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    ``action`` is ``"respond"`` (send ``status`` with ``body``, or a chat completion of ``text`` when
    ``body`` is None), ``"hang"`` (never answer; the connection stays open until the server stops),
    ``"close"`` (drop the connection without answering), ``"reset"`` (abort it with a TCP RST) or
    ``"die"`` (the server stops listening and drops every connection: later requests are refused).
    ``delay_s`` overrides the server's delay. A ``str`` body is sent as it is, with ``content_type``.
    """

    status: int = 200
    text: str = "ok"
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    action: Action = "respond"
    delay_s: float | None = None
    #: The completion's ``finish_reason``: ``"length"`` scripts a reply cut off by ``max_tokens``.
    finish_reason: str = "stop"
    content_type: str = "application/json"

    @staticmethod
    def ok(text: str = "ok", **kwargs: Any) -> Reply:
        return Reply(text=text, **kwargs)

    @staticmethod
    def error(status: int, message: str = "", headers: Mapping[str, str] | None = None) -> Reply:
        """An OpenAI-style error reply: ``{"error": {"message": ..., "type": ..., "code": ...}}``."""
        body = {"error": {"message": message or _REASONS.get(status, "error"), "type": "fake_error", "code": None}}
        return Reply(status=status, body=body, headers=dict(headers or {}))

    @staticmethod
    def hang() -> Reply:
        return Reply(action="hang")

    @staticmethod
    def close() -> Reply:
        return Reply(action="close")

    @staticmethod
    def raw(body: str, content_type: str = "application/json", status: int = 200) -> Reply:
        """A body sent byte for byte: text that is not JSON, an HTML page (``content_type="text/html"``)."""
        return Reply(status=status, body=body, content_type=content_type)

    @staticmethod
    def reset() -> Reply:
        return Reply(action="reset")

    @staticmethod
    def die() -> Reply:
        return Reply(action="die")


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the server saw it; header names are lower case, ``body`` is the parsed JSON."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def response_format(self) -> Any:
        return self.body.get("response_format") if isinstance(self.body, dict) else None

    def last_user_message(self) -> str:
        messages = self.body.get("messages", []) if isinstance(self.body, dict) else []
        return next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")


def completion_body(text: str, model: str, request: RecordedRequest, finish_reason: str = "stop") -> dict[str, Any]:
    """A ``chat.completion`` object answering ``request`` with ``text``."""
    prompt_chars = sum(len(str(m.get("content", ""))) for m in (request.body or {}).get("messages", []))
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": max(1, prompt_chars // 4),
            "completion_tokens": max(1, len(text) // 4),
            "total_tokens": max(1, prompt_chars // 4) + max(1, len(text) // 4),
        },
    }


#: The purpose a request serves, by the name of the JSON schema it sends (``ChatRequest.schema_name``).
#: Pivots and leaf samples share the "samples" schema; a scenario with both tells them apart itself.
SCHEMA_PURPOSE = {"samples": "pivots", "criterion": "criterion", "coverage": "coverage", "route": "route"}


def purpose_of(request: RecordedRequest) -> str:
    """The purpose of a chat request: from its ``json_schema`` name, else ``""``."""
    response_format = request.response_format or {}
    name = (response_format.get("json_schema") or {}).get("name", "") if isinstance(response_format, dict) else ""
    return SCHEMA_PURPOSE.get(name, name)


class ReplayByPurpose:
    """A ``respond`` callback for :class:`FakeOpenAIServer`: each request gets the next reply scripted
    for its purpose (:func:`purpose_of`); a request with none left gets an HTTP 400 naming the purpose
    (not retried), so an unexpected call fails fast and visibly. ``asked`` lists the purposes seen."""

    def __init__(self, replies: Mapping[str, Sequence[Reply]]) -> None:
        self.queues = {purpose: deque(items) for purpose, items in replies.items()}
        self.asked: list[str] = []
        self._lock = threading.Lock()

    @classmethod
    def from_scenario(cls, scenario: Mapping[str, Any]) -> ReplayByPurpose:
        """From a ``tests/fixtures/capable/*.json`` scenario (its ``replies`` by purpose)."""
        replies = {
            purpose: [Reply.ok(item["text"], finish_reason=item.get("finish_reason", "stop")) for item in items]
            for purpose, items in scenario["replies"].items()
        }
        return cls(replies)

    def __call__(self, request: RecordedRequest) -> Reply:
        purpose = purpose_of(request)
        with self._lock:
            self.asked.append(purpose)
            queue = self.queues.get(purpose)
            if queue:
                return queue.popleft()
        return Reply.error(400, f"no scripted reply left for purpose {purpose!r}")

    def left(self) -> dict[str, int]:
        """Scripted replies not yet served, by purpose (only purposes with some left)."""
        return {purpose: len(queue) for purpose, queue in self.queues.items() if queue}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1, run in a daemon thread with its own event loop.

    Parameters
    ----------
    delay_s
        Seconds each chat reply waits before it is sent (a stand-in for generation time).
    respond
        Called with each chat request that no scripted reply is left for; returns the reply.
    default
        The reply used when neither a scripted reply nor ``respond`` applies.
    model
        The model name reported in replies and by ``/v1/models``.
    port
        The port to listen on (0: a free one). A server started again on the port of one that died
        (:meth:`Reply.die`) stands for the endpoint coming back.
    """

    def __init__(
        self,
        *,
        delay_s: float = 0.0,
        respond: Callable[[RecordedRequest], Reply] | None = None,
        default: Reply | None = None,
        model: str = "fake-model",
        port: int = 0,
    ) -> None:
        self.delay_s = delay_s
        self.respond = respond
        self.default = default or Reply.ok()
        self.model = model
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.port = port
        self._scripted: deque[Reply] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        self._thread = threading.Thread(target=self._run, name="fake-openai-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next chat requests, in order."""
        self._scripted.extend(replies)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        handlers: set[asyncio.Task[None]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await self._handle_connection(reader, writer)
            except asyncio.CancelledError:
                pass  # stopping; ending normally keeps asyncio's stream callback from logging it
            finally:
                handlers.discard(task)

        server = await asyncio.start_server(on_connect, "127.0.0.1", self.port, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()

    # -- HTTP ---------------------------------------------------------------------------------------

    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                keep_open = await self._answer(request, writer)
                if not keep_open or request.headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _answer(self, request: RecordedRequest, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; return False when the connection must be dropped."""
        self.requests.append(request)
        if request.method == "GET" and request.path.rstrip("/").endswith("/models"):
            models = {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "fake"}]}
            await _write_json(writer, 200, models, {})
            return True
        if request.method != "POST" or not request.path.rstrip("/").endswith("/chat/completions"):
            await _write_json(writer, 404, Reply.error(404, f"no route {request.path}").body, {})
            return True
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer_chat(request, self._next_reply(request), writer)
        finally:
            self.in_flight -= 1

    def _next_reply(self, request: RecordedRequest) -> Reply:
        if self._scripted:
            return self._scripted.popleft()
        if self.respond is not None:
            return self.respond(request)
        return self.default

    async def _answer_chat(self, request: RecordedRequest, reply: Reply, writer: asyncio.StreamWriter) -> bool:
        delay = self.delay_s if reply.delay_s is None else reply.delay_s
        if delay > 0:
            await asyncio.sleep(delay)
        if reply.action == "hang":
            await asyncio.Event().wait()  # until the server stops and cancels us
        if reply.action == "close":
            return False
        if reply.action == "reset":
            _reset(writer)
            return False
        if reply.action == "die":
            assert self._stopping is not None
            self._stopping.set()  # stop listening; _serve cancels every connection, this one too
            _reset(writer)
            return False
        body = (
            reply.body
            if reply.body is not None
            else completion_body(reply.text, self.model, request, reply.finish_reason)
        )
        await _write_json(writer, reply.status, body, reply.headers, reply.content_type)
        return True


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), as a crashing server or a proxy would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    """Read one HTTP/1.1 request (Content-Length bodies only); None at end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, path, _version = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    raw = await reader.readexactly(length) if length else b""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return RecordedRequest(method=method, path=path, headers=headers, body=body)


async def _write_json(
    writer: asyncio.StreamWriter,
    status: int,
    body: Any,
    headers: Mapping[str, str],
    content_type: str = "application/json",
) -> None:
    payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"Content-Type: {content_type}"]
    lines += [f"Content-Length: {len(payload)}", "Connection: keep-alive"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
    await writer.drain()


class FakeServerProcess:
    """A :class:`FakeOpenAIServer` (scripted replies aside) in a child process.

    ``stats`` holds what the child reported when it stopped: ``requests``, ``max_in_flight`` and
    ``cpu_s`` (the server's own CPU time).
    """

    def __init__(self, *, delay_s: float = 0.0, model: str = "fake-model") -> None:
        self.delay_s = delay_s
        self.model = model
        self.base_url = ""
        self.stats: dict[str, Any] = {}
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> FakeServerProcess:
        command = [sys.executable, __file__, "--delay", str(self.delay_s), "--model", self.model]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("fake OpenAI server process did not start")
        self.base_url = json.loads(line)["base_url"]
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is None:
            return
        out, _ = self._process.communicate(timeout=30)  # closing stdin tells the child to stop
        self.stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        self._process = None


def _main(argv: list[str] | None = None) -> int:
    """Serve until stdin closes; print the base URL first and the stats last, one JSON line each."""
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible server on 127.0.0.1.")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per chat reply")
    parser.add_argument("--model", default="fake-model")
    args = parser.parse_args(argv)
    started = time.process_time()
    with FakeOpenAIServer(delay_s=args.delay, model=args.model) as server:
        print(json.dumps({"base_url": server.base_url}), flush=True)
        sys.stdin.read()
    stats = {
        "requests": len(server.requests),
        "max_in_flight": server.max_in_flight,
        "cpu_s": round(time.process_time() - started, 3),
    }
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())


def openai_flags(base_url: str, model: str) -> list[str]:
    """The ``treesynth new`` flags that point a project at an OpenAI-compatible server."""
    return ["--llm", "openai", "--base-url", base_url, "--model", model]
