"""Values for a tree node from the concept graph: the topics (or key concepts) most associated with
the node's path, an alternative to the LLM's coverage step.

Pure and offline. A document's words are those of its level, subject, topics and concepts; its
*relevance* to a node is the mean, over the values on the node's path, of the share of the value's
words it contains (lower-cased, light plural stemming, stop words dropped). The documents with a
positive relevance are the node's documents (at the root, every document, weight 1). A candidate's
score is the relevance-weighted number of the node's documents that name it, times
``log(1 + N / df)`` (N documents in all, df of them name it): a label that every document names
says little about this node. Labels already on the path (the same words as a path value, plurals
folded) are left out, and so are the node's children when the values go beside them.

:func:`propose_values` returns the ``k`` best with their scores and the documents supporting each;
:func:`~treesynth_core.tree.model.propose_values` adds them to the tree as proposed children.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import DataError
from ..tree import model as T
from .model import DocConcepts, clean, label_key

Kind = Literal["topic", "concept"]
KINDS: tuple[Kind, ...] = ("topic", "concept")
#: The criterion the node gets when none is given, by the kind of the values.
DEFAULT_CRITERION: dict[str, str] = {"topic": "Topic", "concept": "Concept"}
DEFAULT_K = 8
_WORD = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset(
    "a an and are as at be by for from in into is it of on or the to with about its their this that any".split()
)


def words(text: str) -> frozenset[str]:
    """The words of ``text`` that say what it is about: lower-cased, plurals folded, stop words out."""
    found = set(_WORD.findall(text.casefold()))
    return frozenset(_stem(w) for w in found if w not in STOP_WORDS and len(w) > 1)


def _key_words(text: str) -> frozenset[str]:
    """Every word of ``text``, plurals folded: ``Loops`` and ``loop`` are one label, ``for loop`` another."""
    return frozenset(_stem(w) for w in _WORD.findall(text.casefold()))


def _stem(word: str) -> str:
    """``loops`` -> ``loop``, ``classes`` -> ``class``, ``queries`` -> ``query``; short words kept."""
    if len(word) <= 3 or not word.endswith("s") or word.endswith("ss"):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    return word[:-1]


@dataclass(frozen=True)
class Candidate:
    """One proposed value: its label (as first written), score and supporting documents (most
    relevant first)."""

    value: str
    score: float
    documents: tuple[str, ...]

    def to_json(self) -> dict:
        return {"value": self.value, "score": round(self.score, 4), "documents": list(self.documents)}


@dataclass(frozen=True)
class Proposal:
    """What the concept graph proposes for ``node_id``: ``candidates`` best first, from ``matched``
    of the project's ``total`` documents."""

    node_id: str
    kind: Kind
    criterion: str
    path: tuple[str, ...]
    matched: int
    total: int
    candidates: tuple[Candidate, ...]

    @property
    def values(self) -> list[str]:
        return [c.value for c in self.candidates]

    def to_json(self) -> dict:
        return {
            "node_id": self.node_id,
            "kind": self.kind,
            "criterion": self.criterion,
            "path": list(self.path),
            "matched_documents": self.matched,
            "documents": self.total,
            "candidates": [c.to_json() for c in self.candidates],
        }


def doc_words(doc: DocConcepts) -> frozenset[str]:
    labels = [doc.level, doc.subject, *(t.topic for t in doc.topics), *(c for t in doc.topics for c in t.concepts)]
    return words(" ".join(labels))  # one pass: the words of the labels joined are the union of theirs


def relevance(path_words: Sequence[frozenset[str]], doc: frozenset[str]) -> float:
    """Mean share of each path value's words found in the document's words (1 for an empty path)."""
    if not path_words:
        return 1.0
    return sum(len(v & doc) / len(v) for v in path_words) / len(path_words)


def labels_of(doc: DocConcepts, kind: Kind) -> dict[str, str]:
    """The document's topics or concepts: key -> label."""
    found: dict[str, str] = {}
    if kind == "topic":
        for t in doc.topics:
            found.setdefault(label_key(t.topic), clean(t.topic))
    else:
        for t in doc.topics:
            for c in t.concepts:
                found.setdefault(label_key(c), clean(c))
    return found


def propose_values(
    tree: T.Tree,
    node_id: str,
    docs: Sequence[DocConcepts],
    *,
    k: int = DEFAULT_K,
    kind: Kind = "topic",
    criterion: str = "",
) -> Proposal:
    """The ``k`` topics (or concepts) of ``docs`` most associated with the path of ``node_id`` (see
    the module's docstring). A :class:`DataError` when there are no concepts, or when no document's
    labels share a word with the path (nothing to propose)."""
    if not docs:
        raise DataError("no concepts yet: extract them (treesynth concepts DIR extract) or import a concepts JSONL")
    if kind not in KINDS:
        raise DataError(f"kind must be topic or concept, not {kind!r}")
    if k < 1:
        raise DataError("k must be at least 1")
    node = tree.node(node_id)
    steps = [s for s in tree.path(node.id) if not s.pool]
    path_words = [w for w in (words(s.value) for s in steps) if w]
    path_keys = {_key_words(s.value) for s in steps}
    criterion = clean(criterion) or DEFAULT_CRITERION[kind]
    used = {T.normalize(s.value) for s in steps}
    if T.normalize(criterion) == T.normalize(node.split_criterion or ""):  # added beside the children
        used |= {T.normalize(c.value or "") for c in tree.children(node.id)}
    weights: dict[str, float] = {}
    for doc in docs:
        r = relevance(path_words, doc_words(doc))
        if r > 0:
            weights[doc.doc_id] = r
    support: dict[str, float] = defaultdict(float)
    supporters: dict[str, list[str]] = defaultdict(list)
    df: dict[str, int] = defaultdict(int)
    label: dict[str, str] = {}
    for doc in docs:
        for key, text in labels_of(doc, kind).items():
            df[key] += 1
            label.setdefault(key, text)
            if doc.doc_id in weights:
                support[key] += weights[doc.doc_id]
                supporters[key].append(doc.doc_id)
    candidates = []
    for key, s in support.items():
        if T.normalize(label[key]) in used or _key_words(label[key]) in path_keys:
            continue  # on the path already (or a child already)
        score = s * math.log(1 + len(docs) / df[key])
        ranked = sorted(supporters[key], key=lambda d: (-weights[d], d))
        candidates.append(Candidate(label[key], score, tuple(ranked)))
    candidates.sort(key=lambda c: (-c.score, label_key(c.value)))
    path = tuple(s.value for s in tree.path(node.id))
    if not candidates:
        where = " > ".join(path) or "the root"
        raise DataError(
            f"no {kind} of the {len(docs)} documents fits {where!r} (none shares a word with the path, or "
            "all are on it already): nothing to propose"
        )
    return Proposal(
        node_id=node.id,
        kind=kind,
        criterion=criterion,
        path=path,
        matched=len(weights),
        total=len(docs),
        candidates=tuple(candidates[:k]),
    )
