"""Growing the tree with the scripted fake LLM: the algorithm, review gating, bad replies, resume."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from tests.fakes import ScriptedLLM
from treesynth_core.errors import Cancelled, EndpointError
from treesynth_core.generate.grow import GrowOptions, grow, growable
from treesynth_core.llm.recording import recording
from treesynth_core.prompts.replies import extract_json, is_vague, overlaps
from treesynth_core.tree import model as T


def run_grow(project, llm, **options):
    wrapped = recording(llm, project, project.start_run("grow", {}))
    return asyncio.run(grow(project, wrapped, GrowOptions(**options)))


def values(tree: T.Tree, node_id: str) -> list[str]:
    return [k.value for k in tree.children(node_id)]


def test_root_split_proposes_children_and_coverage_adds_values(project):
    llm = ScriptedLLM()
    report = run_grow(project, llm, max_depth=2, pivots=4)
    tree = project.tree()
    assert tree.root.split_criterion == "Operation"
    # pivots were assigned addition/subtraction; coverage added multiplication (one per round)
    assert values(tree, tree.root_id)[:2] == ["addition", "subtraction"]
    assert "multiplication" in values(tree, tree.root_id)
    assert all(k.status == "proposed" for k in tree.children(tree.root_id))
    assert len(tree.root.pivots) == 4
    # review on: proposed children do not grow
    assert report.expanded == 1 and tree.levels() == 1
    assert [r.purpose() for r in llm.history][:3] == ["pivots", "criterion", "coverage"]


def test_temperatures_follow_the_paper(project):
    llm = ScriptedLLM()
    run_grow(project, llm, max_depth=1, pivots=3)
    temps = {r.purpose(): r.temperature for r in llm.history}
    assert temps == {"pivots": 0.7, "criterion": 1.0, "coverage": 0.7}


def test_auto_approve_grows_to_max_depth_without_repeating_criteria(project):
    run_grow(project, ScriptedLLM(), max_depth=3, pivots=4, auto_approve=True)
    tree = project.tree()
    assert tree.levels() == 3
    assert T.problems(tree) == []
    for leaf in tree.leaves():
        criteria = [s.criterion for s in tree.path(leaf.id)]
        assert len(set(criteria)) == len(criteria) == 3


def test_only_approved_nodes_grow_with_review(project):
    run_grow(project, ScriptedLLM(), max_depth=2, pivots=4)
    tree = project.tree()
    first = tree.children(tree.root_id)[0]
    project.apply("approve", lambda t: T.approve(t, [first.id]))
    run_grow(project, ScriptedLLM(), max_depth=2, pivots=4)
    tree = project.tree()
    assert tree.children(first.id)
    assert all(not tree.children(k.id) for k in tree.children(tree.root_id)[1:])


def test_rerun_is_served_from_cache(project):
    run_grow(project, ScriptedLLM(), max_depth=2, pivots=4, auto_approve=True)
    first = project.tree()
    before = project.stats()
    # undo everything growth did, grow again: same requests -> zero new calls
    while project.undo() is not None:
        pass
    run_grow(project, ScriptedLLM(), max_depth=2, pivots=4, auto_approve=True)
    after = project.stats()
    assert after.calls == before.calls
    assert after.cached > before.cached
    again = project.tree()
    shape = lambda t: sorted(tuple(s.value for s in t.path(n.id)) for n in t.leaves())  # noqa: E731
    assert shape(again) == shape(first)


def test_criterion_equal_to_ancestor_is_reasked(project):
    run_grow(project, ScriptedLLM(), max_depth=1, pivots=2, auto_approve=True)
    leaf = project.tree().leaves()[0]
    llm = ScriptedLLM()
    llm.enqueue("criterion", [json.dumps({"criterion": "operation!", "values": ["a", "b"]})])
    run_grow(project, llm, max_depth=2, pivots=2, auto_approve=True, only=(leaf.id,))
    tree = project.tree()
    assert tree.node(leaf.id).split_criterion == "Entity"
    assert llm.calls("criterion") == 2
    assert "already used" in llm.history[-2].messages[-1][1] or any(
        "already used" in r.messages[-1][1] for r in llm.history if r.purpose() == "criterion"
    )


@pytest.mark.parametrize(
    "bad",
    [
        "not json at all",
        json.dumps({"criterion": "Operation"}),  # missing values
        json.dumps({"criterion": "Kind", "values": ["other", "a", "b"]}),  # vague value
        json.dumps({"criterion": "Kind", "values": ["a"]}),  # wrong count
    ],
)
def test_malformed_criterion_replies_are_retried(project, bad):
    llm = ScriptedLLM()
    llm.enqueue("criterion", [bad])
    run_grow(project, llm, max_depth=1, pivots=3)
    tree = project.tree()
    assert tree.root.split_criterion == "Operation"
    assert llm.calls("criterion") == 2
    second = [r for r in llm.history if r.purpose() == "criterion"][1]
    assert "not valid" in second.messages[-1][1]


def test_failed_expansion_after_bounded_failures_stays_growable_and_the_next_grow_retries(project):
    llm = ScriptedLLM()
    llm.enqueue("criterion", ["garbage"] * 5)
    report = run_grow(project, llm, max_depth=2, pivots=3, criterion_attempts=5)
    tree = project.tree()
    assert report.failed == [tree.root_id] and report.leaves == 0 and not tree.children(tree.root_id)
    assert not tree.root.expanded and tree.root.note.startswith("expansion failed:") and "5 attempts" in tree.root.note
    assert report.shortfall() is not None and report.shortfall().total
    assert llm.calls("criterion") == 5
    again = run_grow(project, llm, max_depth=2, pivots=3, criterion_attempts=5)
    assert again.failed == [] and project.tree().root.split_criterion
    assert llm.calls("criterion") == 6  # the garbage replies were not cached: asked again


def test_coverage_drops_duplicates_overlaps_vague_and_glued_values_and_flags_lists(project):
    llm = ScriptedLLM()
    new = [
        "Addition",
        "others",
        "Addition/Subtraction",
        "subtraction of fractions",
        "division",
        "Ratios and proportions",
        "Tables, charts and graphs",
    ]
    llm.enqueue("coverage", [json.dumps({"new_values": new, "complete": True})])
    report = run_grow(project, llm, max_depth=1, pivots=4)
    tree = project.tree()
    kids = tree.children(tree.root_id)
    assert [k.value for k in kids] == [
        "addition",
        "subtraction",
        "division",
        "Ratios and proportions",
        "Tables, charts and graphs",
    ]
    note = tree.root.note
    assert "dropped 4" in note and '"Addition/Subtraction" combines the values "addition", "subtraction"' in note
    assert [k.flag for k in kids] == ["", "", "", "", 'may combine "Tables", "charts" and "graphs"']
    assert report.flagged == 1


def test_a_glued_criterion_value_is_dropped_and_the_rest_of_the_reply_kept(project):
    llm = ScriptedLLM()
    values = ["Addition", "Subtraction", "Addition and subtraction", "Multiplication and exponents", "Multiplication"]
    llm.enqueue("criterion", [json.dumps({"criterion": "Operation", "values": values})])
    llm.enqueue("coverage", [json.dumps({"new_values": [], "complete": True})])
    run_grow(project, llm, max_depth=1, pivots=5)
    tree = project.tree()
    assert llm.calls("criterion") == 1  # not re-asked
    kids = {k.value: k for k in tree.children(tree.root_id)}
    assert list(kids) == ["Addition", "Subtraction", "Multiplication and exponents", "Multiplication"]
    assert '"Addition and subtraction" combines the values "Addition", "Subtraction"' in tree.root.note
    assert kids["Multiplication and exponents"].flag.startswith('may combine "Multiplication" and "exponents"')
    assert T.problems(tree) == []


def test_a_complete_list_above_the_old_cap_never_collapses(project):
    llm = ScriptedLLM()
    rounds = [[f"topic{r * 10 + i}" for i in range(10)] for r in range(4)]
    llm.enqueue("coverage", [json.dumps({"new_values": v, "complete": r == 3}) for r, v in enumerate(rounds)])
    report = run_grow(project, llm, max_depth=1, pivots=4)
    tree = project.tree()
    assert len(tree.children(tree.root_id)) == 42 and report.sampled == 0
    assert llm.calls("coverage") == 4 and tree.root.note == ""


def test_an_open_ended_list_collapses_with_a_pool_past_the_threshold(project):
    llm = ScriptedLLM()
    rounds = [[f"name{r * 10 + i}" for i in range(10)] for r in range(8)]
    llm.enqueue("coverage", [json.dumps({"new_values": v, "complete": False}) for v in rounds])
    report = run_grow(project, llm, max_depth=1, pivots=4)
    tree = project.tree()
    (child,) = tree.children(tree.root_id)
    # the paper's loop: ask while the model says incomplete, until the list holds more than 50
    assert llm.calls("coverage") == 5 and len(child.pool) == 52 and report.sampled == 1
    assert "52 values exceed the threshold of 50" in tree.root.note and "sampled" in child.label


def test_more_values_than_the_threshold_make_one_sampled_child(project):
    llm = ScriptedLLM()
    many = [f"value {i}" for i in range(10)]
    llm.enqueue("coverage", [json.dumps({"new_values": many, "complete": True})])
    run_grow(project, llm, max_depth=1, pivots=4, max_values=5)
    tree = project.tree()
    (child,) = tree.children(tree.root_id)
    assert len(child.pool) == 12 and "sampled" in child.label
    assert "12 values exceed the threshold of 5" in tree.root.note


def test_a_list_still_incomplete_at_the_coverage_cap_is_open_ended(project):
    llm = ScriptedLLM()
    llm.enqueue(
        "coverage",
        [json.dumps({"new_values": [f"v{r * 10 + i}" for i in range(3)], "complete": False}) for r in range(3)],
    )
    run_grow(project, llm, max_depth=1, pivots=4, coverage_rounds=2)
    tree = project.tree()
    (child,) = tree.children(tree.root_id)
    assert llm.calls("coverage") == 2 and len(child.pool) == 8
    assert "still saw missing values after 2 coverage rounds" in tree.root.note


def test_coverage_stops_when_no_new_values_come(project):
    llm = ScriptedLLM()
    llm.enqueue(
        "coverage",
        [
            json.dumps({"new_values": ["division"], "complete": False}),
            json.dumps({"new_values": [], "complete": False}),
        ],
    )
    report = run_grow(project, llm, max_depth=1, pivots=4)
    tree = project.tree()
    assert llm.calls("coverage") == 2 and report.sampled == 0
    assert values(tree, tree.root_id) == ["addition", "subtraction", "division"]


def test_paper_preset_and_explicit_options_win():
    from treesynth_core.generate.grow import paper_options

    preset = paper_options()
    assert (preset.max_depth, preset.max_values, preset.auto_approve, preset.pivots) == (4, 50, True, 10)
    assert preset.coverage_rounds == GrowOptions().coverage_rounds
    assert paper_options(max_depth=2, auto_approve=False).max_depth == 2
    assert not paper_options(auto_approve=False).auto_approve


def test_endpoint_failure_keeps_finished_nodes(project):
    run_grow(project, ScriptedLLM(), max_depth=1, pivots=3, auto_approve=True)
    llm = ScriptedLLM()
    llm.enqueue("pivots", [json.dumps({"samples": ["a", "b", "c"]}), EndpointError("endpoint down")])
    with pytest.raises(EndpointError, match="endpoint down"):
        run_grow(project, llm, max_depth=2, pivots=3, auto_approve=True)
    tree = project.tree()
    assert T.problems(tree) == []
    # the run can be resumed: the failed node is still growable
    assert growable(tree, GrowOptions(max_depth=2, auto_approve=True))


def test_cancel_stops_between_nodes(project):
    cancel = threading.Event()
    cancel.set()
    wrapped = recording(ScriptedLLM(), project, None)
    with pytest.raises(Cancelled, match="growth stopped; finished nodes are saved"):
        asyncio.run(grow(project, wrapped, GrowOptions(max_depth=2), cancel=cancel))


def test_locked_and_pruned_nodes_do_not_grow(project):
    run_grow(project, ScriptedLLM(), max_depth=1, pivots=3, auto_approve=True)
    tree = project.tree()
    a, b = tree.children(tree.root_id)[:2]
    project.apply("lock", lambda t: T.lock(t, a.id))
    project.apply("prune", lambda t: T.prune(t, b.id))
    options = GrowOptions(max_depth=2, auto_approve=True)
    ids = {n.id for n in growable(project.tree(), options)}
    assert a.id not in ids and b.id not in ids and ids


def test_reply_helpers():
    assert extract_json('Sure!\n```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json('prefix {"a": [1, 2]} suffix') == {"a": [1, 2]}
    with pytest.raises(ValueError, match="the reply is not JSON"):
        extract_json("nope")
    assert is_vague("Others") and is_vague("misc.") and not is_vague("fruit")
    assert overlaps("addition", "Addition!") and overlaps("fractions", "adding fractions")
    assert not overlaps("addition", "subtraction")


def test_options_are_validated():
    with pytest.raises(ValueError, match="max_depth must be at least 1"):
        GrowOptions(max_depth=0)
    with pytest.raises(ValueError, match="max_depth above 8 makes trees no one can review"):
        GrowOptions(max_depth=12)


def test_plural_forms_of_a_value_are_one_value(project):
    llm = ScriptedLLM()
    llm.enqueue("criterion", [json.dumps({"criterion": "Operation", "values": ["Fraction", "Fractions", "Decimals"]})])
    llm.enqueue(
        "coverage", [json.dumps({"new_values": ["Decimal", "Type I errors", "Type II errors"], "complete": True})]
    )
    run_grow(project, llm, max_depth=1, pivots=3)
    tree = project.tree()
    assert values(tree, tree.root_id) == ["Fraction", "Decimals", "Type I errors", "Type II errors"]
    assert '"Decimal" (repeats an existing value)' in tree.root.note
