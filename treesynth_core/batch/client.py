"""The Files and Batches endpoints of an OpenAI-compatible server (OpenAI, Azure, a LiteLLM proxy):
upload a shard, start a batch on it, read how it stands, download its output and error files.

The API key is read from the environment as the online backend reads it
(:func:`~treesynth_core.llm.openai_compat.read_api_key`) and sent only in the request header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..errors import EndpointError
from ..llm.openai_retry import raise_if_refused
from ..llm.settings import DEFAULT_BASE_URL, BackendSettings
from .replay import CHAT_URL

#: Provider statuses after which a batch changes no more.
FINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
COMPLETION_WINDOW = "24h"


@dataclass(frozen=True)
class RemoteBatch:
    """How a batch stands at the provider."""

    id: str
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: Mapping[str, Any] = field(default_factory=dict)
    errors: str = ""

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


class BatchClient:
    """Calls the Files and Batches endpoints under ``base_url`` (e.g. ``https://api.openai.com/v1``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url, self.key_env = base_url.rstrip("/"), key_env
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
            transport=transport,
        )
        self._key = api_key

    def __repr__(self) -> str:
        return f"BatchClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> BatchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upload(self, path: Path) -> str:
        """Upload a batch input file (purpose ``batch``); returns its file id."""
        with path.open("rb") as handle:
            data = self._json(
                "POST", "/files", data={"purpose": "batch"}, files={"file": (path.name, handle, "application/jsonl")}
            )
        return str(data["id"])

    def create(self, input_file_id: str) -> RemoteBatch:
        """Start a batch of chat completions on an uploaded file."""
        body = {"input_file_id": input_file_id, "endpoint": CHAT_URL, "completion_window": COMPLETION_WINDOW}
        return remote_batch(self._json("POST", "/batches", json=body))

    def retrieve(self, batch_id: str) -> RemoteBatch:
        return remote_batch(self._json("GET", f"/batches/{batch_id}"))

    def download(self, file_id: str, target: Path) -> Path:
        """Stream a file's content (an output or error file) to ``target``."""
        try:
            with self._client.stream("GET", f"/files/{file_id}/content") as response:
                self._check(response, read=True)
                with target.open("wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
        except httpx.HTTPError as exc:
            raise EndpointError(
                f"could not download file {file_id} from {self.base_url}: {self._redact(exc)}"
            ) from None
        return target

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise EndpointError(f"could not reach {self.base_url}{path}: {self._redact(exc)}") from None
        self._check(response)
        try:
            data = response.json()
        except ValueError:
            raise EndpointError(f"{self.base_url}{path} did not answer JSON") from None
        if not isinstance(data, dict) or "id" not in data:
            raise EndpointError(f"{self.base_url}{path} answered without an id")
        return data

    def _check(self, response: httpx.Response, *, read: bool = False) -> None:
        if response.status_code < 400:
            return
        if read:
            response.read()
        message = self._redact(" ".join(response.text.split())[:300])
        where = f"{self.base_url}{response.request.url.path[len(httpx.URL(self.base_url).path) :]}"
        raise_if_refused(response.status_code, message, self.base_url, self.key_env)
        if response.status_code == 404 and response.request.url.path.endswith(("/files", "/batches")):
            raise EndpointError(
                f"{where} answered HTTP 404: this server has no Files/Batches endpoints "
                "(vllm serve and Ollama do not); run the files with `vllm run-batch` and `collect --from`"
            )
        raise EndpointError(f"{where} answered HTTP {response.status_code}: {message}")

    def _redact(self, value: object) -> str:
        text = str(value)
        return text.replace(self._key, "***") if self._key else text


def remote_batch(data: Mapping[str, Any]) -> RemoteBatch:
    """A batch object as the Batches endpoint returns it."""
    errors = data.get("errors")
    lines = errors.get("data") if isinstance(errors, Mapping) else None
    text = (
        "; ".join(str(e.get("message", e)) for e in lines if isinstance(e, Mapping)) if isinstance(lines, list) else ""
    )
    counts = data.get("request_counts")
    return RemoteBatch(
        id=str(data["id"]),
        status=str(data.get("status") or "unknown"),
        output_file_id=data.get("output_file_id") or None,
        error_file_id=data.get("error_file_id") or None,
        counts=dict(counts) if isinstance(counts, Mapping) else {},
        errors=text,
    )


def settings_problem(settings: BackendSettings) -> str | None:
    """Why these settings cannot make batch files (None: they can): batch lines are chat completions
    for a named model of an OpenAI-compatible server."""
    if settings.backend != "openai" or not settings.model:
        return "batch files are chat completions for an OpenAI-compatible model: choose the openai backend and a model"
    return None


def client_for(settings: BackendSettings) -> BatchClient:
    """A client for the settings' base URL (OpenAI's by default), with the key the online backend reads."""
    from ..llm.openai_compat import read_api_key

    base_url = settings.base_url or DEFAULT_BASE_URL
    key = read_api_key(settings.api_key_env, base_url)
    return BatchClient(base_url, key, key_env=settings.api_key_env, timeout_s=max(120.0, settings.timeout_s))
