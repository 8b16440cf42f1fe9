"""The two model doubles of batch generation, at the one LLM seam.

:class:`DeferringLLM` writes each request down, as the body the ``openai`` backend would send, and
raises :class:`~treesynth_core.errors.Deferred` instead of answering: ``batch prepare`` runs the
normal work with it. :class:`BatchFirstLLM` answers a request a collected batch has a reply for
with that reply (:class:`BatchReplayLLM`), and sends any other to the backend: the normal run's
replies come from the batch, logged, checked and cached exactly as if the server had sent them, but
only the calls sent online count toward the run's call cap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError, Deferred, EndpointError
from ..llm.base import LLM, ChatRequest, ChatResult, cache_key
from ..llm.openai_reply import chat_result
from ..llm.openai_request import FORMAT_LADDERS, request_body
from ..llm.recording import CachedLLM, CallStore, recording
from ..llm.settings import BackendSettings

#: The endpoint every batch line calls.
CHAT_URL = "/v1/chat/completions"


@dataclass(frozen=True)
class BatchRequest:
    """One line of a batch file: the request's cache key (its ``custom_id``) and the JSON body the
    online run would send, with what the call is for (kept beside the file, for the call log)."""

    custom_id: str
    body: Mapping[str, Any]
    purpose: str = ""
    node_id: str | None = None

    def line(self) -> dict[str, Any]:
        """The batch file line: ``{"custom_id", "method", "url", "body"}``."""
        return {"custom_id": self.custom_id, "method": "POST", "url": CHAT_URL, "body": self.body}


class DeferringLLM:
    """Writes down the requests a run makes (in :attr:`requests`, once per cache key) and defers
    every one. It stands for the ``openai`` backend of ``settings``: the same backend name, model,
    prompt profile and request body (the first structured-output format its ladder tries), so each
    request's cache key and body are those the online run would have."""

    backend = "openai"
    #: It sends nothing, and counts so: the call log records 0 requests for what it stands behind.
    counts_attempts = True
    #: It may answer :class:`Deferred`: synthesis then stores a wave's samples only once the whole
    #: wave is answered (see :meth:`~treesynth_core.generate.synth.LeafSynthesizer.fill`).
    defers = True

    def __init__(self, settings: BackendSettings) -> None:
        if not settings.model:
            raise ConfigError("batch generation needs a model name: set --model or TREESYNTH_MODEL")
        self.model: str = settings.model
        self.prompt_profile = settings.prompt_profile()
        self._format = FORMAT_LADDERS[settings.structured][0]
        self.requests: dict[str, BatchRequest] = {}

    async def complete(self, request: ChatRequest) -> ChatResult:
        key = cache_key(self.backend, self.model, request)
        if key not in self.requests:
            body = request_body(self.model, request, self._format if request.schema is not None else "none")
            self.requests[key] = BatchRequest(key, body, request.purpose(), request.meta.get("node_id"))
        raise Deferred("the reply is out in a batch")

    async def aclose(self) -> None:
        return None


ReplyLookup = Callable[[str], Mapping[str, Any] | None]


class BatchReplayLLM:
    """Answers a request with the reply a collected batch brought back for it (``lookup(cache_key)``
    gives the chat completion). It takes the names and limits of ``like``, the run's backend, so
    cache keys and logs do not change; a batch reply sends nothing, so the call log counts no
    attempt, and its tokens were counted when ``collect`` logged it, so they come back as 0 here.
    :class:`BatchFirstLLM` sends it only the requests a batch answered."""

    def __init__(self, like: LLM, lookup: ReplyLookup) -> None:
        self.lookup = lookup
        self.backend, self.model = like.backend, like.model
        self.max_parallel: int | None = getattr(like, "max_parallel", None)
        self.prompt_profile: str = getattr(like, "prompt_profile", "paper")
        self.counts_attempts: bool = getattr(like, "counts_attempts", False)

    async def complete(self, request: ChatRequest) -> ChatResult:
        body = self.lookup(cache_key(self.backend, self.model, request))
        if body is None:
            raise EndpointError("no collected batch reply for this request")
        try:
            result = chat_result(body, self.model)
        except ValueError as exc:  # collect keeps only completions with content; a hand-edited row
            raise EndpointError(f"a batch reply is not a chat completion: {exc}") from None
        # its tokens were logged when it was collected (``batch collect``): not counted twice
        return replace(result, prompt_tokens=0, completion_tokens=0)

    async def aclose(self) -> None:
        return None  # the backend it stands for is closed by the online stack


class BatchFirstLLM:
    """A run's model when collected batches brought replies back: a request a batch answered goes
    through ``from_batch`` (cache and call log over :class:`BatchReplayLLM`), any other through
    ``online`` (cache and call log over the backend). A batch reply was paid for in the batch: it
    is logged as a call (with no request sent) but takes nothing from the run's call cap
    (``--max-calls``, the app's call budget), which counts the calls sent online. See
    :func:`batch_first`."""

    def __init__(self, online: CachedLLM, from_batch: CachedLLM, lookup: ReplyLookup) -> None:
        self.online, self.from_batch, self.lookup = online, from_batch, lookup
        self.backend, self.model = online.backend, online.model
        self.max_parallel = online.max_parallel
        self.prompt_profile = online.prompt_profile
        self.defers = online.defers

    async def complete(self, request: ChatRequest) -> ChatResult:
        answered = self.lookup(cache_key(self.backend, self.model, request)) is not None
        return await (self.from_batch if answered else self.online).complete(request)

    async def aclose(self) -> None:
        await self.online.aclose()


def batch_first(
    backend: LLM,
    lookup: ReplyLookup,
    store: CallStore,
    run_id: str | None,
    *,
    max_calls: int | None = None,
    cancel: threading.Event | None = None,
) -> BatchFirstLLM:
    """The standard recording stack (:func:`~treesynth_core.llm.recording.recording`) over
    ``backend``, beside one over the replies ``lookup`` finds: requests a batch answered are served
    and logged from there, free of the ``max_calls`` cap; Stop (``cancel``) holds for both."""
    online = recording(backend, store, run_id, max_calls=max_calls, cancel=cancel)
    from_batch = recording(BatchReplayLLM(backend, lookup), store, run_id, cancel=cancel)
    return BatchFirstLLM(online, from_batch, lookup)
