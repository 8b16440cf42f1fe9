"""The hand-written capable-model replies (``tests/fixtures/capable/``, format in the README there):
loaders for the scripted fake LLM and the fake OpenAI-compatible server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers_http import ReplayByPurpose
from treesynth_core.llm.base import ChatResult

CAPABLE = Path(__file__).parent / "fixtures" / "capable"


def load_capable(name: str) -> dict[str, Any]:
    """One scenario of ``tests/fixtures/capable/NAME.json`` (see the README there)."""
    return json.loads((CAPABLE / f"{name}.json").read_text(encoding="utf-8"))


def capable_results(name: str, model: str = "capable-model") -> dict[str, list[ChatResult]]:
    """A scenario's replies as :class:`ChatResult` objects by purpose, ready for
    :meth:`tests.fakes.ScriptedLLM.enqueue`."""
    replies = load_capable(name)["replies"]
    return {
        purpose: [
            ChatResult(
                text=item["text"],
                model=model,
                prompt_tokens=400,
                completion_tokens=max(1, len(item["text"]) // 4),
                finish_reason=item.get("finish_reason", "stop"),
            )
            for item in items
        ]
        for purpose, items in replies.items()
    }


def named_values_of(name: str) -> list[str]:
    """Every value a growth scenario's criterion and coverage replies name, in order, without repeats:
    the children a faithful pipeline makes from them."""
    replies = load_capable(name)["replies"]
    values = list(dict.fromkeys(json.loads(replies["criterion"][0]["text"])["values"]))
    for item in replies.get("coverage", []):
        values += json.loads(item["text"])["new_values"]
    return values


def capable_responder(name: str) -> ReplayByPurpose:
    """A ``respond`` callback for :class:`tests.helpers_http.FakeOpenAIServer` replaying scenario
    ``name`` by purpose (a request with no reply left gets an HTTP 400 naming its purpose)."""
    return ReplayByPurpose.from_scenario(load_capable(name))
