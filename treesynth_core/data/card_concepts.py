"""The dataset card's section on questions made from documents by SynthLLM's concept generator
(arXiv 2503.19551): per level, how many questions, from how many documents and which ones, and
what each level combined (level 1: original vs new; levels 2-3: the concepts combined).

The samples' ``extra`` carries what :mod:`treesynth_core.concepts.questions` recorded
(``provenance: concepts``, ``level``, ``documents``, ``origin``, ``concepts``, ``topics``).
Document ids and every other text from files or models go through the card's escaper (``cell``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from ..store.samples import Sample

#: The provenance the concept generator writes on its samples.
CONCEPTS = "concepts"
#: How many document ids a level's row names before "and N more".
MAX_NAMED = 12
LEVEL_TEXT = {
    1: "questions extracted from (original) or newly written about (new) one document",
    2: "questions combining 2-3 key concepts of one document, grounded in it",
    3: "questions combining concepts of different topics along a random walk on the global concept graph, "
    "grounded in the 2 documents most similar to the walk (Jaccard)",
}
INTRO = (
    "Synthetic dataset made with TreeSynth Studio from documents: questions written by SynthLLM's "
    "concept-based generator (arXiv 2503.19551), levels 1-3 (see *Concept-generated questions*)."
)


def concept_samples(samples: Sequence[Sample]) -> list[Sample]:
    return [s for s in samples if s.extra.get("provenance") == CONCEPTS]


def concepts_section(samples: Sequence[Sample], cell: Callable[[str], str]) -> list[str]:
    """The card's lines on concept-generated samples; none when there are none."""
    made = concept_samples(samples)
    if not made:
        return []
    by_level: dict[int, list[Sample]] = {}
    for s in made:
        by_level.setdefault(_level(s), []).append(s)
    every_doc = {d for s in made for d in _documents(s)}
    lines = [
        "## Concept-generated questions",
        "",
        f"{len(made)} questions were made from {len(every_doc)} documents by SynthLLM's generator: each "
        "document's level, subject, topics and key concepts were extracted once, then questions written per level.",
        "",
        "| level | what | questions | with responses | documents used | documents |",
        "|---|---|---|---|---|---|",
    ]
    for level in sorted(by_level):
        rows = by_level[level]
        docs = Counter(d for s in rows for d in _documents(s))
        named = [cell(d) for d, _ in docs.most_common(MAX_NAMED)]
        more = f" and {len(docs) - MAX_NAMED} more" if len(docs) > MAX_NAMED else ""
        lines.append(
            f"| {level if level else '?'} | {LEVEL_TEXT.get(level, '-')}{_detail(level, rows)} | {len(rows)} "
            f"| {sum(1 for s in rows if s.response)} | {len(docs)} | {', '.join(named)}{more} |"
        )
    lines += [
        "",
        "Each row's `documents` (and for levels 2-3 `concepts`) in the data name what it was grounded in.",
        "",
    ]
    return lines


def _level(s: Sample) -> int:
    level = s.extra.get("level")
    return level if isinstance(level, int) else 0


def _documents(s: Sample) -> list[str]:
    docs = s.extra.get("documents")
    return [str(d) for d in docs] if isinstance(docs, list) else []


def _detail(level: int, rows: Sequence[Sample]) -> str:
    if level == 1:
        origins = Counter(str(s.extra.get("origin") or "new") for s in rows)
        return f" ({origins.get('original', 0)} original, {origins.get('new', 0)} new)"
    sizes = [len(c) for s in rows if isinstance(c := s.extra.get("concepts"), list) and c]
    return f" (mean {sum(sizes) / len(sizes):.1f} concepts each)" if sizes else ""
