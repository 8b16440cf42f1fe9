"""``python -m treesynth_core.cli``: the ``treesynth`` command."""

from . import main

main()
