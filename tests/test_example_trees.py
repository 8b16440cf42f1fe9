"""The example trees shipped in assets/trees: valid, approved, human-written, sized for a first run."""

from __future__ import annotations

from pathlib import Path

import pytest

from treesynth_core.prompts.labels import judge
from treesynth_core.tree import model as T
from treesynth_core.tree.file import read_tree_file, tree_from_json, tree_to_json

TREES_DIR = Path(__file__).resolve().parent.parent / "assets" / "trees"
TREE_FILES = sorted(TREES_DIR.glob("*.json"))


def test_the_example_trees_are_there() -> None:
    names = {p.name for p in TREE_FILES}
    assert {"gsm8k_math.json", "python_coding.json", "customer_support.json"} <= names


@pytest.fixture(params=TREE_FILES, ids=[p.name for p in TREE_FILES])
def tree_file(request: pytest.FixtureRequest) -> Path:
    return request.param


def test_loads_without_problems(tree_file: Path) -> None:
    tree = read_tree_file(tree_file)
    assert tree.task
    assert tree.style
    assert T.problems(tree) == []


def test_every_node_is_approved_and_human(tree_file: Path) -> None:
    tree = read_tree_file(tree_file)
    assert all(n.approved for n in tree.nodes.values())
    assert all(not n.pruned for n in tree.nodes.values())
    assert all(n.provenance == T.Provenance() for n in tree.nodes.values())
    assert all(tree.is_approved_path(leaf.id) for leaf in tree.leaves())


def test_size_and_depth(tree_file: Path) -> None:
    tree = read_tree_file(tree_file)
    assert 20 <= len(tree.leaves(approved_only=True)) <= 120
    assert tree.levels() >= 2


def test_root_shows_pivot_examples(tree_file: Path) -> None:
    tree = read_tree_file(tree_file)
    assert 2 <= len(tree.root.pivots) <= 3
    assert all(p.strip() for p in tree.root.pivots)


def test_values_are_short_and_not_combined(tree_file: Path) -> None:
    tree = read_tree_file(tree_file)
    for node in tree.nodes.values():
        if node.is_root:
            continue
        assert node.value is not None
        assert 1 <= len(node.value.split()) <= 5, node.value
        siblings = [k.value or "" for k in tree.children(node.parent_id or "") if k.id != node.id]
        assert judge(node.value, siblings).verdict != "combined", node.value
        assert node.value == T.clean_label(node.value), node.value


def test_no_criterion_repeats_along_a_path(tree_file: Path) -> None:
    tree = read_tree_file(tree_file)
    for leaf in tree.leaves():
        used = [T.normalize(c) for c in tree.criteria_on_path(leaf.id)]
        assert len(used) == len(set(used)), used


def test_round_trip_keeps_the_tree(tree_file: Path) -> None:
    tree = read_tree_file(tree_file)
    again = tree_from_json(tree_to_json(tree))
    assert len(again.nodes) == len(tree.nodes)
    assert again == tree
    assert tree_to_json(again) == tree_to_json(tree)


def test_readme_mentions_each_tree() -> None:
    readme = (TREES_DIR / "README.md").read_text(encoding="utf-8")
    for path in TREE_FILES:
        assert path.name in readme, path.name
