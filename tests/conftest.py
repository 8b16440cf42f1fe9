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
