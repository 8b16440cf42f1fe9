"""Documents for the concepts tests: topics of Python's own reference (``pydoc_data.topics``, offline)."""

from __future__ import annotations

from pathlib import Path

from treesynth_core.concepts.documents import python_docs


def write_python_docs(folder: Path, names: tuple[str, ...] = ("pass", "break")) -> Path:
    """``folder`` (made) holding one ``NAME.txt`` per named topic of Python's reference."""
    folder.mkdir()
    for d in python_docs():
        if d.doc_id in names:
            (folder / f"{d.doc_id}.txt").write_text(d.text, encoding="utf-8")
    return folder
