"""The embedded llama.cpp backend. Tests marked ``slow`` run the real SmolLM2-135M-Instruct GGUF."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from treesynth_core.config import BackendSettings
from treesynth_core.errors import ConfigError
from treesynth_core.llm.base import LLM, ChatRequest, ChatResult
from treesynth_core.llm.embedded import (
    DEFAULT_GGUF,
    EmbeddedLLM,
    default_gguf_path,
    grammar_for_schema,
    load_model,
)

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
    result = complete(llm, questions_request(seed))
    assert result.finish_reason == "stop"
    reply = json.loads(result.text)
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
    reply = json.loads(complete(llm, request).text)
    assert reply["level"] in {"easy", "medium", "hard"}
    assert len(reply["pivot"]["name"]) <= 40
    assert 2 <= len(reply["pivot"]["values"]) <= 4
    assert all(len(value) <= 30 for value in reply["pivot"]["values"])


@pytest.mark.slow
def test_same_request_and_seed_give_the_same_text(llm: EmbeddedLLM) -> None:
    first = complete(llm, questions_request(11))
    complete(llm, ChatRequest.chat(None, "Say something else.", seed=2, max_tokens=8))
    second = complete(llm, questions_request(11))
    assert first.text == second.text
    plain = ChatRequest.chat(None, "Write one sentence about oak trees.", seed=3, max_tokens=24)
    assert complete(llm, plain).text == complete(llm, plain).text


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
