"""Embedders and stored features: only new samples are featurized; the OpenAI-compatible endpoint
through an injected mock transport; the embedded MiniLM model offline (slow)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest

from tests.fakes import HashEmbedder
from treesynth_core.coverage.features import embeddings as E
from treesynth_core.errors import AuthError, ConfigError, EndpointError
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.store.samples import NewSample

KEY_ENV = "TREESYNTH_TEST_EMBED_KEY"


@pytest.fixture
def project(project):
    """The shared project with six samples on the root."""
    root = project.tree().root_id
    project.add_samples(
        NewSample(leaf_id=root, key=f"0:{i}", instruction=f"problem number {i} about apples", path=[]) for i in range(6)
    )
    return project


def test_ensure_features_embeds_only_new_samples(project):
    fake = HashEmbedder()
    samples = project.samples()
    first = E.ensure_features(project, samples, fake)
    assert first.shape == (6, 16) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    assert len(fake.seen) == 6
    root = project.tree().root_id
    project.add_samples([NewSample(leaf_id=root, key="1:0", instruction="a brand new text", path=[])])
    seen: list[tuple[int, int]] = []
    again = E.ensure_features(project, project.samples(), fake, progress=lambda d, t, note: seen.append((d, t)))
    assert fake.seen[6:] == ["a brand new text"]
    assert np.array_equal(again[:6], first)
    assert seen and seen[-1] == (1, 1)
    assert E.ensure_features(project, project.samples(), fake).shape == (7, 16) and len(fake.seen) == 7


def test_ensure_features_keeps_kinds_apart_and_order(project):
    samples = project.samples()
    a = E.ensure_features(project, samples, HashEmbedder(16, "emb:a"))
    b = E.ensure_features(project, samples, HashEmbedder(8, "emb:b"))
    assert a.shape == (6, 16) and b.shape == (6, 8)
    reordered = E.ensure_features(project, samples[::-1], HashEmbedder(16, "emb:a"))
    assert np.array_equal(reordered, a[::-1])
    assert E.ensure_features(project, [], HashEmbedder()).shape[0] == 0


def test_ensure_features_stores_in_chunks(project, monkeypatch):
    monkeypatch.setattr(E, "STORE_CHUNK", 4)

    class Failing(HashEmbedder):
        def embed(self, texts, batch_size=64, progress=None):
            if len(self.seen) >= 4:
                raise KeyboardInterrupt("ctrl-c while embedding")
            return super().embed(texts, batch_size, progress)

    with pytest.raises(KeyboardInterrupt, match="ctrl-c while embedding"):
        E.ensure_features(project, project.samples(), Failing())
    assert len(project.get_features("emb:fake", [s.id for s in project.samples()])) == 4


def test_ensure_features_serves_any_featurizer(project):
    class GradientLike:
        name, dim = "grad:test:4:0", 4

        def features(self, samples, *, batch_size=8, progress=None):
            return np.eye(4, dtype=np.float32)[[s.id % 4 for s in samples]]

    assert isinstance(GradientLike(), E.Featurizer)
    out = E.ensure_features(project, project.samples(), GradientLike(), batch_size=2)
    assert out.shape == (6, 4)


def test_make_embedder_specs(monkeypatch):
    assert isinstance(E.make_embedder(None), E.SentenceTransformerEmbedder)
    assert E.make_embedder(None).name == "emb:all-MiniLM-L6-v2"
    assert E.make_embedder("some/model").name == "emb:some/model"
    monkeypatch.setenv(KEY_ENV, "sk-test-secret-123456")
    settings = BackendSettings(backend="openai", base_url="http://127.0.0.1:9/v1", model="x", api_key_env=KEY_ENV)
    made = E.make_embedder("openai:nomic", settings=settings)
    assert isinstance(made, E.OpenAIEmbeddingsEmbedder) and made.name == "emb:openai:nomic@127.0.0.1:9"


def test_default_model_is_found_in_site_packages_without_loading():
    path = E.default_model_path()
    assert (path / "model.safetensors").is_file() and (path / "modules.json").is_file()


@pytest.mark.slow  # imports sentence-transformers (~8 s)
def test_unknown_model_name_is_never_downloaded(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = E.SentenceTransformerEmbedder("treesynth-test/no-such-model-xyz", device="cpu")
    with pytest.raises(ConfigError, match="never downloaded"):
        embedder.embed(["hello"])


# -- OpenAI-compatible endpoint ---------------------------------------------------------------------


def openai_embedder(handler, monkeypatch, **kwargs: Any) -> tuple[E.OpenAIEmbeddingsEmbedder, list[float]]:
    monkeypatch.setenv(KEY_ENV, "sk-test-secret-123456")
    settings = BackendSettings(
        backend="openai", base_url="http://mock.local/v1", model="chat", api_key_env=KEY_ENV, max_retries=2
    )
    delays: list[float] = []
    client = httpx.Client(transport=httpx.MockTransport(handler))
    embedder = E.OpenAIEmbeddingsEmbedder(settings, "embed-small", http_client=client, sleep=delays.append, **kwargs)
    return embedder, delays


def ok_reply(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    data = [{"index": i, "embedding": [float(len(t)), 1.0, float(i)]} for i, t in enumerate(body["input"])]
    return httpx.Response(200, json={"data": data[::-1], "model": body["model"]})  # out of order on purpose


def test_openai_embeddings_batches_orders_and_normalizes(monkeypatch):
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        assert str(request.url) == "http://mock.local/v1/embeddings"
        assert request.headers["authorization"] == "Bearer sk-test-secret-123456"
        return ok_reply(request)

    embedder, _ = openai_embedder(handler, monkeypatch)
    out = embedder.embed(["a", "bb", "", "dddd", "eeeee"], batch_size=2)
    assert [len(b["input"]) for b in seen] == [2, 2, 1] and seen[0]["model"] == "embed-small"
    assert seen[1]["input"][0] == " "  # empty inputs are sent as a space
    assert out.shape == (5, 3) and np.allclose(np.linalg.norm(out, axis=1), 1.0)
    assert out[1] @ np.array([2.0, 1.0, 1.0]) / np.sqrt(6) == pytest.approx(1.0, abs=1e-6)
    assert embedder.dim == 3


def test_openai_embeddings_retry_429_then_succeed(monkeypatch):
    replies = iter(
        [
            httpx.Response(429, headers={"retry-after": "2"}, json={"error": "slow down"}),
            httpx.Response(503, json={"error": "busy"}),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return next(replies, None) or ok_reply(request)

    embedder, delays = openai_embedder(handler, monkeypatch)
    assert embedder.embed(["x"]).shape == (1, 3)
    assert delays[0] == 2.0 and len(delays) == 2


def test_openai_embeddings_errors_name_the_endpoint_not_the_key(monkeypatch):
    embedder, delays = openai_embedder(
        lambda r: httpx.Response(500, json={"error": "sk-test-secret-123456 boom"}), monkeypatch
    )
    with pytest.raises(EndpointError, match="kept failing after 3 attempts: HTTP 500") as info:
        embedder.embed(["x"])
    assert "mock.local" in str(info.value) and "sk-test-secret" not in str(info.value) and len(delays) == 2
    embedder, delays = openai_embedder(lambda r: httpx.Response(401, json={"error": "bad key"}), monkeypatch)
    with pytest.raises(AuthError, match=r"refused the API key \(HTTP 401\): bad key"):
        embedder.embed(["x"])
    assert delays == []
    embedder, _ = openai_embedder(lambda r: httpx.Response(400, json={"error": "no such model"}), monkeypatch)
    with pytest.raises(EndpointError, match="HTTP 400"):
        embedder.embed(["x"])
    embedder, _ = openai_embedder(lambda r: httpx.Response(200, json={"data": []}), monkeypatch)
    with pytest.raises(EndpointError, match="0 embeddings for 1"):
        embedder.embed(["x"])


# -- the embedded model -----------------------------------------------------------------------------


@pytest.mark.slow
def test_embedded_minilm_offline(project, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    embedder = E.SentenceTransformerEmbedder(device="cpu")
    assert embedder.dim == 384
    texts = ["How many apples does Tom have?", "How many apples has Tom got?", "Write a haiku about the sea."]
    X = embedder.embed(texts)
    assert X.shape == (3, 384) and X.dtype == np.float32
    assert np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert X[0] @ X[1] > 0.8 > 0.3 > X[0] @ X[2]
    assert np.allclose(embedder.embed(texts), X, atol=1e-6)  # deterministic
    assert E.SentenceTransformerEmbedder(device="cpu").model is embedder.model  # cached per process
    stored = E.ensure_features(project, project.samples(), embedder)
    assert stored.shape == (6, 384)
