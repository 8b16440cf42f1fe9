"""The gradient proxy model: what its features are called, whether a setting can load offline, and
loading it (see :mod:`treesynth_core.coverage.features.gradients` for the features themselves and
:mod:`treesynth_core.coverage.features.proxy` for the project's saved setting).

The proxy is the embedded SmolLM2-135M-Instruct by default; the paper's is Qwen2.5-0.5B-Instruct.
Any local causal-LM checkpoint folder or GGUF file can be used (:func:`proxy_label` names it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ...errors import ConfigError

#: The embedded proxy: the GGUF the embedded LLM runs, loaded into transformers (needs gguf).
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_DIM = 1024
#: The token cut by default. Measured on SmolLM2-135M, 2 CPU cores (benchmarks/gradient_lengths.py):
#: 0.49 / 1.04 / 2.34 / 6.21 s a sample at 128 / 256 / 512 / 1024 tokens; the loss of a 570-token
#: chain-of-thought response sees 11% of it at 128 and 74% at 512 (a GSM8K-style answer, all of it).
DEFAULT_MAX_TOKENS = 512
#: The cut that feature kinds without a ``:t`` suffix were made with (the first default).
UNSUFFIXED_MAX_TOKENS = 128
#: The precisions of the proxy's forward and backward: ``auto`` is bf16 on a CUDA GPU that supports
#: it, else fp32 (see :func:`resolve_dtype`).
DTYPES = ("auto", "fp32", "bf16")


def feature_kind(
    label: str, dim: int = DEFAULT_DIM, seed: int = 0, max_tokens: int = DEFAULT_MAX_TOKENS, dtype: str = "fp32"
) -> str:
    """The store kind of gradient features: ``grad:LABEL:DIM:SEED`` plus ``:tN`` for a cut of N
    tokens (none for 128, the first default, so older features keep their kind) or ``:tall`` for
    no cut, plus ``:bf16`` for features of a bf16 forward and backward (fp32 ones keep their kind,
    and the two never mix). ``dtype`` is a resolved one: ``fp32`` or ``bf16``."""
    if dtype not in ("fp32", "bf16"):
        raise ValueError(f"feature kinds take a resolved dtype, fp32 or bf16, not {dtype!r}")
    name = f"grad:{label}:{dim}:{seed}"
    if max_tokens != UNSUFFIXED_MAX_TOKENS:
        name = f"{name}:t{max_tokens}" if max_tokens else f"{name}:tall"
    return f"{name}:bf16" if dtype == "bf16" else name


def kind_dtype(kind: str) -> str:
    """The precision (``fp32`` or ``bf16``) gradient features of ``kind`` were made in."""
    return "bf16" if kind.endswith(":bf16") else "fp32"


def resolve_dtype(dtype: str = "auto", device: str | None = None) -> str:
    """``fp32`` or ``bf16``: ``dtype`` itself unless it is ``auto``, which is bf16 when the featurizer
    runs on a CUDA GPU with bf16 support (``device`` None: the GPU when torch sees one, as the
    featurizer chooses) and fp32 otherwise. Imports torch only for ``auto``."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if dtype != "auto":
        return dtype
    return "bf16" if _cuda_bf16(device) else "fp32"


def _cuda_bf16(device: str | None) -> bool:
    import torch

    if device is not None and torch.device(device).type != "cuda":
        return False
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def proxy_label(model: str | None) -> str:
    """The label a proxy setting gets in feature kinds, without loading it: the embedded model's
    name; for a local folder or GGUF file its name plus a hash of its resolved path (two folders
    both called ``model`` never share features); a cached Hugging Face name as it is."""
    if model is None:
        return DEFAULT_MODEL_NAME
    path = Path(model).expanduser()
    if not path.exists():
        return model
    resolved = path.resolve()
    if resolved.is_file() and _is_default_gguf(resolved):
        return DEFAULT_MODEL_NAME
    digest = hashlib.blake2b(str(resolved).encode(), digest_size=4).hexdigest()
    return f"{resolved.stem if resolved.is_file() else resolved.name}@{digest}"


def _is_default_gguf(path: Path) -> bool:
    from ...llm.embedded import default_gguf_path

    try:
        return default_gguf_path().resolve() == path
    except ConfigError:
        return False


def check_proxy(model: str | None) -> None:
    """Refuse, with one clear line, a proxy setting that cannot be loaded offline, without loading
    it: a path that does not exist, a folder without ``config.json``, a file that is not a GGUF."""
    if model is None:
        return
    if not model.strip():
        raise ConfigError("the gradient proxy is empty: give a checkpoint folder or a .gguf file")
    path = Path(model).expanduser()
    looks_like_path = model.endswith(".gguf") or model.startswith((".", "~", "/")) or "\\" in model
    if not path.exists():
        if looks_like_path or model.count("/") > 1:
            raise ConfigError(
                f"the gradient proxy {model!r} does not exist: give a local causal-LM checkpoint folder "
                "(with config.json) or a .gguf file"
            )
        return  # a Hugging Face model name: it must be in the local cache (checked when loading)
    if path.is_dir() and not (path / "config.json").is_file():
        raise ConfigError(f"the gradient proxy folder {model!r} has no config.json: it is not a model checkpoint")
    if path.is_file() and path.suffix != ".gguf":
        raise ConfigError(f"the gradient proxy {model!r} is a file but not a .gguf model: give a folder or a .gguf")


def load_proxy(model: str | None) -> tuple[Any, Any, str]:
    """(model, tokenizer, label) for a model setting, fully offline."""
    check_proxy(model)
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:  # pragma: no cover - a default dependency
        raise ConfigError("gradient features need transformers: pip install transformers gguf accelerate") from exc
    hf_logging.disable_progress_bar()  # GGUF conversion bars would break the CLI's and the app's own progress
    kwargs: dict[str, Any] = {}
    if model is None:
        from ...llm.embedded import default_gguf_path

        path = default_gguf_path()
        folder, kwargs["gguf_file"], label = str(path.parent), path.name, DEFAULT_MODEL_NAME
    elif Path(model).expanduser().is_file():
        path = Path(model).expanduser().resolve()
        folder, kwargs["gguf_file"], label = str(path.parent), path.name, proxy_label(model)
    else:
        path = Path(model).expanduser()
        folder, label = str(path.resolve()) if path.is_dir() else model, proxy_label(model)
        kwargs["local_files_only"] = True
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        lm = AutoModelForCausalLM.from_pretrained(folder, dtype="float32", **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"could not load the gradient proxy {model or DEFAULT_MODEL_NAME!r} offline ({reason}): give a local "
            "causal-LM checkpoint folder, a .gguf file, or a model already in the Hugging Face cache"
        ) from exc
    return lm, tokenizer, label
