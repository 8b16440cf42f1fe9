"""Per-sample feature vectors: sentence embeddings (:mod:`.embeddings`) and projected gradients
(:mod:`.gradients`; the proxy model named, checked and loaded in :mod:`.proxy_model`, a sample's
tokens in :mod:`.tokens`, the project's proxy setting and time estimates in :mod:`.proxy`), stored in
the project by featurizer name. Heavy models load on first use."""

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
