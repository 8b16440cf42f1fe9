"""Import a user's dataset into a project as its own sample set, streaming.

Reads JSONL (``.jsonl``/``.ndjson``, also gzipped), a JSON array (``.json``), CSV/TSV (also
gzipped), Parquet, a folder written by ``datasets.Dataset.save_to_disk``, and a folder of such
files. Every reader streams: JSONL and CSV line by line, Parquet batch by batch, Arrow files memory-
mapped batch by batch, so memory stays flat however big the file. The one exception is a ``.json``
file holding one JSON array, which is parsed whole: save big datasets as JSONL.

A :class:`ColumnMap` says which columns feed a sample: flat columns (``instruction``, optional
``input``, ``output``) or one column of chat ``messages``. :func:`import_file` hands the lazy stream
of samples to :meth:`Project.import_samples`, which stores it in ONE transaction: a bad row at row
90,000, or Ctrl-C, leaves nothing imported.

Every problem with the file or the mapping is a :class:`DataError` naming the file and the line
(JSONL) or row (CSV, Parquet, Arrow; data rows counted from 1 after the CSV header).
"""

from __future__ import annotations

import codecs
import csv
import difflib
import gzip
import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DataError
from .samples import UNROUTED, NewSample

if TYPE_CHECKING:
    from .store.project import Project

FORMATS = ("jsonl", "json", "csv", "parquet", "hf")

#: Suffix -> format; ``.gz`` may follow the text formats.
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv"}
_BINARY_SUFFIXES = {".parquet": "parquet"}
_BATCH = 1024  # rows decoded at a time from Parquet / Arrow
_CSV_FIELD_LIMIT = 1 << 30  # the csv module's default (128 KiB) is too small for long responses
_SHOWN_EMPTY = 5  # how many empty rows an error names
_EXAMPLE = "instruction=question,output=answer"
_MISSING = object()

Record = dict[str, Any]
_Row = tuple[int, Record, str, str]  # (number, record, file label, "line 3" / "row 3")


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


# -- finding the data files -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Source:
    format: str
    files: list[Path]
    label: str  # the file (or folder) name errors and provenance use


def _file_format(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".gz"):
        return _SUFFIXES.get(Path(name[:-3]).suffix)
    suffix = Path(name).suffix
    return _SUFFIXES.get(suffix) or _BINARY_SUFFIXES.get(suffix)


def _gzipped(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def detect_format(path: Path) -> str:
    """The format of a file by its suffix (``.jsonl``/``.ndjson``, ``.json``, ``.csv``/``.tsv``,
    ``.parquet``; ``.gz`` after the text ones), ``"hf"`` for a folder written by
    ``datasets.save_to_disk``, or the one format of the data files in a folder."""
    return _locate(Path(path), None).format


def _locate(path: Path, fmt: str | None) -> _Source:
    path = Path(path).expanduser()
    if fmt is not None and fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if not path.exists():
        raise DataError(f"no such file: {path} (check the path)")
    if path.is_dir():
        return _locate_folder(path, fmt)
    if fmt == "hf":
        raise DataError(f"{path} is a file, but the hf format is a folder written by datasets' save_to_disk")
    found = fmt or _file_format(path)
    if found is None:
        sheet = " (save the sheet as CSV first)" if path.suffix.lower() in {".xlsx", ".xls", ".ods"} else ""
        raise DataError(
            f"cannot tell the format of {path.name} from its name{sheet}: use a .jsonl, .json, .csv, .tsv or "
            f".parquet file (.gz for JSONL and CSV) or a datasets save_to_disk folder, or name the format "
            f"with --format ({', '.join(FORMATS)})"
        )
    return _Source(found, [path], path.name)


def _locate_folder(folder: Path, fmt: str | None) -> _Source:
    if (folder / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in folder.iterdir() if p.is_dir())
        example = f", e.g. {folder / splits[0]}" if splits else ""
        raise DataError(
            f"{folder} holds a DatasetDict with the splits {', '.join(splits) or '(none)'}: give one split's "
            f"folder{example}"
        )
    arrows = sorted(folder.glob("*.arrow"))
    marked = (folder / "state.json").is_file() or (folder / "dataset_info.json").is_file()
    if fmt in (None, "hf") and arrows and marked:
        return _Source("hf", _hf_files(folder, arrows), folder.name)
    by_format: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        found = _file_format(path) if path.is_file() and not path.name.startswith(".") else None
        if found is not None:
            by_format.setdefault(found, []).append(path)
    if fmt is not None and fmt != "hf" and by_format.get(fmt):
        return _Source(fmt, by_format[fmt], folder.name)
    if fmt is None and len(by_format) == 1:
        (found, files), *_ = by_format.items()
        return _Source(found, files, folder.name)
    if fmt is None and len(by_format) > 1:
        names = ", ".join(files[0].name for files in by_format.values())
        raise DataError(
            f"{folder} holds data files in several formats ({names}): give one file, or name the format with --format"
        )
    wanted = f"{fmt} " if fmt else ""
    raise DataError(
        f"{folder} is a folder that holds no {wanted}dataset: give a data file, a folder written by datasets' "
        "save_to_disk (dataset_info.json or state.json with .arrow files), or a folder of .parquet, .jsonl or "
        ".csv files"
    )


def _hf_files(folder: Path, arrows: list[Path]) -> list[Path]:
    """The Arrow files of a save_to_disk folder, in the order state.json lists them."""
    state = folder / "state.json"
    if not state.is_file():
        return arrows
    try:
        names = [entry["filename"] for entry in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{state} is not a readable datasets state file ({exc}): save the dataset again") from None
    files = [folder / name for name in names]
    if missing := [f.name for f in files if not f.is_file()]:
        raise DataError(f"{folder} is incomplete: {', '.join(missing)} listed in state.json is missing")
    return files


# -- reading records ------------------------------------------------------------------------------
def iter_records(path: Path, *, fmt: str | None = None, encoding: str = "utf-8") -> Iterator[tuple[int, Record]]:
    """``(number, record)`` for each row of a dataset, streaming.

    ``number`` is 1-based: the line number in a JSONL file (blank lines are skipped), the item
    number in a JSON array, the data row (header excluded) in a CSV file, the row in Parquet and
    Arrow. In a folder of several files the numbering runs on across files, so it stays unique.
    Nothing is read until the iterator is advanced; a bad row raises :class:`DataError` when it
    is reached.
    """
    source = _locate(Path(path), fmt)
    _codec(encoding)
    return ((number, record) for number, record, _, _ in _rows(source, encoding))


def _rows(source: _Source, encoding: str, columns: list[str] | None = None) -> Generator[_Row, None, None]:
    offset = 0
    for file in source.files:
        label = source.label if len(source.files) == 1 else f"{source.label}/{file.name}"
        last = 0
        for local, record, _, loc in _file_rows(file, source.format, encoding, label, columns):
            last = local
            yield offset + local, record, label, loc
        offset += last


def _file_rows(file: Path, fmt: str, encoding: str, label: str, columns: list[str] | None) -> Iterator[_Row]:
    if fmt == "jsonl":
        return _jsonl_rows(file, encoding, label)
    if fmt == "json":
        return _json_rows(file, encoding, label)
    if fmt == "csv":
        return _csv_rows(file, encoding, label)
    if fmt == "parquet":
        return _parquet_rows(file, label, columns)
    return _arrow_rows(file, label, columns)


def _codec(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}: use e.g. utf-8, latin-1, cp1252 or utf-16") from None


def _ascii_compatible(codec: str) -> bool:
    """Whether '\\n' and ASCII keep their bytes, so a file can be split into lines before decoding."""
    probe = '\n\r\t {}[]",;:|azAZ09'
    try:
        return probe.encode(codec) == probe.encode("ascii")
    except (UnicodeError, LookupError):
        return False


def _open_binary(file: Path) -> Any:
    return gzip.open(file, "rb") if _gzipped(file) else open(file, "rb")


def _lines(file: Path, encoding: str, label: str) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for each line of a text file, line endings kept.

    Lines are split as bytes and decoded one by one, so a decoding error names its line and byte.
    A UTF-8 byte-order mark is dropped. Encodings that are not ASCII-compatible (UTF-16, UTF-32)
    are decoded by Python's text layer instead.
    """
    codec = _codec(encoding)
    utf8 = codec in ("utf-8", "utf-8-sig")
    if not utf8 and not _ascii_compatible(codec):
        yield from _wide_lines(file, codec, encoding, label)
        return
    try:
        with _open_binary(file) as handle:
            for number, raw in enumerate(handle, 1):
                if number == 1:
                    _check_first_line(raw, encoding, label)
                    if raw.startswith(codecs.BOM_UTF8):  # dropped whatever the encoding: it is never data
                        raw = raw[len(codecs.BOM_UTF8) :]
                try:
                    text = raw.decode("utf-8" if utf8 else codec)
                except UnicodeDecodeError as exc:
                    raise DataError(_decode_message(label, number, raw, exc, encoding, utf8)) from None
                yield number, text
    except (OSError, EOFError) as exc:
        raise DataError(f"could not read {label}: {exc}") from None


def _wide_lines(file: Path, codec: str, encoding: str, label: str) -> Iterator[tuple[int, str]]:
    number = 0
    try:
        if _gzipped(file):
            handle: Any = gzip.open(file, "rt", encoding=codec, newline="")
        else:
            handle = open(file, encoding=codec, newline="")
        with handle:
            for number, text in enumerate(handle, 1):
                yield number, text.lstrip("\ufeff") if number == 1 else text
    except UnicodeError as exc:
        raise DataError(
            f"{label} could not be read as {encoding} near line {number + 1} ({exc}): check the encoding "
            "(--encoding), or re-save the file as UTF-8"
        ) from None
    except (OSError, EOFError) as exc:
        raise DataError(f"could not read {label}: {exc}") from None


def _check_first_line(raw: bytes, encoding: str, label: str) -> None:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        why = "it starts with a UTF-16 byte-order mark"
    elif b"\x00" in raw[:4096]:
        why = "its first line holds NUL bytes"
    else:
        return
    raise DataError(
        f"{label} looks like UTF-16 text ({why}), not {encoding}: pass --encoding utf-16, or re-save the file as UTF-8"
    )


def _decode_message(label: str, number: int, raw: bytes, exc: UnicodeDecodeError, encoding: str, utf8: bool) -> str:
    before = raw[max(0, exc.start - 30) : exc.start].decode("utf-8" if utf8 else "latin-1", "replace").lstrip()
    where = f"after {before!r}" if before else "at the start of the line"
    message = (
        f"{label} line {number} is not valid {encoding}: byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} "
        f"of the line ({where})."
    )
    if utf8:
        return (
            f"{message} The file is probably in another encoding, such as Latin-1 or Windows-1252: pass "
            "--encoding latin-1 (or --encoding cp1252), or re-save the file as UTF-8"
        )
    return f"{message} Pass the file's real encoding with --encoding, or re-save the file as UTF-8"


def _snippet(text: str, column: int, width: int = 60) -> str:
    text = text.rstrip("\r\n")
    start = max(0, column - 1 - width // 2)
    piece = text[start : start + width]
    return ("…" if start else "") + piece + ("…" if start + width < len(text) else "")


def _json_type(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _jsonl_rows(file: Path, encoding: str, label: str, *, hint: str = "") -> Iterator[_Row]:
    first = True
    for number, line in _lines(file, encoding, label):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            why, column = (exc.msg, exc.colno) if isinstance(exc, json.JSONDecodeError) else (str(exc), 1)
            array = " (a file holding one JSON array must be named .json, or read with --format json)"
            extra = array if first and line.lstrip().startswith("[") and not hint else hint
            raise DataError(
                f"{label} line {number} is not valid JSON ({why} at column {column}): {_snippet(line, column)}{extra}"
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"{label} line {number} holds a JSON {_json_type(record)}, not an object: each line must be one "
                'JSON object, such as {"instruction": "...", "output": "..."}'
            )
        first = False
        yield number, record, label, f"line {number}"


def _json_rows(file: Path, encoding: str, label: str) -> Iterator[_Row]:
    """A ``.json`` file: one JSON array of objects, parsed whole (or JSON Lines, streamed)."""
    if _first_char(file, encoding, label) != "[":
        hint = " (a .json file must hold one JSON array of objects, or one JSON object per line)"
        yield from _jsonl_rows(file, encoding, label, hint=hint)
        return
    data: Any
    try:
        with _open_binary(file) as handle:
            raw: bytes = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"could not read {label}: {exc}") from None
    text = _decode_whole(raw, encoding, label)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        end = text.find("\n", exc.pos)
        line = text[text.rfind("\n", 0, exc.pos) + 1 : end if end >= 0 else len(text)]
        raise DataError(
            f"{label} line {exc.lineno} is not valid JSON ({exc.msg} at column {exc.colno}): "
            f"{_snippet(line, exc.colno)}"
        ) from None
    except RecursionError:
        raise DataError(f"{label} is nested too deeply to read") from None
    del text, raw
    for index in range(len(data)):
        record, data[index] = data[index], None  # let each row go once it is handed on
        if not isinstance(record, dict):
            raise DataError(
                f"{label} item {index + 1} of the array is a JSON {_json_type(record)}, not an object such as "
                '{"instruction": "...", "output": "..."}'
            )
        yield index + 1, record, label, f"item {index + 1}"


def _first_char(file: Path, encoding: str, label: str) -> str:
    codec = _codec(encoding)
    try:
        with _open_binary(file) as handle:
            head: bytes = handle.read(4096)
    except (OSError, EOFError) as exc:
        raise DataError(f"could not read {label}: {exc}") from None
    return head.decode(codec, "ignore").lstrip("\ufeff \t\r\n")[:1]


def _decode_whole(raw: bytes, encoding: str, label: str) -> str:
    codec = _codec(encoding)
    utf8 = codec in ("utf-8", "utf-8-sig")
    if utf8:
        _check_first_line(raw[: raw.find(b"\n") + 1 or len(raw)], encoding, label)
    try:
        return raw.decode("utf-8-sig" if utf8 else codec)
    except UnicodeDecodeError as exc:
        number = raw.count(b"\n", 0, exc.start) + 1
        start = raw.rfind(b"\n", 0, exc.start) + 1
        end = raw.find(b"\n", exc.start)
        line = raw[start : end if end >= 0 else len(raw)]
        shifted = UnicodeDecodeError(exc.encoding, line, exc.start - start, exc.end - start, exc.reason)
        raise DataError(_decode_message(label, number, line, shifted, encoding, utf8)) from None


def _csv_rows(file: Path, encoding: str, label: str) -> Iterator[_Row]:
    """CSV (or TSV) rows as dicts via :class:`csv.DictReader`, fed the decoded lines one by one."""
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    lines = (text for _, text in _lines(file, encoding, label))
    first = next(lines, None)
    if first is None:
        return
    delimiter = _delimiter(file, first)
    reader = csv.DictReader(itertools.chain([first], lines), delimiter=delimiter)
    shown = "tab" if delimiter == "\t" else repr(delimiter)
    row = 0
    try:
        header = reader.fieldnames or []
        if twice := [name for name, n in Counter(header).items() if n > 1]:
            raise DataError(f"{label}: the header names the column {twice[0]!r} twice; give each column its own name")
        for record in reader:
            row += 1
            if None in record:
                raise DataError(
                    f"{label} row {row} (line {reader.line_num}) has {len(header) + len(record[None])} fields but "
                    f"the header has {len(header)}: quote the fields that contain the delimiter ({shown})"
                )
            yield row, record, label, f"row {row} (line {reader.line_num})"
    except csv.Error as exc:
        raise DataError(f"{label} line {reader.line_num} is not valid CSV ({exc}): check its quotes") from None


def _delimiter(file: Path, header: str) -> str:
    name = file.name.lower()
    if name.endswith((".tsv", ".tsv.gz")):
        return "\t"
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in ";\t|"}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _batch_rows(batches: Iterable[Any], label: str, errors: tuple[type[Exception], ...]) -> Iterator[_Row]:
    number = 0
    try:
        for batch in batches:
            for start in range(0, batch.num_rows, _BATCH):
                for record in batch.slice(start, _BATCH).to_pylist():
                    number += 1
                    yield number, record, label, f"row {number}"
    except errors as exc:
        raise DataError(f"{label} could not be read after row {number} ({exc}): the file is damaged") from None


def _parquet_rows(file: Path, label: str, columns: list[str] | None) -> Iterator[_Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # No pre-buffering and a read buffer: column chunks stream page by page instead of a whole row
        # group being read into memory (a 200 MB row group then peaks at ~10 MB of Arrow memory).
        parquet = pq.ParquetFile(file, buffer_size=1 << 20, pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{label} is not a readable Parquet file ({exc})") from None
    with parquet:
        names = parquet.schema_arrow.names
        wanted = columns if columns and set(columns) <= set(names) else None
        yield from _batch_rows(
            parquet.iter_batches(batch_size=_BATCH, columns=wanted), label, (pa.ArrowException, OSError)
        )


def _arrow_rows(file: Path, label: str, columns: list[str] | None) -> Iterator[_Row]:
    """An Arrow file written by ``datasets`` (IPC stream format), memory-mapped, batch by batch."""
    import pyarrow as pa

    try:
        source = pa.memory_map(str(file))
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"could not read {label}: {exc}") from None
    with source:
        try:
            reader = pa.ipc.open_stream(source)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{label}: {file.name} is not an Arrow file written by datasets ({exc})") from None
        batches: Iterable[Any] = reader
        if columns and set(columns) <= set(reader.schema.names):
            batches = (batch.select(columns) for batch in reader)
        yield from _batch_rows(batches, label, (pa.ArrowException, OSError))


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
                f"{_snippet(value, 1)}; it must hold {form}"
            ) from None
    if not isinstance(value, list | tuple):
        raise DataError(f"{where}: column {column!r} (mapped as messages) holds a {_json_type(value)}, not {form}")
    messages = []
    for i, message in enumerate(value, 1):
        if not isinstance(message, dict):
            raise DataError(
                f"{where}: message {i} in column {column!r} is a {_json_type(message)}, not an object with a role "
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
    source = _locate(Path(path), fmt)
    _codec(encoding)
    rows: list[Record] = []
    columns: dict[str, None] = {}
    stream = _rows(source, encoding)
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


def _prepare(path: Path, cmap: ColumnMap, fmt: str | None, encoding: str, limit: int | None) -> _Source:
    """Check everything that needs no reading, so a bad call fails before any transaction."""
    cmap.check()
    source = _locate(Path(path), fmt)
    _codec(encoding)
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
    source: _Source,
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
    for number, record, label, loc in _rows(source, encoding, wanted):
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

    The rows stream from the file into :meth:`Project.import_samples`, one transaction: any
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
