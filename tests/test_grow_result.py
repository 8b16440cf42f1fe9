"""What a growth run came to (``generate.grow_result``): each branch of the decision, from hand-made
job records, edit-log entries and trees."""

from __future__ import annotations

from dataclasses import replace

from treesynth_core.generate.grow import FAILED_NOTE
from treesynth_core.generate.grow_result import NOTHING_READY, GrowthResult, growth_result, latest_growth
from treesynth_core.store.history import EditRecord
from treesynth_core.store.runs import JobRecord
from treesynth_core.tree import model as T

T0, T1 = "2026-01-01T10:00:00.000+00:00", "2026-01-01T10:00:05.000+00:00"
T2, T3 = "2026-01-01T10:00:09.000+00:00", "2026-01-01T10:01:00.000+00:00"


def job(status: str = "done", started: str = T0, finished: str | None = T2, job_id: str = "j1", **kw) -> JobRecord:
    total = kw.get("total", 1)
    return JobRecord(
        job_id,
        "grow",
        {},
        status,
        kw.get("done", 1),
        total,
        kw.get("message", ""),
        kw.get("error"),
        started,
        finished,
        None,
    )


def grow_edit(node_id: str, ts: str = T1, *, n: int = 1, undone: bool = False, edit_id: int = 1) -> EditRecord:
    return EditRecord(edit_id, ts, "grow", {"node_id": node_id, "criterion": None, "values": []}, "llm", "o", undone, n)


def root_only() -> T.Tree:
    return T.new_tree("Math word problems")


def grown(source: T.Source = "llm") -> T.Tree:
    tree = root_only()
    return T.attach_split(
        tree, tree.root_id, criterion="topic", values=["a", "b", "c"], provenance=T.Provenance(source)
    )


def failed_root(problem: str = "no usable criterion after 3 tries") -> T.Tree:
    tree = root_only()
    root = tree.nodes[tree.root_id]
    return T.with_nodes(tree, [replace(root, note=f"{FAILED_NOTE}{problem}; grow again to retry")])


def test_added_counts_the_new_nodes() -> None:
    tree = grown()
    result = growth_result(job(), [grow_edit(tree.root_id)], tree)
    assert (result.status, result.added, result.tried, result.empty) == ("added", 3, 1, False)
    assert result.headline() == "Growth added 3 nodes."


def test_a_failed_expansion_says_the_models_problem() -> None:
    tree = failed_root()
    result = growth_result(job(), [grow_edit(tree.root_id)], tree)
    assert result.status == "nothing" and result.empty and result.node_id == tree.root_id
    assert result.reason == "no usable criterion after 3 tries"
    assert result.headline() == "Growth added nothing: no usable criterion after 3 tries."


def test_a_node_kept_as_a_leaf_gives_its_note() -> None:
    tree = root_only()
    tree = T.mark_leaf(tree, tree.root_id, note='kept as a leaf: criterion "topic" is already used above')
    result = growth_result(job(), [grow_edit(tree.root_id)], tree)
    assert result.status == "nothing" and "already used above" in result.reason


def test_no_node_ready_to_grow() -> None:
    result = growth_result(job(done=0, total=0), [], root_only())
    assert (result.status, result.tried, result.reason) == ("nothing", 0, NOTHING_READY)


def test_a_run_failed_because_every_expansion_failed_added_nothing() -> None:
    tree = failed_root("the reply is not JSON")
    error = "0 of 1 nodes expanded: the model gave no usable criterion after 5 attempts"
    result = growth_result(job("failed", error=error), [grow_edit(tree.root_id)], tree)
    assert result.status == "nothing" and result.empty
    assert result.reason == "the reply is not JSON"
    # grown again, it fails as before: the note stays, so no edit is recorded, and the reason is the same
    again = growth_result(job("failed", error=error), [], tree)
    assert (again.status, again.reason, again.node_id) == ("nothing", "the reply is not JSON", tree.root_id)


def test_stopped_before_any_node_grew() -> None:
    result = growth_result(job("cancelled"), [], root_only())
    assert result.status == "stopped" and result.empty and "stopped before any node grew" in result.reason


def test_stopped_after_some_nodes() -> None:
    tree = grown()
    result = growth_result(job("interrupted", finished=None), [grow_edit(tree.root_id)], tree)
    assert result.status == "stopped" and not result.empty
    assert result.headline() == "Growth added 3 nodes before it was stopped."


def test_failed_run_gives_its_error() -> None:
    error = "no API key for https://x: set OPENAI_API_KEY"
    result = growth_result(job("failed", error=error, total=None), [], root_only())
    assert result.status == "failed" and not result.empty
    assert result.headline() == "Growth failed: no API key for https://x: set OPENAI_API_KEY"


def test_only_this_runs_edits_in_force_count() -> None:
    tree = grown()
    before = grow_edit(tree.root_id, ts="2026-01-01T09:00:00.000+00:00")
    undone = grow_edit(tree.root_id, undone=True)
    unchanged = grow_edit(tree.root_id, n=0)
    for edits in ([before], [undone], [unchanged]):
        assert growth_result(job(), edits, tree).added == 0


def test_children_a_person_added_are_not_the_runs() -> None:
    tree = grown(source="human")
    assert growth_result(job(), [grow_edit(tree.root_id)], tree).added == 0


def test_attempts_in_a_row_that_added_nothing_are_counted() -> None:
    tree = failed_root()
    second = job(started=T2, finished="2026-01-01T10:00:20.000+00:00", job_id="j2")
    edits = [grow_edit(tree.root_id, ts="2026-01-01T10:00:15.000+00:00", edit_id=2), grow_edit(tree.root_id)]
    result = latest_growth([second, job()], edits, tree)
    assert result is not None and result.attempt == 2
    assert result.headline().startswith("Growth added nothing (attempt 2):")
    # an earlier growth that added nodes ends the run of attempts
    leaf = T.attach_split(tree, tree.root_id, criterion="topic", values=["a", "b"], provenance=T.Provenance("llm"))
    child = leaf.children(leaf.root_id)[0]
    leaf = T.with_nodes(leaf, [replace(child, note=f"{FAILED_NOTE}bad JSON")])
    third = job(started=T3, finished="2026-01-01T10:01:30.000+00:00", job_id="j3")
    mine = grow_edit(child.id, ts="2026-01-01T10:01:10.000+00:00", edit_id=3)
    result = latest_growth([third, second, job()], [mine, *edits], leaf)
    assert result is not None and result.attempt == 1 and result.node_id == child.id


def test_no_result_while_running_or_after_a_later_edit() -> None:
    tree = failed_root()
    assert latest_growth([], [], tree) is None
    assert latest_growth([job("running", finished=None)], [], tree) is None
    later = EditRecord(9, T3, "replace-criterion", {"node_id": tree.root_id}, "human", "o", False, 4)
    assert latest_growth([job()], [later, grow_edit(tree.root_id)], tree) is None
    assert isinstance(latest_growth([job()], [grow_edit(tree.root_id)], tree), GrowthResult)


def test_a_reason_is_always_given() -> None:
    result = growth_result(job("failed", error=None), [], root_only())
    assert result.empty and result.headline() == "Growth added nothing: no node was split."
