"""The project store: the one place that touches SQLite (see :mod:`.project` and :mod:`.schema`)."""

from .project import EditRecord, Project

__all__ = ["EditRecord", "Project"]
