"""Backend settings: which LLM to use and how to reach it. Saved in the project, never the key.

Values come, in rising order of precedence, from the defaults, the project's saved settings,
``TREESYNTH_*`` environment variables and command-line flags.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError

Backend = Literal["embedded", "openai"]
Structured = Literal["auto", "json_schema", "json_object", "none"]

#: Environment variables read by :func:`settings_from_env` (name -> settings field).
ENV_VARS = {
    "TREESYNTH_LLM": "backend",
    "TREESYNTH_BASE_URL": "base_url",
    "TREESYNTH_MODEL": "model",
    "TREESYNTH_API_KEY_ENV": "api_key_env",
    "TREESYNTH_GGUF": "gguf_path",
    "TREESYNTH_CONCURRENCY": "concurrency",
    "TREESYNTH_TIMEOUT": "timeout_s",
    "TREESYNTH_MAX_RETRIES": "max_retries",
    "TREESYNTH_PROMPTS": "prompts",
}


class BackendSettings(BaseModel):
    """How to reach the LLM. ``api_key_env`` is the NAME of the variable holding the key."""

    model_config = ConfigDict(extra="forbid")

    backend: Backend = "embedded"
    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    gguf_path: str | None = None
    concurrency: int = Field(default=16, ge=1, le=1024)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=5, ge=0, le=20)
    structured: Structured = "auto"
    n_ctx: int = Field(default=4096, ge=512)
    #: The prompt profile (see :mod:`treesynth_core.prompts.templates`): ``auto`` gives the embedded
    #: default model the ``small`` prompts and every other model the ``paper`` ones.
    prompts: Literal["auto", "paper", "small"] = "auto"
    #: USD per million tokens, by model name: {"gpt-4o-mini": [0.15, 0.60]} (input, output).
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        value = value.strip()
        if not value or not value.replace("_", "").isalnum():
            raise ValueError("api_key_env must be the NAME of an environment variable, e.g. OPENAI_API_KEY")
        if value.startswith("sk-") or len(value) > 64:
            raise ValueError("api_key_env takes the NAME of the variable that holds the key, not the key")
        return value

    def prompt_profile(self) -> Literal["paper", "small"]:
        """The prompt profile this backend gets (the setting, or the backend's natural one)."""
        if self.prompts != "auto":
            return self.prompts
        return "small" if self.backend == "embedded" and not self.gguf_path else "paper"

    def describe(self) -> str:
        """One line for logs and the UI; never contains the key."""
        if self.backend == "embedded":
            return f"embedded llama.cpp ({self.gguf_path or 'SmolLM2-135M-Instruct'})"
        return f"openai-compatible {self.model or '?'} at {self.base_url or 'https://api.openai.com/v1'}"

    def describe_prompts(self) -> str:
        """The prompt profile in words, e.g. ``paper prompts (auto)``."""
        how = "auto" if self.prompts == "auto" else "set for this project"
        return f"{self.prompt_profile()} prompts ({how})"


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings overrides found in ``TREESYNTH_*`` variables."""
    env = os.environ if environ is None else environ
    return {field: env[var] for var, field in ENV_VARS.items() if env.get(var)}


def merge_settings(base: BackendSettings | None, *overrides: Mapping[str, Any]) -> BackendSettings:
    """Apply overrides (``None`` values ignored) on top of ``base``; raise ConfigError if invalid."""
    data: dict[str, Any] = (base or BackendSettings()).model_dump()
    for layer in overrides:
        data.update({k: v for k, v in layer.items() if v is not None})
    try:
        return BackendSettings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None
