"""The dataset card's counts: samples in no leaf are not a leaf."""

from __future__ import annotations

from treesynth_core.data.export import dataset_card
from treesynth_core.store.samples import UNROUTED, Sample
from treesynth_core.tree import model as T


def test_the_card_does_not_count_the_no_leaf_bucket_as_a_leaf():
    tree = T.new_tree("Math")
    tree = T.attach_split(
        tree, tree.root_id, criterion="Op", values=["add", "sub", "mul"], provenance=T.Provenance("human")
    )
    add = tree.children(tree.root_id)[0]
    samples = [
        Sample(leaf_id=add.id, key="a", instruction="1+1", path=[], sample_set="data"),
        Sample(leaf_id=UNROUTED, key="b", instruction="a poem", path=[], sample_set="data"),
        Sample(leaf_id=UNROUTED, key="c", instruction="a song", path=[], sample_set="data"),
    ]
    card = dataset_card(tree, samples, fmt="jsonl")
    assert "| Leaves | 3 (1 with samples); 2 samples are in no leaf (no value fitted, or not routed) |" in card
    everything_placed = dataset_card(tree, samples[:1], fmt="jsonl")
    assert "| Leaves | 3 (1 with samples) |" in everything_placed


def concept_sample(key: str, level: int, docs: list[str], **extra: object) -> Sample:
    return Sample(
        leaf_id=UNROUTED,
        key=key,
        instruction=f"question {key}",
        path=[],
        sample_set="concepts",
        extra={"provenance": "concepts", "level": level, "documents": docs, **extra},
    )


def test_the_card_describes_concept_generated_sets_by_level_and_documents():
    tree = T.new_tree("Python questions")
    samples = [
        concept_sample("1", 1, ["break"], origin="original"),
        concept_sample("2", 1, ["break"], origin="new"),
        concept_sample("3", 1, ["while"], origin="new"),
        concept_sample("4", 2, ["while"], concepts=["loop", "else clause"]),
        concept_sample("5", 3, ["break", "[x](http://evil)"], concepts=["a", "b", "c", "d"], topics=["t", "u"]),
    ]
    card = dataset_card(tree, samples, fmt="jsonl")
    assert "tags: [synthetic, treesynth]" in card and "SynthLLM's concept-based generator" in card
    assert "## Concept-generated questions" in card
    assert "5 questions were made from 3 documents" in card
    assert "(1 original, 2 new) | 3 | 0 | 2 | break, while |" in card
    assert "(mean 2.0 concepts each) | 1 | 0 | 1 | while |" in card
    level3 = next(line for line in card.splitlines() if line.startswith("| 3 |"))
    assert (
        "| 1 | 0 | 2 | break, \\[x\\]\\(http\\://evil\\) |" in level3 and "](http" not in level3
    )  # ids are text, never links
    # a set with no concept-generated sample has no such section
    assert "Concept-generated" not in dataset_card(
        tree, [Sample(leaf_id=UNROUTED, key="x", instruction="q", path=[])], fmt="jsonl"
    )


def test_the_card_names_at_most_a_dozen_documents_per_level():
    tree = T.new_tree("Python questions")
    samples = [concept_sample(str(i), 2, [f"doc{i}"], concepts=["a", "b"]) for i in range(15)]
    card = dataset_card(tree, samples, fmt="jsonl")
    assert "| 15 | doc0, doc1," in card and "doc11 and 3 more |" in card and "doc12" not in card
