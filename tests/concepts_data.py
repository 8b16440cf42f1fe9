"""Concepts for tests beside the tree: a hand-written concepts JSONL about Python and a concepts set
as ``concepts synth`` stores it."""

from __future__ import annotations

import json
from pathlib import Path

from treesynth_core.store import Project
from treesynth_core.store.samples import UNROUTED, NewSample

#: Loop documents name Iteration twice and Comprehensions once; function documents Decorators and
#: Closures; Decorators also comes with Classes, which no loop or function document names.
LINES = [
    {"doc_id": "d1", "topics": [("Loops", ["for loop", "while loop", "break"]), ("Iteration", ["iterator"])]},
    {"doc_id": "d2", "topics": [("Loops", ["for loop", "else clause"]), ("Comprehensions", ["list comprehension"])]},
    {"doc_id": "d3", "topics": [("Loops", ["while loop"]), ("Iteration", ["generator"])]},
    {"doc_id": "d4", "topics": [("Functions", ["def", "return"]), ("Decorators", ["wrapper"])]},
    {"doc_id": "d5", "topics": [("Functions", ["arguments"]), ("Closures", ["nonlocal"])]},
    {"doc_id": "d6", "topics": [("Classes", ["self", "inheritance"]), ("Decorators", ["property"])]},
]


def write_concepts(path: Path) -> Path:
    rows = [
        {
            "doc_id": line["doc_id"],
            "level": "college",
            "subject": "python",
            "topics": [{"topic": t, "concepts": cs} for t, cs in line["topics"]],
        }
        for line in LINES
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


QUESTIONS = [
    "How does a for loop walk a list, and when does its else clause run?",
    "What does break do inside a nested while loop?",
    "How do default arguments of a function behave when a def runs twice?",
    "What does a decorator wrapper return to the function it replaces?",
]


def add_concepts_questions(path: Path) -> None:
    """A ``concepts-l2`` set as ``concepts synth`` stores it: unrouted, with its level and provenance."""
    with Project.open(path) as project:
        project.add_samples(
            NewSample(
                leaf_id=UNROUTED,
                key=f"L2.{i}:0",
                instruction=q,
                path=[],
                sample_set="concepts-l2",
                extra={"provenance": "concepts", "level": 2, "documents": ["d1"]},
            )
            for i, q in enumerate(QUESTIONS)
        )
