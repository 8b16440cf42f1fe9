"""The documented limits on what enters a tree: how long the task, the style and each criterion or
value may be, and how deep the tree may go. They are checked where text enters (a new project, a
tree file, a hand edit), each with one line saying what is too long and by how much, so a 10 MB
task is refused instead of being sent (and estimated) in every prompt, and a tree too deep for
the prompts is refused before anything walks it.
"""

from __future__ import annotations

from typing import Final

from ..errors import TreeError

#: The most characters of the task description (a paragraph; it goes into every prompt).
MAX_TASK_CHARS: Final = 4_000
#: The most characters of the style text (a few sentences with an example or two).
MAX_STYLE_CHARS: Final = 4_000
#: The most characters of one criterion or value (a label, not a document).
MAX_LABEL_CHARS: Final = 300
#: The most levels below the root; every prompt carries the root-to-leaf path, and the paper's
#: trees have 3 to 6 levels.
MAX_DEPTH: Final = 64

_LIMITS: Final = {
    "task": MAX_TASK_CHARS,
    "style": MAX_STYLE_CHARS,
    "criterion": MAX_LABEL_CHARS,
    "value": MAX_LABEL_CHARS,
}


def check_length(what: str, text: str, *, node_id: str | None = None) -> str:
    """``text`` unchanged, or TreeError when it is longer than the limit for ``what`` (task, style,
    criterion or value)."""
    limit = _LIMITS[what]
    if len(text) > limit:
        start = text[:40].replace("\n", " ")
        raise TreeError(
            f"the {what} is {len(text):,} characters long ({start!r}…); the most TreeSynth takes is {limit:,}: "
            "shorten it",
            node_id,
        )
    return text


#: What a tree deeper than :data:`MAX_DEPTH` is told.
TOO_DEEP: Final = f"the tree is more than {MAX_DEPTH} levels deep, the most TreeSynth takes: merge or remove levels"
