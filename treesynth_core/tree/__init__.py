"""The partition tree: frozen values and pure edits, named edits through the store, and its JSON file."""
