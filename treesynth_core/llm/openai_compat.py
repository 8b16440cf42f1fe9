"""The ``openai`` backend: any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp, Ollama, ...).

:class:`OpenAICompatLLM` sends one chat completion per :class:`~treesynth_core.llm.base.ChatRequest`
as a plain JSON ``POST`` (:mod:`.http_post`: aiohttp, or httpx; the ``openai`` SDK's request and
response objects cost more CPU than the rest of the client together): retries (429, 5xx, timeouts,
connection errors; exponential backoff with full jitter, ``Retry-After`` honoured), the concurrency
limit and the structured-output fallbacks are ours, so they behave the same on every server; the
run's Stop aborts a call in flight (:mod:`.stop`). The pieces: the request body
(:mod:`.openai_request`), reading replies and error messages (:mod:`.openai_reply`), what a failure
means and when to retry (:mod:`.openai_retry`); this module holds the backend that drives them.

The API key is read once, from the environment variable *named* by ``settings.api_key_env``. It is
never put into an error message, a log line, ``repr()`` or :meth:`OpenAICompatLLM.describe`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

import httpx

from ..errors import AuthError, ConfigError, EndpointError
from ..progress import plural
from .base import ChatRequest, ChatResult, note_attempt, note_failed_attempt
from .http_post import HttpReply, HttpStack, HttpxPoster, Poster, PostFailed, build_poster, json_headers
from .openai_reply import BadReply, completion, decode, rejects_format, reply_message
from .openai_request import FORMAT_LADDERS, Format, request_body
from .openai_retry import backoff, connection_reason, raise_if_refused, raise_unless_retryable, retry_after
from .settings import DEFAULT_BASE_URL, BackendSettings, is_loopback
from .stop import unless_stopped

log = logging.getLogger(__name__)

CHAT_PATH = "/chat/completions"
#: Sent as the key to local servers (llama.cpp, vLLM, Ollama) when the key variable is unset.
LOCAL_DUMMY_KEY = "not-needed"

Sleep = Callable[[float], Awaitable[None]]
#: Headers the ``openai`` SDK sent from these variables when set (kept so that moving off it changed nothing).
SDK_HEADER_ENV = {"OpenAI-Organization": "OPENAI_ORG_ID", "OpenAI-Project": "OPENAI_PROJECT_ID"}


class _StatusError(Exception):
    """A reply with an error status: its status, headers and the server's own message."""

    def __init__(self, reply: HttpReply, message: str) -> None:
        super().__init__(f"HTTP {reply.status}")
        self.status_code, self.headers, self.message = reply.status, reply.headers, message


class _FormatRejected(Exception):
    """The server refused the ``response_format`` sent at ladder position ``level``."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.level = level


@dataclass
class _LoopClient:
    """The HTTP client and concurrency gate of one event loop (neither may cross loops).

    ``closer`` (None for an injected HTTP client, which the caller owns) closes the client when the
    loop ends: see :func:`_close_when_loop_ends`.
    """

    loop: asyncio.AbstractEventLoop
    poster: Poster
    semaphore: asyncio.Semaphore
    closer: AsyncGenerator[None, None] | None


class OpenAICompatLLM:
    """An :class:`~treesynth_core.llm.base.LLM` talking to an OpenAI-compatible ``/chat/completions``.

    Parameters
    ----------
    settings
        Backend settings; ``model`` is required, ``base_url`` defaults to OpenAI's.
    http_client
        An ``httpx.AsyncClient`` to send through (tests inject one with a ``MockTransport``). The
        caller owns it: :meth:`aclose` leaves it open. It must be used from one event loop only.
    sleep
        Awaited with the backoff delay before each retry; tests pass a recorder that does not sleep.
    rng
        Source of backoff jitter.
    http_stack
        The HTTP client to build when none is injected (see :data:`HttpStack`).

    One object may serve several event loops in turn (``asyncio.run`` after ``asyncio.run``): each
    loop gets its own HTTP client and semaphore, closed when that loop ends or by :meth:`aclose`.
    """

    backend = "openai"
    #: Every HTTP request is noted (:func:`~treesynth_core.llm.base.note_attempt`) for the call log.
    counts_attempts = True

    def __init__(
        self,
        settings: BackendSettings,
        *,
        http_client: httpx.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        http_stack: HttpStack = "auto",
    ) -> None:
        if not settings.model:
            raise ConfigError(
                "the openai backend needs a model name: set --model or TREESYNTH_MODEL (e.g. gpt-4o-mini)"
            )
        self.model: str = settings.model
        self.base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.settings = settings
        self.prompt_profile = settings.prompt_profile()
        self._api_key = read_api_key(settings.api_key_env, self.base_url)
        self._url = self.base_url + CHAT_PATH
        self._headers = json_headers(self._api_key, {h: os.environ.get(v) for h, v in SDK_HEADER_ENV.items()})
        self._http_client = http_client
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._http_stack = http_stack
        self._ladder = FORMAT_LADDERS[settings.structured]
        self._format_level = 0
        self._loop_client: _LoopClient | None = None

    def __repr__(self) -> str:
        return f"OpenAICompatLLM(model={self.model!r}, base_url={self.base_url!r})"

    def describe(self) -> str:
        """One line for logs and the UI (names the key variable, never the key)."""
        return f"openai-compatible {self.model} at {self.base_url} (key from ${self.settings.api_key_env})"

    @property
    def structured_format(self) -> Format:
        """The structured-output format requests with a schema use now (after any fallback)."""
        return self._ladder[self._format_level]

    async def complete(self, request: ChatRequest) -> ChatResult:
        """Send ``request``; retry transient failures; fall back to simpler structured formats. When the
        run's Stop comes (:mod:`.stop`) the request out is aborted, or the backoff sleep cut short, and
        the call raises :class:`~treesynth_core.errors.Cancelled`."""
        return await unless_stopped(self._complete(request))

    async def _complete(self, request: ChatRequest) -> ChatResult:
        while True:
            level = self._format_level
            fmt = self._ladder[level] if request.schema is not None else "none"
            try:
                return await self._complete_with_retries(request, fmt, level)
            except _FormatRejected as rejected:
                self._fall_back(rejected.level)

    async def aclose(self) -> None:
        """Close the HTTP connections this object opened in the running event loop."""
        loop_client, self._loop_client = self._loop_client, None
        if loop_client is None or loop_client.closer is None:
            return
        if loop_client.loop is asyncio.get_running_loop():
            await loop_client.closer.aclose()

    # -- one request, with retries ------------------------------------------------------------------

    async def _complete_with_retries(self, request: ChatRequest, fmt: Format, level: int) -> ChatResult:
        attempts = self.settings.max_retries + 1
        body = json.dumps(request_body(self.model, request, fmt), ensure_ascii=False).encode()
        for attempt in range(attempts):
            try:
                return await self._attempt(body)
            except _StatusError as exc:
                reason = f"HTTP {exc.status_code}"
                note_failed_attempt(reason)
                self._raise_if_final(exc, fmt, level, attempt, attempts)
                delay = retry_after(exc.headers)
                delay = backoff(attempt, self._rng) if delay is None else delay
            except PostFailed as exc:
                reason = self._reason(exc)
                note_failed_attempt(reason, reached=reason != "connection refused")
                if attempt + 1 >= attempts:
                    raise EndpointError(
                        f"could not reach {self.base_url} after {plural(attempts, 'attempt')}: {reason}"
                    ) from None
                delay = backoff(attempt, self._rng)
            except BadReply as exc:
                reason = exc.what
                note_failed_attempt(reason)
                if attempt + 1 >= attempts:
                    raise EndpointError(
                        f"{self.base_url} sent no usable chat completion in {plural(attempts, 'attempt')}; "
                        f"the last was {reason}"
                    ) from None
                delay = backoff(attempt, self._rng)
            log.info("%s: %s; retry %d/%d in %.2fs", self.base_url, reason, attempt + 1, attempts - 1, delay)
            await self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _attempt(self, body: bytes) -> ChatResult:
        loop_client = await self._client_for_running_loop()
        async with loop_client.semaphore:
            started = time.perf_counter()
            note_attempt()
            reply = await loop_client.poster.post(self._url, body, self._headers)
            latency = time.perf_counter() - started
        if not 200 <= reply.status < 300:
            raise _StatusError(reply, reply_message(reply, self._redact))
        return completion(decode(reply, self._redact), self.model, latency, self._redact)

    def _raise_if_final(self, exc: _StatusError, fmt: Format, level: int, attempt: int, attempts: int) -> None:
        """Raise the error a status reply ends in; return if it is worth retrying."""
        status, message = exc.status_code, exc.message
        raise_if_refused(status, message, self.base_url, self.settings.api_key_env)
        if fmt != "none" and rejects_format(status, message):
            if level + 1 < len(self._ladder):
                raise _FormatRejected(level) from None
            raise EndpointError(
                f"{self.base_url} rejected response_format {fmt!r} (HTTP {status}): {message}; "
                "try structured output 'auto' or 'none'"
            ) from None
        raise_unless_retryable(status, message, self.base_url, attempt, attempts)

    def _fall_back(self, rejected_level: int) -> None:
        """Remember that the format at ``rejected_level`` is unsupported (concurrent calls agree)."""
        new_level = max(self._format_level, rejected_level + 1)
        if new_level != self._format_level:
            log.warning(
                "%s does not accept response_format %r; using %r from now on",
                self.base_url,
                self._ladder[rejected_level],
                self._ladder[new_level],
            )
            self._format_level = new_level

    # -- clients and messages -----------------------------------------------------------------------

    async def _client_for_running_loop(self) -> _LoopClient:
        """The client for this event loop, created on first use (a new ``asyncio.run`` gets a new one)."""
        loop = asyncio.get_running_loop()
        current = self._loop_client
        if current is not None and current.loop is loop:
            return current
        if self._http_client is not None:
            poster: Poster = HttpxPoster(self._http_client, owned=False)
        else:
            poster = build_poster(self._http_stack, self.settings.concurrency, self.settings.timeout_s)
        closer = None if self._http_client is not None else _close_when_loop_ends(poster)
        semaphore = asyncio.Semaphore(self.settings.concurrency)
        current = self._loop_client = _LoopClient(loop, poster, semaphore, closer)
        if closer is not None:
            await anext(closer)
        return current

    def _reason(self, exc: BaseException) -> str:
        reason = connection_reason(exc)
        return f"timed out after {self.settings.timeout_s:g}s" if reason == "timeout" else self._redact(reason)

    def _redact(self, text: str) -> str:
        if self._api_key and self._api_key != LOCAL_DUMMY_KEY:
            text = text.replace(self._api_key, "***")
        return text


async def _close_when_loop_ends(client: Poster) -> AsyncGenerator[None, None]:
    """Wait at ``yield`` while the loop runs, then close ``client`` inside that loop.

    ``asyncio.run`` finalizes the async generators still open before it closes the loop, so a
    caller that never awaits :meth:`OpenAICompatLLM.aclose` still gets its connections closed
    properly (no "unclosed session" warnings when the next ``asyncio.run`` makes a new client).
    """
    try:
        yield
    finally:
        await client.aclose()


def read_api_key(env_name: str, base_url: str) -> str:
    """The key from ``$env_name``; a dummy for local servers; AuthError for remote ones."""
    key = os.environ.get(env_name, "").strip()
    if key:
        return key
    if is_loopback(base_url):
        return LOCAL_DUMMY_KEY
    raise AuthError(f"no API key for {base_url}: set the environment variable {env_name}")
