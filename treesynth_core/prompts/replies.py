"""Parsing and checking LLM replies (pydantic at the boundary), and the bounded re-ask loop."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from pydantic import BaseModel, ValidationError, field_validator

from ..errors import ParseError
from ..llm.base import LLM, ChatRequest, ChatResult
from ..progress import plural
from ..tree.model import clean_label, normalize
from .templates import repair_message

_VAGUE = {
    "other",
    "others",
    "misc",
    "miscellaneous",
    "various",
    "etc",
    "general",
    "unknown",
    "none",
    "n a",
    "na",
    "any",
    "mixed",
    "everything else",
    "rest",
    "something else",
    "not applicable",
}


class SamplesReply(BaseModel):
    samples: list[str]

    @field_validator("samples")
    @classmethod
    def _strip(cls, items: list[str]) -> list[str]:
        return [s.strip() for s in items if s and s.strip()]


class CriterionReply(BaseModel):
    criterion: str
    values: list[str]


class RouteReply(BaseModel):
    value: str


class CoverageReply(BaseModel):
    new_values: list[str]
    complete: bool = True


M = TypeVar("M", bound=BaseModel)


def is_vague(value: str) -> bool:
    """True for catch-all values ("other", "misc", ...), which break exhaustive partitions."""
    key = normalize(value)
    return key in _VAGUE or key.startswith("other ") or key.endswith(" other")


_PLACEHOLDER = re.compile(r"^\W*(sample|example|question|item|instruction)\W*\d*\W*$", re.IGNORECASE)


_LETTER = re.compile(r"[^\W\d_]")
#: Scripts written without spaces between words (kana, CJK ideographs, hangul).
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def is_placeholder(sample: str) -> bool:
    """True for what is not a sample: template echoes such as "<sample 1>" or "sample2", a single
    word (in scripts that put spaces between words), or text with fewer than three letters
    ("2 - 2", "1.2.12-1.3.6", "] 3+2+4+5"), which small models emit when sampled hot."""
    text = sample.strip()
    one_word = len(text.split()) < 2 and not _UNSPACED.search(text)
    return bool(_PLACEHOLDER.match(text)) or one_word or len(_LETTER.findall(text)) < 3


def overlaps(a: str, b: str) -> bool:
    """True when two values are the same after normalization, or one's words contain the other's
    ("fractions" and "adding fractions"). A contained key of fewer than three letters is no overlap:
    "C" is not part of "Objective-C", nor "R" of "R Markdown"."""
    ka, kb = normalize(a), normalize(b)
    if not ka or not kb:
        return False
    if ka == kb:
        return True
    wa, wb = set(ka.split()), set(kb.split())
    small = ka if len(wa) <= len(wb) else kb
    return (wa <= wb or wb <= wa) and len(_LETTER.findall(small)) >= 3


def label_problem(value: str) -> str | None:
    """Why a criterion value written by an LLM cannot be used on its own, or None when it is fine.
    Whether a value glues two sibling values together depends on its siblings: see
    :mod:`treesynth_core.prompts.labels`."""
    if not clean_label(value):
        return "an empty value"
    if is_vague(value):
        return f'the vague value "{value}"'
    return None


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> object:
    """Parse a reply that should be JSON, tolerating code fences and prose around one object."""
    text = text.strip()
    candidates = [text]
    candidates += [m.group(1) for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
    raise ValueError("the reply is not JSON")


def parse_reply(text: str, model: type[M]) -> M:
    """Parse ``text`` into ``model`` or raise ValueError with a short reason."""
    data = extract_json(text)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        raise ValueError(f"{where}: {first['msg']}") from None


#: A reply cut off by ``max_tokens`` (``finish_reason == "length"``) is asked again with twice the
#: budget, at most this many times per ask (the larger budget carries over to later re-asks).
BUDGET_RETRIES = 2
#: The default ceiling of those larger budgets, in tokens.
MAX_TOKENS_CAP = 4096


#: A cut-off reply at least this long whose text (digits ignored) compresses below this ratio is
#: a loop ("Test 1: Test 2: Test 3: ..."): a larger budget would only lengthen it. Real replies
#: compress to about half (hand-written capable-model fixtures: 0.5-0.6).
LOOP_MIN_CHARS, LOOP_RATIO = 400, 0.15
_DIGIT = re.compile(r"\d")


def is_cut_off(result: ChatResult) -> bool:
    """True when the reply stopped at ``max_tokens``: it is not whole, however it parses (a model
    may close the JSON early around a truncated last string)."""
    return result.finish_reason == "length"


def is_loop(text: str) -> bool:
    """True for text that repeats itself (see :data:`LOOP_RATIO`)."""
    if len(text) < LOOP_MIN_CHARS:
        return False
    data = _DIGIT.sub("0", text).encode("utf-8")
    return len(zlib.compress(data, 9)) < LOOP_RATIO * len(data)


def cut_off_problem(result: ChatResult) -> str | None:
    """The validator of a free-text reply (a response): unusable only when cut off at the token
    limit. Carried as ``ChatRequest.validate``, so such a reply is logged as failed, never cached."""
    return "it was cut off at the token limit" if is_cut_off(result) else None


def json_validator(
    model: type[M], check: Callable[[M], str | None] | None = None
) -> Callable[[ChatResult], str | None]:
    """The validator of a JSON reply (``ChatRequest.validate``): what is wrong with a reply that is
    cut off, does not parse into ``model`` (a ``ValueError``, see
    :func:`~treesynth_core.llm.base.reply_problem`), or fails ``check``; None for a usable one."""

    def validate(result: ChatResult) -> str | None:
        if is_cut_off(result):
            return "it was cut off at the token limit"
        parsed = parse_reply(result.text, model)
        return check(parsed) if check else None

    return validate


def larger_budget(max_tokens: int, cap: int) -> int | None:
    """The budget a cut-off reply is asked again with: twice ``max_tokens``, at most ``cap``; None
    when ``max_tokens`` is at the cap already."""
    return min(cap, 2 * max_tokens) if max_tokens < cap else None


def retry_budget(result: ChatResult, max_tokens: int, cap: int) -> int | None:
    """The larger budget to ask again with after ``result``, or None: the reply was whole, the
    budget is at the cap, or the reply was a loop (:func:`is_loop`)."""
    if not is_cut_off(result) or is_loop(result.text):
        return None
    return larger_budget(max_tokens, cap)


async def ask_json(
    llm: LLM,
    request: ChatRequest,
    model: type[M],
    *,
    attempts: int,
    check: Callable[[M], str | None] | None = None,
    what: str = "reply",
    max_tokens_cap: int = MAX_TOKENS_CAP,
) -> tuple[M, ChatResult]:
    """Send ``request``; parse and check the reply; re-ask up to ``attempts`` times in total.

    Each re-ask shows the model its previous reply and what was wrong with it, and uses the next
    seed, so every attempt is a distinct, cacheable request. A reply cut off by ``max_tokens`` is
    never parsed as if whole: it is asked again, same messages and seed, with twice the budget
    (bounded by ``max_tokens_cap``, at most :data:`BUDGET_RETRIES` times per ask, never for a reply
    that loops); one still cut off is a failed attempt. Raises :class:`ParseError` naming the last
    problem when no attempt gives a usable reply. Every request carries the same parse and check as
    its ``validate``, so an unusable reply is logged as failed and never cached: a rerun asks again.
    """
    messages: Sequence[tuple[str, str]] = request.messages
    problem = "no attempt made"
    budget, raises = request.max_tokens, BUDGET_RETRIES
    validate = json_validator(model, check)
    for attempt in range(max(1, attempts)):
        seed = None if request.seed is None else request.seed + attempt
        current = replace(request, messages=tuple(messages), seed=seed, max_tokens=budget, validate=validate)
        result = await llm.complete(current)
        while raises and (bigger := retry_budget(result, budget, max_tokens_cap)) is not None:
            budget, raises = bigger, raises - 1
            result = await llm.complete(replace(current, max_tokens=budget))
        issue: str | None
        if is_cut_off(result):
            issue = f"it was cut off at the token limit ({budget} tokens); write it shorter"
        else:
            try:
                parsed = parse_reply(result.text, model)
                issue = check(parsed) if check else None
            except ValueError as exc:
                issue = str(exc)
            if issue is None:
                return parsed, result
        problem = issue
        messages = (*request.messages, ("assistant", result.text[:2000]), ("user", repair_message(issue)))
    raise ParseError(
        f"the model gave no usable {what} after {plural(max(1, attempts), 'attempt')} (last problem: {problem})"
    )
