"""The ``treesynth`` command: thin Typer commands over the core (``app`` assembles them); :func:`main`
is the entry point."""

from __future__ import annotations

import sys


def main() -> None:
    """Console entry point. The app is imported in here, so Ctrl-C at any moment, even while the
    imports run, ends with exit status 130 and one line (the traceback only with ``--debug``)."""
    try:
        from .app import main as run

        run()
    except KeyboardInterrupt:
        if "--debug" in sys.argv[1:]:
            raise
        sys.stderr.write("stopped (Ctrl-C).\n")
        raise SystemExit(130) from None
