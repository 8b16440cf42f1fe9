"""Wrappers that cache and log every LLM call: ``CachedLLM(LoggedLLM(backend))``.

Growth and synthesis only ever see the :class:`~treesynth_core.llm.base.LLM` protocol; these
wrappers put each request/reply (or error) into the project's call log and serve repeated requests
from the project's cache, so rerunning a build costs zero calls.

A reply its request's ``validate`` rejects (it does not parse, fails the caller's check, or was cut
off at the token limit) is logged as a failed call, with its text and the problem, and never cached:
a rerun asks again. A cached reply that the validator rejects (a project cached it before replies
were checked) is evicted and asked again. A call the run's Stop reached while it was out (the
backend raised :class:`~treesynth_core.errors.Cancelled`, see :mod:`.stop`) is logged as
``cancelled`` and not cached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

from ..errors import BudgetError, Cancelled, Deferred, EndpointError, TreeSynthError
from .base import CURRENT_ATTEMPTS, LLM, Attempts, ChatRequest, ChatResult, cache_key, reply_problem

#: How the call log's ``error`` marks a reply that arrived but was unusable.
INVALID_REPLY = "invalid reply: "


@dataclass(frozen=True)
class CallRecord:
    """One LLM call, as the logging wrapper hands it to :meth:`Project.log_call`."""

    run_id: str | None = None
    backend: str = ""
    model: str = ""
    purpose: str = ""
    node_id: str | None = None
    cache_key: str | None = None
    request: Mapping[str, Any] = field(default_factory=dict)
    response: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    cached: bool = False
    #: HTTP requests this call sent (0 for a cache hit; a backend that does not count sends 1).
    attempts: int = 1
    #: Why each failed attempt failed, in order (the call's last one too, when the call failed).
    attempt_errors: tuple[str, ...] = ()


class CallStore(Protocol):
    """What the wrappers need from a store (the project implements it)."""

    def cache_get(self, key: str) -> ChatResult | None: ...

    def cache_put(self, key: str, result: ChatResult) -> None: ...

    def cache_evict(self, key: str) -> None: ...

    def log_call(self, record: CallRecord) -> str: ...


#: A request's loggable fields: all but ``validate``.
_REQUEST_FIELDS = tuple(f.name for f in fields(ChatRequest) if f.name != "validate")


def request_dict(request: ChatRequest) -> dict:
    """The loggable form of a request (its fields but ``validate``; built by hand: ``asdict``'s deep
    copy was half the call log's time on the event loop, and the log only serializes it)."""
    data = {name: getattr(request, name) for name in _REQUEST_FIELDS}
    data["messages"] = request.message_dicts()
    data["meta"] = dict(request.meta)
    return data


class CallBudget:
    """A cap on the calls a run may send to the backend (cached replies are free), and its Stop:
    once ``cancel`` is set no further call is sent (a re-ask or a larger-budget retry included, which
    on a slow backend can each take minutes). The call in flight is stopped by the backend itself,
    which finds the same event through :func:`~treesynth_core.llm.stop.stop_event`."""

    def __init__(self, max_calls: int | None = None, cancel: threading.Event | None = None) -> None:
        self.max_calls = max_calls
        self.cancel = cancel
        self.used = 0

    def take(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("stopped: no further LLM call was sent")
        if self.max_calls is not None and self.used >= self.max_calls:
            raise BudgetError(
                f"stopped at the cap of {self.max_calls} LLM calls; what was done is saved — "
                "raise --max-calls and rerun to continue"
            )
        self.used += 1


class LoggedLLM:
    """Logs every call that reaches the backend, successful or not; a reply the request's
    ``validate`` rejects is logged as failed (``error`` = :data:`INVALID_REPLY` + the problem) and
    returned with ``invalid`` set.

    Once a server backend (one that counts its requests) has given up on a call (it raised a
    :class:`TreeSynthError`: the endpoint kept failing, refused the key, ...), the run is over (the
    first error ends every run), so calls that start after that are not sent: each raises
    :class:`EndpointError` at once. Nothing is wasted on a failing endpoint, and the requests logged
    are the ones the server saw.
    """

    def __init__(self, inner: LLM, store: CallStore, run_id: str | None, budget: CallBudget | None = None):
        self.inner, self.store, self.run_id = inner, store, run_id
        self.backend, self.model = inner.backend, inner.model
        self.max_parallel: int | None = getattr(inner, "max_parallel", None)
        self.prompt_profile: str = getattr(inner, "prompt_profile", "paper")
        self.defers: bool = getattr(inner, "defers", False)  # may answer Deferred (batch generation)
        self.budget = budget or CallBudget()
        self.counts_attempts: bool = getattr(inner, "counts_attempts", False)
        self.gave_up: str | None = None

    def _record(self, request: ChatRequest, key: str | None, **fields: object) -> CallRecord:
        return CallRecord(
            run_id=self.run_id,
            backend=self.backend,
            model=self.model,
            purpose=request.purpose(),
            node_id=request.meta.get("node_id"),
            cache_key=key,
            request=request_dict(request),
            **fields,  # type: ignore[arg-type]
        )

    async def complete(self, request: ChatRequest) -> ChatResult:
        return await self.complete_keyed(request, cache_key(self.backend, self.model, request))

    async def complete_keyed(self, request: ChatRequest, key: str) -> ChatResult:
        """:meth:`complete`, given the request's cache key (the cache in front of this has it)."""
        if self.gave_up is not None:
            raise EndpointError(f"not sent, an earlier call failed: {self.gave_up}")
        self.budget.take()
        started = time.perf_counter()
        attempts = Attempts()
        token = CURRENT_ATTEMPTS.set(attempts)
        try:
            result = await self.inner.complete(request)
        except Deferred:  # waiting for a batch's reply: no call was made, nothing to log
            raise
        except Cancelled:  # the run's Stop reached the call while it was out
            if attempts.sent or not self.counts_attempts:
                self._log_cancelled(request, key, started, attempts)
            raise
        except TreeSynthError as exc:
            self.gave_up = str(exc) if self.counts_attempts else None
            elapsed = time.perf_counter() - started
            counts = self._attempt_counts(attempts, str(exc))
            self.store.log_call(self._record(request, key, latency_s=elapsed, error=str(exc), **counts))
            raise
        except BaseException:  # cancelled (another call failed, Ctrl-C) while requests were out
            if self.counts_attempts and attempts.sent:
                self._log_cancelled(request, key, started, attempts)
            raise
        finally:
            CURRENT_ATTEMPTS.reset(token)
        problem = reply_problem(request, result)
        call_id = self.store.log_call(
            self._record(
                request,
                key,
                response=result.text,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                latency_s=result.latency_s or (time.perf_counter() - started),
                **self._attempt_counts(attempts),
                error=None if problem is None else INVALID_REPLY + problem,
            )
        )
        return replace(result, call_id=call_id, invalid=problem)

    def _log_cancelled(self, request: ChatRequest, key: str, started: float, attempts: Attempts) -> None:
        """Log a call that was abandoned while it was out: error ``cancelled``, no reply."""
        elapsed = time.perf_counter() - started
        counts = self._attempt_counts(attempts, "cancelled")
        self.store.log_call(self._record(request, key, latency_s=elapsed, error="cancelled", **counts))

    def _attempt_counts(self, attempts: Attempts, failure: str | None = None) -> dict[str, object]:
        """The ``attempts`` (requests that reached the server) and ``attempt_errors`` (why each failed
        try failed) of a call's log row, as the backend counted them; a backend that does not count
        (the embedded model, test fakes) made one try. ``failure`` is why the call itself failed."""
        if not self.counts_attempts:
            return {"attempts": 1, "attempt_errors": (failure,) if failure else ()}
        errors = tuple(attempts.errors)
        if failure == "cancelled" and len(errors) < attempts.sent:  # a request was out, unanswered
            errors += (failure,)
        return {"attempts": attempts.sent, "attempt_errors": errors}

    async def aclose(self) -> None:
        await self.inner.aclose()


class CachedLLM:
    """Serves a request seen before from the store; otherwise asks ``inner`` and caches the reply,
    unless the request's ``validate`` rejected it. A cached reply the validator rejects is evicted
    and asked again."""

    def __init__(self, inner: LoggedLLM) -> None:
        self.inner = inner
        self.store, self.run_id = inner.store, inner.run_id
        self.backend, self.model = inner.backend, inner.model
        self.max_parallel = inner.max_parallel
        self.prompt_profile = inner.prompt_profile
        self.defers = inner.defers

    async def complete(self, request: ChatRequest) -> ChatResult:
        key = cache_key(self.backend, self.model, request)
        hit = self.store.cache_get(key)
        if hit is not None and reply_problem(request, hit) is not None:
            self.store.cache_evict(key)
            hit = None
        if hit is not None:
            call_id = self.store.log_call(
                self.inner._record(
                    request,
                    key,
                    response=hit.text,
                    prompt_tokens=hit.prompt_tokens,
                    completion_tokens=hit.completion_tokens,
                    cached=True,
                    attempts=0,
                )
            )
            return replace(hit, cached=True, call_id=hit.call_id or call_id)
        result = await self.inner.complete_keyed(request, key)
        if result.invalid is None:
            self.store.cache_put(key, result)
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()


def recording(
    inner: LLM,
    store: CallStore,
    run_id: str | None,
    *,
    max_calls: int | None = None,
    cancel: threading.Event | None = None,
) -> CachedLLM:
    """The standard stack: cache in front of the call log in front of the backend. Once ``cancel`` is
    set, no further call reaches the backend (see :class:`CallBudget`); stopping the call in flight
    takes the run's stop event (:func:`~treesynth_core.llm.stop.stopping`)."""
    return CachedLLM(LoggedLLM(inner, store, run_id, CallBudget(max_calls, cancel)))
