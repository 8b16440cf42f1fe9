"""Documents for the concepts tests: topics of Python's own reference (``pydoc_data.topics``, offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from treesynth_core.concepts.documents import python_docs


def write_python_docs(folder: Path, names: tuple[str, ...] = ("pass", "break")) -> Path:
    """``folder`` (made) holding one ``NAME.txt`` per named topic of Python's reference."""
    folder.mkdir()
    for d in python_docs():
        if d.doc_id in names:
            (folder / f"{d.doc_id}.txt").write_text(d.text, encoding="utf-8")
    return folder


#: Why a small model's level 2-3 run may make nothing: it gave too few concepts for the level.
TOO_FEW_CONCEPTS = ("no document has", "no concepts stored", "no walk with 2 or more concepts")


def level_refused(result: Any, level: int) -> bool:
    """Whether ``treesynth concepts synth --level LEVEL`` (a CliRunner result) exited 1; then it must
    be level 2 or 3 refused for too few concepts (asserted)."""
    if result.exit_code != 1:
        return False
    assert level > 1 and any(reason in result.output for reason in TOO_FEW_CONCEPTS), result.output
    return True
