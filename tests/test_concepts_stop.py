"""Stopping concept extraction: every document's task starts at once, so the stop is checked when a
task's turn at the model comes; the documents after it are not asked, and those extracted are kept."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.fakes import ScriptedLLM
from treesynth_core.concepts.documents import python_docs
from treesynth_core.concepts.extract import ExtractOptions, extract_concepts
from treesynth_core.concepts.store import load_concepts, save_documents
from treesynth_core.errors import Cancelled


def test_a_stop_during_extraction_stops_before_the_next_document(project):
    by_id = {d.doc_id: d for d in python_docs()}
    save_documents(project, [by_id[name] for name in ("pass", "if", "while", "for")])
    llm = ScriptedLLM(delay=0.05)  # a reply takes a while, as a model's does
    stop = threading.Event()

    def progress(done: int, total: int, note: str) -> None:
        stop.set()  # the first document is in: stop

    with pytest.raises(Cancelled, match="extraction stopped"):
        asyncio.run(extract_concepts(project, llm, ExtractOptions(), progress=progress, cancel=stop, concurrency=1))
    # the document whose turn came before the stop may still be asked; the others are not
    assert llm.calls("concepts") <= 2 and 1 <= len(load_concepts(project)) <= 2
