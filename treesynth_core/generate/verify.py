"""Majority-vote verification (Prismatic Synthesis, arXiv 2505.20161; research brief A3, step 2).

A question is answered ``k`` times (3 by default) at the temperature of the released
``generate_solution.py`` (0.75, top_p 0.95); each answer's *final answer* is extracted
(:data:`EXTRACTORS`: the last number in the text, or the content of the last ``\\boxed{...}``), and the
sample is kept only when a **strict majority** of the ``k`` draws agree on one final answer. Numbers
are compared numerically ("1,000", "1000.0" and "1e3" agree). The kept response is the first draw
(in draw order) whose answer is the majority's.

Deviation from the released code, as the brief advises: there the threshold is ``int(3 * 0.5) = 1``,
so three different answers keep all three; here three different answers are a rejection
(``"no majority"``), a tie (2-2 of 4) is a rejection (``"tie"``), and draws with no final answer
(no number, no ``\\boxed{}``, or cut off by the token limit) never vote, so they can only weaken a
majority (``"no final answer"`` when none of them has one). One sample is kept per question, not one
per agreeing draw.

:func:`majority_vote` is pure; :func:`verify` makes the ``k`` calls (seeded per draw, so a rerun is
served from the LLM cache; a draw cut off by the token limit is never cached).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..llm.base import LLM, ChatRequest
from ..prompts.replies import cut_off_problem, is_cut_off
from ..seeding import stable_seed
from .gap_options import ANSWER_EXTRACTORS

#: The final-answer extractors ``--answer`` accepts.
EXTRACTORS = ANSWER_EXTRACTORS
#: Draws per question when verification is on (the paper's 3).
DEFAULT_DRAWS = 3
#: Sampling of the draws, as the released ``generate_solution.py``.
VERIFY_TEMPERATURE, VERIFY_TOP_P = 0.75, 0.95
#: Longer extracted answers are no answer (the released code's 300 characters).
MAX_ANSWER_CHARS = 300

NO_ANSWER, TIE, NO_MAJORITY = "no final answer", "tie", "no majority"

_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?")
_BOXED = "\\boxed{"


def check_extractor(name: str) -> None:
    """A ``ValueError`` unless ``name`` is one of :data:`EXTRACTORS`."""
    if name not in EXTRACTORS:
        raise ValueError(f"unknown answer extractor {name!r}: use one of {', '.join(EXTRACTORS)}")


def number_key(text: str) -> str | None:
    """The canonical form of ``text`` when it is one number ("1,000", "1000.0", "1e3" -> "1000"),
    else None."""
    cleaned = text.strip().strip("$").strip().rstrip(".").replace(" ", "")
    if not cleaned or not _NUMBER.fullmatch(cleaned):
        return None
    try:
        value = float(cleaned.replace(",", ""))
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def last_number(text: str) -> str | None:
    """The last number in ``text``, canonical (:func:`number_key`), or None when there is none."""
    found = _NUMBER.findall(text)
    return number_key(found[-1]) if found else None


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (braces balanced), or None. A number inside is
    canonical, so ``\\boxed{1,000}`` and ``\\boxed{1000.0}`` agree; other content is compared with
    its spaces removed."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, i = 1, start + len(_BOXED)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            inner = text[i:j].strip()
            if not inner or len(inner) > MAX_ANSWER_CHARS:
                return None
            return number_key(inner) or "".join(inner.split())
    return None  # unbalanced: the answer was cut off


def extract_answer(text: str | None, extractor: str = "last-number") -> str | None:
    """The final answer of one response with the named extractor (None: no final answer)."""
    check_extractor(extractor)
    if not text:
        return None
    return last_number(text) if extractor == "last-number" else last_boxed(text)


@dataclass(frozen=True)
class Vote:
    """The outcome of one question's vote: each draw's final answer (None: none), the majority's
    answer and the draw kept (the first that gave it), or the reason for the rejection."""

    answers: tuple[str | None, ...]
    answer: str | None = None
    kept: int | None = None
    reason: str = ""

    @property
    def verified(self) -> bool:
        return self.kept is not None


def majority_vote(responses: Sequence[str | None], extractor: str = "last-number") -> Vote:
    """Vote over ``responses`` (None: a draw with no usable text): a final answer given by more
    than half of them wins. Rejections: ``"no final answer"`` (no draw has one), ``"tie"`` (the most
    common answers are given by two or more draws each), ``"no majority"`` (otherwise: the most common
    is not above half, e.g. every draw different)."""
    answers = tuple(extract_answer(r, extractor) for r in responses)
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return Vote(answers, reason=NO_ANSWER)
    ranked = counts.most_common()
    best, top = ranked[0]
    if top * 2 > len(answers):
        return Vote(answers, best, answers.index(best))
    tied = (
        top > 1 and len(ranked) > 1 and ranked[1][1] == top
    )  # two answers given equally often (not merely all different)
    return Vote(answers, reason=TIE if tied else NO_MAJORITY)


@dataclass
class VerifyCounts:
    """Verified and rejected questions, and the rejections by reason."""

    verified: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, vote: Vote) -> None:
        if vote.verified:
            self.verified += 1
        else:
            self.rejected += 1
            self.reasons[vote.reason] = self.reasons.get(vote.reason, 0) + 1

    @property
    def acceptance_rate(self) -> float:
        total = self.verified + self.rejected
        return self.verified / total if total else 0.0


@dataclass(frozen=True)
class Verified:
    """One verified question: the vote, and the kept draw's text and call (None when rejected)."""

    vote: Vote
    response: str | None
    call_id: str | None


async def verify(
    llm: LLM,
    prompt: str,
    *,
    draws: int,
    extractor: str,
    seed: int,
    key: Sequence[object],
    max_tokens: int,
    node_id: str = "",
    gate: asyncio.Semaphore | None = None,
) -> Verified:
    """Answer ``prompt`` ``draws`` times (draw ``i`` seeded from ``seed``, ``key`` and ``i``, so the
    same question asks the same calls) and vote (:func:`majority_vote`). A draw cut off by
    ``max_tokens`` has no final answer (and is not cached)."""
    check_extractor(extractor)

    async def draw(i: int) -> tuple[str | None, str | None]:
        request = ChatRequest.chat(
            None,
            prompt,
            temperature=VERIFY_TEMPERATURE,
            top_p=VERIFY_TOP_P,
            max_tokens=max_tokens,
            seed=stable_seed(seed, "verify", *key, i),
            meta={"purpose": "verify", "node_id": node_id, "draw": str(i)},
            validate=cut_off_problem,
        )
        async with gate or contextlib.nullcontext():
            result = await llm.complete(request)
        return (None if is_cut_off(result) else result.text.strip()), result.call_id

    results = await asyncio.gather(*(draw(i) for i in range(draws)))
    vote = majority_vote([text for text, _ in results], extractor)
    if vote.kept is None:
        return Verified(vote, None, None)
    text, call_id = results[vote.kept]
    return Verified(vote, text, call_id)
