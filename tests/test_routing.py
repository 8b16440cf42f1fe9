"""Routing imported samples into leaves (LLM and embedding routers), rebalancing, data pivots."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.fakes import HashEmbedder, ScriptedLLM
from treesynth_core.data import routing as R
from treesynth_core.data.balance import BalanceOptions, plan_balance
from treesynth_core.data.pipeline import balance_dataset, data_pivots, route_dataset
from treesynth_core.errors import TreeSynthError
from treesynth_core.generate.grow import GrowOptions, grow
from treesynth_core.prompts.templates import NONE_FITS
from treesynth_core.store import Project
from treesynth_core.store.samples import UNROUTED, NewSample
from treesynth_core.tree import model as T

TEXTS = [
    "addition of fruit: 3 apples plus 4 apples",
    "addition with money: 5 coins plus 2 coins",
    "subtraction of fruit: 9 apples minus 4",
    "subtraction with money: 10 coins minus 3",
    "addition of fruit again: 2 pears plus 8",
    "a poem about the sea",  # fits no operation
]


def build(tree: T.Tree) -> T.Tree:
    tree = T.replace_criterion(tree, tree.root_id, "Operation", ["addition", "subtraction"])
    for kid in tree.children(tree.root_id):
        tree = T.replace_criterion(tree, kid.id, "Entity", ["fruit", "money"])
    return tree


@pytest.fixture
def project(project):
    """The shared project with the tree of ``build`` and the unrouted ``TEXTS`` in the set "data"."""
    project.replace_tree(build(project.tree()))
    rows = [
        NewSample(leaf_id=UNROUTED, key=f"row:{i}", instruction=t, path=[], sample_set="data")
        for i, t in enumerate(TEXTS, 1)
    ]
    project.import_samples(rows, sample_set="data")
    return project


def leaf_of(tree: T.Tree, *values: str) -> str:
    node = tree.root
    for value in values:
        node = next(k for k in tree.children(node.id) if k.value == value)
    return node.id


def route(project, llm, **kw):
    return asyncio.run(route_dataset(project, sample_set="data", llm=llm, **kw))


def test_llm_router_walks_top_down_at_temperature_03_and_counts_none_fits(project):
    llm = ScriptedLLM()
    report = route(project, llm, router="llm", agreement_n=0)
    tree = project.tree()
    assert report.total == report.routed == 6 and report.not_routed == 0
    assert report.leaf == 5 and report.none_fits == 1 and report.errors == 0
    assert report.none_fits_at == [{"node_id": tree.root_id, "path": "root", "count": 1}]
    by_text = {s.instruction: s for s in project.samples(sample_set="data")}
    assert by_text[TEXTS[0]].leaf_id == leaf_of(tree, "addition", "fruit")
    assert by_text[TEXTS[3]].leaf_id == leaf_of(tree, "subtraction", "money")
    assert by_text[TEXTS[3]].path == [
        {"criterion": "Operation", "value": "subtraction"},
        {"criterion": "Entity", "value": "money"},
    ]
    assert by_text[TEXTS[5]].leaf_id == UNROUTED
    assert sum(report.per_leaf.values()) + report.none_fits == 6  # nothing lost
    requests = [r for r in llm.history if r.purpose() == "route"]
    assert {r.temperature for r in requests} == {0.3}
    assert all(r.schema["properties"]["value"]["enum"][-1] == NONE_FITS for r in requests)
    assert len(requests) == 5 * 2 + 1  # one call per level; the poem stops at the first


def test_rerun_routes_nothing_again_until_the_tree_changes(project):
    route(project, ScriptedLLM(), router="llm", agreement_n=0)
    again = ScriptedLLM()
    route(project, again, router="llm", agreement_n=0)
    assert again.calls("route") == 0
    tree = project.tree()
    node_id = leaf_of(tree, "addition")
    project.apply("rename_value", lambda t: T.rename_value(t, node_id, "sum"))  # the tree changed: routes are stale
    third = ScriptedLLM()
    report = route(project, third, router="llm", agreement_n=0)
    assert third.calls("route") > 0 and report.routed == 6


def test_unusable_replies_are_reasked_then_recorded_as_errors(project):
    llm = ScriptedLLM()
    llm.enqueue("route", ["not json", json.dumps({"value": "multiplication"})])  # both attempts of one call
    report = route(project, llm, router="llm", agreement_n=0, concurrency=1)
    assert report.errors == 1 and report.routed == 6  # counted, not dropped
    errors = [r for r in R.current_routes(project, "llm", sample_set="data").values() if r.status == "error"]
    assert "no usable value" in errors[0].detail
    again = ScriptedLLM()  # a rerun retries only the failed sample
    report = route(project, again, router="llm", agreement_n=0)
    assert report.errors == 0 and again.calls("route") >= 1


def test_embedding_router_and_agreement_with_the_llm_router(project):
    emb = HashEmbedder(dim=64)
    report = route(project, ScriptedLLM(), router="embedding", embedder=emb, agreement_n=4, seed=1)
    assert report.routed == 6 and report.router == "embedding"
    agree = report.agreement
    assert agree["other"] == "llm" and agree["n"] == 4 and 0 <= agree["rate"] <= 1
    assert sum(agree["other_status"].values()) == 4
    llm_routes = R.current_routes(project, "llm", sample_set="data")
    assert len(llm_routes) == 4  # the LLM routed only the seeded sample


def test_embedding_router_picks_the_nearest_value_and_says_none_below_the_threshold():
    tree = build(T.new_tree("t"))
    emb = HashEmbedder(dim=256)
    texts = ["Operation: subtraction Entity: money", "zzz qqq"]
    X = emb.embed(texts)
    router = R.EmbeddingRouter(lambda t: emb.embed(t), tree, min_similarity=0.2)
    first, second = router.route_all([1, 2], X)
    assert first.status == "leaf" and first.leaf_id == leaf_of(tree, "subtraction", "money")
    assert second.status == "none" and second.stopped_at == tree.root_id and "best cosine" in second.detail


def test_sampled_nodes_route_by_any_pool_value():
    tree = T.new_tree("t")
    tree = T.attach_split(
        tree,
        tree.root_id,
        criterion="Country",
        values=["France"],
        pool=("France", "Peru", "Chad"),
        provenance=T.Provenance("human"),
    )
    llm = ScriptedLLM()
    route_ = asyncio.run(R.LLMRouter(llm, tree).route(1, "a trip to peru"))
    assert route_.status == "leaf" and route_.path == [{"criterion": "Country", "value": "Peru"}]


def test_route_needs_a_dataset_and_a_known_router(project):
    with pytest.raises(TreeSynthError, match="unknown router"):
        route(project, ScriptedLLM(), router="magic")
    with pytest.raises(TreeSynthError, match="empty or missing"):
        asyncio.run(route_dataset(project, sample_set="nope", router="llm", llm=ScriptedLLM(), agreement_n=0))
    with pytest.raises(TreeSynthError, match="needs an embedder"):
        route(project, ScriptedLLM(), router="embedding", agreement_n=0)


def test_plan_balance_downsamples_with_a_seed_and_counts_shortfall_and_unrouted(project):
    route(project, ScriptedLLM(), router="llm", agreement_n=0)
    tree = project.tree()
    samples = project.samples(sample_set="data")
    plan = plan_balance(tree, samples, per_leaf=1, seed=0)
    add_fruit = next(leaf for leaf in plan.leaves if leaf.leaf_id == leaf_of(tree, "addition", "fruit"))
    assert (add_fruit.before, add_fruit.kept, add_fruit.dropped, add_fruit.synthesize) == (2, 1, 1, 0)
    assert plan.unrouted == 1 and len(plan.kept_ids) == 4 and plan.to_synthesize == 0
    assert plan == plan_balance(tree, samples, per_leaf=1, seed=0)
    # The seed decides which apple problem stays. Leaf ids are random per project, so any one
    # seed's pick is arbitrary; over 64 seeds both picks turn up (all alike: p = 2**-63).
    kept = {plan_balance(tree, samples, per_leaf=1, seed=s).kept_ids for s in range(64)}
    assert len(kept) == 2
    with pytest.raises(TreeSynthError, match="the per-leaf target must be at least 1"):
        plan_balance(tree, samples, per_leaf=0)


def test_balance_keeps_provenance_and_synthesizes_the_shortfall_idempotently(project):
    route(project, ScriptedLLM(), router="llm", agreement_n=0)
    tree = project.tree()
    llm = ScriptedLLM()
    out = asyncio.run(
        balance_dataset(project, llm, BalanceOptions(sample_set="data", per_leaf=3), embedder=HashEmbedder(dim=32))
    )
    assert out.copied == 5 and out.synthesized == 4 * 3 - 5
    balanced = project.samples(sample_set="balanced")
    assert len(balanced) == 12
    origin = [s for s in balanced if s.extra["provenance"] == "original"]
    assert len(origin) == 5 and all(s.extra["source_set"] == "data" for s in origin)
    made = [s for s in balanced if s.extra["provenance"] == "synthesized"]
    assert {s.leaf_id for s in made} <= {leaf.id for leaf in tree.leaves()}
    assert all(out.counts[leaf.id]["after"] == 3 for leaf in tree.leaves())
    assert out.unrouted == 1
    scores = out.scores
    assert scores["n"] == 6 and set(scores["sets"]) == {"before", "after"}
    assert scores["sets"]["after"]["vendi"] > 0
    assert len(project.samples(sample_set="data")) == 6  # the source is untouched
    again = ScriptedLLM()
    out = asyncio.run(balance_dataset(project, again, BalanceOptions(sample_set="data", per_leaf=3)))
    assert out.copied == 0 and out.synthesized == 0 and again.calls("synth") == 0


def test_rebalance_again_with_another_seed_fills_the_leaves_left_short(project):
    route(project, ScriptedLLM(), router="llm", agreement_n=0)
    stuck = ScriptedLLM()  # every synthesis reply repeats one problem: short leaves stay short
    stuck.enqueue("synth", [json.dumps({"samples": ["Sam has four pens and buys two more."] * 3})] * 50)
    out = asyncio.run(balance_dataset(project, stuck, BalanceOptions(sample_set="data", per_leaf=3)))
    short = [leaf for leaf, c in out.counts.items() if c["after"] < 3]
    assert short and out.short_leaves
    originals = {s.id for s in project.samples(sample_set="balanced") if s.extra["provenance"] == "original"}
    out = asyncio.run(balance_dataset(project, ScriptedLLM(), BalanceOptions(sample_set="data", per_leaf=3, seed=1)))
    assert all(c["after"] == 3 for c in out.counts.values()) and not out.short_leaves
    kept = {s.id for s in project.samples(sample_set="balanced") if s.extra["provenance"] == "original"}
    assert kept == originals  # topping up copies no other originals


def test_balance_refuses_an_unrouted_or_missing_source(project):
    with pytest.raises(TreeSynthError, match="empty or missing"):
        asyncio.run(balance_dataset(project, ScriptedLLM(), BalanceOptions(sample_set="nope", per_leaf=2)))
    with pytest.raises(TreeSynthError, match="new sample set"):
        asyncio.run(
            balance_dataset(project, ScriptedLLM(), BalanceOptions(sample_set="data", target_set="data", per_leaf=2))
        )


def test_grow_with_pivots_drawn_from_the_dataset(tmp_path):
    with Project.create(tmp_path / "g", task="Math word problems") as p:
        rows = [NewSample(leaf_id=UNROUTED, key=f"row:{i}", instruction=t, path=[]) for i, t in enumerate(TEXTS, 1)]
        p.import_samples(rows, sample_set="data")
        source = data_pivots(p, "data", HashEmbedder(dim=32), seed=0)
        llm = ScriptedLLM()
        report = asyncio.run(grow(p, llm, GrowOptions(max_depth=1, pivots=4, pivots_from="data"), pivot_source=source))
        assert llm.calls("pivots") == 0  # no generated pivots
        root = p.tree().root
        assert root.split_criterion and len(root.pivots) == 4 and set(root.pivots) <= set(TEXTS)
        assert report.expanded == 1
        criterion_prompt = next(r for r in llm.history if r.purpose() == "criterion").messages[-1][1]
        assert TEXTS[0][:20] in criterion_prompt or any(t[:20] in criterion_prompt for t in TEXTS)


def test_data_pivots_follow_the_tree_and_leave_thin_subspaces_as_leaves(project):
    tree = project.tree()
    emb = HashEmbedder(dim=64)
    source = data_pivots(project, "data", emb, seed=0)
    everyone = source.members(tree, tree.root)
    assert len(everyone) == 6
    kids = tree.children(tree.root_id)
    split = [source.members(tree, kid) for kid in kids]
    assert sorted(i for part in split for i in part) == everyone  # a partition of the parent's samples
    assert source(tree, tree.root, 3) == source(tree, tree.root, 3)  # seeded
    with pytest.raises(TreeSynthError, match="has 0 samples"):
        data_pivots(project, "nothing", emb)


def test_a_persons_value_notes_describe_values_to_both_routers():
    from treesynth_core.tree.file import tree_from_json

    tree = tree_from_json(
        json.dumps(
            {
                "format": "treesynth-tree",
                "version": 1,
                "task": "Python problems",
                "style": "",
                "root": {
                    "criterion": "Input",
                    "children": [
                        {"value": "nested data", "note": "lists of lists, lists of dicts"},
                        {"value": "date", "note": "kept as a leaf: no usable criterion"},
                        {"value": "string"},
                    ],
                },
            }
        )
    )
    nested, date, string = tree.children(tree.root_id)
    assert R.value_note(tree, nested) == "lists of lists, lists of dicts"
    assert R.value_note(tree, date) == "" and R.value_note(tree, string) == ""  # growth's note is no description
    texts = [R.description(tree, c) for c in R.choices(tree, tree.root)]
    assert texts == ["Input: nested data (lists of lists, lists of dicts)", "Input: date", "Input: string"]
    grown = T.attach_split(
        tree,
        nested.id,
        criterion="Depth",
        values=["two levels"],
        provenance=T.Provenance("llm"),
        note="the LLM still saw missing values",
    )
    assert R.value_note(grown, grown.node(nested.id)) == ""  # a split by growth wrote its own note
    llm = ScriptedLLM()
    asyncio.run(R.LLMRouter(llm, tree).route(1, "flatten a list of lists"))
    prompt = llm.history[0].messages[-1][1]
    assert "- nested data (lists of lists, lists of dicts)" in prompt and "- date\n" in prompt


def test_embedding_routes_made_level_by_level_are_redone(project):
    """Routes the embedding router stored before it went to the nearest leaf path carry the bare tree
    digest: they are not current, and the next run routes those samples again."""
    tree = project.tree()
    old = [
        R.Route(s.id, "embedding", "leaf", tree.root_id, tree.root_id, [], "", R.tree_digest(tree))
        for s in project.samples(sample_set="data")
    ]
    project.put_routes(old)
    assert R.current_routes(project, "embedding", sample_set="data") == {}
    report = route(project, ScriptedLLM(), router="embedding", embedder=HashEmbedder(dim=64), agreement_n=0)
    assert report.routed == 6
    current = R.current_routes(project, "embedding", sample_set="data")
    assert len(current) == 6 and all(r.tree_digest == R.route_digest(tree, "embedding") for r in current.values())
