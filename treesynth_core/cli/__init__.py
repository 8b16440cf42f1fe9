"""The ``treesynth`` command: thin Typer commands over the core (``app`` assembles them)."""
