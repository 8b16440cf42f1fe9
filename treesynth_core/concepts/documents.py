"""Documents to extract concepts from: a folder of .md/.txt/.html files, a sample set's text column,
or the corpus that ships with Python (``example:python-docs``).

A document longer than ``chunk_chars`` is split into chunks at paragraph, then line, then word
boundaries; the chunks put together give back the whole text (nothing is cut off), and each chunk
is a document of its own (``doc_id#2`` ...). Empty documents are skipped and counted. Files are
decoded strictly in the given encoding: a byte that does not decode is one clear error naming the
file, the byte and the ``--encoding`` to pass.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ..errors import DataError

#: Chunk size (characters) for capable models: about 3,000 tokens, well inside their context.
CHUNK_CHARS = 12_000
#: Chunk size for the ``small`` prompt profile: the embedded 135M model's 2,048-token context.
SMALL_CHUNK_CHARS = 1_500
#: The files a folder is read for.
SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm")
#: The corpus that ships on disk: the reference text of Python's ``help()`` topics
#: (``pydoc_data.topics``, in the standard library: about 80 topics of the language reference).
PYTHON_DOCS = "example:python-docs"


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str
    source: str = ""


@dataclass
class DocumentSet:
    """Documents ready for extraction, with what reading them skipped or split."""

    documents: list[Document]
    empty_skipped: list[str] = field(default_factory=list)
    #: doc_id -> the number of chunks it was split into (only documents split in two or more).
    chunked: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{len(self.documents)} documents"]
        if self.chunked:
            parts.append(f"{len(self.chunked)} long ones split into {sum(self.chunked.values())} chunks")
        if self.empty_skipped:
            parts.append(f"{len(self.empty_skipped)} empty ones skipped")
        return ", ".join(parts)


_BREAKS = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"\s"))


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Split ``text`` into pieces of at most ``max_chars`` characters, preferring paragraph breaks,
    then line breaks, then spaces (a run with no space is cut at ``max_chars``). ``"".join`` of the
    pieces is ``text``: nothing is dropped."""
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    pieces: list[str] = []
    start = 0
    while len(text) - start > max_chars:
        window = text[start : start + max_chars]
        cut = 0
        for pattern in _BREAKS:
            ends = [m.end() for m in pattern.finditer(window) if m.end() < len(window)]
            if ends and ends[-1] > max_chars // 4:
                cut = ends[-1]
                break
        cut = cut or max_chars
        pieces.append(text[start : start + cut])
        start += cut
    pieces.append(text[start:])
    return pieces


def split_documents(raw: Iterable[Document], max_chars: int = CHUNK_CHARS) -> DocumentSet:
    """Chunk long documents, skip (and count) empty ones; doc_ids must be unique."""
    result = DocumentSet([])
    seen: set[str] = set()
    for doc in raw:
        if doc.doc_id in seen:
            raise DataError(f"two documents have the id {doc.doc_id!r}: document ids must be unique")
        seen.add(doc.doc_id)
        if not doc.text.strip():
            result.empty_skipped.append(doc.doc_id)
            continue
        pieces = [p for p in chunk_text(doc.text, max_chars) if p.strip()]
        if len(pieces) == 1:
            result.documents.append(Document(doc.doc_id, pieces[0].strip(), doc.source))
            continue
        result.chunked[doc.doc_id] = len(pieces)
        for i, piece in enumerate(pieces, 1):
            result.documents.append(Document(f"{doc.doc_id}#{i}", piece.strip(), doc.source))
    return result


class _TextOfHtml(HTMLParser):
    SKIP = {"script", "style", "head", "title"}
    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "pre", "section", "article"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_text(html: str) -> str:
    """The visible text of an HTML page (scripts, styles and the head left out), paragraphs kept."""
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    return re.sub(r"\n\s*\n\s*", "\n\n", re.sub(r"[ \t]+", " ", text)).strip()


def decode(data: bytes, encoding: str, label: str) -> str:
    """``data`` decoded strictly; a :class:`DataError` naming the byte and what to do otherwise."""
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}: use e.g. utf-8, latin-1 or cp1252") from None
    try:
        return data.decode(codec).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{label} is not valid {encoding}: byte 0x{data[exc.start]:02x} at byte {exc.start + 1}; "
            "pass its real encoding (e.g. --encoding latin-1 or cp1252) or re-save it as UTF-8"
        ) from None


def folder_documents(folder: Path, *, encoding: str = "utf-8") -> list[Document]:
    """The .md/.txt/.html files under ``folder`` (recursively, in path order), ids relative to it."""
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder of documents")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise DataError(f"{folder} holds no documents ({', '.join(SUFFIXES)})")
    docs = []
    for path in files:
        text = decode(path.read_bytes(), encoding, str(path))
        if path.suffix.lower() in (".html", ".htm"):
            text = html_text(text)
        docs.append(Document(path.relative_to(folder).as_posix(), text, str(path)))
    return docs


def python_docs() -> list[Document]:
    """The reference text of Python's ``help()`` topics, from the standard library."""
    from pydoc_data.topics import topics

    return [Document(name, text, f"pydoc_data.topics:{name}") for name, text in sorted(topics.items())]


def sample_set_documents(samples: Sequence[Any], sample_set: str) -> list[Document]:
    """A sample set's instructions as documents (ids ``SET:ROW``)."""
    if not samples:
        raise DataError(f"the sample set {sample_set!r} holds no samples (import a file of documents first)")
    return [Document(f"{sample_set}:{s.id}", s.instruction, f"set {sample_set}") for s in samples]


def chunk_chars_for(profile: str) -> int:
    """The default chunk size of a prompt profile (``small``: the embedded model's context)."""
    return SMALL_CHUNK_CHARS if profile == "small" else CHUNK_CHARS


def read_documents(source: str, *, encoding: str = "utf-8", chunk_chars: int = CHUNK_CHARS) -> DocumentSet:
    """Documents from a folder or from :data:`PYTHON_DOCS`, chunked."""
    raw = python_docs() if source == PYTHON_DOCS else folder_documents(Path(source), encoding=encoding)
    return split_documents(raw, chunk_chars)
