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
