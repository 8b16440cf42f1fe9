"""The two model doubles of batch generation, at the one LLM seam.

:class:`DeferringLLM` writes each request down, as the body the ``openai`` backend would send, and
raises :class:`~treesynth_core.errors.Deferred` instead of answering: ``batch prepare`` runs the
normal work with it. :class:`BatchReplayLLM` answers a request a collected batch has a reply for
with that reply, and passes any other to the model it wraps: the normal run's replies come from the
batch, logged, checked and cached exactly as if the server had sent them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError, Deferred, EndpointError
from ..llm.base import LLM, ChatRequest, ChatResult, cache_key
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

    def __init__(self, settings: BackendSettings) -> None:
        from ..llm.openai_compat import FORMAT_LADDERS

        if not settings.model:
            raise ConfigError("batch generation needs a model name: set --model or TREESYNTH_MODEL")
        self.model: str = settings.model
        self.prompt_profile = settings.prompt_profile()
        self._format = FORMAT_LADDERS[settings.structured][0]
        self.requests: dict[str, BatchRequest] = {}

    async def complete(self, request: ChatRequest) -> ChatResult:
        key = cache_key(self.backend, self.model, request)
        if key not in self.requests:
            from ..llm.openai_compat import request_body

            body = request_body(self.model, request, self._format if request.schema is not None else "none")
            self.requests[key] = BatchRequest(key, body, request.purpose(), request.meta.get("node_id"))
        raise Deferred("the reply is out in a batch")

    async def aclose(self) -> None:
        return None


ReplyLookup = Callable[[str], Mapping[str, Any] | None]


class BatchReplayLLM:
    """Answers a request from the replies collected batches brought back (``lookup(cache_key)`` gives
    the chat completion), else asks ``inner``. It takes ``inner``'s name, model and limits, so cache
    keys and logs do not change; a batch reply sends nothing, so the call log counts no attempt, and
    its tokens were counted when ``collect`` logged it, so they come back as 0 here."""

    def __init__(self, inner: LLM, lookup: ReplyLookup) -> None:
        self.inner, self.lookup = inner, lookup
        self.backend, self.model = inner.backend, inner.model
        self.max_parallel: int | None = getattr(inner, "max_parallel", None)
        self.prompt_profile: str = getattr(inner, "prompt_profile", "paper")
        self.counts_attempts: bool = getattr(inner, "counts_attempts", False)

    async def complete(self, request: ChatRequest) -> ChatResult:
        body = self.lookup(cache_key(self.backend, self.model, request))
        if body is None:
            return await self.inner.complete(request)
        from ..llm.openai_compat import chat_result  # here: runs on other backends need not import openai

        try:
            result = chat_result(body, self.model)
        except ValueError as exc:  # collect keeps only completions with content; a hand-edited row
            raise EndpointError(f"a batch reply is not a chat completion: {exc}") from None
        # its tokens were logged when it was collected (``batch collect``): not counted twice
        return replace(result, prompt_tokens=0, completion_tokens=0)

    async def aclose(self) -> None:
        await self.inner.aclose()
