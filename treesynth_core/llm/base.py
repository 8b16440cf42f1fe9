"""The one seam every model sits behind: an async ``complete(ChatRequest) -> ChatResult``.

Backends (``openai_compat``, ``embedded``) implement :class:`LLM`; caching and call logging wrap it
(:mod:`treesynth_core.llm.recording`), so growth and synthesis code never see HTTP or SQLite.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

R = TypeVar("R")

#: Bump when the meaning of a cached reply changes, so old cache rows stop matching.
CACHE_KEY_VERSION = "b2v1"


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion request.

    ``schema`` is a JSON schema the reply must follow (structured output where the backend supports
    it). ``meta`` is for logs only (purpose, node id, ...) and never part of the cache key.
    ``validate`` says what is wrong with a reply (None: usable); the recording wrappers log a reply
    it rejects as failed and never cache or serve it (see :func:`reply_problem`). It is neither part
    of the cache key nor of the log.
    """

    messages: tuple[tuple[str, str], ...]
    temperature: float = 0.7
    max_tokens: int = 1024
    seed: int | None = None
    top_p: float | None = None
    schema: Mapping[str, Any] | None = None
    schema_name: str = "reply"
    meta: Mapping[str, str] = field(default_factory=dict)
    validate: Callable[[ChatResult], str | None] | None = field(default=None, compare=False, repr=False)

    @staticmethod
    def chat(system: str | None, user: str, **kwargs: Any) -> ChatRequest:
        messages = ((("system", system),) if system else ()) + (("user", user),)
        return ChatRequest(messages=messages, **kwargs)

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def purpose(self) -> str:
        return self.meta.get("purpose", "")


@dataclass(frozen=True)
class ChatResult:
    """A reply: its text, the model that wrote it, token counts and timing."""

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    call_id: str | None = None
    finish_reason: str | None = None
    #: What the request's ``validate`` found wrong with this reply (None: usable, or not checked).
    invalid: str | None = None


def reply_problem(request: ChatRequest, result: ChatResult) -> str | None:
    """What ``request.validate`` finds wrong with ``result``, or None when it is usable (or the
    request has no validator). A validator that raises ``ValueError`` rejects the reply too."""
    if request.validate is None:
        return None
    try:
        return request.validate(result)
    except ValueError as exc:
        return str(exc) or "the reply failed validation"


@dataclass
class Attempts:
    """The HTTP attempts of one call: how many requests reached the server (``sent``), and why each
    failed try failed (``errors``; a refused connection is a failed try that sent nothing).

    A backend that talks to a server notes every request it sends in the :data:`CURRENT_ATTEMPTS`
    of the running task (see :func:`note_attempt`); the call log (``LoggedLLM``) reads it after the
    call, whether it succeeded or not, so that the stats count what the server saw.
    """

    sent: int = 0
    errors: list[str] = field(default_factory=list)


#: The attempts of the call in progress in this task; None outside a logged call.
CURRENT_ATTEMPTS: ContextVar[Attempts | None] = ContextVar("treesynth_attempts", default=None)


def note_attempt() -> None:
    """Count one request sent to the server, in the call in progress (if any is being logged)."""
    attempts = CURRENT_ATTEMPTS.get()
    if attempts is not None:
        attempts.sent += 1


def note_failed_attempt(reason: str, *, reached: bool = True) -> None:
    """Say why the request just sent failed (its reply, or the lack of one); ``reached=False`` when
    it never reached the server (the connection was refused), so it is not counted as sent."""
    attempts = CURRENT_ATTEMPTS.get()
    if attempts is not None:
        attempts.errors.append(reason)
        if not reached:
            attempts.sent -= 1


@runtime_checkable
class LLM(Protocol):
    """What growth and synthesis need from a model."""

    backend: str
    model: str

    async def complete(self, request: ChatRequest) -> ChatResult: ...

    async def aclose(self) -> None: ...


def useful_concurrency(llm: LLM, wanted: int) -> int:
    """Calls worth having in flight at once: ``wanted``, capped by the backend's optional
    ``max_parallel`` (the embedded model generates one reply at a time; more calls in flight there
    only queue up in no particular order, so results that are kept in call order arrive late)."""
    limit = getattr(llm, "max_parallel", None)
    return max(1, min(wanted, limit) if limit else wanted)


@asynccontextmanager
async def in_completion_order(
    coroutines: Iterable[Coroutine[Any, Any, R]],
) -> AsyncIterator[Iterator[Awaitable[R]]]:
    """Run the coroutines concurrently; inside the block, iterate their results as they finish
    (``asyncio.as_completed``). Leaving the block, by its end, an error or a cancel, cancels and
    awaits whatever is still running."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        yield asyncio.as_completed(tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def cache_key(backend: str, model: str, request: ChatRequest) -> str:
    """Content address of a request: same backend, model, messages, sampling and seed, same key."""
    payload = {
        "backend": backend,
        "model": model,
        "messages": request.messages,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        "top_p": request.top_p,
        "schema": request.schema,
    }
    digest = hashlib.blake2b(canonical_json(payload).encode("utf-8"), digest_size=20).hexdigest()
    return f"{CACHE_KEY_VERSION}:{digest}"
