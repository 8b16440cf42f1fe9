"""The errors TreeSynth raises on purpose.

Every error here carries a message a user can act on. The CLI prints it as one line (a traceback
only with ``--debug``); the app shows it with ``st.error``.
"""

from __future__ import annotations


class TreeSynthError(Exception):
    """Base class: anything the user should see as a plain message."""


class ConfigError(TreeSynthError):
    """Settings are missing or contradict each other (bad backend name, missing model, ...)."""


class EndpointError(TreeSynthError):
    """An LLM endpoint could not be reached or kept failing after retries."""


class AuthError(EndpointError):
    """The endpoint refused the credentials (HTTP 401/403) or the key variable is unset."""


class ParseError(TreeSynthError):
    """An LLM reply could not be parsed or validated, even after re-asking."""


class BudgetError(TreeSynthError):
    """A run would exceed (or has reached) the user's cap on calls or cost."""


class ProjectError(TreeSynthError):
    """A project folder is missing, not a project, or its database is corrupt."""


class ProjectGone(ProjectError):
    """The open project's folder or database file was deleted, moved or replaced behind its back:
    nothing more is written to it (a write would land in a file no one can open again)."""

    def __init__(self, folder: object, *, writing: bool) -> None:
        what = "your last edit was not saved" if writing else "close it and open it again"
        super().__init__(f"The project folder {folder} was deleted or moved while it was open; {what}")
        self.folder = folder


class ConflictError(ProjectError):
    """An edit made on a tree that changed since its maker read it: another tab, person or process
    changed (renamed, pruned, removed, ...) a node the edit is about. Nothing was written; read the
    tree again and redo the edit if it is still wanted. (Undo and redo refusals are
    :class:`EditConflict`.)"""

    def __init__(self, message: str, node_id: str | None = None) -> None:
        super().__init__(message)
        self.node_id = node_id


class TreeError(TreeSynthError):
    """The tree breaks an invariant, or an edit would make it break one."""

    def __init__(self, message: str, node_id: str | None = None) -> None:
        super().__init__(message)
        self.node_id = node_id


class EditConflict(TreeError):
    """An undo or redo was refused: a later edit by another owner changed the same nodes, or the
    tree would break."""


class Cancelled(TreeSynthError):
    """Work stopped because the user asked it to (Ctrl-C, a cancel button)."""


class DataError(TreeSynthError):
    """A dataset file (or a table of points) is unreadable, malformed, or does not match the
    column mapping the user gave."""


class Deferred(TreeSynthError):
    """A reply that is not there yet: its request was written to a batch file (``treesynth batch
    DIR prepare``) and comes back with ``collect``. Work that meets one stops where the online run
    would have waited for it."""
