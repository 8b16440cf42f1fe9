"""The project's record of decontamination: each check of a sample set against an eval set, and each
sample found contaminated (tables ``contamination_checks`` and ``contamination``, migration m017).

Values and the SQL over one connection; :class:`~treesynth_core.store.project.Project` wraps them in
transactions. The matching itself is :mod:`treesynth_core.data.decontam`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, replace

from .db import chunks, marks


@dataclass(frozen=True)
class Hit:
    """Sample ``sample_id`` shares the ``k``-word n-gram ``ngram`` (normalized) with ``item`` of ``source``."""

    sample_id: int
    source: str
    item: str
    ngram: str
    k: int


@dataclass(frozen=True)
class Check:
    """One sample set checked against one eval set: ``items`` indexed (``skipped_items`` too short to
    check) with n-grams of ``n`` words; ``checked`` samples, ``flagged`` contaminated, ``dropped`` deleted."""

    sample_set: str
    source: str
    n: int
    items: int
    skipped_items: int
    checked: int
    flagged: int
    dropped: int
    created: str = ""


_CHECK_COLUMNS = "sample_set, source, n, items, skipped_items, checked, flagged, dropped, created"


def record(conn: sqlite3.Connection, checks: Sequence[Check], hits: Iterable[Hit], dropped: set[int]) -> None:
    """Replace the set's earlier checks against the same sources (and their hits) with these; the hits of
    ``dropped`` samples are not kept (the samples are gone; the check counts them, adding those an earlier
    check against the same source dropped, so the record never forgets a deletion)."""
    for check in checks:
        before = conn.execute(
            "SELECT dropped FROM contamination_checks WHERE sample_set = ? AND source = ?",
            (check.sample_set, check.source),
        ).fetchone()
        if before is not None:
            check = replace(check, dropped=check.dropped + before[0])
        conn.execute(
            "DELETE FROM contamination WHERE source = ? AND sample_id IN (SELECT id FROM samples WHERE sample_set = ?)",
            (check.source, check.sample_set),
        )
        conn.execute(
            f"INSERT OR REPLACE INTO contamination_checks ({_CHECK_COLUMNS}) VALUES ({marks(9)})", astuple(check)
        )
    conn.executemany(
        "INSERT OR REPLACE INTO contamination (sample_id, source, item, ngram, n) VALUES (?, ?, ?, ?, ?)",
        [astuple(hit) for hit in hits if hit.sample_id not in dropped],
    )


def checks(conn: sqlite3.Connection, sample_set: str) -> list[Check]:
    """The set's checks, oldest first."""
    sql = f"SELECT {_CHECK_COLUMNS} FROM contamination_checks WHERE sample_set = ? ORDER BY created, source"
    return [Check(*row) for row in conn.execute(sql, (sample_set,))]


def hits(conn: sqlite3.Connection, sample_set: str) -> list[Hit]:
    """The recorded hits on the set's samples, by sample id then source."""
    sql = (
        "SELECT c.sample_id, c.source, c.item, c.ngram, c.n FROM contamination c JOIN samples s ON s.id = c.sample_id "
        "WHERE s.sample_set = ? ORDER BY c.sample_id, c.source"
    )
    return [Hit(*row) for row in conn.execute(sql, (sample_set,))]


def forget_samples(conn: sqlite3.Connection, ids: list[int]) -> None:
    """Drop the hits of samples about to be deleted."""
    for chunk in chunks(ids):
        conn.execute(f"DELETE FROM contamination WHERE sample_id IN ({marks(len(chunk))})", chunk)


def forget_set(conn: sqlite3.Connection, sample_set: str) -> None:
    """Drop the checks and hits of a sample set about to be deleted."""
    conn.execute(
        "DELETE FROM contamination WHERE sample_id IN (SELECT id FROM samples WHERE sample_set = ?)", (sample_set,)
    )
    conn.execute("DELETE FROM contamination_checks WHERE sample_set = ?", (sample_set,))
