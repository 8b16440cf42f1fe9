"""LLM access: the protocol, the two backends, and the caching/logging wrappers."""

from __future__ import annotations

from .base import LLM, ChatRequest, ChatResult, cache_key
from .settings import BackendSettings


def make_llm(settings: BackendSettings) -> LLM:
    """The backend the settings ask for (heavy libraries are imported only here, lazily)."""
    if settings.backend == "openai":
        from .openai_compat import OpenAICompatLLM

        return OpenAICompatLLM(settings)
    from .embedded import EmbeddedLLM

    return EmbeddedLLM(settings)


__all__ = ["LLM", "ChatRequest", "ChatResult", "cache_key", "make_llm"]
