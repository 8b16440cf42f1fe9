"""Shared fixtures: an empty project, the app's projects folder on the scripted fake LLM, and the
capable-model scenarios. Helpers live in modules of their own (``fakes``, ``apptest``, ``trees``,
``helpers_http``, ``helpers_png``, ``capable``); a test module never imports another test module.

A module that needs more in its project (a split root, samples) overrides ``project`` with a fixture
of the same name that asks for this one, e.g. ``def project(project): split_root(project, ...)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.capable import capable_results
from tests.fakes import ScriptedLLM
from treesynth_core.jobs import background as jobs
from treesynth_core.jobs import runs
from treesynth_core.llm.base import ChatResult
from treesynth_core.store import Project

#: The task and style of the shared ``project``.
TASK = "Math word problems"
STYLE = "GSM8K-style"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """An open project in ``tmp_path / "p"`` whose tree is just the root (:data:`TASK`, :data:`STYLE`)."""
    with Project.create(tmp_path / "p", task=TASK, style=STYLE) as p:
        yield p


@pytest.fixture
def projects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The app's projects folder (``TREESYNTH_PROJECTS``, no other ``TREESYNTH_`` variable), with
    background jobs on the scripted fake LLM."""
    folder = tmp_path / "projects"
    monkeypatch.setenv("TREESYNTH_PROJECTS", str(folder))
    for name in list(os.environ):
        if name.startswith("TREESYNTH_") and name != "TREESYNTH_PROJECTS":
            monkeypatch.delenv(name)
    jobs.set_llm_factory(lambda settings: ScriptedLLM())
    yield folder
    jobs.set_llm_factory(None)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> list[ScriptedLLM]:
    """Every LLM a command's run builds is a fresh :class:`ScriptedLLM` (injected at
    ``jobs.runs.default_factory``, our own seam); the list holds them in order."""
    made: list[ScriptedLLM] = []

    def factory(settings: object) -> ScriptedLLM:
        made.append(ScriptedLLM())
        return made[-1]

    monkeypatch.setattr(runs, "default_factory", factory)
    return made


@pytest.fixture
def capable() -> Callable[[str], dict[str, list[ChatResult]]]:
    """``capable(name)`` gives a capable-model scenario's replies by purpose, ready for
    :meth:`tests.fakes.ScriptedLLM.enqueue` (see :func:`tests.capable.capable_results`)."""
    return capable_results
