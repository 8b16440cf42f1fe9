"""Backend settings: which LLM to use and how to reach it. Saved in the project, never the key.

Values come, in rising order of precedence, from the defaults, the project's saved settings,
``TREESYNTH_*`` environment variables and command-line flags.

A project folder may come from someone else, so what its saved settings say about where requests go
is not trusted on its own (see :class:`Endpoint`): a key variable named by the project must look like
one (``*_API_KEY``, ``*_KEY``, ``*_TOKEN``, ``*_SECRET``), and an endpoint named by the project must be
OpenAI's or this machine's, unless the person running TreeSynth confirms either.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError

Backend = Literal["embedded", "openai"]
Structured = Literal["auto", "json_schema", "json_object", "none"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Names confirming key variables a project names that do not look like key variables (comma-separated).
ALLOW_KEY_ENV_VAR = "TREESYNTH_ALLOW_KEY_ENV"
#: Hosts or URLs of project-named endpoints the person trusts (comma-separated).
TRUST_ENDPOINT_VAR = "TREESYNTH_TRUST_ENDPOINT"
#: What a variable holding a key is called: ``OPENAI_API_KEY``, ``HF_TOKEN``, ``MY_SECRET``... (any case).
KEY_ENV_NAME = re.compile(r"[A-Za-z0-9_]*(API_?KEY|_KEY|_TOKEN|_SECRET)", re.IGNORECASE)

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
        return f"openai-compatible {self.model or '?'} at {self.base_url or DEFAULT_BASE_URL}"

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


def looks_like_key_env(name: str) -> bool:
    """Whether ``name`` is what a variable holding a key is called (``OPENAI_API_KEY``, ``HF_TOKEN``);
    ``PATH``, ``HOME`` or ``USER`` are not."""
    return KEY_ENV_NAME.fullmatch(name) is not None


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (``localhost``, ``127.x.x.x``, ``::1``, ``0.0.0.0``)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "0.0.0.0"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _names(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


@dataclass(frozen=True)
class Endpoint:
    """Where an openai-compatible request goes and which variable's value goes with it as the key, and
    whether each was read from the project's saved settings (not chosen on this machine).

    Build it with :meth:`of`; :meth:`problem` says what needs the person's confirmation first.
    """

    url: str
    key_env: str
    url_from_project: bool
    key_env_from_project: bool

    @classmethod
    def of(cls, saved: BackendSettings | None, settings: BackendSettings, chosen: Collection[str]) -> Endpoint:
        """The endpoint of ``settings`` (``saved`` merged with overrides); ``chosen``: the fields set by
        this machine's environment, flags or forms. A field not chosen holds the project's value."""
        default = BackendSettings()
        saved = saved or default
        return cls(
            url=(settings.base_url or DEFAULT_BASE_URL).rstrip("/"),
            key_env=settings.api_key_env,
            url_from_project="base_url" not in chosen and saved.base_url not in (None, default.base_url),
            key_env_from_project="api_key_env" not in chosen and saved.api_key_env != default.api_key_env,
        )

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or self.url

    def notice(self, environ: Mapping[str, str] | None = None) -> str:
        """One line: where the requests go and which variable holds the key (never the key). A server
        on this machine with that variable unset (in ``environ``, default ``os.environ``) gets no key of
        it (:func:`~treesynth_core.llm.openai_compat.read_api_key` sends a placeholder): the line says
        that none is needed."""
        env = os.environ if environ is None else environ
        if is_loopback(self.url) and not env.get(self.key_env, "").strip():
            return f"Sending requests to {self.url}; no key needed for a local server (${self.key_env} is unset)"
        return f"Sending requests to {self.url} with the key in ${self.key_env}"

    def needs_key_confirmation(self, allowed: Collection[str] = ()) -> bool:
        """A project-named key variable that does not look like one (``PATH``) and was not allowed."""
        return self.key_env_from_project and not looks_like_key_env(self.key_env) and self.key_env not in allowed

    def needs_endpoint_confirmation(self, trusted: Collection[str] = ()) -> bool:
        """A project-named endpoint that is neither OpenAI's nor this machine's, and not trusted (by
        host or URL)."""
        if not self.url_from_project or self.url == DEFAULT_BASE_URL or is_loopback(self.url):
            return False
        return self.host not in trusted and self.url not in trusted

    def problem(
        self,
        *,
        allow_key_env: Collection[str] = (),
        trust_endpoint: bool = False,
        environ: Mapping[str, str] | None = None,
        how: str = "cli",
    ) -> str | None:
        """Why no request may go out yet, in one line (None: fine). ``allow_key_env`` and
        ``trust_endpoint`` are this run's confirmations; ``$TREESYNTH_ALLOW_KEY_ENV`` and
        ``$TREESYNTH_TRUST_ENDPOINT`` in ``environ`` count too. ``how`` says how to confirm: ``cli``
        flags or the ``app``'s button."""
        env = os.environ if environ is None else environ
        allowed = {*allow_key_env, *_names(env.get(ALLOW_KEY_ENV_VAR))}
        if self.needs_key_confirmation(allowed):
            confirm = (
                f"pass --allow-key-env {self.key_env} or set {ALLOW_KEY_ENV_VAR}={self.key_env}; otherwise name "
                "the key variable with --api-key-env NAME"
                if how == "cli"
                else f"start the app with {ALLOW_KEY_ENV_VAR}={self.key_env}; otherwise name another key variable "
                "in the project's backend settings"
            )
            return (
                f"the project names ${self.key_env} as the variable holding its API key, and that does not look "
                f"like a key variable (*_API_KEY, *_KEY, *_TOKEN, *_SECRET), so its value is not sent: if you mean "
                f"it, {confirm}"
            )
        if not trust_endpoint and self.needs_endpoint_confirmation(_names(env.get(TRUST_ENDPOINT_VAR))):
            confirm = (
                f"pass --trust-endpoint or set {TRUST_ENDPOINT_VAR}={self.host}"
                if how == "cli"
                else "confirm it with the button"
            )
            return (
                f"the project sends requests to {self.url} with the key in ${self.key_env}, an endpoint saved in "
                f"the project, not chosen on this machine: if you trust {self.host}, {confirm}"
            )
        return None
