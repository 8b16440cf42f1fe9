"""The options of decontamination (:func:`treesynth_core.data.decontam_run.decontaminate`) and its n-gram
lengths, in a module of their own: the ``treesynth`` commands and the job specs read their defaults
without importing numpy, which :mod:`~treesynth_core.data.decontam` needs."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DataError

#: The n-gram length in words (13: common practice since GPT-3's decontamination).
DEFAULT_N = 13
#: The n-gram length for eval items under ``2 n`` words (at most ``n``).
SHORT_N = 8
#: Items with fewer words than this are too short to check.
MIN_WORDS = 3


def check_n(n: int) -> None:
    """Refuse an n-gram length that would match nearly everything."""
    if n < MIN_WORDS:
        raise DataError(f"the n-gram length must be at least {MIN_WORDS} words, not {n}")


@dataclass(frozen=True)
class DecontamOptions:
    """Check ``sample_set`` against each eval set in ``against`` with ``n``-word n-grams (``field``: the
    column of the eval files to read; default: the columns an import would map); ``drop`` deletes the
    contaminated samples."""

    sample_set: str = ""
    against: tuple[str, ...] = ()
    n: int = DEFAULT_N
    field: str | None = None
    drop: bool = False
