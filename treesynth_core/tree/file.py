"""The tree's JSON file: readable, diff-friendly, versioned, and pleasant to write by hand.

Nodes nest the way the tree does. A node's ``"criterion"`` is the criterion that splits it, and its
``"children"`` are that criterion's values, in order::

    {
      "format": "treesynth-tree",
      "version": 1,
      "task": "Grade-school math word problems with worked answers",
      "style": "One problem per sample.",
      "root": {
        "criterion": "Topic",
        "children": [
          {"value": "Fractions"},
          {
            "value": "Geometry",
            "criterion": "Shape",
            "children": [{"value": "Circles"}, {"value": "Triangles", "approved": false}]
          }
        ]
      }
    }

Only ``"value"`` is required on a node below the root, and ``"criterion"`` on a node with children.
The other keys and their defaults:

- ``"id"``: generated when absent (written files keep every id, so samples stay linked to leaves);
- ``"approved"``: true; ``"pruned"``, ``"locked"``: false;
- ``"pivots"``: [] (the example items growth derived the split from); ``"note"``: "";
- ``"flag"``: "" (why a person should review the node, e.g. a value that may combine two; files
  written before flags existed have none);
- ``"pool"``: [] (a non-empty pool makes a *sampled* node: one pool value is drawn per prompt);
- ``"provenance"``: ``{"source": "human"}``, or ``{"source": "llm", "model": ..., "call_id": ...}``;
- ``"rank"``: the node's position among its siblings; ``"expanded"``: whether it has children.

Written files leave out values equal to these defaults, keep a fixed key order and indent by two
spaces, so a ``git diff`` of two versions reads like a list of tree edits.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ProjectError, TreeError
from .limits import MAX_DEPTH, TOO_DEEP, check_length
from .model import Node, Provenance, Tree, new_id, validate

FORMAT: Final = "treesynth-tree"
VERSION: Final = 1


class ProvenanceSpec(BaseModel):
    """Who proposed a node."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["llm", "human"] = "human"
    model: str | None = None
    call_id: str | None = None


class NodeSpec(BaseModel):
    """One node as the file holds it; defaults are those of a hand-written file."""

    model_config = ConfigDict(extra="forbid")

    value: str | None = None
    id: str | None = None
    approved: bool = True
    pruned: bool = False
    locked: bool = False
    pivots: list[str] = Field(default_factory=list)
    pool: list[str] = Field(default_factory=list)
    note: str = ""
    flag: str = ""
    provenance: ProvenanceSpec | None = None
    rank: int | None = None
    expanded: bool | None = None
    criterion: str | None = None
    children: list[NodeSpec] = Field(default_factory=list)


class TreeFile(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["treesynth-tree"]
    version: Literal[1]
    task: str
    style: str = ""
    root: NodeSpec


# -- writing --------------------------------------------------------------------------------------


def tree_to_json(tree: Tree) -> str:
    """The tree as file text (ends with a newline)."""
    root = _spec(tree, tree.root, position=0)
    count = _count(root)
    if count != len(tree.nodes):
        raise TreeError(f"{len(tree.nodes) - count} nodes are not reachable from the root, so they cannot be saved")
    doc = TreeFile(format=FORMAT, version=VERSION, task=tree.task, style=tree.style, root=root)
    return json.dumps(doc.model_dump(exclude_defaults=True), indent=2, ensure_ascii=False) + "\n"


def _spec(tree: Tree, node: Node, *, position: int) -> NodeSpec:
    kids = tree.children(node.id)
    prov = node.provenance
    return NodeSpec(
        value=node.value,
        id=node.id,
        approved=node.approved,
        pruned=node.pruned,
        locked=node.locked,
        pivots=list(node.pivots),
        pool=list(node.pool),
        note=node.note,
        flag=node.flag,
        provenance=None if prov == Provenance() else ProvenanceSpec(**dataclasses.asdict(prov)),
        rank=None if node.rank == position else node.rank,
        expanded=None if node.expanded == bool(kids) else node.expanded,
        criterion=node.split_criterion,
        children=[_spec(tree, kid, position=i) for i, kid in enumerate(kids)],
    )


def _count(spec: NodeSpec) -> int:
    return 1 + sum(_count(kid) for kid in spec.children)


def write_tree_file(tree: Tree, path: str | os.PathLike[str]) -> None:
    """Write the tree file atomically: a reader sees the old file or the new one, never half."""
    target = Path(path)
    text = tree_to_json(tree)
    try:
        mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o644
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise ProjectError(f"cannot write the tree file {target}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        with suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ProjectError(f"cannot write the tree file {target}: {exc.strerror}") from exc
        raise


# -- reading --------------------------------------------------------------------------------------


def read_tree_file(path: str | os.PathLike[str]) -> Tree:
    """Read and check a tree file; errors name the file and the place in it."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ProjectError(f"no tree file at {source}: check the path") from None
    except UnicodeDecodeError:
        raise TreeError(f"{source} is not a tree file: it is not UTF-8 text") from None
    except OSError as exc:
        raise ProjectError(f"cannot read the tree file {source}: {exc.strerror}") from exc
    try:
        return tree_from_json(text)
    except TreeError as exc:
        raise TreeError(f"{source}: {exc}", exc.node_id) from None


def tree_from_json(text: str) -> Tree:
    """Parse and check file text; raise :class:`TreeError` saying what is wrong and where."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TreeError(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:  # nested past the interpreter's limit: far deeper than MAX_DEPTH
        raise TreeError(TOO_DEEP) from None
    _check_header(data)
    _check_depth(data.get("root"))
    try:
        doc = TreeFile.model_validate(data)
    except ValidationError as exc:
        raise TreeError(_explain(exc, data)) from None
    if not doc.task.strip():
        raise TreeError('"task" is empty: say in one line what data you want')
    check_length("task", doc.task.strip())
    check_length("style", doc.style.strip())
    nodes: dict[str, Node] = {}
    places: dict[str, str] = {}
    _build(doc.root, nodes, places, parent=None, position=0, place="root")
    tree = Tree(task=doc.task.strip(), style=doc.style.strip(), nodes=nodes, root_id=next(iter(nodes)))
    try:
        return validate(tree)
    except TreeError as exc:
        where = places.get(exc.node_id or "", "root")
        raise TreeError(f"{where}: {exc}", exc.node_id) from None


def _check_header(data: Any) -> None:
    """Reject files that are not tree files, or come from a newer TreeSynth, before the details."""
    if not isinstance(data, dict):
        raise TreeError('a tree file holds one JSON object, with "format", "version", "task" and "root"')
    if data.get("format") != FORMAT:
        raise TreeError(f'not a TreeSynth tree file: "format" must be "{FORMAT}" (found {data.get("format")!r})')
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise TreeError(f'"version" must be a whole number; this TreeSynth reads version {VERSION}')
    if version > VERSION:
        raise TreeError(
            f"this tree file has version {version}, from a newer TreeSynth; this one reads version "
            f"{VERSION}: upgrade TreeSynth to read it"
        )


def _check_depth(root: Any) -> None:
    """Refuse a tree deeper than :data:`MAX_DEPTH` before anything walks it recursively."""
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TreeError(TOO_DEEP)
        kids = node.get("children") if isinstance(node, dict) else None
        if isinstance(kids, list):
            stack.extend((kid, depth + 1) for kid in kids)


def _build(
    spec: NodeSpec,
    nodes: dict[str, Node],
    places: dict[str, str],
    *,
    parent: Node | None,
    position: int,
    place: str,
) -> None:
    """Add ``spec`` and its subtree to ``nodes``; ``places`` records where each node is in the file."""
    try:  # before the value joins the place named in errors
        for what, text in (("value", spec.value), ("criterion", spec.criterion), *(("value", v) for v in spec.pool)):
            check_length(what, text or "")
    except TreeError as exc:
        raise TreeError(f"{place}: {exc}") from None
    if spec.value is not None:
        place = f'{place} ("{spec.value}")'
    if parent is None and spec.value is not None:
        raise TreeError(f'{place}: the root has no "value" (the task describes it); remove it')
    if parent is not None and not (spec.value or "").strip():
        raise TreeError(f'{place}: every node below the root needs a "value"')
    if spec.children and not (spec.criterion or "").strip():
        raise TreeError(f'{place}: this node has children but no "criterion": name what its children vary')
    node_id = spec.id or new_id()
    if node_id in nodes:
        raise TreeError(f"{place}: the id {node_id!r} is used twice", node_id)
    prov = spec.provenance or ProvenanceSpec()
    node = Node(
        id=node_id,
        parent_id=parent.id if parent else None,
        depth=parent.depth + 1 if parent else 0,
        criterion=parent.split_criterion if parent else None,
        value=spec.value,
        split_criterion=spec.criterion,
        pivots=tuple(spec.pivots),
        approved=spec.approved,
        pruned=spec.pruned,
        locked=spec.locked,
        provenance=Provenance(source=prov.source, model=prov.model, call_id=prov.call_id),
        pool=tuple(spec.pool),
        rank=position if spec.rank is None else spec.rank,
        expanded=bool(spec.children) if spec.expanded is None else spec.expanded,
        note=spec.note,
        flag=spec.flag,
    )
    nodes[node_id] = node
    places[node_id] = place
    for i, kid in enumerate(spec.children):
        _build(kid, nodes, places, parent=node, position=i, place=f"{place}.children[{i}]")


def _explain(exc: ValidationError, data: Any) -> str:
    """The first validation error as "where: what", where is a path like root.children[1]."""
    first = exc.errors()[0]
    loc = first["loc"]
    where, label, node = "", None, data
    for key in loc:
        where += f"[{key}]" if isinstance(key, int) else (f".{key}" if where else str(key))
        node = _child(node, key)
        if isinstance(node, dict) and isinstance(node.get("value"), str):
            label = node["value"]
    what = f'unknown key "{loc[-1]}"' if first["type"] == "extra_forbidden" else first["msg"].lower()
    where += f' (in "{label}")' if label else ""
    more = len(exc.errors()) - 1
    return f"{where or 'the file'}: {what}" + (f" (and {more} more problems)" if more else "")


def _child(node: Any, key: int | str) -> Any:
    """``node[key]`` where that exists in the raw JSON, else None."""
    if isinstance(node, dict):
        return node.get(str(key))
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key]
    return None
