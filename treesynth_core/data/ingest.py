"""Import a user's dataset into a project as its own sample set, streaming.

Reads JSONL (``.jsonl``/``.ndjson``, also gzipped), a JSON array (``.json``), CSV/TSV (also
gzipped), Parquet, a folder written by ``datasets.Dataset.save_to_disk``, and a folder of such
files. Every reader streams: JSONL and CSV line by line, Parquet batch by batch, Arrow files memory-
mapped batch by batch, so memory stays flat however big the file. The one exception is a ``.json``
file holding one JSON array, which is parsed whole: save big datasets as JSONL.

A :class:`ColumnMap` says which columns feed a sample: flat columns (``instruction``, optional
``input``, ``output``) or one column of chat ``messages``. :func:`import_file` hands the lazy stream
of samples to :meth:`Project.import_samples`, which stages it under a hidden set and makes it visible
in one transaction at the end: a bad row at row 90,000, or Ctrl-C, leaves nothing imported.

Every problem with the file or the mapping is a :class:`DataError` naming the file and the line
(JSONL) or row (CSV, Parquet, Arrow; data rows counted from 1 after the CSV header).
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError
from ..store.samples import UNROUTED, NewSample
from .readers import FORMATS as FORMATS
from .readers import Record, Source, json_type, locate, resolve_codec, snippet, source_rows
from .readers import detect_format as detect_format
from .readers import iter_records as iter_records

if TYPE_CHECKING:
    from ..store.project import Project

_SHOWN_EMPTY = 5  # how many empty rows an error names
_EXAMPLE = "instruction=question,output=answer"
_MISSING = object()


# -- the column mapping ---------------------------------------------------------------------------
_KEYS = ("instruction", "input", "output", "messages")
_KEY_HINTS = {  # words people write for a key -> the key
    alias: key
    for key, aliases in {
        "output": "response answer completion target",
        "instruction": "prompt question query",
        "input": "context",
        "messages": "conversations chat",
    }.items()
    for alias in aliases.split()
}


@dataclass(frozen=True)
class ColumnMap:
    """Which source columns feed a sample.

    Either flat columns: ``instruction`` (required), ``input`` (optional context, appended to the
    instruction after a blank line, the Alpaca convention) and ``output`` (the response); or one
    ``messages`` column of chat messages ``[{"role", "content"}, ...]`` (OpenAI / Hugging Face chat
    form; ShareGPT's ``{"from", "value"}`` is read too). ``output`` may go with ``messages`` and then
    wins over the assistant message.
    """

    instruction: str | None = None
    input: str | None = None
    output: str | None = None
    messages: str | None = None

    @classmethod
    def parse(cls, text: str) -> ColumnMap:
        """Read the CLI form ``instruction=question,output=answer`` or ``messages=messages``."""
        pairs = [pair.strip() for pair in text.split(",") if pair.strip()]
        if not pairs:
            raise DataError(f"the column mapping is empty: write KEY=COLUMN pairs, e.g. {_EXAMPLE}")
        values: dict[str, str] = {}
        for pair in pairs:
            key, eq, column = pair.partition("=")
            key, column = key.strip().lower(), column.strip()
            if not eq:
                raise DataError(f"{pair!r} in the column mapping has no '=': write KEY=COLUMN pairs, e.g. {_EXAMPLE}")
            if key not in _KEYS:
                hint = _KEY_HINTS.get(key) or next(iter(difflib.get_close_matches(key, _KEYS, 1, 0.6)), None)
                mean = f" (did you mean {hint}={column}?)" if hint else ""
                raise DataError(
                    f"unknown key {key!r} in the column mapping{mean}: the keys are instruction, input, output "
                    f"and messages, e.g. {_EXAMPLE}"
                )
            if not column:
                raise DataError(f"{key}= in the column mapping names no column: write {key}=COLUMN")
            if key in values:
                raise DataError(f"{key}= appears twice in the column mapping: give each key once")
            values[key] = column
        cmap = cls(**values)
        cmap.check()
        return cmap

    def columns(self) -> dict[str, str]:
        """Key -> column, for the keys that are mapped."""
        return {f.name: value for f in fields(self) if (value := getattr(self, f.name)) is not None}

    def to_text(self) -> str:
        """The CLI form, the inverse of :meth:`parse` (``""`` when nothing is mapped)."""
        return ",".join(f"{key}={column}" for key, column in self.columns().items())

    def check(self) -> None:
        """Raise a :class:`DataError` unless the mapping can make samples."""
        if any(not column.strip() for column in self.columns().values()):
            raise DataError("the column mapping has an empty column name")
        if self.instruction is not None and self.messages is not None:
            raise DataError(
                "the column mapping gives both instruction= and messages=: map either flat columns "
                "(instruction, input, output) or one column of chat messages, not both"
            )
        if self.messages is not None and self.input is not None:
            raise DataError("input= goes with instruction=, not with messages=: drop input= from the column mapping")
        if self.instruction is None and self.messages is None:
            raise DataError(
                "the column mapping names no instruction column: give instruction=COLUMN (and output=COLUMN "
                f"for the response), or messages=COLUMN for chat rows, e.g. {_EXAMPLE}"
            )


def suggest_map(columns: Iterable[str]) -> ColumnMap:
    """A mapping guessed from common column names (case-insensitive); empty if nothing fits.

    Flat pairs win when both sides are there (``instruction``/``input``/``output``,
    ``question``/``answer``, ``prompt``/``completion``, ``prompt``/``response``, ...); otherwise a
    ``messages``/``conversations`` column; otherwise an instruction column alone.
    """
    by_name: dict[str, str] = {}
    for column in columns:
        by_name.setdefault(column.strip().lower(), column)

    def pick(*names: str, not_: str | None = None) -> str | None:
        return next((by_name[n] for n in names if n in by_name and by_name[n] != not_), None)

    instruction = pick("instruction", "question", "prompt", "query", "problem", "input")
    output = pick("output", "response", "answer", "completion", "solution", "target")
    messages = pick("messages", "conversations", "conversation", "chat")
    extra = pick("input", "context", not_=instruction) if instruction else None
    if instruction and output:
        return ColumnMap(instruction=instruction, input=extra, output=output)
    if messages:
        return ColumnMap(messages=messages)
    if instruction:
        return ColumnMap(instruction=instruction, input=extra)
    return ColumnMap()


# -- records to samples ---------------------------------------------------------------------------
_ROLES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant", "chatgpt": "assistant"}


def _text(value: Any) -> str:
    """A cell as text: None (and NaN) -> "", 3.0 -> "3", True -> "true", lists/objects -> JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _column(record: Record, column: str, key: str, where: str) -> Any:
    value = record.get(column, _MISSING)
    if value is not _MISSING:
        return value
    names = [name for name in record if isinstance(name, str)]
    shown = ", ".join(names[:30]) + (f", … ({len(names) - 30} more)" if len(names) > 30 else "")
    lower = {name.lower(): name for name in names}
    close = lower.get(column.lower()) or next(
        iter(difflib.get_close_matches(column.lower(), list(lower), 1, 0.5)), None
    )
    closest = f"; the closest is {lower.get(close, close)!r}" if close else ""
    raise DataError(
        f"{where} has no column {column!r} (mapped as {key}); its columns are: {shown or '(none)'}{closest}. "
        "Fix the column mapping (--map)"
    )


def _messages(value: Any, column: str, where: str) -> list[dict[str, str]]:
    """A chat messages cell as ``[{"role", "content"}, ...]``; JSON text (from CSV) is parsed."""
    form = 'a list of {"role": ..., "content": ...} messages'
    if value is None:
        return []
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except ValueError:
            raise DataError(
                f"{where}: column {column!r} (mapped as messages) holds text that is not JSON: "
                f"{snippet(value, 1)}; it must hold {form}"
            ) from None
    if not isinstance(value, list | tuple):
        raise DataError(f"{where}: column {column!r} (mapped as messages) holds a {json_type(value)}, not {form}")
    messages = []
    for i, message in enumerate(value, 1):
        if not isinstance(message, dict):
            raise DataError(
                f"{where}: message {i} in column {column!r} is a {json_type(message)}, not an object with a role "
                "and a content; the column must hold " + form
            )
        role = message.get("role", message.get("from"))
        content = message.get("content", message.get("value", _MISSING))
        if not isinstance(role, str) or content is _MISSING:
            missing = "role" if not isinstance(role, str) else "content"
            raise DataError(
                f"{where}: message {i} in column {column!r} has no {missing}; each message must look like "
                '{"role": "user", "content": "..."}'
            )
        role = role.strip().lower()
        messages.append({"role": _ROLES.get(role, role), "content": _content(content)})
    return messages


def _content(value: Any) -> str:
    """Message content: text, or a list of parts (``{"type": "text", "text": ...}``) joined."""
    if isinstance(value, list):
        parts = [part.get("text") if isinstance(part, dict) else part for part in value]
        return "\n".join(_text(part) for part in parts if isinstance(part, str))
    return _text(value)


def _chat_parts(messages: list[dict[str, str]]) -> tuple[str, str | None, str | None]:
    """(first user message, the assistant reply to it, the first system message)."""
    system = next((m["content"] for m in messages if m["role"] == "system"), None)
    at = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
    if at is None:
        return "", None, system
    response = None
    for message in messages[at + 1 :]:
        if message["role"] == "user":
            break
        if message["role"] == "assistant":
            response = message["content"] or None
            break
    return messages[at]["content"], response, system


def to_sample(number: int, record: Record, cmap: ColumnMap, *, sample_set: str, source: str) -> NewSample | None:
    """One record as an unrouted sample, or ``None`` when its mapped instruction is blank.

    ``key`` is ``row:<number>``; ``extra`` records ``provenance: "original"``, the ``source`` file
    and the ``row``. Chat rows: the instruction is the first user message, the response the
    assistant message after it (or the ``output`` column, if mapped); ``extra`` keeps all the
    ``messages`` and the first ``system`` message.
    """
    cmap.check()
    return _to_sample(number, record, cmap, sample_set=sample_set, source=source, where=f"{source} row {number}")


def _to_sample(
    number: int, record: Record, cmap: ColumnMap, *, sample_set: str, source: str, where: str
) -> NewSample | None:
    extra: dict[str, Any] = {"provenance": "original", "source": source, "row": number}
    response: str | None = None
    if cmap.messages is not None:
        messages = _messages(_column(record, cmap.messages, "messages", where), cmap.messages, where)
        instruction, response, system = _chat_parts(messages)
        extra["messages"] = messages
        if system is not None:
            extra["system"] = system
    else:
        assert cmap.instruction is not None  # ColumnMap.check
        instruction = _text(_column(record, cmap.instruction, "instruction", where))
        if cmap.input is not None:
            context = _text(_column(record, cmap.input, "input", where))
            if context.strip() and instruction.strip():
                instruction = f"{instruction}\n\n{context}"
    if cmap.output is not None:
        output = _text(_column(record, cmap.output, "output", where))
        response = output if output.strip() else response
    if not instruction.strip():
        return None
    return NewSample(
        leaf_id=UNROUTED,
        key=f"row:{number}",
        instruction=instruction,
        path=[],
        response=response,
        model=None,
        sample_set=sample_set,
        extra=extra,
    )


# -- preview and import ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Preview:
    """The first rows of a dataset, its columns and a suggested mapping (``suggested`` is an
    empty :class:`ColumnMap` when no column name looks familiar)."""

    format: str
    columns: list[str]
    rows: list[dict[str, Any]]
    suggested: ColumnMap
    total_bytes: int


def preview(path: Path, *, n: int = 5, fmt: str | None = None, encoding: str = "utf-8") -> Preview:
    """Read only the first ``n`` rows (the whole file only for a ``.json`` array)."""
    source = locate(Path(path), fmt)
    resolve_codec(encoding)
    rows: list[Record] = []
    columns: dict[str, None] = {}
    stream = source_rows(source, encoding)
    try:
        for _, record, _, _ in stream:
            rows.append(record)
            columns.update(dict.fromkeys(name for name in record if isinstance(name, str)))
            if len(rows) >= max(n, 1):
                break
    finally:
        stream.close()
    if not rows:
        raise DataError(f"{source.label} holds no rows: there is nothing to import")
    total = sum(file.stat().st_size for file in source.files)
    return Preview(source.format, list(columns), rows, suggest_map(columns), total)


@dataclass(frozen=True)
class ImportSummary:
    sample_set: str
    imported: int
    skipped_empty: int
    source: str
    format: str


@dataclass
class _Tally:
    rows: int = 0
    imported: int = 0
    empty: int = 0
    first_empty: list[str] = field(default_factory=list)


def _prepare(path: Path, cmap: ColumnMap, fmt: str | None, encoding: str, limit: int | None) -> Source:
    """Check everything that needs no reading, so a bad call fails before any transaction."""
    cmap.check()
    source = locate(Path(path), fmt)
    resolve_codec(encoding)
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1, not {limit}")
    return source


def read_samples(
    path: Path,
    cmap: ColumnMap,
    *,
    sample_set: str,
    fmt: str | None = None,
    encoding: str = "utf-8",
    skip_empty: bool = False,
    limit: int | None = None,
) -> Iterator[NewSample]:
    """The samples of a dataset, lazily, one per row (at most ``limit``).

    The path, format, encoding and mapping are checked now; rows are read as the iterator is
    advanced. Rows whose mapped instruction is blank are an error raised at the end of the file
    (naming the first few and counting them all) unless ``skip_empty``; a file with no rows, or
    with nothing left once blank rows are skipped, is an error too.
    """
    source = _prepare(path, cmap, fmt, encoding, limit)
    return _stream(source, cmap, sample_set=sample_set, encoding=encoding, skip_empty=skip_empty, limit=limit)


def _stream(
    source: Source,
    cmap: ColumnMap,
    *,
    sample_set: str,
    encoding: str,
    skip_empty: bool,
    limit: int | None,
    tally: _Tally | None = None,
) -> Iterator[NewSample]:
    tally = tally if tally is not None else _Tally()
    wanted = list(cmap.columns().values())
    for number, record, label, loc in source_rows(source, encoding, wanted):
        tally.rows += 1
        sample = _to_sample(number, record, cmap, sample_set=sample_set, source=source.label, where=f"{label} {loc}")
        if sample is None:
            tally.empty += 1
            if len(tally.first_empty) < _SHOWN_EMPTY:
                tally.first_empty.append(loc if label == source.label else f"{label} {loc}")
            continue
        tally.imported += 1
        yield sample
        if limit is not None and tally.imported >= limit:
            break
    if not tally.rows:
        raise DataError(f"{source.label} holds no rows: there is nothing to import")
    what = (
        f"no user message (column {cmap.messages!r})"
        if cmap.messages is not None
        else f"an empty instruction (column {cmap.instruction!r})"
    )
    if tally.empty and not skip_empty:
        rows = "1 row has" if tally.empty == 1 else f"{tally.empty} rows have"
        more = ", …" if tally.empty > len(tally.first_empty) else ""
        raise DataError(
            f"{source.label}: {rows} {what}: {', '.join(tally.first_empty)}{more}. Fill them in or fix the column "
            "mapping, or pass --skip-empty (skip_empty=True) to import the other rows without them"
        )
    if not tally.imported:
        raise DataError(f"{source.label}: all {tally.empty} rows have {what}: there is nothing to import")


def import_file(
    project: Project,
    path: Path,
    cmap: ColumnMap,
    *,
    sample_set: str = "imported",
    fmt: str | None = None,
    encoding: str = "utf-8",
    skip_empty: bool = False,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import a dataset file as the new sample set ``sample_set``, all or nothing.

    The rows stream from the file into :meth:`Project.import_samples` (staged, then made visible at
    once): any
    :class:`DataError` (found at the first row or the last), an exception from ``progress`` or
    Ctrl-C leaves the project as it was. ``progress`` gets the running count of stored samples.
    """
    source = _prepare(path, cmap, fmt, encoding, limit)
    tally = _Tally()
    samples = _stream(
        source, cmap, sample_set=sample_set, encoding=encoding, skip_empty=skip_empty, limit=limit, tally=tally
    )
    imported = project.import_samples(samples, sample_set=sample_set, progress=progress)
    return ImportSummary(sample_set, imported, tally.empty, source.label, source.format)
