"""Where a project keeps its documents and their extracted concepts: two blobs in the project's
database (the documents as JSON, the concepts as the JSONL of :mod:`.model`), each written in one
transaction, so an import or an extraction never leaves half a set behind."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

from .documents import Document
from .model import DocConcepts, check_unique, jsonl_lines, parse_line

DOCUMENTS_KEY = "concepts.documents"
CONCEPTS_KEY = "concepts.extracted"


class BlobStore(Protocol):
    def put_blob(self, key: str, data: bytes) -> None: ...

    def get_blob(self, key: str) -> bytes | None: ...


def save_documents(store: BlobStore, docs: Sequence[Document]) -> None:
    rows = [{"doc_id": d.doc_id, "text": d.text, "source": d.source} for d in docs]
    store.put_blob(DOCUMENTS_KEY, json.dumps(rows, ensure_ascii=False).encode("utf-8"))


def load_documents(store: BlobStore) -> list[Document]:
    data = store.get_blob(DOCUMENTS_KEY)
    return [] if data is None else [Document(**row) for row in json.loads(data)]


def save_concepts(store: BlobStore, docs: Sequence[DocConcepts]) -> None:
    check_unique(docs)
    store.put_blob(CONCEPTS_KEY, jsonl_lines(docs).encode("utf-8"))


def load_concepts(store: BlobStore) -> list[DocConcepts]:
    return concepts_of(store.get_blob(CONCEPTS_KEY))


def concepts_of(data: bytes | None) -> list[DocConcepts]:
    """The concepts in a stored blob (read once by a caller that also keys a cache by its bytes)."""
    if data is None:
        return []
    lines = data.decode("utf-8").splitlines()
    return [parse_line(line, f"stored concepts line {n}") for n, line in enumerate(lines, 1) if line.strip()]


def add_documents(store: BlobStore, docs: Sequence[Document]) -> list[Document]:
    """Store ``docs`` beside the documents already stored (a document with the same id is replaced);
    returns every stored document. Their extracted concepts are kept: extraction skips them."""
    stored = {d.doc_id: d for d in load_documents(store)}
    stored.update({d.doc_id: d for d in docs})
    merged = list(stored.values())
    save_documents(store, merged)
    return merged
