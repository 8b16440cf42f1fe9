"""Shared fixtures: the hand-written capable-model replies (``tests/fixtures/capable/``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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


@pytest.fixture
def capable() -> Callable[[str], dict[str, list[ChatResult]]]:
    """``capable(name)`` gives a scenario's replies by purpose (see :func:`capable_results`)."""
    return capable_results


def named_values_of(name: str) -> list[str]:
    """Every value a growth scenario's criterion and coverage replies name, in order, without repeats:
    the children a faithful pipeline makes from them."""
    replies = load_capable(name)["replies"]
    values = list(dict.fromkeys(json.loads(replies["criterion"][0]["text"])["values"]))
    for item in replies.get("coverage", []):
        values += json.loads(item["text"])["new_values"]
    return values


#: The JSON-schema name each growth request carries, and the purpose it stands for.
SCHEMA_PURPOSE = {"samples": "pivots", "criterion": "criterion", "coverage": "coverage"}


def capable_responder(name: str) -> Callable[[Any], Any]:
    """A ``respond`` callback for :class:`tests.helpers_http.FakeOpenAIServer` that answers each
    growth request (its purpose read from the ``response_format`` schema name) with the scenario's
    next reply of that purpose; a request the scenario has no reply for gets an HTTP 400 naming it."""
    from collections import deque

    from tests.helpers_http import Reply

    queues = {p: deque(items) for p, items in load_capable(name)["replies"].items()}

    def respond(request: Any) -> Any:
        fmt = request.response_format or {}
        purpose = SCHEMA_PURPOSE.get((fmt.get("json_schema") or {}).get("name", ""), "")
        if not queues.get(purpose):
            return Reply.error(400, f"scenario {name} has no reply left for purpose {purpose or fmt!r}")
        item = queues[purpose].popleft()
        return Reply.ok(item["text"], finish_reason=item.get("finish_reason", "stop"))

    return respond
