"""The project store: the one place that touches SQLite. :class:`Project` is its entry
(:mod:`.project`, its samples' side in :mod:`.sample_store`); the connection lives in :mod:`.db`,
the edit log in :mod:`.history`, runs, calls and jobs in :mod:`.runs` (a run's call-log and cache rows
are committed in batches by :mod:`.write_behind`), the schema in :mod:`.schema`."""

from .history import EditRecord, Replayed, UndoState
from .project import Project
from .runs import CallCounts, JobRecord, RunRow, RunStats

__all__ = ["CallCounts", "EditRecord", "JobRecord", "Project", "Replayed", "RunRow", "RunStats", "UndoState"]
