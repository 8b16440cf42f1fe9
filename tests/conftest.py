"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.capable import capable_results
from treesynth_core.llm.base import ChatResult


@pytest.fixture
def capable() -> Callable[[str], dict[str, list[ChatResult]]]:
    """``capable(name)`` gives a capable-model scenario's replies by purpose, ready for
    :meth:`tests.fakes.ScriptedLLM.enqueue` (see :func:`tests.capable.capable_results`)."""
    return capable_results
