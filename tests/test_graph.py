"""The tree as a vis-network graph: safe text, colours by status, folding, the node budget, search."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from studio import graph as G
from tests.trees import wide_tree
from treesynth_core.progress import plural
from treesynth_core.tree import model as T
from treesynth_core.tree.limits import MAX_LABEL_CHARS

XSS = "<img src=x onerror=alert(1)>"


def small_tree() -> T.Tree:
    tree = T.new_tree("Math word problems")
    tree = T.add_value(tree, tree.root_id, "addition", criterion="Operation")
    tree = T.add_value(tree, tree.root_id, "subtraction")
    tree = T.add_value(tree, tree.root_id, XSS)
    add = next(n for n in tree.children(tree.root_id) if n.value == "addition")
    tree = T.add_value(tree, add.id, "fruit", criterion="Entity")
    tree = T.add_value(tree, add.id, "money")
    return tree


def by_value(tree: T.Tree, value: str) -> T.Node:
    return next(n for n in tree.nodes.values() if n.value == value)


def test_labels_and_tooltips_are_plain_text_never_markup():
    tree = small_tree()
    data = G.build_graph(tree)
    bad = by_value(tree, XSS)
    node = next(n for n in data.nodes if n["id"] == bad.id)
    # The label is drawn on a canvas and the tooltip is built with textContent: both keep the
    # text exactly as written, and nothing in the payload is an HTML string for innerHTML.
    assert node["label"] == XSS
    assert node["tip"]["title"] == XSS
    assert ["path", XSS] in node["tip"]["rows"]
    assert "title" not in node  # vis-network would render a string title; the component builds DOM instead
    payload = json.dumps(data.payload())
    assert "<b>" not in payload and "<div" not in payload


def test_tooltip_html_escapes_every_piece():
    tree = small_tree()
    bad = by_value(tree, XSS)
    tip = G.tooltip(tree, replace(bad, pivots=(XSS, "plain")), samples=3)
    markup = G.tooltip_html(tip)
    assert "<img" not in markup
    assert "&lt;img src=x onerror=alert(1)&gt;" in markup
    assert markup.count("<li>") == 2


def test_tooltip_says_criterion_path_pivots_and_samples():
    tree = small_tree()
    fruit = by_value(tree, "fruit")
    tree = T.with_nodes(tree, [replace(fruit, pivots=("Ann has 3 apples", "Bob eats a pear"))])
    tip = G.tooltip(tree, tree.nodes[fruit.id], samples=7)
    rows = dict(tip["rows"])
    assert rows["criterion"] == "Entity"
    assert rows["path"] == "addition \u203a fruit"
    assert rows["samples"] == "7"
    assert tip["pivots"] == ["Ann has 3 apples", "Bob eats a pear"]


def test_colors_follow_status_locking_and_sampling():
    tree = small_tree()
    sub, add = by_value(tree, "subtraction"), by_value(tree, "addition")
    fruit = by_value(tree, "fruit")
    tree = T.prune(tree, sub.id)
    tree = T.lock(tree, fruit.id)
    tree = T.with_nodes(tree, [replace(tree.nodes[add.id], approved=False)])
    tree = T.with_nodes(tree, [replace(by_value(tree, "money"), pool=("a", "b", "c"))])
    nodes = {n["id"]: n for n in G.build_graph(tree).nodes}
    assert nodes[sub.id]["status"] == "pruned"
    assert nodes[sub.id]["shapeProperties"]["borderDashes"]
    assert nodes[sub.id]["color"]["background"] == G.STATUS_COLORS["pruned"][0]
    assert nodes[add.id]["status"] == "proposed"
    assert nodes[add.id]["color"]["border"] == G.STATUS_COLORS["proposed"][1]
    assert nodes[fruit.id]["color"]["border"] == G.LOCKED_BORDER
    assert nodes[fruit.id]["label"].startswith(G.LOCK_MARK)
    money = by_value(tree, "money")
    assert nodes[money.id]["sampled"] and nodes[money.id]["shape"] == "ellipse"
    assert nodes[money.id]["color"]["border"] == G.SAMPLED_BORDER
    assert G.SAMPLED_MARK in nodes[money.id]["label"]
    assert nodes[tree.root_id]["status"] == "root"


def test_nodes_under_a_pruned_node_look_pruned():
    tree = small_tree()
    add = by_value(tree, "addition")
    tree = T.prune(tree, add.id)
    nodes = {n["id"]: n for n in G.build_graph(tree).nodes}
    fruit = by_value(tree, "fruit")
    assert nodes[fruit.id]["status"] == "pruned"
    assert dict(nodes[fruit.id]["tip"]["rows"])["status"] == "inside a pruned subtree"
    edge = next(e for e in G.build_graph(tree).edges if e["to"] == fruit.id)
    assert edge["dashes"]


def test_edges_link_parent_to_child_with_levels():
    tree = small_tree()
    data = G.build_graph(tree)
    assert len(data.edges) == len(tree.nodes) - 1
    levels = {n["id"]: n["level"] for n in data.nodes}
    for edge in data.edges:
        assert levels[edge["to"]] == levels[edge["from"]] + 1


def test_folding_hides_a_subtree_and_counts_it():
    tree = small_tree()
    add = by_value(tree, "addition")
    view = G.View().toggle(tree, add.id)
    data = G.build_graph(tree, view)
    ids = {n["id"] for n in data.nodes}
    assert by_value(tree, "fruit").id not in ids
    folded = next(n for n in data.nodes if n["id"] == add.id)
    assert folded["folded"] == 2 and "+2 more" in folded["label"]
    again = G.build_graph(tree, view.toggle(tree, add.id))
    assert by_value(tree, "fruit").id in {n["id"] for n in again.nodes}


def test_show_depth_and_explicit_expansion():
    tree = small_tree()
    add = by_value(tree, "addition")
    view = G.View(show_depth=1)
    assert {n["level"] for n in G.build_graph(tree, view).nodes} == {0, 1}
    opened = view.toggle(tree, add.id)
    assert 2 in {n["level"] for n in G.build_graph(tree, opened).nodes}
    assert G.build_graph(tree, view.expand_all()).shown == len(tree.nodes)


def test_budget_keeps_big_trees_drawable_and_focus_reveals_a_deep_node():
    tree = wide_tree(fanout=13, depth=3)  # 1 + 13 + 169 + 2197 = 2380 nodes
    assert len(tree.nodes) == 2380
    data = G.build_graph(tree, G.View(budget=300))
    assert data.shown <= 300 and data.folded_by_budget
    # Breadth first: the shallow levels are complete before anything deeper opens.
    assert sum(1 for n in data.nodes if n["level"] == 1) == 13
    deep = "r.12.12.12"
    focused = G.build_graph(tree, G.View(budget=300, focus=deep))
    ids = {n["id"] for n in focused.nodes}
    assert {deep, "r.12.12", "r.12"} <= ids
    assert any(n["folded"] for n in focused.nodes)


def test_visible_ids_respects_explicit_expansion_over_the_budget():
    tree = wide_tree(fanout=10, depth=2)
    view = G.View(budget=12, expanded=frozenset({"r.3"}))
    visible = G.visible_ids(tree, view)
    assert "r.3.9" in visible.ids
    assert "r.3" in visible.opened


def test_auto_depth_limits_rows_but_shows_at_least_one_level():
    assert G.auto_depth(small_tree()) is None
    big = wide_tree(fanout=6, depth=3)
    assert G.auto_depth(big, target=24) == 1
    assert G.auto_depth(big, target=40) == 2
    assert G.auto_depth(wide_tree(fanout=40, depth=2), target=24) == 1


def test_subtree_sizes():
    tree = wide_tree(fanout=3, depth=2)
    sizes = G.subtree_sizes(tree)
    assert sizes["r"] == 12 and sizes["r.0"] == 3 and sizes["r.0.0"] == 0


def test_search_matches_value_criterion_and_path():
    tree = small_tree()
    assert G.search(tree, "fruit") == [by_value(tree, "fruit").id]
    assert by_value(tree, "fruit").id in G.search(tree, "Entity")
    assert G.search(tree, "ADDITION  fruit")  # path text, punctuation and case ignored
    assert G.search(tree, "")[0] == tree.root_id
    assert G.search(tree, "nothing like this") == []


def test_node_options_and_labels():
    tree = small_tree()
    options = G.node_options(tree)
    assert options[0] == tree.root_id and set(options) == set(tree.nodes)
    fruit = by_value(tree, "fruit")
    assert G.option_label(tree, fruit.id) == "addition \u203a fruit"  # no status: it changes
    assert G.option_label(tree, tree.root_id).startswith("(root)")
    assert G.status_label(tree, fruit.id) == "\u2713 approved" and G.status_label(tree, tree.root_id) == ""


def test_graph_version_changes_only_with_content():
    tree = small_tree()
    first = G.build_graph(tree)
    assert G.build_graph(tree).version == first.version
    assert G.build_graph(tree, selected=by_value(tree, "fruit").id).version == first.version
    renamed = T.rename_value(tree, by_value(tree, "fruit").id, "pears")
    assert G.build_graph(renamed).version != first.version


@pytest.mark.parametrize("text", ["a" * MAX_LABEL_CHARS, "line\nbreak"])
def test_labels_are_shortened_to_one_line(text):
    tree = T.new_tree("t")
    tree = T.add_value(tree, tree.root_id, text, criterion="c")
    node = next(n for n in tree.nodes.values() if not n.is_root)
    label = G.node_label(tree, node)
    assert "\n" not in label and len(label) <= G.LABEL_MAX


def test_tidy_layout_puts_levels_left_to_right_without_overlaps():
    tree = wide_tree(fanout=4, depth=3)
    data = G.build_graph(tree)
    by_id = {n["id"]: n for n in data.nodes}
    heights = {n["id"]: G.box_height(n["label"]) for n in data.nodes}
    # x grows with the level, the same for every node of one level
    xs = {}
    for n in data.nodes:
        xs.setdefault(n["level"], set()).add(n["x"])
    assert all(len(v) == 1 for v in xs.values())
    assert sorted(xs, key=lambda d: next(iter(xs[d]))) == sorted(xs)
    # within a level, boxes do not overlap
    for level in xs:
        column = sorted((n for n in data.nodes if n["level"] == level), key=lambda n: n["y"])
        for upper, lower in zip(column, column[1:], strict=False):
            assert lower["y"] - upper["y"] >= (heights[upper["id"]] + heights[lower["id"]]) / 2
    # a parent sits level with the middle of its children
    for node_id, node in by_id.items():
        kids = [k.id for k in tree.children(node_id)]
        if kids:
            assert by_id[kids[0]]["y"] <= node["y"] <= by_id[kids[-1]]["y"]


def test_layout_does_not_move_what_was_already_drawn_when_a_subtree_grows_below():
    tree = small_tree()
    before = {n["id"]: (n["x"], n["y"]) for n in G.build_graph(tree).nodes}
    money = by_value(tree, "money")
    grown = T.add_value(tree, money.id, "coins", criterion="Kind")
    after = {n["id"]: (n["x"], n["y"]) for n in G.build_graph(grown).nodes}
    assert after[tree.root_id][0] == before[tree.root_id][0]
    assert after[by_value(tree, "fruit").id][1] == before[by_value(tree, "fruit").id][1]


# -- highlighted leaves (the Coverage map's selection) ----------------------------------------------


def test_highlighted_leaves_and_the_path_to_them_are_marked():
    tree = small_tree()
    add, fruit, money = by_value(tree, "addition"), by_value(tree, "fruit"), by_value(tree, "money")
    data = G.build_graph(tree, highlight={fruit.id, "no-such-node"})
    nodes = {n["id"]: n for n in data.nodes}
    assert data.highlighted == 1 and data.payload()["highlighted"] == 1  # unknown ids are ignored
    leaf = nodes[fruit.id]
    assert leaf["highlighted"] and not leaf["on_path"]
    assert leaf["color"]["border"] == G.HIGHLIGHT_BORDER and leaf["shadow"]["enabled"] and leaf["borderWidth"] == 5
    for on_path in (nodes[add.id], nodes[tree.root_id]):
        assert on_path["on_path"] and not on_path["highlighted"] and not on_path["shadow"]["enabled"]
        assert on_path["color"]["border"] == G.HIGHLIGHT_BORDER
    assert not nodes[money.id]["highlighted"] and not nodes[money.id]["on_path"]
    assert nodes[money.id]["color"]["border"] != G.HIGHLIGHT_BORDER
    lit = {e["to"] for e in data.edges if e["highlighted"]}
    assert lit == {add.id, fruit.id}
    assert all(e["color"]["color"] == (G.HIGHLIGHT_BORDER if e["to"] in lit else G.EDGE_COLOR) for e in data.edges)

    plain = G.build_graph(tree)
    assert plain.highlighted == 0 and not any(n["highlighted"] or n["on_path"] for n in plain.nodes)
    assert plain.version != data.version  # the component redraws when the highlight changes
    assert G.build_graph(tree, highlight=["no-such-node"]).version == plain.version
    # every style key is present either way: the component updates its data set in place
    assert set(plain.nodes[0]) == set(data.nodes[0]) and set(plain.edges[0]) == set(data.edges[0])


def test_highlighted_text_stays_plain_text():
    tree = small_tree()
    bad = by_value(tree, XSS)
    node = next(n for n in G.build_graph(tree, highlight=[bad.id]).nodes if n["id"] == bad.id)
    assert node["highlighted"] and node["label"] == XSS and node["tip"]["title"] == XSS


def test_a_folded_highlighted_leaf_marks_its_ancestor_and_reveal_opens_the_path():
    tree = small_tree()
    add, fruit = by_value(tree, "addition"), by_value(tree, "fruit")
    view = G.View(collapsed=frozenset({add.id}))
    data = G.build_graph(tree, view, highlight={fruit.id})
    nodes = {n["id"]: n for n in data.nodes}
    assert fruit.id not in nodes and nodes[add.id]["on_path"] and data.highlighted == 1

    opened = view.reveal(tree, [fruit.id, "no-such-node"])
    assert add.id in opened.expanded and add.id not in opened.collapsed
    assert fruit.id in G.visible_ids(tree, opened).ids
    assert fruit.id in G.visible_ids(tree, G.View(show_depth=1).reveal(tree, [fruit.id])).ids
    assert view.reveal(tree, ["no-such-node"]) is view
    assert fruit.id not in G.visible_ids(tree, opened.toggle(tree, add.id)).ids  # folding again still works


def test_the_legend_lists_highlighted_only_while_leaves_are():
    from studio.graph_component import legend_items

    assert "highlighted" not in [i["key"] for i in legend_items()]
    item = legend_items(highlighted=True)[-1]
    assert item["key"] == "highlighted" and item["border"] == G.HIGHLIGHT_BORDER


def test_internal_nodes_show_the_samples_of_their_subtree():
    tree = T.new_tree("t")
    tree = T.replace_criterion(tree, tree.root_id, "Operation", ["addition", "subtraction"])
    add, sub = tree.children(tree.root_id)
    tree = T.replace_criterion(tree, add.id, "Entity", ["fruit", "money"])
    fruit, money = tree.children(add.id)
    totals = G.subtree_counts(tree, {fruit.id: 3, money.id: 2, sub.id: 4, "gone": 7})
    assert totals[add.id] == 5 and totals[tree.root_id] == 9 and totals[sub.id] == 4
    data = G.build_graph(tree, counts={fruit.id: 3, money.id: 2, sub.id: 4})
    labels = {node["id"]: node["label"] for node in data.nodes}
    assert "9 samples" in labels[tree.root_id]


def test_a_flagged_node_has_its_own_border_mark_tooltip_row_and_legend_entry():
    from studio.graph_component import legend_items

    tree = small_tree()
    plain = tree.children(tree.root_id)[0]
    odd = replace(plain, flag='may combine "Cats" and "birds"')
    tree = T.with_nodes(tree, [odd])
    data = G.build_graph(tree, G.View())
    items = {item["id"]: item for item in data.nodes}
    item = items[odd.id]
    assert item["flagged"] and item["label"].startswith(G.FLAG_MARK)
    assert item["color"]["border"] == G.FLAG_BORDER and item["borderWidth"] == 3
    assert ["flagged", 'may combine "Cats" and "birds"'] in item["tip"]["rows"]
    others = [i for i in data.nodes if i["id"] != odd.id]
    assert not any(i["flagged"] or i["color"]["border"] == G.FLAG_BORDER for i in others)
    assert "flagged" in [i["key"] for i in legend_items()]
    # the tooltip stays text: a flag quoting LLM text is escaped where HTML is made
    assert "&lt;b&gt;" in G.tooltip_html(G.tooltip(tree, replace(odd, flag="<b>x</b>")))


# -- big trees: default levels, a focused subtree, plurals ------------------------------------------


def test_default_levels_keep_an_opened_tree_within_60_nodes_but_show_at_least_one_level():
    assert G.default_levels(small_tree()) is None  # everything fits
    big = wide_tree(fanout=13, depth=3)  # 2,380 nodes
    assert G.default_levels(big) == 1
    binary = wide_tree(fanout=2, depth=6)  # levels hold 2, 4, 8, 16, 32, 64 nodes
    assert G.default_levels(binary, max_nodes=60, max_rows=1000) == 4  # 31 nodes; 5 levels are 63
    assert G.default_levels(binary, max_nodes=1000, max_rows=10) == 3  # 8 rows; 4 levels are 16
    for tree in (big, binary, wide_tree(fanout=3, depth=5), wide_tree(fanout=7, depth=3)):
        levels = G.default_levels(tree)
        shown = G.visible_ids(tree, G.View(show_depth=levels)).ids
        assert len(shown) <= G.DEFAULT_VISIBLE and (levels is None or levels >= 1)
    wide_root = wide_tree(fanout=100, depth=2)
    assert G.default_levels(wide_root) == 1  # one level of 100 still shows whole


def test_focus_subtree_draws_the_path_and_as_many_levels_of_the_subtree_as_fit():
    tree = wide_tree(fanout=4, depth=4)  # 1 + 4 + 16 + 64 + 256 nodes
    view = G.focus_subtree(tree, "r.1")
    visible = G.visible_ids(tree, view)
    shown = set(visible.ids)
    # The path and its siblings (folded), then two levels of r.1 (4 + 16): a third would pass 60.
    assert {"r", "r.0", "r.1", "r.2", "r.3"} <= shown
    assert {f"r.1.{i}" for i in range(4)} <= shown and {f"r.1.{i}.{j}" for i in range(4) for j in range(4)} <= shown
    assert not any(node_id.count(".") == 4 for node_id in shown)
    assert not any(node_id.startswith(("r.0.", "r.2.", "r.3.")) for node_id in shown)
    assert visible.folded["r.2"] == 84 and visible.folded["r.1.0.0"] == 4
    assert len(shown) <= G.DEFAULT_VISIBLE
    assert view.focus == "r.1"
    # Focusing a deep node opens its ancestors; a leaf shows with its siblings; unknown ids reset.
    deep = G.visible_ids(tree, G.focus_subtree(tree, "r.3.2.1.0"))
    assert {"r.3", "r.3.2", "r.3.2.1", "r.3.2.1.0", "r.3.2.1.3"} <= set(deep.ids)
    assert G.focus_subtree(tree, "nope") == G.View()
    # The focused subtree of the root is the whole tree's first levels.
    root = G.visible_ids(tree, G.focus_subtree(tree, "r"))
    assert len(root.ids) == 21 and all(node_id.count(".") <= 2 for node_id in root.ids)


def test_the_graph_of_a_focused_subtree_in_a_big_tree():
    tree = wide_tree(fanout=13, depth=3)
    data = G.build_graph(tree, G.focus_subtree(tree, "r.5"))
    ids = {node["id"] for node in data.nodes}
    assert {f"r.5.{i}" for i in range(13)} <= ids and not any(i.startswith("r.5.0.") for i in ids)
    assert data.shown == 1 + 13 + 13 and data.focus == "r.5"


def test_plurals_on_the_tree_page():
    assert plural(1, "node") == "1 node"
    assert plural(0, "node") == "0 nodes"
    assert plural(2173, "node") == "2,173 nodes"
    assert plural(1, "leaf", "leaves") == "1 leaf" and plural(3, "leaf", "leaves") == "3 leaves"
    tree = T.new_tree("t")
    tree = T.add_value(tree, tree.root_id, "only", criterion="c")
    only = by_value(tree, "only")
    assert G.node_label(tree, only, samples=1).endswith("1 sample")
    assert G.node_label(tree, tree.nodes[tree.root_id], samples=1200).endswith("1,200 samples")
