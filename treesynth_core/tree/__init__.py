"""The partition tree: frozen values and pure edits, their undo/redo records, named edits through the store, and
its JSON file."""
