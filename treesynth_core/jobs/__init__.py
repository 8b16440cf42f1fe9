"""Jobs: one spec per kind of work, run from the CLI or in the background beside the app."""
