"""Reading dataset files row by row: JSONL (also gzipped), a JSON array, CSV/TSV (also gzipped),
Parquet, a folder written by ``datasets.save_to_disk`` (Arrow files, memory-mapped), or a folder of
such files. Every reader streams, so memory stays flat however big the file; :mod:`ingest` maps the
rows to samples. Errors are :class:`DataError` naming the file and the line or row.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import itertools
import json
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError

FORMATS = ("jsonl", "json", "csv", "parquet", "hf")

#: Suffix -> format; ``.gz`` may follow the text formats.
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv"}
_BINARY_SUFFIXES = {".parquet": "parquet"}
_BATCH = 1024  # rows decoded at a time from Parquet / Arrow
_CSV_FIELD_LIMIT = 1 << 30  # the csv module's default (128 KiB) is too small for long responses
_CSV_END = "\ufffftreesynth-end-of-file\uffff"  # the row after the last line (U+FFFF: a noncharacter)

Record = dict[str, Any]
Row = tuple[int, Record, str, str]  # (number, record, file label, "line 3" / "row 3")


# -- finding the data files -----------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
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
    return locate(Path(path), None).format


def locate(path: Path, fmt: str | None) -> Source:
    """The data files at ``path`` (a file or a folder) and their format; DataError if there are none."""
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
    return Source(found, [path], path.name)


def _locate_folder(folder: Path, fmt: str | None) -> Source:
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
        return Source("hf", _hf_files(folder, arrows), folder.name)
    by_format: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        found = _file_format(path) if path.is_file() and not path.name.startswith(".") else None
        if found is not None:
            by_format.setdefault(found, []).append(path)
    if fmt is not None and fmt != "hf" and by_format.get(fmt):
        return Source(fmt, by_format[fmt], folder.name)
    if fmt is None and len(by_format) == 1:
        (found, files), *_ = by_format.items()
        return Source(found, files, folder.name)
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
    source = locate(Path(path), fmt)
    resolve_codec(encoding)
    return ((number, record) for number, record, _, _ in source_rows(source, encoding))


def source_rows(source: Source, encoding: str, columns: list[str] | None = None) -> Generator[Row, None, None]:
    """``(number, record, file label, location)`` for each row of every file, numbered across files."""
    offset = 0
    for file in source.files:
        label = source.label if len(source.files) == 1 else f"{source.label}/{file.name}"
        last = 0
        for local, record, _, loc in _file_rows(file, source.format, encoding, label, columns):
            last = local
            yield offset + local, record, label, loc
        offset += last


def _file_rows(file: Path, fmt: str, encoding: str, label: str, columns: list[str] | None) -> Iterator[Row]:
    if fmt == "jsonl":
        return _jsonl_rows(file, encoding, label)
    if fmt == "json":
        return _json_rows(file, encoding, label)
    if fmt == "csv":
        return _csv_rows(file, encoding, label)
    if fmt == "parquet":
        return _parquet_rows(file, label, columns)
    return _arrow_rows(file, label, columns)


def resolve_codec(encoding: str) -> str:
    """The codec's canonical name; DataError for an unknown encoding."""
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
    codec = resolve_codec(encoding)
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


def snippet(text: str, column: int, width: int = 60) -> str:
    """About ``width`` characters of ``text`` around ``column`` (1-based), for error messages."""
    text = text.rstrip("\r\n")
    start = max(0, column - 1 - width // 2)
    piece = text[start : start + width]
    return ("…" if start else "") + piece + ("…" if start + width < len(text) else "")


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type ("array", "string", ...), for error messages."""
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _jsonl_rows(file: Path, encoding: str, label: str, *, hint: str = "") -> Iterator[Row]:
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
                f"{label} line {number} is not valid JSON ({why} at column {column}): {snippet(line, column)}{extra}"
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"{label} line {number} holds a JSON {json_type(record)}, not an object: each line must be one "
                'JSON object, such as {"instruction": "...", "output": "..."}'
            )
        first = False
        yield number, record, label, f"line {number}"


def _json_rows(file: Path, encoding: str, label: str) -> Iterator[Row]:
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
            f"{label} line {exc.lineno} is not valid JSON ({exc.msg} at column {exc.colno}): {snippet(line, exc.colno)}"
        ) from None
    except RecursionError:
        raise DataError(f"{label} is nested too deeply to read") from None
    del text, raw
    for index in range(len(data)):
        record, data[index] = data[index], None  # let each row go once it is handed on
        if not isinstance(record, dict):
            raise DataError(
                f"{label} item {index + 1} of the array is a JSON {json_type(record)}, not an object such as "
                '{"instruction": "...", "output": "..."}'
            )
        yield index + 1, record, label, f"item {index + 1}"


def _first_char(file: Path, encoding: str, label: str) -> str:
    codec = resolve_codec(encoding)
    try:
        with _open_binary(file) as handle:
            head: bytes = handle.read(4096)
    except (OSError, EOFError) as exc:
        raise DataError(f"could not read {label}: {exc}") from None
    return head.decode(codec, "ignore").lstrip("\ufeff \t\r\n")[:1]


def _decode_whole(raw: bytes, encoding: str, label: str) -> str:
    codec = resolve_codec(encoding)
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


def _csv_rows(file: Path, encoding: str, label: str) -> Iterator[Row]:
    """CSV (or TSV) rows as dicts via :class:`csv.DictReader`, fed the decoded lines one by one."""
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    lines = (text for _, text in _lines(file, encoding, label))
    first = next(lines, None)
    if first is None:
        return
    delimiter = _delimiter(file, first)
    # The end marker is a row of its own after the last line, unless a quote left open swallowed it
    # (the csv module would otherwise read the rest of the file into that one field, silently).
    reader = csv.DictReader(itertools.chain([first], lines, ["\n", _CSV_END + "\n"]), delimiter=delimiter)
    shown = "tab" if delimiter == "\t" else repr(delimiter)
    row = 0
    start = 1  # the line the current row starts on
    try:
        header = reader.fieldnames or []
        if twice := [name for name, n in Counter(header).items() if n > 1]:
            raise DataError(f"{label}: the header names the column {twice[0]!r} twice; give each column its own name")
        if _CSV_END in header:  # no header row before the marker: nothing but blank lines
            return
        start = reader.line_num + 1
        for record in reader:
            extra = record.get(None)
            fields = [v for v in record.values() if isinstance(v, str)] + (extra if isinstance(extra, list) else [])
            if any(_CSV_END in field for field in fields):
                if fields == [_CSV_END]:
                    return  # the marker row: every quote was closed
                break
            row += 1
            if None in record:
                raise DataError(
                    f"{label} row {row} (line {reader.line_num}) has {len(header) + len(record[None])} fields but "
                    f"the header has {len(header)}: quote the fields that contain the delimiter ({shown})"
                )
            yield row, record, label, f"row {row} (line {reader.line_num})"
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{label} line {reader.line_num} is not valid CSV ({exc}): check its quotes") from None
    raise DataError(
        f"{label}: a quote opened in row {row + 1} (line {start}) is never closed, so the rest of the file would "
        'be read into one field: close the quote, or double each quote inside a quoted field ("")'
    )


def _delimiter(file: Path, header: str) -> str:
    name = file.name.lower()
    if name.endswith((".tsv", ".tsv.gz")):
        return "\t"
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in ";\t|"}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _batch_rows(batches: Iterable[Any], label: str, errors: tuple[type[Exception], ...]) -> Iterator[Row]:
    number = 0
    try:
        for batch in batches:
            for start in range(0, batch.num_rows, _BATCH):
                for record in batch.slice(start, _BATCH).to_pylist():
                    number += 1
                    yield number, record, label, f"row {number}"
    except errors as exc:
        raise DataError(f"{label} could not be read after row {number} ({exc}): the file is damaged") from None


def _parquet_rows(file: Path, label: str, columns: list[str] | None) -> Iterator[Row]:
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


def _arrow_rows(file: Path, label: str, columns: list[str] | None) -> Iterator[Row]:
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
