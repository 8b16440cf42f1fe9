"""The embedded llama.cpp backend. Tests marked ``slow`` run the real SmolLM2-135M-Instruct GGUF.

The real model's tests assert only what holds on any CPU (llama.cpp's arithmetic, and so the text,
differs between machines): a reply arrives; under a schema it parses and follows the schema, or it
is reported cut off (``finish_reason == "length"`` after ``max_tokens`` tokens); the same request
and seed give the same text on the machine that runs it. Never the text itself.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from treesynth_core.errors import ConfigError
from treesynth_core.llm import embedded
from treesynth_core.llm.base import LLM, ChatRequest, ChatResult
from treesynth_core.llm.embedded import (
    DEFAULT_GGUF,
    EmbeddedLLM,
    LoadedModel,
    default_gguf_path,
    grammar_for_schema,
    load_model,
)
from treesynth_core.llm.settings import BackendSettings

SYSTEM = "You write quiz questions. Reply with JSON only."
USER = "Write 5 short questions about photosynthesis, one sentence each, and name the topic."

QUESTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "questions": {
            "type": "array",
            "items": {"type": "string", "maxLength": 120},
            "minItems": 5,
            "maxItems": 5,
        },
        "topic": {"type": "string"},
    },
    "required": ["questions", "topic"],
}

PIVOT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "level": {"type": "string", "enum": ["easy", "medium", "hard"]},
        "pivot": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 40},
                "values": {
                    "type": "array",
                    "items": {"type": "string", "maxLength": 30},
                    "minItems": 2,
                    "maxItems": 4,
                },
            },
            "required": ["name", "values"],
        },
    },
    "required": ["level", "pivot"],
}

#: Enough for any reply the grammars above allow (5 x 120 characters plus punctuation).
JSON_MAX_TOKENS = 768


@pytest.fixture(scope="module")
def llm() -> EmbeddedLLM:
    return EmbeddedLLM(BackendSettings())


def complete(llm: EmbeddedLLM, request: ChatRequest) -> ChatResult:
    return asyncio.run(llm.complete(request))


def questions_request(seed: int) -> ChatRequest:
    return ChatRequest.chat(
        SYSTEM, USER, seed=seed, temperature=0.9, max_tokens=JSON_MAX_TOKENS, schema=QUESTIONS_SCHEMA
    )


def parsed_or_cut_off(result: ChatResult, max_tokens: int) -> dict[str, Any] | None:
    """The reply's JSON when it finished; None when it was cut off by ``max_tokens`` and says so."""
    assert result.text and result.completion_tokens > 0
    if result.finish_reason == "length":
        assert result.completion_tokens == max_tokens  # cut off by the budget, and reported as such
        return None
    assert result.finish_reason == "stop"
    reply = json.loads(result.text)  # a finished reply under a grammar always parses
    assert isinstance(reply, dict)
    return reply


# -- fast: no model loaded ------------------------------------------------------------------------


def test_default_gguf_path_is_the_shipped_smollm2() -> None:
    path = default_gguf_path()
    assert path.name == DEFAULT_GGUF
    assert path.is_file()


def test_import_does_not_load_llama_cpp() -> None:
    code = "import sys, treesynth_core.llm.embedded; assert 'llama_cpp' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_gguf_path_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ConfigError, match="nope.gguf"):
        EmbeddedLLM(BackendSettings(gguf_path=str(missing)))


def test_implements_the_llm_protocol() -> None:
    llm = EmbeddedLLM(BackendSettings())
    assert isinstance(llm, LLM)
    assert (llm.backend, llm.model) == ("embedded", "SmolLM2-135M-Instruct.Q4_1")


def test_grammar_is_cached_and_json_strict() -> None:
    grammar = grammar_for_schema(QUESTIONS_SCHEMA)
    assert grammar_for_schema(json.loads(json.dumps(QUESTIONS_SCHEMA))) is grammar
    # Strings may not hold raw control characters (json.loads would reject them).
    assert r'[^"\\\x7F\x00-\x1F]' in grammar._grammar


class RecordingLlama:
    """Stands in for ``llama_cpp.Llama``: records each call and whether the model's lock was held."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.calls: list[tuple[str, bool]] = []

    def reset(self) -> None:
        self.calls.append(("reset", self.lock.locked()))

    stopped = False

    def chat_until(self, should_stop: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("complete", self.lock.locked()))
        message = {"role": "assistant", "content": "ok"}
        return {"choices": [{"message": message, "finish_reason": "stop"}], "usage": {"completion_tokens": 1}}


def test_state_is_reset_under_the_lock_before_every_completion(monkeypatch: pytest.MonkeyPatch) -> None:
    """No KV cache is carried from one call into the next: the same request gives the same logits."""
    llm = EmbeddedLLM(BackendSettings())
    lock = threading.Lock()
    fake = RecordingLlama(lock)
    loaded = LoadedModel(llama=fake, lock=lock)  # type: ignore[arg-type]
    monkeypatch.setitem(embedded._models, (str(llm.path), llm.n_ctx), loaded)
    for seed in (1, 2, 1):
        assert complete(llm, ChatRequest.chat(None, "Name a tree.", seed=seed, max_tokens=4)).text == "ok"
    assert fake.calls == [("reset", True), ("complete", True)] * 3


# -- slow: the real model -------------------------------------------------------------------------


@pytest.mark.slow
def test_plain_generation(llm: EmbeddedLLM) -> None:
    result = complete(llm, ChatRequest.chat(None, "Name three trees.", seed=1, max_tokens=24))
    assert result.text.strip()
    assert result.model == "SmolLM2-135M-Instruct.Q4_1"
    assert result.prompt_tokens > 0
    assert 0 < result.completion_tokens <= 24
    assert result.finish_reason in {"stop", "length"}
    assert result.latency_s > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_schema_reply_parses_and_follows_schema(llm: EmbeddedLLM, seed: int) -> None:
    reply = parsed_or_cut_off(complete(llm, questions_request(seed)), JSON_MAX_TOKENS)
    if reply is None:
        return  # cut off: an accepted outcome, which the pipeline handles (tests/test_synth.py, test_grow.py)
    assert set(reply) == {"questions", "topic"}
    assert isinstance(reply["topic"], str)
    assert len(reply["questions"]) == 5
    assert all(isinstance(q, str) and len(q) <= 120 for q in reply["questions"])


@pytest.mark.slow
def test_enum_and_nested_objects(llm: EmbeddedLLM) -> None:
    request = ChatRequest.chat(
        SYSTEM,
        "Give a difficulty level and one pivot (a dimension with a few values) for math word problems.",
        seed=7,
        max_tokens=JSON_MAX_TOKENS,
        schema=PIVOT_SCHEMA,
    )
    reply = parsed_or_cut_off(complete(llm, request), JSON_MAX_TOKENS)
    if reply is None:
        return
    assert reply["level"] in {"easy", "medium", "hard"}
    assert len(reply["pivot"]["name"]) <= 40
    assert 2 <= len(reply["pivot"]["values"]) <= 4
    assert all(len(value) <= 30 for value in reply["pivot"]["values"])


@pytest.mark.slow
def test_same_request_and_seed_give_the_same_text(llm: EmbeddedLLM) -> None:
    """Three identical requests, interleaved with others (a shared prefix, an exact repeat, an unrelated
    prompt), give the same text: nothing of the previous call's state reaches the next one. Without the
    reset, llama-cpp-python reuses the KV cache of the shared prefix and the text can change."""
    volcanoes = "Write 5 short questions about volcanoes, one sentence each, and name the topic."
    plain = ChatRequest.chat(SYSTEM, volcanoes, seed=11, temperature=0.9, max_tokens=200)
    other = ChatRequest.chat(None, "Say something else.", seed=2, max_tokens=8)
    for request in (plain, questions_request(11)):
        first = complete(llm, request).text
        again = complete(llm, request).text  # the exact prompt is what the model holds now
        complete(llm, other)
        complete(llm, ChatRequest.chat(SYSTEM, USER.replace("photosynthesis", "tides"), seed=5, max_tokens=16))
        last = complete(llm, request).text  # after a prompt sharing the system prefix
        assert first.strip() and first == again == last


@pytest.mark.slow
def test_concurrent_calls_queue_up(llm: EmbeddedLLM) -> None:
    other = EmbeddedLLM(BackendSettings())  # a second instance shares the loaded model

    async def both() -> tuple[ChatResult, ChatResult]:
        return await asyncio.gather(
            llm.complete(ChatRequest.chat(None, "Name a fruit.", seed=1, max_tokens=16)),
            other.complete(ChatRequest.chat(None, "Name a color.", seed=2, max_tokens=16)),
        )

    results = asyncio.run(both())
    assert all(result.text.strip() and result.completion_tokens > 0 for result in results)
    assert other.load() is llm.load()


@pytest.mark.slow
def test_prompt_longer_than_context_is_a_config_error() -> None:
    llm = EmbeddedLLM(BackendSettings(n_ctx=512))
    with pytest.raises(ConfigError, match=r"context is 512 tokens.*--n-ctx"):
        complete(llm, ChatRequest.chat(None, "tree " * 600, max_tokens=8))
    assert load_model(llm.path, 512) is llm.load()
