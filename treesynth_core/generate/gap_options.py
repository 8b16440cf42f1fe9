"""The options of gap filling (:func:`treesynth_core.generate.gaps.fill_gaps`), in a module of their own:
the ``treesynth`` commands and the job specs read their defaults without importing numpy, which
:mod:`~treesynth_core.generate.gaps` needs."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import TreeSynthError

#: The feature spaces gap filling (and the features job) can work in.
SPACES = ("embeddings", "gradients")


def check_space(space: str) -> None:
    """A :class:`TreeSynthError` unless ``space`` is one of :data:`SPACES`."""
    if space not in SPACES:
        raise TreeSynthError(f"unknown feature space {space!r}")


#: Where a call's few-shot examples come from: the sparse clusters (this tool's default), the level-
#: weighted pool (the released ``generate_problem.py``), or the smallest 10% of clusters (the paper's text).
SHOTS_FROM = ("sparse", "levels", "smallest")
#: The final-answer extractors of verification (:data:`treesynth_core.generate.verify.EXTRACTORS`).
ANSWER_EXTRACTORS = ("last-number", "boxed")


def check_verify(draws: int, answer: str, *, responses: bool = True) -> None:
    """A ``ValueError`` unless ``draws`` is 0 (no verification) or at least 2, ``answer`` names
    an extractor, and (when verifying) there are ``responses`` to verify."""
    if draws != 0 and draws < 2:
        raise ValueError("verify must be 0 (off) or at least 2 draws (one draw cannot be checked against another)")
    if answer not in ANSWER_EXTRACTORS:
        raise ValueError(f"unknown answer extractor {answer!r}: use one of {', '.join(ANSWER_EXTRACTORS)}")
    if draws and not responses:
        raise ValueError("verify checks responses: add responses (--responses)")


@dataclass(frozen=True)
class GapOptions:
    """Gap filling (Prismatic Synthesis), in gradient space by default as the paper.

    ``per_round`` candidates are asked for per round, ``per_call`` per call, with ``shots`` few-shot
    examples. ``responses`` None: candidates get responses when most pool samples have one (their
    gradient features then carry the response's loss, like the pool's). ``space`` is the feature
    space the job featurizes in (the report names the featurizer itself). ``verify`` > 0: each
    candidate is answered that many times and kept only when a strict majority agree on the final
    answer found by the ``answer`` extractor (:mod:`~treesynth_core.generate.verify`); the kept
    candidate carries the majority's response. ``shots_from``: see :data:`SHOTS_FROM`."""

    rounds: int = 1
    per_round: int = 20
    seed: int = 0
    space: str = "gradients"
    sparse_fraction: float = 0.5
    per_call: int = 5
    shots: int = 5
    responses: bool | None = None
    temperature: float = 0.9
    near_duplicate: float = 0.85
    verify: int = 0
    answer: str = "last-number"
    shots_from: str = "sparse"

    def candidate_calls(self) -> int:
        """The candidate calls of the run when every reply is usable: ``per_round / per_call`` a round
        (responses and verification add calls per candidate)."""
        return self.rounds * math.ceil(self.per_round / self.per_call)

    def __post_init__(self) -> None:
        check_space(self.space)
        check_verify(self.verify, self.answer)
        if self.shots_from not in SHOTS_FROM:
            raise ValueError(f"unknown few-shot source {self.shots_from!r}: use one of {', '.join(SHOTS_FROM)}")
        if self.rounds < 0 or self.per_round < 1 or self.per_call < 1 or self.shots < 1:
            raise ValueError("rounds must be >= 0 and per_round, per_call and shots >= 1")
        if not 0.0 < self.sparse_fraction <= 1.0:
            raise ValueError("sparse_fraction must be in (0, 1]")
