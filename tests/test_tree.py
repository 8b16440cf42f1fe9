"""The tree's invariants and pure edits."""

from __future__ import annotations

from dataclasses import replace

import pytest

from treesynth_core.errors import TreeError
from treesynth_core.tree import model as T
from treesynth_core.tree.changes import apply_changes, diff, node_from_dict, node_to_dict

LLM = T.Provenance("llm", model="m")


def grown(values=("addition", "subtraction", "multiplication")) -> T.Tree:
    tree = T.new_tree("Math word problems", "GSM8K-style")
    return T.attach_split(tree, tree.root_id, criterion="Operation", values=list(values), provenance=LLM)


def kid(tree: T.Tree, value: str) -> T.Node:
    return next(n for n in tree.nodes.values() if n.value == value)


def test_new_tree_rejects_empty_task():
    with pytest.raises(TreeError, match="empty"):
        T.new_tree("   ")


def test_attach_split_makes_proposed_children_with_path():
    tree = grown()
    kids = tree.children(tree.root_id)
    assert [k.value for k in kids] == ["addition", "subtraction", "multiplication"]
    assert all(k.status == "proposed" and k.criterion == "Operation" for k in kids)
    assert tree.path(kids[0].id) == [T.PathStep("Operation", "addition")]
    assert tree.root.split_criterion == "Operation" and tree.root.expanded


def test_normalize_ignores_case_space_punctuation_bullets():
    assert T.normalize("  - Addition!! ") == T.normalize("addition")
    assert T.normalize("1. Word   Problems") == "word problems"
    assert T.clean_label('"* Fruit."') == "Fruit"


def test_normalize_keeps_plus_and_hash_so_languages_stay_apart():
    assert len({T.normalize(v) for v in ["C", "C++", "C#", "F#", "F"]}) == 5
    assert T.normalize("C++!") == T.normalize("c++")


def test_validate_names_duplicate_sibling():
    with pytest.raises(TreeError, match="repeats sibling"):
        grown(["addition", "Addition."])
    tree = grown()
    dup = replace(kid(tree, "subtraction"), id="dup", value=" - ADDITION!")
    with pytest.raises(TreeError, match="repeats sibling") as info:
        T.validate(T.with_nodes(tree, [dup]))
    assert info.value.node_id == "dup"


def test_llm_values_with_separators_are_valid_tree_values():
    tree = grown(["C++", "File I/O", "Ratios and proportions", "Q&A"])
    assert T.problems(tree) == []
    assert [k.value for k in tree.children(tree.root_id)] == ["C++", "File I/O", "Ratios and proportions", "Q&A"]


def flagged_tree() -> T.Tree:
    tree = T.new_tree("Animal facts")
    flags = {"Mammals and birds": 'may combine "Mammals" and "birds"'}
    values = ["Mammals", "Mammals and birds"]
    return T.attach_split(tree, tree.root_id, criterion="Animal class", values=values, provenance=LLM, flags=flags)


def test_attach_split_flags_values_and_a_person_clears_the_flag():
    tree = flagged_tree()
    odd = kid(tree, "Mammals and birds")
    assert odd.flag == 'may combine "Mammals" and "birds"' and kid(tree, "Mammals").flag == ""
    # auto-approve (growth, not a person) keeps the flag; a person approving clears it
    assert T.approve(tree, [odd.id], clear_flags=False).nodes[odd.id].flag
    approved = T.approve(tree, [odd.id]).nodes[odd.id]
    assert approved.approved and approved.flag == ""
    assert T.rename_value(tree, odd.id, "Birds").nodes[odd.id].flag == ""
    merged = T.merge(tree, odd.id, kid(tree, "Mammals").id, new_value="Vertebrates")
    assert merged.nodes[odd.id].flag == ""
    # other edits leave it alone
    assert T.lock(tree, odd.id).nodes[odd.id].flag


def test_flag_round_trips_and_old_records_without_it_load():
    odd = kid(flagged_tree(), "Mammals and birds")
    assert node_from_dict(node_to_dict(odd)) == odd
    old = {k: v for k, v in node_to_dict(odd).items() if k != "flag"}
    assert node_from_dict(old).flag == ""


def test_criterion_repeated_along_path_is_rejected():
    tree = grown()
    child = kid(tree, "addition").id
    with pytest.raises(TreeError, match="already used above"):
        T.attach_split(tree, child, criterion="operation ", values=["x", "y"], provenance=LLM)


def test_problems_detects_broken_structure():
    tree = grown()
    orphan = replace(kid(tree, "addition"), parent_id="missing")
    broken = T.with_nodes(tree, [orphan])
    assert any("missing parent" in p.message for p in T.problems(broken))
    two_roots = T.with_nodes(tree, [T.Node(id="r2", parent_id=None, depth=0)])
    assert "exactly one root" in T.problems(two_roots)[0].message
    wrong_criterion = T.with_nodes(tree, [replace(kid(tree, "addition"), criterion="Other")])
    assert any("splits on" in p.message for p in T.problems(wrong_criterion))


def test_prune_is_soft_and_pruned_subtrees_give_no_leaves():
    tree = grown()
    add = kid(tree, "addition").id
    tree = T.attach_split(tree, add, criterion="Entity", values=["fruit", "money"], provenance=LLM)
    pruned = T.prune(tree, add)
    leaf_values = {n.value for n in pruned.leaves()}
    assert leaf_values == {"subtraction", "multiplication"}
    assert T.problems(pruned) == []
    restored = T.restore(pruned, add)
    assert {n.value for n in restored.leaves()} == {"fruit", "money", "subtraction", "multiplication"}


def test_root_cannot_be_pruned_or_removed():
    tree = grown()
    with pytest.raises(TreeError, match="the root cannot be pruned"):
        T.prune(tree, tree.root_id)
    with pytest.raises(TreeError, match="the root cannot be removed"):
        T.remove_value(tree, tree.root_id)


def test_approve_approves_ancestors_and_approved_leaves():
    tree = grown()
    add = kid(tree, "addition").id
    tree = T.attach_split(tree, add, criterion="Entity", values=["fruit", "money"], provenance=LLM)
    fruit = kid(tree, "fruit").id
    tree = T.approve(tree, [fruit])
    assert tree.node(add).approved and tree.node(fruit).approved
    assert [n.value for n in tree.leaves(approved_only=True)] == ["fruit"]


def test_rename_criterion_moves_children_and_checks_uniqueness():
    tree = grown()
    tree = T.rename_criterion(tree, tree.root_id, "Arithmetic operation")
    assert {k.criterion for k in tree.children(tree.root_id)} == {"Arithmetic operation"}
    with pytest.raises(TreeError, match="not split"):
        T.rename_criterion(tree, kid(tree, "addition").id, "x")


def test_rename_value_to_sibling_name_fails():
    tree = grown()
    with pytest.raises(TreeError, match="repeats sibling"):
        T.rename_value(tree, kid(tree, "addition").id, "SUBTRACTION")


def test_add_and_remove_value():
    tree = grown()
    tree = T.add_value(tree, tree.root_id, "division")
    div = kid(tree, "division")
    assert div.approved and div.provenance.source == "human" and div.rank == 3
    tree = T.remove_value(tree, div.id)
    assert "division" not in {n.value for n in tree.nodes.values()}
    leaf = kid(tree, "addition").id
    with pytest.raises(TreeError, match="no criterion"):
        T.add_value(tree, leaf, "x")
    tree = T.add_value(tree, leaf, "fruit", criterion="Entity")
    assert tree.node(leaf).split_criterion == "Entity"


def test_merge_keeps_subtree_or_adopts_the_other():
    tree = grown()
    sub = kid(tree, "subtraction").id
    tree = T.attach_split(tree, sub, criterion="Entity", values=["fruit"], provenance=LLM)
    merged = T.merge(tree, kid(tree, "addition").id, sub, new_value="addition or subtraction")
    keep = kid(merged, "addition or subtraction")
    assert [k.value for k in merged.children(keep.id)] == ["fruit"]
    assert keep.split_criterion == "Entity"
    assert sub not in merged.nodes
    with pytest.raises(TreeError, match="sibling"):
        T.merge(tree, tree.root_id, sub)


def test_replace_criterion_drops_subtree():
    tree = grown()
    tree = T.replace_criterion(tree, tree.root_id, "Setting", ["school", "farm"])
    assert {n.value for n in tree.leaves()} == {"school", "farm"}
    assert all(n.criterion == "Setting" for n in tree.children(tree.root_id))


def test_locked_node_refuses_edits_until_unlocked():
    tree = grown()
    add = kid(tree, "addition").id
    tree = T.lock(tree, add)
    with pytest.raises(TreeError, match="locked"):
        T.rename_value(tree, add, "plus")
    tree = T.lock(tree, add, locked=False)
    assert kid(T.rename_value(tree, add, "plus"), "plus")


def test_diff_and_apply_changes_round_trip():
    old = grown()
    new = T.replace_criterion(old, old.root_id, "Setting", ["school", "farm"])
    changes = diff(old, new)
    assert apply_changes(old, changes).nodes == new.nodes
    assert apply_changes(new, changes, reverse=True).nodes == old.nodes


def test_node_dict_round_trip():
    tree = grown()
    for node in tree.nodes.values():
        assert node_from_dict(node_to_dict(node)) == node


def test_sampled_node_label_and_path_pool():
    tree = T.new_tree("Stories")
    tree = T.attach_split(tree, tree.root_id, criterion="Name", values=[], pool=("Ann", "Bo", "Cy"), provenance=LLM)
    (child,) = tree.children(tree.root_id)
    assert "3 values, sampled" in child.label
    assert tree.path(child.id)[0].pool == ("Ann", "Bo", "Cy")


def test_find_and_subtree():
    tree = grown()
    assert [n.value for n in tree.find("SUBTR")] == ["subtraction"]
    assert len(tree.subtree(tree.root_id)) == 4
