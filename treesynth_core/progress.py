"""What long-running work reports as it goes: one progress callback type for every stage, and
:func:`plural` for the counts in its messages.

``Progress(done, total, message)`` is called by growth, synthesis, feature extraction, routing,
balancing, gap filling and concept work; the CLI draws it as a progress bar and the app's background
jobs store it for the page to show.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, str], None]


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 sample``, ``2 samples``, ``1,234 samples``; ``words`` for an irregular plural
    (``plural(n, "leaf", "leaves")``)."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"
