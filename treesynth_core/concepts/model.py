"""A document's concepts as values, their JSONL file format and the LLM reply they are parsed from.

One JSONL line per document::

    {"doc_id": "...", "level": "...", "subject": "...", "topics": [{"topic": "...", "concepts": ["..."]}]}

The same pydantic model checks a line of a hand-written file and an LLM's extraction reply, so a
file written by hand gives the same graph as one extracted by the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError, field_validator

from ..errors import DataError

#: The paper's bounds: 1-5 topics per document, 5-20 key concepts per topic. Replies with more are
#: cut to these (the first ones kept); fewer concepts are accepted (a short document has few).
MAX_TOPICS, MAX_CONCEPTS = 5, 20


def clean(label: str) -> str:
    """A label with its whitespace collapsed."""
    return " ".join(str(label).split())


def label_key(label: str) -> str:
    """What makes two labels the same node: case and whitespace ignored."""
    return clean(label).casefold()


@dataclass(frozen=True)
class Topic:
    topic: str
    concepts: tuple[str, ...]


@dataclass(frozen=True)
class DocConcepts:
    """What one document is about: its level (or audience), subject, topics and their key concepts."""

    doc_id: str
    level: str
    subject: str
    topics: tuple[Topic, ...]

    def concept_keys(self) -> frozenset[str]:
        """The keys of its concepts, computed once (grounding asks every document for every walk)."""
        keys: frozenset[str] | None = self.__dict__.get("_concept_keys")
        if keys is None:
            keys = frozenset(label_key(c) for t in self.topics for c in t.concepts)
            object.__setattr__(self, "_concept_keys", keys)  # a cache, not a field: not in eq, hash or repr
        return keys

    def topic_keys(self) -> frozenset[str]:
        return frozenset(label_key(t.topic) for t in self.topics)

    def to_json(self) -> dict:
        return {
            "doc_id": self.doc_id,
            "level": self.level,
            "subject": self.subject,
            "topics": [{"topic": t.topic, "concepts": list(t.concepts)} for t in self.topics],
        }


class TopicReply(BaseModel):
    topic: str
    concepts: list[str]

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not clean(value):
            raise ValueError("a topic is empty")
        return clean(value)

    @field_validator("concepts")
    @classmethod
    def _concepts(cls, values: list[str]) -> list[str]:
        kept: dict[str, str] = {}
        for value in values:
            if clean(value):
                kept.setdefault(label_key(value), clean(value))
        if not kept:
            raise ValueError("a topic has no concepts")
        return list(kept.values())[:MAX_CONCEPTS]


class ConceptsReply(BaseModel):
    """An extraction reply (and a JSONL line without its ``doc_id``)."""

    level: str
    subject: str
    topics: list[TopicReply]

    @field_validator("topics")
    @classmethod
    def _topics(cls, values: list[TopicReply]) -> list[TopicReply]:
        if not values:
            raise ValueError("no topics")
        return values[:MAX_TOPICS]

    def concepts(self, doc_id: str) -> DocConcepts:
        return DocConcepts(
            doc_id,
            clean(self.level),
            clean(self.subject),
            tuple(Topic(t.topic, tuple(t.concepts)) for t in self.topics),
        )


class ConceptsLine(ConceptsReply):
    doc_id: str

    @field_validator("doc_id")
    @classmethod
    def _doc_id(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("doc_id is empty")
        return value


def parse_line(line: str, where: str) -> DocConcepts:
    """One JSONL line; a :class:`DataError` saying where and what is wrong."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where} is not JSON ({exc.msg} at column {exc.colno})") from None
    try:
        parsed = ConceptsLine.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "line"
        raise DataError(f"{where}: {field}: {first['msg']}") from None
    return parsed.concepts(parsed.doc_id)


def read_jsonl(path: Path) -> list[DocConcepts]:
    """Every line of a concepts JSONL file, or a :class:`DataError` for the first bad one (then
    nothing is returned: a caller stores all lines or none). Blank lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 (byte {exc.start + 1}); concepts JSONL files are UTF-8") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    docs = [parse_line(line, f"{path} line {n}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not docs:
        raise DataError(f"{path} holds no concept lines")
    check_unique(docs)
    return docs


def check_unique(docs: Sequence[DocConcepts]) -> None:
    seen: set[str] = set()
    for doc in docs:
        if doc.doc_id in seen:
            raise DataError(f"the doc_id {doc.doc_id!r} appears twice: one line per document")
        seen.add(doc.doc_id)


def jsonl_lines(docs: Iterable[DocConcepts]) -> str:
    return "".join(json.dumps(d.to_json(), ensure_ascii=False) + "\n" for d in docs)


def write_jsonl(docs: Iterable[DocConcepts], path: Path) -> int:
    lines = jsonl_lines(docs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lines, encoding="utf-8")
    return lines.count("\n")
