"""Leaf synthesis with the scripted fake: per-leaf counts, dedup, responses, budget, resume."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.fakes import ScriptedLLM
from tests.trees import split_root
from treesynth_core.errors import BudgetError, EndpointError
from treesynth_core.generate.duplicates import DuplicateFilter
from treesynth_core.generate.synth import (
    SynthOptions,
    check_budget,
    plan_synthesis,
    synthesize,
)
from treesynth_core.llm.recording import recording
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.tree import model as T

LLM = T.Provenance("llm", model="m")


@pytest.fixture
def project(project):
    """The shared project with its root split on "Operation" into two approved leaves."""
    split_root(project, "Operation", ["addition", "division"], provenance=LLM, actor="llm")
    return project


def run(project, llm, max_calls=None, **options):
    wrapped = recording(llm, project, project.start_run("synth", {}), max_calls=max_calls)
    return asyncio.run(synthesize(project, wrapped, SynthOptions(**options)))


def test_fills_each_approved_leaf_with_path_conditioned_samples(project):
    llm = ScriptedLLM()
    report = run(project, llm, per_leaf=7, per_call=3)
    counts = project.sample_counts()
    assert sorted(counts.values()) == [7, 7] and report.added == 14
    sample = project.samples()[0]
    assert sample.path[0]["criterion"] == "Operation"
    assert sample.model == "fake-model" and sample.call_id
    prompts = [r.messages[0][1] for r in llm.history]
    assert any('"value": "addition"' in p for p in prompts) and any('"value": "division"' in p for p in prompts)


def test_rerun_makes_zero_calls_and_no_duplicates(project):
    run(project, ScriptedLLM(), per_leaf=6, per_call=3)
    before = project.stats()
    again = ScriptedLLM()
    run(project, again, per_leaf=6, per_call=3)
    assert again.calls() == 0
    assert project.stats().calls == before.calls
    assert sum(project.sample_counts().values()) == 12


def test_interrupted_run_resumes_without_duplicates(project):
    llm = ScriptedLLM()
    llm.enqueue(
        "synth",
        [json.dumps({"samples": ["one apple", "two pears", "three plums"]}), EndpointError("endpoint went away")],
    )
    leaf = project.tree().leaves()[0].id
    with pytest.raises(EndpointError, match="endpoint went away"):
        run(project, llm, per_leaf=6, per_call=3, extra_calls=0, leaf_ids=(leaf,))
    assert project.sample_counts() == {leaf: 3}
    resumed = ScriptedLLM()
    run(project, resumed, per_leaf=6, per_call=3, extra_calls=0)
    assert resumed.calls() == 3  # call 1 of the first leaf, calls 0 and 1 of the second
    samples = project.samples()
    assert len(samples) == 12
    assert len({(s.leaf_id, s.key) for s in samples}) == 12


def test_exact_and_near_duplicates_are_dropped_within_a_leaf(project):
    llm = ScriptedLLM()
    dup = "Tom has 3 apples and buys 4 more. How many apples does Tom have now?"
    near = "Tom has 3 apples and buys 4 more. How many apples does Tom have now??"
    llm.enqueue("synth", [json.dumps({"samples": [dup, dup.upper(), near]})])
    report = run(project, llm, per_leaf=3, per_call=3, leaf_ids=(project.tree().leaves()[0].id,))
    texts = [s.instruction for s in project.samples()]
    assert texts.count(dup) == 1 and near not in texts
    assert report.duplicates == 2


def test_a_short_leaf_stays_short_on_a_rerun_and_another_seed_tops_it_up(project):
    leaf = project.tree().leaves()[0].id
    llm = ScriptedLLM()
    dup = "Tom has 3 apples and buys 4 more. How many apples does Tom have now?"
    llm.enqueue("synth", [json.dumps({"samples": [dup, dup, dup]})])
    report = run(project, llm, per_leaf=3, per_call=3, extra_calls=0, leaf_ids=(leaf,))
    assert report.short_leaves == [leaf] and project.sample_counts() == {leaf: 1}
    again = ScriptedLLM()
    run(project, again, per_leaf=3, per_call=3, extra_calls=0, leaf_ids=(leaf,))
    assert again.calls() == 0 and project.sample_counts() == {leaf: 1}  # same questions: nothing new to ask
    other_seed = ScriptedLLM()
    report = run(project, other_seed, per_leaf=3, per_call=3, extra_calls=0, leaf_ids=(leaf,), seed=1)
    assert other_seed.calls() == 1 and report.short_leaves == []
    assert project.sample_counts() == {leaf: 3}
    keys = {s.key for s in project.samples(leaf_id=leaf)}
    assert "0:0" in keys and {k for k in keys if k.startswith("s1.0:")} and len(keys) == 3
    rerun = ScriptedLLM()
    run(project, rerun, per_leaf=3, per_call=3, extra_calls=0, leaf_ids=(leaf,), seed=1)
    assert rerun.calls() == 0


def test_non_samples_are_rejected():
    from treesynth_core.prompts.replies import is_placeholder

    junk = ["<sample 1>", "sample2", "Question", "2 - 2", "1.2.12-1.3.6.4-3", "] 3+2+4+5+6", "hello", "  "]
    real = ["What is 3 + 4?", "Tom has 3 apples.", "小明有3个苹果，吃了1个，还剩几个？", "りんごが3つあります。"]
    assert [is_placeholder(t) for t in junk] == [True] * len(junk)
    assert [is_placeholder(t) for t in real] == [False] * len(real)


def test_duplicate_filter_threshold():
    f = DuplicateFilter(0.85, ["How many apples are left after eating two?"])
    assert not f.admit("how many apples are LEFT after eating two")
    assert f.admit("What is the area of a 3 by 4 rectangle?")


def test_responses_make_instruction_response_pairs(project):
    llm = ScriptedLLM()
    run(project, llm, per_leaf=2, per_call=2, responses=True)
    samples = project.samples()
    assert all(s.response and s.response.startswith("Answer:") for s in samples)
    assert llm.calls("response") == 4


def test_plan_estimates_and_budget_cap(project):
    tree = project.tree()
    plan = plan_synthesis(
        tree,
        {},
        SynthOptions(per_leaf=10, per_call=5),
        model="gpt-4o-mini",
        settings=BackendSettings(backend="openai", model="gpt-4o-mini"),
    )
    assert plan.calls == 4 and plan.samples == 20
    assert plan.cost_usd is not None and plan.cost_usd > 0
    with pytest.raises(BudgetError, match="cap of 3"):
        check_budget(plan, SynthOptions(max_calls=3))
    below = plan.cost_usd * 0.9  # the cost cap counts only the calls no collected batch reply answers
    with pytest.raises(BudgetError, match=r"above your cap of \$"):
        check_budget(plan, SynthOptions(max_cost=below))
    with pytest.raises(BudgetError, match="for the 3 calls sent online"):
        check_budget(plan, SynthOptions(max_cost=plan.cost_usd * 0.7), answered=1)
    check_budget(plan, SynthOptions(max_cost=below), answered=1)  # 3 of 4 calls online: 0.75 of the cost
    check_budget(plan, SynthOptions(max_cost=0.0), answered=4)  # every call answered: nothing to pay
    embedded = plan_synthesis(tree, {}, SynthOptions(), model="x", settings=BackendSettings())
    assert embedded.cost_usd == 0
    unknown = plan_synthesis(
        tree, {}, SynthOptions(), model="mystery", settings=BackendSettings(backend="openai", model="mystery")
    )
    assert unknown.cost_usd is None and "unknown price" in unknown.summary()


def test_estimated_calls_bound_a_run_whose_replies_are_all_bad(project):
    """``calls`` is what a run of clean replies makes; ``calls_max`` bounds a run whose replies never
    parse, whose re-asks, larger-budget retries and extra calls go past ``calls``."""
    plan = plan_synthesis(project.tree(), {}, SynthOptions(per_leaf=4, per_call=2, responses=True), model="m")
    # per leaf: (2 calls + 2 extra) x (2 attempts + 2 budget retries), and 4 responses x (1 + 2 retries)
    assert (plan.calls, plan.calls_max) == (2 * (2 + 4), 2 * ((2 + 2) * (2 + 2) + 4 * 3))
    assert "about 12 calls (at most 56)" in plan.summary()
    bad = ScriptedLLM()
    bad.enqueue("synth", ["not json at all"] * 100)
    report = run(project, bad, per_leaf=4, per_call=2, responses=True)
    assert report.added == 0
    assert plan.calls < bad.calls() <= plan.calls_max
    assert bad.calls() == bad.calls("synth") == 2 * (2 + 2) * 2  # every call and its re-ask, no responses


def test_call_cap_stops_a_run_and_keeps_its_samples(project):
    with pytest.raises(BudgetError, match="stopped at the cap of 1 LLM calls"):
        run(project, ScriptedLLM(), max_calls=1, per_leaf=6, per_call=3)
    assert sum(project.sample_counts().values()) == 3


def test_only_selected_leaves_and_no_pruned_leaves(project):
    tree = project.tree()
    add, div = tree.children(tree.root_id)
    project.apply("prune", lambda t: T.prune(t, div.id))
    run(project, ScriptedLLM(), per_leaf=2, per_call=2)
    assert set(project.sample_counts()) == {add.id}


def test_deleted_samples_are_not_brought_back(project):
    leaf = project.tree().leaves()[0].id
    run(project, ScriptedLLM(), per_leaf=3, per_call=3, leaf_ids=(leaf,))
    bad = project.samples(leaf_id=leaf)[0]
    project.delete_samples([bad.id])
    run(project, ScriptedLLM(), per_leaf=3, per_call=3, leaf_ids=(leaf,))
    texts = [s.instruction for s in project.samples(leaf_id=leaf)]
    assert bad.instruction not in texts and len(texts) == 3
