"""Local model discovery: servers on 127.0.0.1 (fake ones, and llama.cpp's real server), GGUF files in
fixture folders shaped like Ollama's, LM Studio's and the Hugging Face cache, ``treesynth models``, and
the key rule (a discovered server never gets ``$OPENAI_API_KEY``)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.helpers_http import FakeOpenAIServer, free_port
from tests.helpers_llama import llama_server
from treesynth_core.cli.app import app
from treesynth_core.errors import ConfigError
from treesynth_core.llm.base import ChatRequest
from treesynth_core.llm.discovery import (
    DEFAULT_PORTS,
    LOCAL_KEY_ENV,
    OLLAMA_MODEL_MEDIA_TYPE,
    PORTS_ENV,
    GgufRoots,
    LocalServer,
    discover,
    gguf_settings,
    parse_ports,
    ports_from_env,
    probe_port,
    probe_servers,
    scan_ggufs,
    server_settings,
)
from treesynth_core.llm.openai_compat import LOCAL_DUMMY_KEY, OpenAICompatLLM
from treesynth_core.llm.settings import BackendSettings

GGUF_BYTES = b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 64


def _gguf(path: Path, data: bytes = GGUF_BYTES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _ollama(models: Path, name: str, tag: str, digest: str, *, host: str = "registry.ollama.ai/library") -> None:
    manifest = {
        "schemaVersion": 2,
        "layers": [
            {"mediaType": "application/vnd.ollama.image.license", "digest": "sha256:0000"},
            {"mediaType": OLLAMA_MODEL_MEDIA_TYPE, "digest": f"sha256:{digest}", "size": len(GGUF_BYTES)},
        ],
    }
    path = models / "manifests" / host / name / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    _gguf(models / "blobs" / f"sha256-{digest}")


@pytest.fixture
def roots(tmp_path: Path) -> GgufRoots:
    """Fixture folders holding: two Ollama models (one of another registry), a manifest whose blob is
    missing, LM Studio files (a vision projector and a non-GGUF file among them), and a Hugging Face
    repo with two snapshots of one file."""
    home = tmp_path / "home"
    found = GgufRoots.default(environ={}, home=home)
    _ollama(found.ollama, "llama3.2", "3b", "aa11")
    _ollama(found.ollama, "qwen", "latest", "bb22", host="hf.co/someone")
    _ollama(found.ollama, "gone", "latest", "cc33")
    (found.ollama / "blobs" / "sha256-cc33").unlink()
    studio = found.lmstudio[0]
    _gguf(studio / "lmstudio-community" / "Qwen2.5-7B-GGUF" / "qwen2.5-7b-q4_k_m.gguf")
    _gguf(studio / "lmstudio-community" / "Qwen2.5-7B-GGUF" / "mmproj-qwen.gguf")
    _gguf(studio / "broken" / "repo" / "not-really.gguf", b"<html>")
    _gguf(found.lmstudio[1] / "old" / "repo" / "phi.gguf")
    repo = found.huggingface / "models--TheBloke--Mistral-7B-GGUF" / "snapshots"
    _gguf(repo / "rev1" / "mistral.Q4_K_M.gguf")
    time.sleep(0.01)
    _gguf(repo / "rev2" / "mistral.Q4_K_M.gguf")
    (found.huggingface / "models--org--no-gguf" / "snapshots" / "r").mkdir(parents=True)
    return found


def test_default_roots_follow_home_and_the_caches_variables(tmp_path: Path) -> None:
    home = tmp_path / "h"
    plain = GgufRoots.default(environ={}, home=home)
    assert plain.ollama == home / ".ollama" / "models"
    assert plain.lmstudio == (home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models")
    assert plain.huggingface == home / ".cache" / "huggingface" / "hub"
    env = {"OLLAMA_MODELS": "/o", "HF_HOME": "/hf"}
    assert GgufRoots.default(environ=env, home=home).ollama == Path("/o")
    assert GgufRoots.default(environ=env, home=home).huggingface == Path("/hf/hub")
    assert GgufRoots.default(environ={"HF_HUB_CACHE": "/c", **env}, home=home).huggingface == Path("/c")


def test_scan_finds_each_cache_and_skips_what_is_not_a_model(roots: GgufRoots) -> None:
    found = scan_ggufs(roots)
    names = [(g.source, g.name) for g in found]
    assert names == [
        ("Ollama", "hf.co/someone/qwen:latest"),
        ("Ollama", "llama3.2:3b"),
        ("LM Studio", "lmstudio-community/Qwen2.5-7B-GGUF/qwen2.5-7b-q4_k_m.gguf"),
        ("LM Studio", "old/repo/phi.gguf"),
        ("Hugging Face", "TheBloke/Mistral-7B-GGUF/mistral.Q4_K_M.gguf"),
    ]
    by_name = {g.name: g for g in found}
    assert by_name["llama3.2:3b"].path == roots.ollama / "blobs" / "sha256-aa11"
    assert by_name["TheBloke/Mistral-7B-GGUF/mistral.Q4_K_M.gguf"].path.parent.name == "rev2"  # the newest
    assert all(g.size_bytes == len(GGUF_BYTES) for g in found)
    assert found[0].size_text() == "0 MB"
    assert replace(found[0], size_bytes=4_700_000_000).size_text() == "4.7 GB"
    assert replace(found[0], size_bytes=270_000_000).size_text() == "270 MB"


def test_scan_of_missing_folders_finds_nothing(tmp_path: Path) -> None:
    assert scan_ggufs(GgufRoots.default(environ={}, home=tmp_path / "nobody")) == ()


def test_probe_lists_the_models_of_servers_on_loopback() -> None:
    with FakeOpenAIServer(model="qwen2.5:7b") as server:
        closed = free_port()
        found = probe_servers({server.port: "vLLM", closed: "llama.cpp"}, timeout_s=2.0)
    assert found == (LocalServer("vLLM", server.port, f"http://127.0.0.1:{server.port}/v1", ("qwen2.5:7b",)),)
    assert server.requests[0].path == "/v1/models" and server.requests[0].method == "GET"


def test_probe_asks_ollamas_own_api_when_v1_models_is_missing() -> None:
    tags = {"models": [{"name": "llama3.2:3b"}, {"name": "phi3:mini"}]}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=tags) if request.url.path == "/api/tags" else httpx.Response(404)

    port = free_port()
    server = _http_server(port, handler)
    try:
        assert probe_port(port, "Ollama", timeout_s=2.0) == LocalServer(
            "Ollama", port, f"http://127.0.0.1:{port}/v1", ("llama3.2:3b", "phi3:mini")
        )
        assert probe_port(port, "vLLM", timeout_s=2.0) is None  # /api/tags is only Ollama's
    finally:
        server.shutdown()


def _http_server(port: int, handler):  # type: ignore[no-untyped-def]
    """A plain threaded HTTP server on 127.0.0.1 answering GETs with ``handler``."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            reply = handler(httpx.Request("GET", f"http://127.0.0.1:{port}{self.path}"))
            self.send_response(reply.status_code)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(reply.content)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_port_that_never_answers_is_left_out() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        assert probe_port(port, "vLLM", timeout_s=0.2) is None
        assert probe_port(port, "Ollama", timeout_s=0.2) is None


def test_only_loopback_is_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def fake_get(self: httpx.Client, url: str) -> httpx.Response:
        seen.append(url)
        return httpx.Response(404, request=httpx.Request("GET", url))

    monkeypatch.setattr(httpx.Client, "get", fake_get)
    discover(timeout_s=0.01, roots=GgufRoots(Path("/nonexistent"), (), Path("/nonexistent")))
    assert seen and all(url.startswith("http://127.0.0.1:") for url in seen)
    assert {int(url.split(":")[2].split("/")[0]) for url in seen} == set(DEFAULT_PORTS)


def test_ports_are_parsed_and_named() -> None:
    assert parse_ports("8000, 9999") == {8000: "vLLM", 9999: "server"}
    assert ports_from_env({}) == dict(DEFAULT_PORTS)
    assert ports_from_env({PORTS_ENV: "1234"}) == {1234: "LM Studio"}
    for bad in ("abc", "0", "70000"):
        with pytest.raises(ConfigError, match="port"):
            parse_ports(bad)


def test_use_settings() -> None:
    server = LocalServer("Ollama", 11434, "http://127.0.0.1:11434/v1", ("llama3.2:3b",))
    base = BackendSettings(concurrency=4)
    used = server_settings(base, server, "llama3.2:3b")
    assert (used.backend, used.base_url, used.model, used.api_key_env) == (
        "openai",
        "http://127.0.0.1:11434/v1",
        "llama3.2:3b",
        LOCAL_KEY_ENV,
    )
    assert used.concurrency == 4
    from treesynth_core.llm.discovery import GgufFile

    gguf = gguf_settings(used, GgufFile("Ollama", "x", Path("/m/blob"), 1))
    assert (gguf.backend, gguf.gguf_path) == ("embedded", "/m/blob")


def test_a_discovered_server_never_gets_the_openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-secret-key-123")
    monkeypatch.delenv(LOCAL_KEY_ENV, raising=False)
    with FakeOpenAIServer(model="local-model") as fake:
        (server,) = probe_servers({fake.port: "vLLM"}, timeout_s=2.0)
        llm = OpenAICompatLLM(server_settings(None, server, "local-model"))
        asyncio.run(llm.complete(ChatRequest.chat(None, "hi", max_tokens=8)))
        monkeypatch.setenv(LOCAL_KEY_ENV, "local-key")  # a key the person set for the local server
        asyncio.run(
            OpenAICompatLLM(server_settings(None, server, "local-model")).complete(ChatRequest.chat(None, "hi"))
        )
    chats = [r for r in fake.requests if r.method == "POST"]
    assert chats[0].headers["authorization"] == f"Bearer {LOCAL_DUMMY_KEY}"
    assert chats[1].headers["authorization"] == "Bearer local-key"
    assert all("sk-real-secret" not in str(r.headers) for r in fake.requests)


def test_cli_models_lists_servers_and_files(roots: GgufRoots, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(roots.ollama.parents[1]))
    for name in ("OLLAMA_MODELS", "HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    with FakeOpenAIServer(model="qwen2.5:7b") as server:
        text = runner.invoke(app, ["models", "--ports", str(server.port)])
        as_json = runner.invoke(app, ["models", "--json", "--ports", str(server.port)])
    assert text.exit_code == 0, text.output
    assert f"http://127.0.0.1:{server.port}/v1" in text.output and "qwen2.5:7b" in text.output
    assert "llama3.2:3b" in text.output and f"--api-key-env {LOCAL_KEY_ENV}" in text.output
    data = json.loads(as_json.stdout)
    assert data["servers"][0]["models"] == ["qwen2.5:7b"]
    assert len(data["gguf"]) == 5 and data["ports"] == [server.port]
    bad = runner.invoke(app, ["models", "--ports", "nope"])
    assert bad.exit_code == 1 and "ports must be numbers" in bad.output


@pytest.mark.slow
def test_finds_llama_cpps_real_server(tmp_path: Path) -> None:
    with llama_server(tmp_path, n_ctx=512) as base_url:
        port = int(base_url.rsplit(":", 1)[1].split("/", 1)[0])
        found = probe_servers({port: "llama.cpp"})  # the real timeout, once it is up
    assert found == (LocalServer("llama.cpp", port, f"http://127.0.0.1:{port}/v1", ("smollm2",)),)
