"""Project-level helpers for the Project page: example trees, new projects, the backend check."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from studio.state import projects_dir
from treesynth_core.errors import EndpointError, ProjectError, TreeSynthError
from treesynth_core.llm.settings import BackendSettings, merge_settings
from treesynth_core.store import Project
from treesynth_core.tree.file import read_tree_file

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "trees"


@dataclass(frozen=True)
class Example:
    path: Path
    name: str
    task: str
    style: str
    nodes: int
    leaves: int
    levels: int
    criterion: str


@st.cache_data(show_spinner=False)
def examples(folder: str | None = None) -> list[Example]:
    """The example trees shipped in ``assets/trees`` (read once per process)."""
    found = []
    for path in sorted(Path(folder or EXAMPLES_DIR).glob("*.json")):
        try:
            tree = read_tree_file(path)
        except TreeSynthError:
            continue
        found.append(
            Example(
                path,
                path.stem,
                tree.task,
                tree.style,
                len(tree.nodes),
                len(tree.leaves()),
                tree.levels(),
                tree.root.split_criterion or "",
            )
        )
    return found


def folder_name(text: str) -> str:
    """A safe folder name from what a person typed: letters, digits, dash, underscore, dot."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-.")
    if not name:
        raise ProjectError("give the project a name (letters, digits, dashes)")
    return name[:80]


def example_folder(example: Example) -> Path:
    """Where the example's project lives under the projects folder."""
    return projects_dir() / f"example-{example.name}"


def has_copy(example: Example) -> bool:
    """Whether the example was opened before (its copy, with the person's edits, exists)."""
    return (example_folder(example) / "treesynth.db").is_file()


def open_example(example: Example) -> Project:
    """The example's project under the projects folder: created from the tree file the first time,
    opened (as the person left it) afterwards."""
    folder = example_folder(example)
    if has_copy(example):
        return Project.open(folder)
    tree = read_tree_file(example.path)
    return Project.create(folder, task=tree.task, style=tree.style, tree=tree)


def fresh_example(example: Example) -> Project:
    """A new copy of the example, as shipped, beside the edited one (``example-NAME-2``, ``-3``, ...):
    starting over never deletes anyone's work."""
    base = example_folder(example)
    folder = next(p for n in range(2, 10_000) if not (p := base.with_name(f"{base.name}-{n}")).exists())
    tree = read_tree_file(example.path)
    return Project.create(folder, task=tree.task, style=tree.style, tree=tree)


def create_project(name: str, task: str, style: str, settings: BackendSettings) -> Project:
    return Project.create(projects_dir() / folder_name(name), task=task, style=style, settings=settings)


def check_connection(settings: BackendSettings, *, timeout_s: float = 15.0) -> str:
    """Send one tiny request; return what answered, or raise a TreeSynthError saying what is wrong."""
    from treesynth_core.llm import make_llm
    from treesynth_core.llm.base import ChatRequest

    quick = merge_settings(settings, {"timeout_s": min(settings.timeout_s, timeout_s), "max_retries": 0})

    async def ping() -> str:
        llm = make_llm(quick)
        try:
            request = ChatRequest.chat(
                None, "Reply with the word OK.", temperature=0.0, max_tokens=4, meta={"purpose": "ping"}
            )
            result = await asyncio.wait_for(
                llm.complete(request), timeout=max(timeout_s, 60.0) if settings.backend == "embedded" else timeout_s
            )
            return f"{result.model} answered in {result.latency_s:.1f} s: {result.text.strip()[:40]!r}"
        finally:
            await llm.aclose()

    try:
        return asyncio.run(ping())
    except TimeoutError:
        raise EndpointError(f"no answer within {timeout_s:g} s from {quick.describe()}") from None
