"""Combined values: when a value an LLM wrote glues together two values of the same criterion.

The paper forbids "a_and_b" and "a/b" values in its prompts only. A separator alone proves
nothing: "C++", "File I/O", "Speed (km/h)", "Ratios and proportions", "Q&A", "R&D" and
"Supply and demand" are each ONE value. So a value is judged against its *siblings* (the other
values of the same split: the reply's own per-pivot values, and the values coverage already has):

- **combined** (dropped by growth, with a note): its parts, split at ``/ & + , and or _and_``
  outside parentheses, are two or more value-like pieces and every piece equals or closely matches
  a sibling ("Addition and subtraction" beside "Addition" and "Subtraction"; "Cats & dogs" beside
  "Cat" and "Dog"; "Addition and subtraction problems" beside "Addition problems" and "Subtraction
  problems");
- **flagged** (kept; a person decides): some pieces match a sibling but not all ("Mammals and
  birds" beside "Mammals" only), or the value is a comma list of three or more pieces ("Apples,
  oranges and pears");
- **fine** otherwise.

A *value-like* piece has at least two letters, so "C++", "I/O", "Q&A", "A+ grades" and
"1/2 fractions" never split. Pieces match siblings after normalization (case, punctuation),
singular/plural folding, or a near spelling (difflib ratio >= 0.9 on keys of 5+ characters).
Pure functions; no I/O.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..tree.model import normalize

_PARENS = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_SEPARATOR = re.compile(r"\s*(?:/|&|\+|,|_and_|\band\b|\bor\b)\s*", re.IGNORECASE)
_LETTER = re.compile(r"[^\W\d_]")
#: A near spelling counts as a match above this difflib ratio (keys of 5+ characters only).
NEAR = 0.9

Verdict = Literal["fine", "flagged", "combined"]


@dataclass(frozen=True)
class Judgement:
    """What :func:`judge` decided about one value, and why (empty for ``fine``)."""

    verdict: Verdict
    reason: str = ""


def pieces(value: str) -> list[str]:
    """The value-like pieces of ``value`` split at its separators (parenthesized text ignored);
    empty when it does not split into two or more value-like pieces."""
    outside = _PARENS.sub(" ", value or "")
    parts = [p.strip(" -_") for p in _SEPARATOR.split(outside)]
    parts = [p for p in parts if p]
    if len(parts) < 2 or any(len(_LETTER.findall(p)) < 2 for p in parts):
        return []
    return parts


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def key(text: str) -> str:
    """The comparison key of a value: normalized, each word folded to its singular."""
    return " ".join(_singular(w) for w in normalize(text).split())


def matches(a: str, b: str) -> bool:
    """True when two values are the same value: equal keys, or a near spelling of a long one."""
    ka, kb = key(a), key(b)
    if not ka or not kb:
        return False
    if ka == kb:
        return True
    return min(len(ka), len(kb)) >= 5 and difflib.SequenceMatcher(None, ka, kb).ratio() >= NEAR


def _readings(parts: Sequence[str]) -> list[list[str]]:
    """Each piece read as it is, and with the words the pieces share: "Addition and subtraction
    problems" also reads "Addition problems"; "Problems with fractions or decimals" also reads
    "Problems with decimals"."""
    first, last = parts[0].split(), parts[-1].split()
    out: list[list[str]] = []
    for i, part in enumerate(parts):
        options = [part]
        if i < len(parts) - 1:
            options += [f"{part} {' '.join(last[j:])}" for j in range(1, len(last))]
        if i > 0:
            options += [f"{' '.join(first[:j])} {part}" for j in range(1, len(first))]
        out.append(options)
    return out


def judge(value: str, siblings: Iterable[str]) -> Judgement:
    """Whether ``value`` glues sibling values together (see the module docstring)."""
    parts = pieces(value)
    if not parts:
        return Judgement("fine")
    others = [s for s in siblings if s and not matches(s, value)]
    hits = []
    for options in _readings(parts):
        hit = next((s for s in others for option in options if matches(option, s)), None)
        hits.append(hit)
    quoted = [f'"{p}"' for p in parts]
    listed = ", ".join(quoted[:-1]) + f" and {quoted[-1]}"
    if all(hits):
        names = ", ".join(f'"{h}"' for h in dict.fromkeys(h for h in hits if h))
        return Judgement("combined", f'"{value}" combines the values {names}')
    if any(hits):
        names = ", ".join(f'"{h}"' for h in dict.fromkeys(h for h in hits if h))
        return Judgement("flagged", f"may combine {listed} (overlaps {names})")
    if len(parts) >= 3 and "," in _PARENS.sub(" ", value):
        return Judgement("flagged", f"may combine {listed}")
    return Judgement("fine")


def judge_all(values: Sequence[str], existing: Sequence[str] = ()) -> dict[str, Judgement]:
    """Each of ``values`` judged against the other values and ``existing`` (the values a split
    already has). A value combined of two others is judged against the rest without it."""
    out: dict[str, Judgement] = {}
    for i, value in enumerate(values):
        siblings = [*existing, *values[:i], *values[i + 1 :]]
        out[value] = judge(value, siblings)
    return out
