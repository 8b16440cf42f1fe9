"""What a run could not make because every reply the model gave for some of its work was unusable.

Unusable replies are never cached (see :mod:`treesynth_core.llm.recording`) and the work they left
undone stays to do (a leaf stays short, a node stays growable), so running the command again retries
exactly that work. The CLI prints :meth:`Shortfall.message` as one line and exits non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shortfall:
    """``made`` of ``wanted`` (e.g. samples made); ``failed`` ``parts`` (e.g. leaves) got no usable
    reply, the last time for ``problem``; ``retry`` is the command that retries them."""

    unit: str
    made: int
    wanted: int
    parts: str
    failed: int
    problem: str
    retry: str

    @property
    def total(self) -> bool:
        """True when the run made nothing it was asked for."""
        return self.made == 0

    def message(self) -> str:
        """One line: what was made, why the rest was not, and what to do."""
        problem = self.problem or "the model gave no usable reply"
        unit = counted(self.wanted, self.unit)
        if self.total:
            return (
                f"0 of {self.wanted} {unit}: {problem}; nothing unusable was cached, "
                f"{self.retry} when the endpoint is fixed"
            )
        return (
            f"{self.made} of {self.wanted} {unit}; {self.failed} {counted(self.failed, self.parts)} got no usable "
            f"reply: {problem}. Nothing unusable was cached, {self.retry} to retry them"
        )


#: The singular of the plural nouns units and parts are counted in.
_SINGULAR = {
    "calls": "call",
    "documents": "document",
    "leaves": "leaf",
    "nodes": "node",
    "questions": "question",
    "samples": "sample",
}


def counted(n: int, words: str) -> str:
    """``words`` (a unit such as ``"nodes expanded"``) as it reads after the number ``n``:
    ``1 node expanded``, ``2 nodes expanded``."""
    if n != 1:
        return words
    return " ".join(_SINGULAR.get(word, word) for word in words.split(" "))


def shortfall_of(report: object) -> Shortfall | None:
    """The shortfall of a run's report, for reports that have a ``shortfall()`` (grow, synth, route, ...)."""
    method = getattr(report, "shortfall", None)
    found = method() if callable(method) else None
    return found if isinstance(found, Shortfall) else None


def left_short(report: object) -> bool:
    """Whether a run made less than it was asked for, for any reason: a :class:`Shortfall` (unusable
    replies), or samples the model kept repeating (a report's ``short`` count or ``short_leaves``).
    Its job then ends as partial: finished, with part of what it was asked for missing."""
    if shortfall_of(report) is not None:
        return True
    short = getattr(report, "short", 0)
    return (isinstance(short, int) and short > 0) or bool(getattr(report, "short_leaves", ()))
