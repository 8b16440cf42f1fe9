"""The project store: the one place that touches SQLite (see :mod:`.project` and :mod:`.schema`)."""

from .project import CallRecord, EditRecord, Project

__all__ = ["CallRecord", "EditRecord", "Project"]
