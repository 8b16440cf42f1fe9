"""``python -m treesynth_core.cli``: the ``treesynth`` command."""

from .app import main

main()
