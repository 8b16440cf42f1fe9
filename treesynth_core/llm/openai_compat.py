"""The ``openai`` backend: any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp, Ollama, ...).

:class:`OpenAICompatLLM` sends one chat completion per :class:`~treesynth_core.llm.base.ChatRequest`
as a plain JSON ``POST`` (:mod:`.http_post`: aiohttp, or httpx; the ``openai`` SDK's request and
response objects cost more CPU than the rest of the client together): retries (429, 5xx, timeouts,
connection errors; exponential backoff with full jitter, ``Retry-After`` honoured), the concurrency
limit and the structured-output fallbacks are ours, so they behave the same on every server.

The API key is read once, from the environment variable *named* by ``settings.api_key_env``. It is
never put into an error message, a log line, ``repr()`` or :meth:`OpenAICompatLLM.describe`.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import json
import logging
import os
import random
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from ..errors import AuthError, ConfigError, EndpointError
from ..progress import plural
from .base import ChatRequest, ChatResult, note_attempt, note_failed_attempt
from .http_post import HttpReply, HttpStack, HttpxPoster, Poster, PostFailed, build_poster, json_headers
from .settings import DEFAULT_BASE_URL, BackendSettings, is_loopback

log = logging.getLogger(__name__)

CHAT_PATH = "/chat/completions"
#: Sent as the key to local servers (llama.cpp, vLLM, Ollama) when the key variable is unset.
LOCAL_DUMMY_KEY = "not-needed"

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 20.0
RETRY_AFTER_CAP_S = 60.0
MAX_SERVER_MESSAGE_CHARS = 300
#: How much of a reply that is not a chat completion an error quotes.
BODY_SNIPPET_CHARS = 100
#: Things in a quoted reply that look like credentials (besides our own key, always blanked).
_SECRET_LIKE = re.compile(r"(?i)(bearer\s+|sk-|api[_-]?key[\"':= ]+)[A-Za-z0-9._~+/=-]{6,}")

#: How a schema is asked for. ``json_object_schema`` is ``{"type": "json_object", "schema": ...}``,
#: the form llama.cpp's Python server (and Anyscale/Together-style servers) understand.
Format = Literal["json_schema", "json_object_schema", "json_object", "none"]

#: For each ``settings.structured`` value, the formats tried in order when the server rejects one.
FORMAT_LADDERS: dict[str, tuple[Format, ...]] = {
    "auto": ("json_schema", "json_object_schema", "json_object", "none"),
    "json_schema": ("json_schema",),
    "json_object": ("json_object_schema", "json_object"),
    "none": ("none",),
}

#: Words in an error reply that say "I don't support this response_format".
_FORMAT_WORDS = ("response_format", "json_schema", "json_object")
_UNSUPPORTED_WORDS = ("unsupported", "not supported", "not implemented")

Sleep = Callable[[float], Awaitable[None]]
#: Headers the ``openai`` SDK sent from these variables when set (kept so that moving off it changed nothing).
SDK_HEADER_ENV = {"OpenAI-Organization": "OPENAI_ORG_ID", "OpenAI-Project": "OPENAI_PROJECT_ID"}


class _BadReply(Exception):
    """A reply that is not a usable chat completion: a body that is not JSON, an HTML page (a proxy or
    a captive portal), no choices, no message content. Retried like a 5xx: such faults pass."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


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
        """Send ``request``; retry transient failures; fall back to simpler structured formats."""
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
                delay = self._backoff(attempt) if delay is None else delay
            except PostFailed as exc:
                reason = self._reason(exc)
                note_failed_attempt(reason, reached=reason != "connection refused")
                if attempt + 1 >= attempts:
                    raise EndpointError(
                        f"could not reach {self.base_url} after {plural(attempts, 'attempt')}: {reason}"
                    ) from None
                delay = self._backoff(attempt)
            except _BadReply as exc:
                reason = exc.what
                note_failed_attempt(reason)
                if attempt + 1 >= attempts:
                    raise EndpointError(
                        f"{self.base_url} sent no usable chat completion in {plural(attempts, 'attempt')}; "
                        f"the last was {reason}"
                    ) from None
                delay = self._backoff(attempt)
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
        return self._to_result(self._decode(reply), latency)

    def _decode(self, reply: HttpReply) -> Any:
        """A reply's JSON (as the SDK read it: a body labelled JSON is parsed, any other is text)."""
        try:
            if not reply.content_type.endswith("json"):
                return reply.body.decode("utf-8")
            return json.loads(reply.body)
        except UnicodeDecodeError:
            raise _BadReply("a body that is not text") from None
        except json.JSONDecodeError as exc:
            raise _BadReply(self._quote(exc.doc)) from None

    def _raise_if_final(self, exc: _StatusError, fmt: Format, level: int, attempt: int, attempts: int) -> None:
        """Raise the error a status reply ends in; return if it is worth retrying."""
        status, message = exc.status_code, exc.message
        raise_if_refused(status, message, self.base_url, self.settings.api_key_env)
        if fmt != "none" and _rejects_format(status, message):
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

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        return self._rng.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))

    # -- clients, results, messages -----------------------------------------------------------------

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

    def _to_result(self, data: Any, latency: float) -> ChatResult:
        """Read a ``chat.completion`` JSON object (kept as plain dicts: cheaper than SDK models)."""
        if isinstance(data, str):
            raise _BadReply(self._quote(data))
        if not isinstance(data, dict):
            raise _BadReply(f"JSON that is not a chat completion: {self._quote(json.dumps(data), kind=None)}")
        try:
            return chat_result(data, self.model, latency)
        except _NoChoices:
            raise _BadReply(
                f"a reply with no choices for model {self.model!r}: {self._quote(json.dumps(data), kind=None)}"
            ) from None
        except _NoContent as exc:
            raise _BadReply(
                f"a reply without content for model {self.model!r} (finish_reason={exc.finish_reason!r})"
            ) from None

    def _reason(self, exc: BaseException) -> str:
        reason = connection_reason(exc)
        return f"timed out after {self.settings.timeout_s:g}s" if reason == "timeout" else self._redact(reason)

    def _quote(self, body: str, kind: str | None = "") -> str:
        """A body that is not a chat completion, for an error: what it looks like (an HTML page, not
        JSON, empty) and its first :data:`BODY_SNIPPET_CHARS` characters on one line, secrets blanked.
        ``kind=None`` quotes without saying what it is."""
        flat = " ".join(body.split())
        if not flat:
            return "an empty body"
        if kind == "":
            kind = (
                "an HTML page" if flat.startswith("<") and "html" in flat[:300].lower() else "a body that is not JSON"
            )
        cut = _SECRET_LIKE.sub(r"\1***", self._redact(flat))
        quoted = repr(cut[:BODY_SNIPPET_CHARS]) + ("..." if len(cut) > BODY_SNIPPET_CHARS else "")
        return quoted if kind is None else f"{kind}: {quoted}"

    def _redact(self, text: str) -> str:
        if self._api_key and self._api_key != LOCAL_DUMMY_KEY:
            text = text.replace(self._api_key, "***")
        return text


class _NoChoices(ValueError):
    """A JSON object that is not a chat completion: it has no choices."""


class _NoContent(ValueError):
    """A chat completion whose first choice has no message content."""

    def __init__(self, finish_reason: Any) -> None:
        super().__init__(f"no message content (finish_reason={finish_reason!r})")
        self.finish_reason = finish_reason


def chat_result(data: Mapping[str, Any], model: str, latency: float = 0.0) -> ChatResult:
    """Read a ``chat.completion`` JSON object (kept as plain dicts: cheaper than SDK models): the
    first choice's text, the model that wrote it (``model`` when the reply does not say), token
    counts. Raises ``ValueError`` when it has no choices or no message content. Batch output files
    (:mod:`treesynth_core.batch`) are read with it too."""
    choices = data.get("choices") or []
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _NoChoices("no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        raise _NoContent(choice.get("finish_reason"))
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return ChatResult(
        text=text,
        model=str(data.get("model") or model),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        latency_s=latency,
        finish_reason=choice.get("finish_reason"),
    )


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


def request_body(model: str, request: ChatRequest, fmt: Format) -> dict[str, Any]:
    """The JSON body of ``POST /chat/completions``: model, messages, sampling, response_format (in
    the structured-output format ``fmt``). Batch files (:mod:`treesynth_core.batch`) carry the same body."""
    messages = request.message_dicts()
    params: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    if request.seed is not None:
        params["seed"] = request.seed
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.schema is None:
        return params
    schema = json.loads(json.dumps(request.schema))  # plain dicts and lists, whatever Mapping came in
    if fmt == "json_schema":
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": request.schema_name, "schema": schema, "strict": False},
        }
        return params
    if fmt == "json_object_schema":
        params["response_format"] = {"type": "json_object", "schema": schema}
    elif fmt == "json_object":
        params["response_format"] = {"type": "json_object"}
    params["messages"] = _with_schema_instruction(messages, schema)
    return params


def _with_schema_instruction(messages: list[dict[str, str]], schema: Any) -> list[dict[str, str]]:
    """Append "reply with JSON matching <schema>" to the last user message (or add one)."""
    instruction = "Reply with JSON only, matching this JSON schema: " + json.dumps(schema, ensure_ascii=False)
    for message in reversed(messages):
        if message["role"] == "user":
            message["content"] = f"{message['content']}\n\n{instruction}"
            return messages
    return [*messages, {"role": "user", "content": instruction}]


def server_message(exc: Any, redact: Callable[[str], str]) -> str:
    """The server's own error message of an ``openai.APIStatusError``, shortened, with the key
    blanked out should it echo it."""
    message = _message_of(exc.body)
    return _one_line(exc.response.text or exc.message if message is None else message, redact)


def reply_message(reply: HttpReply, redact: Callable[[str], str]) -> str:
    """The server's own message in an error reply, read as the ``openai`` SDK reads it (the JSON
    body's ``error``, its ``message``, ``detail`` or ``error``), shortened, the key blanked out."""
    text = reply.text
    body: Any = text.strip()
    try:
        body = json.loads(body)
    except ValueError:
        pass
    data = body.get("error", body) if isinstance(body, Mapping) else body
    message = _message_of(data)
    return _one_line(text or f"Error code: {reply.status}" if message is None else message, redact)


def _message_of(body: Any) -> Any:
    """What an error body says (None when it says nothing)."""
    message = body
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("detail") or body.get("error") or body
    return None if message == "" else message


def _one_line(message: Any, redact: Callable[[str], str]) -> str:
    return " ".join(redact(str(message)).split())[:MAX_SERVER_MESSAGE_CHARS]  # one line: an HTML page has many


def raise_if_refused(status: int, message: str, base_url: str, key_env: str) -> None:
    """HTTP 401/403: the key is wrong or missing; never worth retrying."""
    if status in (401, 403):
        raise AuthError(
            f"{base_url} refused the API key (HTTP {status}): {message}. Check the key in ${key_env}."
        ) from None


def raise_unless_retryable(status: int, message: str, where: str, attempt: int, attempts: int) -> None:
    """Return when a status is worth retrying (429, 5xx) and attempts are left; else raise
    :class:`EndpointError` saying what the server answered."""
    if not (status == 429 or status >= 500):
        raise EndpointError(f"{where} answered HTTP {status}: {message}") from None
    if attempt + 1 >= attempts:
        raise EndpointError(
            f"{where} kept failing after {plural(attempts, 'attempt')}: HTTP {status}: {message}"
        ) from None


def _rejects_format(status: int, message: str) -> bool:
    """Whether an error reply says the server does not support the response_format we sent.

    4xx replies count when they mention the format or say "unsupported"; 5xx replies only when they
    name the format (llama.cpp's Python server reports its request validation errors as HTTP 500).
    """
    if status in (401, 403, 408, 429):
        return False
    text = message.lower()
    names_format = any(word in text for word in _FORMAT_WORDS)
    if 400 <= status < 500:
        return names_format or any(word in text for word in _UNSUPPORTED_WORDS)
    return status >= 500 and names_format


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait (``retry-after-ms`` or ``Retry-After``), capped; else None."""
    milliseconds = _to_float(headers.get("retry-after-ms"))
    if milliseconds is not None:
        seconds: float | None = milliseconds / 1000.0
    else:
        seconds = _retry_after_seconds(headers.get("retry-after"))
    if seconds is None or seconds < 0:
        return None
    return min(seconds, RETRY_AFTER_CAP_S)


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` is either a number of seconds or an HTTP date."""
    if not value:
        return None
    number = _to_float(value)
    if number is not None:
        return number
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


def _to_float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def connection_reason(exc: BaseException) -> str:
    """Why a connection failed: "connection refused", "timeout", or the innermost error's own words.

    The outer exception's type is not to be trusted: the SDK's aiohttp transport reports a refused
    connection and a dropped one as ``ConnectTimeout``, so the cause chain is read instead.
    """
    chain = _cause_chain(exc)
    if any(_is_refused(cause) for cause in chain):
        return "connection refused"
    # anyio ends a deadline with a CancelledError at the bottom of the chain: look above it
    root = next(cause for cause in reversed(chain) if isinstance(cause, Exception))
    if isinstance(root, TimeoutError) or "timeout" in type(root).__name__.lower():
        return "timeout"
    text = str(root).strip()
    return f"{type(root).__name__}: {text}" if text else type(root).__name__


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return chain


def _is_refused(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED
