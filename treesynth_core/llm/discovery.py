"""Local model discovery: OpenAI-compatible servers already running on this machine, and GGUF files
in the usual local caches.

Servers are found by asking ``GET /v1/models`` on the default ports of the usual local servers
(:data:`DEFAULT_PORTS`: Ollama, LM Studio, vLLM, llama.cpp), all at once with a short timeout, on
127.0.0.1 only: nothing else on the network is ever probed. Ollama's own ``/api/tags`` is asked when
its ``/v1/models`` does not answer.

GGUF files are found in Ollama's model store (each manifest names the blob of media type
:data:`OLLAMA_MODEL_MEDIA_TYPE`), LM Studio's models folders and the Hugging Face hub cache. A file
counts when it begins with the GGUF magic bytes; vision projectors (``mmproj*``) are left out.

A server found here is used with the key variable :data:`LOCAL_KEY_ENV` (see :func:`server_settings`):
it gets no key, never ``$OPENAI_API_KEY``, unless the person sets that variable for it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..errors import ConfigError
from .settings import BackendSettings, merge_settings

#: The only host probed.
LOOPBACK = "127.0.0.1"
#: The default ports of the usual local OpenAI-compatible servers, and whose they are.
DEFAULT_PORTS: Mapping[int, str] = {11434: "Ollama", 1234: "LM Studio", 8000: "vLLM", 8080: "llama.cpp"}
#: Ports to probe in place of :data:`DEFAULT_PORTS` (comma-separated), e.g. for a server on another port.
PORTS_ENV = "TREESYNTH_DISCOVER_PORTS"
#: Seconds each probe waits for an answer (a server on this machine answers in milliseconds).
PROBE_TIMEOUT_S = 0.3
#: The key variable a discovered server is used with: unset, the server gets a dummy key.
LOCAL_KEY_ENV = "TREESYNTH_LOCAL_API_KEY"
#: The media type of the model weights layer in an Ollama manifest.
OLLAMA_MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
GGUF_MAGIC = b"GGUF"
#: How deep below a models folder GGUF files are looked for (LM Studio: publisher/repo/file).
MAX_SCAN_DEPTH = 4


@dataclass(frozen=True)
class LocalServer:
    """An OpenAI-compatible server answering on this machine."""

    #: Whose default port it answered on (``Ollama``, ``LM Studio``, ``vLLM``, ``llama.cpp``).
    kind: str
    port: int
    #: The base URL to send requests to (``http://127.0.0.1:PORT/v1``).
    base_url: str
    #: The model names it serves.
    models: tuple[str, ...]


@dataclass(frozen=True)
class GgufFile:
    """A GGUF model file in a local cache."""

    #: Which cache it is in: ``Ollama``, ``LM Studio`` or ``Hugging Face``.
    source: str
    #: The name people know it by (``llama3.2:3b``, ``org/repo/file.gguf``).
    name: str
    path: Path
    size_bytes: int

    def size_text(self) -> str:
        """``4.7 GB``, ``270 MB``."""
        return f"{self.size_bytes / 1e9:.1f} GB" if self.size_bytes >= 1e9 else f"{self.size_bytes / 1e6:.0f} MB"


@dataclass(frozen=True)
class GgufRoots:
    """Where GGUF files are looked for (a folder that does not exist is skipped)."""

    #: Ollama's models folder (holding ``manifests/`` and ``blobs/``).
    ollama: Path
    #: LM Studio's models folders.
    lmstudio: tuple[Path, ...]
    #: The Hugging Face hub cache (holding ``models--org--name/``).
    huggingface: Path

    @classmethod
    def default(cls, environ: Mapping[str, str] | None = None, home: Path | None = None) -> GgufRoots:
        """The usual places, honouring ``$OLLAMA_MODELS``, ``$HF_HUB_CACHE`` and ``$HF_HOME``."""
        env = os.environ if environ is None else environ
        home = home or Path.home()
        hf = env.get("HF_HUB_CACHE") or (str(Path(env["HF_HOME"]) / "hub") if env.get("HF_HOME") else None)
        return cls(
            ollama=Path(env.get("OLLAMA_MODELS") or home / ".ollama" / "models"),
            lmstudio=(home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"),
            huggingface=Path(hf) if hf else home / ".cache" / "huggingface" / "hub",
        )


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover` found."""

    servers: tuple[LocalServer, ...]
    ggufs: tuple[GgufFile, ...]
    #: The ports of 127.0.0.1 that were probed.
    ports: tuple[int, ...] = tuple(DEFAULT_PORTS)

    @property
    def any(self) -> bool:
        """Whether it found a server or a GGUF file."""
        return bool(self.servers or self.ggufs)

    def to_json(self) -> dict[str, Any]:
        return {
            "ports": list(self.ports),
            "servers": [
                {"kind": s.kind, "port": s.port, "base_url": s.base_url, "models": list(s.models)} for s in self.servers
            ],
            "gguf": [
                {"source": g.source, "name": g.name, "path": str(g.path), "size_bytes": g.size_bytes}
                for g in self.ggufs
            ],
        }


# -- servers ----------------------------------------------------------------------------------------


def _model_ids(body: Any) -> tuple[str, ...] | None:
    """The model names of a ``/v1/models`` reply (``data[].id``) or of Ollama's ``/api/tags``
    (``models[].name``); None when the reply is neither."""
    if not isinstance(body, dict):
        return None
    for key, field in (("data", "id"), ("models", "name")):
        items = body.get(key)
        if isinstance(items, list):
            return tuple(str(item[field]) for item in items if isinstance(item, dict) and item.get(field))
    return None


def _get_json(client: httpx.Client, url: str) -> Any:
    try:
        reply = client.get(url)
        return reply.json() if reply.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def probe_port(port: int, kind: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> LocalServer | None:
    """The server answering ``GET /v1/models`` on 127.0.0.1:``port`` (Ollama's ``/api/tags`` too), or None."""
    root = f"http://{LOOPBACK}:{port}"
    # trust_env=False: no proxy from the environment, so the request cannot leave this machine
    with httpx.Client(timeout=timeout_s, trust_env=False, follow_redirects=False) as client:
        models = _model_ids(_get_json(client, f"{root}/v1/models"))
        if models is None and kind == "Ollama":
            models = _model_ids(_get_json(client, f"{root}/api/tags"))
    if models is None:
        return None
    return LocalServer(kind=kind, port=port, base_url=f"{root}/v1", models=models)


def probe_servers(
    ports: Mapping[int, str] = DEFAULT_PORTS, *, timeout_s: float = PROBE_TIMEOUT_S
) -> tuple[LocalServer, ...]:
    """The servers answering on ``ports`` (port -> whose) of 127.0.0.1, probed concurrently, in port order."""
    if not ports:
        return ()
    items = list(ports.items())
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        found = pool.map(lambda item: probe_port(item[0], item[1], timeout_s=timeout_s), items)
        return tuple(server for server in found if server is not None)


# -- GGUF files ------------------------------------------------------------------------------------


def is_gguf(path: Path) -> bool:
    """Whether ``path`` is a readable file beginning with the GGUF magic bytes."""
    try:
        with path.open("rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _ollama_name(manifest: Path, manifests: Path) -> str:
    """``llama3.2:3b`` for ``registry.ollama.ai/library/llama3.2/3b``; ``host/ns/model:tag`` otherwise."""
    parts = manifest.relative_to(manifests).parts
    if len(parts) < 2:
        return manifest.name
    *where, model, tag = parts
    if where[:2] == ["registry.ollama.ai", "library"]:
        where = []
    return "/".join([*where, model]) + f":{tag}"


def scan_ollama(models: Path) -> list[GgufFile]:
    """Ollama's models: each manifest under ``models/manifests`` names its weights blob in ``models/blobs``."""
    manifests = models / "manifests"
    if not manifests.is_dir():
        return []
    found = []
    for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
        try:
            layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers", [])
        except (OSError, ValueError, AttributeError):
            continue
        digest = next(
            (
                layer.get("digest", "")
                for layer in layers
                if isinstance(layer, dict) and layer.get("mediaType") == OLLAMA_MODEL_MEDIA_TYPE
            ),
            "",
        )
        if not digest:
            continue
        # blobs are named sha256-HEX (older Ollama: sha256:HEX)
        for blob in (models / "blobs" / digest.replace(":", "-"), models / "blobs" / digest):
            if is_gguf(blob):
                found.append(GgufFile("Ollama", _ollama_name(manifest, manifests), blob, _size(blob)))
                break
    return found


def _gguf_files(folder: Path, depth: int = MAX_SCAN_DEPTH) -> Iterator[Path]:
    """The ``*.gguf`` files under ``folder`` (at most ``depth`` levels down), vision projectors left out."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.is_dir() and depth > 0:
            yield from _gguf_files(entry, depth - 1)
        elif entry.suffix.lower() == ".gguf" and not entry.name.lower().startswith("mmproj") and is_gguf(entry):
            yield entry


def scan_lmstudio(folders: Iterable[Path]) -> list[GgufFile]:
    """LM Studio's models: ``publisher/repo/file.gguf`` under its models folders."""
    found = []
    for folder in folders:
        for path in _gguf_files(folder):
            found.append(GgufFile("LM Studio", path.relative_to(folder).as_posix(), path, _size(path)))
    return found


def scan_huggingface(hub: Path) -> list[GgufFile]:
    """GGUF files of the Hugging Face hub cache: ``models--org--name/snapshots/REV/file.gguf``, each file
    once (the newest snapshot's)."""
    found: dict[str, GgufFile] = {}
    try:
        repos = sorted(p for p in hub.iterdir() if p.is_dir() and p.name.startswith("models--"))
    except OSError:
        return []
    for repo in repos:
        repo_id = repo.name.removeprefix("models--").replace("--", "/")
        snapshots = repo / "snapshots"
        if not snapshots.is_dir():
            continue
        for snapshot in sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime):
            for path in _gguf_files(snapshot):
                name = f"{repo_id}/{path.relative_to(snapshot).as_posix()}"
                found[name] = GgufFile("Hugging Face", name, path, _size(path))
    return list(found.values())


def scan_ggufs(roots: GgufRoots | None = None) -> tuple[GgufFile, ...]:
    """The GGUF files of every cache in ``roots`` (default: :meth:`GgufRoots.default`)."""
    roots = roots or GgufRoots.default()
    return (*scan_ollama(roots.ollama), *scan_lmstudio(roots.lmstudio), *scan_huggingface(roots.huggingface))


def discover(
    ports: Mapping[int, str] = DEFAULT_PORTS,
    roots: GgufRoots | None = None,
    *,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> Discovery:
    """The local servers and GGUF files on this machine."""
    return Discovery(probe_servers(ports, timeout_s=timeout_s), scan_ggufs(roots), tuple(ports))


# -- using what was found ---------------------------------------------------------------------------


def server_settings(base: BackendSettings | None, server: LocalServer, model: str) -> BackendSettings:
    """``base`` pointed at ``model`` on a discovered ``server``. Its key variable is
    :data:`LOCAL_KEY_ENV`, so the server never gets the key of ``$OPENAI_API_KEY``."""
    return merge_settings(
        base, {"backend": "openai", "base_url": server.base_url, "model": model, "api_key_env": LOCAL_KEY_ENV}
    )


def gguf_settings(base: BackendSettings | None, gguf: GgufFile) -> BackendSettings:
    """``base`` running ``gguf`` on the embedded (llama.cpp) backend."""
    return merge_settings(base, {"backend": "embedded", "gguf_path": str(gguf.path)})


def parse_ports(spec: str | Sequence[int]) -> dict[int, str]:
    """Ports to probe from ``"8000,9000"`` (or a list), named by :data:`DEFAULT_PORTS` where known."""
    try:
        numbers = [int(part) for part in spec.split(",") if part.strip()] if isinstance(spec, str) else list(spec)
    except ValueError:
        raise ConfigError(f"ports must be numbers separated by commas, e.g. 8000,8080 (got {spec!r})") from None
    bad = [port for port in numbers if not 0 < port < 65536]
    if bad:
        raise ConfigError(f"not a port: {bad[0]}")
    return {port: DEFAULT_PORTS.get(port, "server") for port in numbers}


def ports_from_env(environ: Mapping[str, str] | None = None) -> dict[int, str]:
    """The ports named by ``$TREESYNTH_DISCOVER_PORTS``, else :data:`DEFAULT_PORTS`."""
    env = os.environ if environ is None else environ
    spec = env.get(PORTS_ENV, "").strip()
    return parse_ports(spec) if spec else dict(DEFAULT_PORTS)
