"""Per-sample feature vectors: sentence embeddings (:mod:`.embeddings`) and projected gradients
(:mod:`.gradients`; the proxy model named, checked and loaded in :mod:`.proxy_model`, a sample's
tokens in :mod:`.tokens`, the projection's seeded factors and count sketches in :mod:`.sketches`,
exact per-sample gradients of norms in :mod:`.per_sample`, the project's proxy setting and time
estimates in :mod:`.proxy`), stored in the project by featurizer name. Heavy models load on first use.

The names below come from :mod:`.embeddings` on first use, so importing :mod:`.gradients` needs only
torch, transformers and numpy (``benchmarks/gradients.py`` runs on a bare GPU machine)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .embeddings import (
        Embedder,
        Featurizer,
        OpenAIEmbeddingsEmbedder,
        SentenceTransformerEmbedder,
        TextEmbedder,
        default_model_path,
        ensure_features,
        make_embedder,
        sample_text,
    )

__all__ = [
    "Embedder",
    "Featurizer",
    "OpenAIEmbeddingsEmbedder",
    "SentenceTransformerEmbedder",
    "TextEmbedder",
    "default_model_path",
    "ensure_features",
    "make_embedder",
    "sample_text",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module(".embeddings", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
