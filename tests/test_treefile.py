"""The tree JSON file: exact round trips, hand-written files, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from treesynth_core.errors import ProjectError, TreeError
from treesynth_core.tree import model as T
from treesynth_core.tree.file import read_tree_file, tree_from_json, tree_to_json, write_tree_file

LLM = T.Provenance(source="llm", model="fake-model", call_id="call-7")


def by_value(tree: T.Tree, value: str) -> T.Node:
    (node,) = [n for n in tree.nodes.values() if n.value == value]
    return node


@pytest.fixture
def tree() -> T.Tree:
    """A tree using every node field: pivots, pool, notes, llm provenance, prune, lock, rank gaps."""
    t = T.new_tree("Grade-school math word problems", "One problem per sample.")
    t = T.attach_split(
        t,
        t.root_id,
        criterion="Topic",
        values=["Fractions", "Geometry", "Algebra", "Logic"],
        pivots=["Half a pizza", "Area of a room"],
        provenance=LLM,
        note="from 2 pivots",
        flags={"Logic": 'may combine "Logic" and "sets"'},
    )
    geometry = by_value(t, "Geometry").id
    t = T.attach_split(t, geometry, criterion="Named person", values=[], provenance=LLM, pool=("Ana", "Bo", "Chen"))
    t = T.mark_leaf(t, by_value(t, "Fractions").id, note="specific enough")
    t = T.approve(t, [by_value(t, "Fractions").id])
    t = T.prune(t, by_value(t, "Algebra").id)
    t = T.lock(t, by_value(t, "Logic").id)
    t = T.remove_value(t, by_value(t, "Fractions").id)  # leaves a gap in the sibling ranks
    return T.add_value(t, t.root_id, "Probability")  # a human value, rank after the gap


def test_round_trip_is_exact(tree: T.Tree) -> None:
    text = tree_to_json(tree)
    back = tree_from_json(text)
    assert back == tree
    assert tree_to_json(back) == text


def test_round_trip_of_a_root_only_tree() -> None:
    tree = T.new_tree("Recipes")
    assert tree_from_json(tree_to_json(tree)) == tree


def test_written_file_is_nested_ordered_and_leaves_out_defaults(tree: T.Tree) -> None:
    text = tree_to_json(tree)
    data = json.loads(text)
    assert list(data) == ["format", "version", "task", "style", "root"]
    assert (data["format"], data["version"]) == ("treesynth-tree", 1)
    root = data["root"]
    assert root["criterion"] == "Topic" and "value" not in root and "approved" not in root
    assert [kid["value"] for kid in root["children"]] == ["Geometry", "Algebra", "Logic", "Probability"]
    probability = root["children"][-1]
    assert set(probability) == {"value", "id", "rank"}  # human, approved, not expanded: all defaults
    geometry = root["children"][0]
    assert geometry["children"][0]["pool"] == ["Ana", "Bo", "Chen"]
    assert geometry["provenance"] == {"source": "llm", "model": "fake-model", "call_id": "call-7"}
    assert text.endswith("}\n") and '\n  "root": {\n    "id"' in text  # indent 2


def test_flags_are_written_and_files_without_them_load(tree: T.Tree) -> None:
    data = json.loads(tree_to_json(tree))
    logic = next(kid for kid in data["root"]["children"] if kid["value"] == "Logic")
    assert logic["flag"] == 'may combine "Logic" and "sets"'
    assert all("flag" not in kid for kid in data["root"]["children"] if kid["value"] != "Logic")
    del logic["flag"]  # a file written before flags existed
    assert by_value(tree_from_json(json.dumps(data)), "Logic").flag == ""


def test_a_hand_written_file_loads_with_defaults() -> None:
    text = """
    {"format": "treesynth-tree", "version": 1, "task": "Math word problems",
     "root": {"criterion": "Topic", "children": [
        {"value": "Fractions"},
        {"value": "Geometry", "criterion": "Shape",
         "children": [{"value": "Circles"}, {"value": "Triangles", "approved": false}]}]}}
    """
    tree = tree_from_json(text)
    assert tree.task == "Math word problems" and tree.style == ""
    assert len(tree.nodes) == 5 and len({n.id for n in tree.nodes.values()}) == 5
    geometry = by_value(tree, "Geometry")
    circles, triangles = tree.children(geometry.id)
    assert (circles.value, circles.criterion, circles.depth, circles.rank) == ("Circles", "Shape", 2, 0)
    assert triangles.rank == 1 and not triangles.approved and circles.approved
    assert geometry.expanded and not circles.expanded and geometry.provenance == T.Provenance()
    assert [leaf.value for leaf in tree.leaves(approved_only=True)] == ["Fractions", "Circles"]


def test_ids_given_by_hand_are_kept() -> None:
    text = json.dumps(
        {
            "format": "treesynth-tree",
            "version": 1,
            "task": "t",
            "root": {"id": "r", "criterion": "c", "children": [{"id": "a", "value": "A"}]},
        }
    )
    tree = tree_from_json(text)
    assert tree.root_id == "r" and tree.node("a").parent_id == "r"


def doc(root: dict, **top: object) -> str:  # type: ignore[type-arg]
    return json.dumps({"format": "treesynth-tree", "version": 1, "task": "Math", **top, "root": root})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"format": "treesynth-tree",', "not valid JSON: .* line 1, column"),
        ("[1, 2]", "one JSON object"),
        ('{"format": "something-else", "version": 1}', 'not a TreeSynth tree file: "format"'),
        (
            '{"format": "treesynth-tree", "version": 2, "task": "x", "root": {}}',
            "version 2, from a newer TreeSynth",
        ),
        ('{"format": "treesynth-tree", "version": "1"}', '"version" must be a whole number'),
        (doc({}, task="  "), '"task" is empty'),
        (doc({}, colour="blue"), 'unknown key "colour"'),
        (
            doc({"criterion": "c", "children": [{"value": "A", "aproved": True}]}),
            r'root.children\[0\].aproved \(in "A"\): unknown key "aproved"',
        ),
        (
            doc({"criterion": "c", "children": [{"value": "A", "approved": "maybe"}]}),
            r'root.children\[0\].approved \(in "A"\): input should be a valid boolean',
        ),
        (
            doc({"criterion": "c", "children": [{"note": "no value"}]}),
            r'root.children\[0\]: .*needs a "value"',
        ),
        (doc({"value": "x"}), 'the root has no "value"'),
        (doc({"children": [{"value": "A"}]}), 'children but no "criterion"'),
        (
            doc({"criterion": "c", "children": [{"value": "A", "id": "n"}, {"value": "B", "id": "n"}]}),
            "used twice",
        ),
        (
            doc({"criterion": "Topic", "children": [{"value": "Cats"}, {"value": "cats"}]}),
            r'root.children\[1\] \("cats"\): value .cats. repeats sibling',
        ),
        (
            doc(
                {
                    "criterion": "Topic",
                    "children": [{"value": "A", "criterion": "topic", "children": [{"value": "B"}]}],
                }
            ),
            r'root.children\[0\] \("A"\): criterion .topic. is already used above',
        ),
    ],
    ids=[
        "bad-json",
        "not-object",
        "format",
        "future-version",
        "version-type",
        "empty-task",
        "unknown-top-key",
        "unknown-node-key",
        "wrong-type",
        "missing-value",
        "root-value",
        "no-criterion",
        "duplicate-id",
        "duplicate-sibling",
        "criterion-reused",
    ],
)
def test_invalid_files_are_rejected_clearly(text: str, message: str) -> None:
    with pytest.raises(TreeError, match=message):
        tree_from_json(text)


def test_write_then_read_a_file(tree: T.Tree, tmp_path: Path) -> None:
    path = tmp_path / "tree.json"
    write_tree_file(tree, path)
    write_tree_file(tree, path)  # overwriting works too
    assert read_tree_file(path) == tree
    assert [p.name for p in tmp_path.iterdir()] == ["tree.json"]  # no temp file left behind


def test_reading_accepts_a_byte_order_mark(tree: T.Tree, tmp_path: Path) -> None:
    path = tmp_path / "tree.json"
    path.write_bytes(b"\xef\xbb\xbf" + tree_to_json(tree).encode())
    assert read_tree_file(path) == tree


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="no tree file at .*missing.json"):
        read_tree_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "treesynth-tree", "version": 9}')
    with pytest.raises(TreeError, match="bad.json: this tree file has version 9"):
        read_tree_file(bad)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TreeError, match="not UTF-8"):
        read_tree_file(binary)
    with pytest.raises(ProjectError, match="cannot write"):
        write_tree_file(T.new_tree("x"), tmp_path / "no" / "such" / "dir" / "tree.json")


def test_a_failed_write_keeps_the_old_file(tree: T.Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tree.json"
    write_tree_file(tree, path)
    before = path.read_text()

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("treesynth_core.tree.file.os.replace", fail)
    with pytest.raises(ProjectError, match="No space left"):
        write_tree_file(T.new_tree("other"), path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["tree.json"]
