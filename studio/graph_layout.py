"""Where the tree graph's boxes go: a tidy left-to-right layout by level, sized from the labels.

Pure and deterministic, so the graph does not jump when growth adds nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from treesynth_core.tree import model as T

BOX_MAX_WIDTH = 260
COLUMN_GAP = 80
ROW_GAP = 10
_LINE_HEIGHT = 20
_BOX_PADDING = 14
_CHARS_PER_LINE = 28
_CHAR_WIDTH = 8.2
_BOX_SIDES = 26


def box_height(label: str) -> int:
    """About how tall vis-network draws a box with this label (lines wrap at ``BOX_MAX_WIDTH``)."""
    lines = sum(max(1, -(-len(line) // _CHARS_PER_LINE)) for line in label.split("\n"))
    return _BOX_PADDING + _LINE_HEIGHT * lines


def box_width(label: str) -> int:
    """About how wide vis-network draws a box with this label."""
    longest = max((len(line) for line in label.split("\n")), default=0)
    return min(BOX_MAX_WIDTH, round(_BOX_SIDES + _CHAR_WIDTH * longest))


def column_positions(depths: Mapping[int, int]) -> dict[int, int]:
    """x of each level's centre, given each level's widest box: levels as close as they fit."""
    xs: dict[int, int] = {}
    x = 0.0
    previous: int | None = None
    for depth in sorted(depths):
        if previous is not None:
            x += previous / 2 + COLUMN_GAP + depths[depth] / 2
        xs[depth] = round(x)
        previous = depths[depth]
    return xs


def tidy_layout(
    tree: T.Tree, shown: Iterable[str], heights: Mapping[str, int], widths: Mapping[str, int] | None = None
) -> dict[str, tuple[int, int]]:
    """Positions (x, y) for the shown nodes, left to right by level: every subtree gets its own
    band of rows, a parent sits level with the middle of its children, and no two boxes overlap.
    Deterministic, so the graph does not jump when growth adds nodes."""
    visible = set(shown)
    y: dict[str, float] = {}
    cursor = 0.0

    def shift(node_id: str, delta: float) -> None:
        stack = [node_id]
        while stack:
            current = stack.pop()
            y[current] += delta
            stack.extend(k.id for k in tree.children(current) if k.id in visible)

    def place(node_id: str) -> None:
        nonlocal cursor
        start = cursor
        half = heights[node_id] / 2
        kids = [k.id for k in tree.children(node_id) if k.id in visible]
        if not kids:
            y[node_id] = cursor + half
            cursor += heights[node_id] + ROW_GAP
            return
        for kid in kids:
            place(kid)
        y[node_id] = (y[kids[0]] + y[kids[-1]]) / 2
        overlap = start - (y[node_id] - half)
        if overlap > 0:  # a parent taller than its children's band: move the band down
            shift(node_id, overlap)
            cursor += overlap
        cursor = max(cursor, y[node_id] + half + ROW_GAP)

    # Recursion depth is the tree's depth (growth caps it at 8 levels).
    place(tree.root_id)
    level_widths: dict[int, int] = {}
    for node_id in y:
        depth = tree.nodes[node_id].depth
        width = (widths or {}).get(node_id, BOX_MAX_WIDTH)
        level_widths[depth] = max(level_widths.get(depth, 0), width)
    xs = column_positions(level_widths)
    return {node_id: (xs[tree.nodes[node_id].depth], round(y[node_id])) for node_id in y}
