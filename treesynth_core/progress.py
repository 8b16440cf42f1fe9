"""What long-running work reports as it goes: one progress callback type for every stage.

``Progress(done, total, message)`` is called by growth, synthesis, feature extraction, routing,
balancing, gap filling and concept work; the CLI draws it as a progress bar and the app's background
jobs store it for the page to show.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, str], None]
