"""The overview of the whole tree: the icicle's arrays for a tree of thousands of nodes, its figure,
and which node a click on it picked."""

from __future__ import annotations

from types import SimpleNamespace

from studio.tree_overview import clicked_node, overview_figure, overview_of
from tests.trees import wide_tree
from treesynth_core.tree import model as T

XSS = "<a href='javascript:alert(1)'>x</a>"


def test_overview_arrays_of_a_2380_node_tree_are_consistent():
    tree = wide_tree(fanout=13, depth=3)  # 1 + 13 + 169 + 2197 nodes
    counts = {f"r.2.4.{i}": i for i in range(13)} | {"r.0": 5}  # samples of leaves, and of an inner node
    ov = overview_of(tree, counts)
    assert len(ov) == len(tree.nodes) == 2380
    assert len(set(ov.ids)) == 2380
    assert ov.ids[0] == "r" and ov.parents[0] == ""
    index = {node_id: i for i, node_id in enumerate(ov.ids)}
    for i, (node_id, parent) in enumerate(zip(ov.ids, ov.parents, strict=True)):
        if parent:
            assert index[parent] < i and tree.nodes[node_id].parent_id == parent  # parents come first
    children: dict[str, list[int]] = {}
    for i, parent in enumerate(ov.parents):
        children.setdefault(parent, []).append(i)
    for i, node_id in enumerate(ov.ids):
        kids = children.get(node_id, [])
        if kids:  # branchvalues="total": a box is exactly as wide as its children together
            assert ov.leaves[i] == sum(ov.leaves[k] for k in kids)
            assert ov.samples[i] == sum(ov.samples[k] for k in kids) + counts.get(node_id, 0)
            assert ov.nodes[i] == 1 + sum(ov.nodes[k] for k in kids)
        else:
            assert ov.leaves[i] == 1 and ov.nodes[i] == 1
    root = 0
    assert ov.leaves[root] == 2197 and ov.nodes[root] == 2380 and ov.samples[root] == sum(counts.values())
    assert ov.samples[index["r.2.4"]] == sum(range(13)) and ov.samples[index["r.0"]] == 5
    assert ov.labels[root] == "Big task" and ov.labels[index["r.2.4.7"]] == "v3-7"
    assert ov.paths[index["r.2.4.7"]] == "v1-2 \u203a v2-4 \u203a v3-7"


def test_overview_text_is_escaped_and_statuses_follow_the_graph():
    tree = T.new_tree("Task <b>bold</b>")
    tree = T.add_value(tree, tree.root_id, XSS, criterion="c")
    tree = T.add_value(tree, tree.root_id, "kept")
    bad = next(n for n in tree.nodes.values() if n.value == XSS)
    tree = T.add_value(tree, bad.id, "below", criterion="d")
    tree = T.prune(tree, bad.id)
    ov = overview_of(tree)
    text = " ".join(ov.labels + ov.paths)
    assert "<a" not in text and "<b>" not in text and "&lt;a href=" in text
    status = dict(zip(ov.ids, ov.statuses, strict=True))
    below = next(n.id for n in tree.nodes.values() if n.value == "below")
    assert status[tree.root_id] == "root" and status[bad.id] == "pruned" and status[below] == "pruned"
    assert all(s == 0 for s in ov.samples)


def test_the_figure_is_an_icicle_sized_by_leaves_and_zoomed_into_the_focus():
    tree = wide_tree(fanout=4, depth=3)
    ov = overview_of(tree, {"r.1.1.1": 1, "r.1.1.2": 2})
    fig = overview_figure(ov, level="r.1", height=300)
    trace = fig.data[0]
    assert trace.type == "icicle" and trace.branchvalues == "total"
    assert list(trace.ids) == ov.ids and list(trace.values) == ov.leaves
    assert trace.level == "r.1" and fig.layout.height == 300
    custom = {row[0]: row for row in trace.customdata}
    assert custom["r.1.1.1"][2] == "1 sample" and custom["r.1.1"][2] == "3 samples"
    assert custom["r.1.1"][3] == "4 leaves \u00b7 5 nodes" and custom["r.1.1.1"][3] == "1 leaf \u00b7 1 node"
    assert overview_figure(ov, level="gone").data[0].level is None  # an unknown focus shows the root


def test_clicked_node_reads_the_point_the_click_picked():
    tree = wide_tree(fanout=3, depth=2)

    def event(*points):
        return SimpleNamespace(selection=SimpleNamespace(points=list(points)))

    assert clicked_node(event({"customdata": ["r.1", "path"], "point_index": 4}), tree) == "r.1"
    assert clicked_node(event({"id": "r.2.0"}), tree) == "r.2.0"
    assert clicked_node(event({"customdata": ["gone"]}), tree) is None
    assert clicked_node(event(), tree) is None
    assert clicked_node(None, tree) is None
    assert clicked_node({"selection": {}}, tree) is None  # not a selection state
