"""The whole tree at a glance: an icicle of every node, sized by its leaves, with its sample counts.

The graph stops being readable past a few dozen nodes; the overview scales to thousands. Each box
is a node, as wide as the leaves under it (so every leaf gets the same share of the width), labelled
with its value and the samples under it; hovering shows its path and counts. Clicking a box zooms
the icicle into it and the Tree page focuses the graph on that subtree
(:func:`~studio.graph.focus_subtree`).

Pure: :func:`overview_of` turns a tree into arrays (plotly's ``ids``/``parents``/``labels``/
``values``), :func:`overview_figure` draws them; no Streamlit. Values and criteria come from LLMs
and people: plotly reads a few HTML tags in text, so every label and path is ``html.escape``-d.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from studio.graph import subtree_counts, subtree_sizes
from studio.graph_style import STATUS_COLORS, path_text, shorten, status_of
from treesynth_core.progress import plural
from treesynth_core.tree import model as T

#: Longest label drawn in a box (the full path is in the hover text).
OVERVIEW_LABEL_MAX = 40
#: Levels the icicle shows at once below the node it is zoomed into (a click goes deeper).
OVERVIEW_DEPTH = 3


@dataclass(frozen=True)
class Overview:
    """One entry per node, parents before children (plotly's icicle arrays).

    ``leaves``: leaves in the node's subtree (1 for a leaf; the box's size); ``samples``: samples of
    the node and its subtree; ``nodes``: nodes in the subtree, the node included. ``labels`` and
    ``paths`` are escaped for plotly.
    """

    ids: list[str]
    parents: list[str]  # "" for the root
    labels: list[str]
    paths: list[str]
    statuses: list[str]
    leaves: list[int]
    samples: list[int]
    nodes: list[int]

    def __len__(self) -> int:
        return len(self.ids)


def _leaf_counts(tree: T.Tree, order: list[str]) -> dict[str, int]:
    leaves = {node_id: 0 if tree.children(node_id) else 1 for node_id in order}
    for node_id in reversed(order):
        parent = tree.nodes[node_id].parent_id
        if parent is not None and parent in leaves:
            leaves[parent] += leaves[node_id]
    return leaves


def overview_of(tree: T.Tree, counts: Mapping[str, int] | None = None) -> Overview:
    """The icicle's arrays for ``tree``, with ``counts`` (samples per node id) summed up each
    subtree. Pruned subtrees are included (their samples still exist) and marked by status."""
    order = [node.id for node in tree.subtree(tree.root_id)]  # depth-first, parents first
    leaves = _leaf_counts(tree, order)
    samples = subtree_counts(tree, counts or {})
    sizes = subtree_sizes(tree)
    inactive = {node_id for node_id in order if not tree.is_active(node_id) and not tree.nodes[node_id].pruned}
    labels, paths, statuses = [], [], []
    for node_id in order:
        node = tree.nodes[node_id]
        text = tree.task if node.is_root else (node.value or "")
        labels.append(html.escape(shorten(text, OVERVIEW_LABEL_MAX), quote=False))
        paths.append(html.escape(shorten(path_text(tree, node_id), 300), quote=False))
        statuses.append(status_of(tree, node, node_id in inactive))
    return Overview(
        ids=order,
        parents=[tree.nodes[node_id].parent_id or "" for node_id in order],
        labels=labels,
        paths=paths,
        statuses=statuses,
        leaves=[leaves[node_id] for node_id in order],
        samples=[samples.get(node_id, 0) for node_id in order],
        nodes=[sizes.get(node_id, 0) + 1 for node_id in order],
    )


def overview_figure(overview: Overview, *, level: str | None = None, height: int = 420) -> Any:
    """A plotly icicle of ``overview``, zoomed into the node ``level`` (the root when None), left to
    right by depth like the graph, coloured by status like the graph's boxes."""
    import plotly.graph_objects as go

    colors = [STATUS_COLORS[status][0] for status in overview.statuses]
    borders = [STATUS_COLORS[status][1] for status in overview.statuses]
    text_colors = [STATUS_COLORS[status][2] for status in overview.statuses]
    customdata = [
        [node_id, path, plural(samples, "sample"), f"{plural(leaves, 'leaf', 'leaves')} \u00b7 {plural(nodes, 'node')}"]
        for node_id, path, samples, leaves, nodes in zip(
            overview.ids, overview.paths, overview.samples, overview.leaves, overview.nodes, strict=True
        )
    ]
    trace = go.Icicle(
        ids=overview.ids,
        parents=overview.parents,
        labels=overview.labels,
        values=overview.leaves,
        branchvalues="total",
        customdata=customdata,
        marker={"colors": colors, "line": {"color": borders, "width": 1}},
        textfont={"color": text_colors, "size": 13},
        texttemplate="%{label}<br>%{customdata[2]}",
        hovertemplate="<b>%{customdata[1]}</b><br>%{customdata[2]} \u00b7 %{customdata[3]}<extra></extra>",
        tiling={"orientation": "h"},
        pathbar={"visible": True, "side": "top"},
        maxdepth=OVERVIEW_DEPTH,
        level=level if level in set(overview.ids) else None,
        sort=False,
    )
    fig = go.Figure(trace)
    fig.update_layout(height=height, margin={"l": 4, "r": 4, "t": 28, "b": 4}, uirevision="overview")
    return fig


def clicked_node(event: Any, tree: T.Tree) -> str | None:
    """The node a click on the overview picked: ``event`` is ``st.plotly_chart``'s selection state; the
    node id is the point's first customdata (or its ``id``). None when nothing known was clicked."""
    try:
        points = event.selection.points if event is not None else []
    except AttributeError:
        points = []
    for point in points or []:
        if not isinstance(point, dict):
            continue
        data = point.get("customdata")
        if data and isinstance(data[0], str) and data[0] in tree.nodes:
            return data[0]
        node_id = point.get("id")
        if isinstance(node_id, str) and node_id in tree.nodes:
            return node_id
    return None
