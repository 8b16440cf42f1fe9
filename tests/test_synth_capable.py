"""Leaf synthesis against replies written the way capable models answer (``tests/fixtures/capable``):
10 long samples a call, chain-of-thought responses, replies cut off by ``max_tokens``, later calls
told what the leaf holds, sampled nodes drawn per sample, and budgets sized from the pivots."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from typer.testing import CliRunner

from tests.capable import load_capable
from tests.fakes import ScriptedLLM
from treesynth_core.errors import EndpointError, ParseError
from treesynth_core.generate.synth import SynthOptions, call_budget, leaf_target, plan_synthesis, synthesize
from treesynth_core.llm.base import ChatRequest, ChatResult
from treesynth_core.llm.recording import recording
from treesynth_core.prompts import templates as P
from treesynth_core.prompts.replies import MAX_TOKENS_CAP, SamplesReply, ask_json, is_loop
from treesynth_core.store import Project
from treesynth_core.tree import model as T

LLM = T.Provenance("llm", model="m")
#: Pivots as a capable model writes them for the leaf: GSM8K-length problems.
PIVOTS = tuple(
    json.loads(item["text"])["samples"][i]
    for item in load_capable("synth_cut_off")["replies"]["synth"][2:]
    for i in range(10)
)


def samples_of(name: str, index: int = 0) -> list[str]:
    return json.loads(load_capable(name)["replies"]["synth"][index]["text"])["samples"]


@pytest.fixture
def project(tmp_path):
    """A root split on "Math topic" into one approved leaf, with the root's pivots stored."""
    with Project.create(tmp_path / "p", task="Grade-school math word problems", style="GSM8K-style") as p:

        def build(tree: T.Tree) -> T.Tree:
            tree = T.attach_split(
                tree, tree.root_id, criterion="Math topic", values=["Percentages"], pivots=PIVOTS, provenance=LLM
            )
            return T.approve(tree, [k.id for k in tree.children(tree.root_id)])

        p.apply("grow", build, actor="llm")
        yield p


def run(project, llm, **options):
    wrapped = recording(llm, project, project.start_run("synth", {}))
    return asyncio.run(synthesize(project, wrapped, SynthOptions(**options)))


def prompt(request: ChatRequest) -> str:
    return next(content for role, content in request.messages if role == "user")


def leaf_id(project) -> str:
    return project.tree().leaves()[0].id


def test_ten_long_samples_a_call_are_all_stored_by_default(project, capable):
    llm = ScriptedLLM()
    llm.enqueue("synth", capable("synth_gsm8k_percentages")["synth"][:1])
    report = run(project, llm, per_leaf=10)
    assert [s.instruction for s in project.samples()] == samples_of("synth_gsm8k_percentages")
    assert report.added == 10 and report.duplicates == 0 and llm.calls("synth") == 1
    [request] = llm.history
    assert "Write 10 new samples" in prompt(request)
    assert request.max_tokens == P.samples_budget(10, PIVOTS) != P.samples_budget(10)  # from the pivots


def test_ten_multi_line_code_instructions_are_all_stored(project, capable):
    llm = ScriptedLLM()
    llm.enqueue("synth", capable("synth_code_instructions")["synth"])
    run(project, llm, per_leaf=10)
    stored = [s.instruction for s in project.samples()]
    assert stored == samples_of("synth_code_instructions")
    assert sum("\n" in text for text in stored) == 8 and any("```python\ndef fib(n):" in t for t in stored)


def test_chain_of_thought_responses_are_stored_whole(project, capable):
    llm = ScriptedLLM()
    scenario = capable("synth_gsm8k_percentages")
    llm.enqueue("synth", scenario["synth"][:1])
    llm.enqueue("response", scenario["response"])
    report = run(project, llm, per_leaf=10, responses=True)
    responses = [s.response for s in project.samples()]
    assert responses == [r.text for r in scenario["response"]] and report.responses_cut_off == 0
    assert all(r and r.count("Step") >= 2 and "Final answer" in r for r in responses)


def test_later_calls_are_told_what_the_leaf_holds(project, capable):
    """Calls 0 and 1 go together (nothing held yet); call 1 repeats 4 of call 0's problems, so an
    extra call follows, and its prompt lists the leaf's most recent samples as stored then."""
    llm = ScriptedLLM()
    llm.enqueue("synth", capable("synth_gsm8k_percentages")["synth"])
    first, second, third = (samples_of("synth_gsm8k_percentages", i) for i in range(3))
    report = run(project, llm, per_leaf=20)
    assert report.duplicates == 4 and report.added == 20
    prompts = [prompt(r) for r in llm.history]
    assert len(prompts) == 3 and not any("Already written" in p for p in prompts[:2])
    listed = prompts[2].split("Already written:\n", 1)[1].split("\n\nReply in JSON", 1)[0].splitlines()
    held = [s.instruction for s in project.samples()][:16][-10:]  # the 16 stored when the wave started
    assert listed == [f"- {text}" for text in held]
    assert f"- {first[0]}" not in listed and f"- {second[5]}" in listed
    assert "must differ from all of them" in prompts[2]
    assert [s.instruction for s in project.samples()][16:] == third[:4]


def test_a_later_run_is_told_what_the_leaf_holds_with_the_small_profile_too(project, capable):
    llm = ScriptedLLM()
    llm.prompt_profile = "small"
    llm.enqueue("synth", capable("synth_gsm8k_percentages")["synth"][:1])
    run(project, llm, per_leaf=10)
    more = ScriptedLLM()
    more.prompt_profile = "small"
    run(project, more, per_leaf=12)
    line = next(line for line in prompt(more.history[0]).splitlines() if line.startswith("Already written"))
    held = samples_of("synth_gsm8k_percentages")[-P.SMALL_HELD :]
    assert line.count(" | ") == P.SMALL_HELD - 1 and len(line) < 400  # one short line
    assert all(text[:40] in line for text in held)


def test_a_short_leaf_rerun_with_the_same_seed_asks_nothing(project, capable):
    """Answered calls that kept nothing (all repeats) are not asked again with another list."""
    first = capable("synth_gsm8k_percentages")["synth"][0]
    llm = ScriptedLLM()
    llm.enqueue("synth", [first] * 4)
    report = run(project, llm, per_leaf=20)
    assert report.short_leaves == [leaf_id(project)] and llm.calls() == 4  # 2 + 2 extra calls
    again = ScriptedLLM()
    run(project, again, per_leaf=20)
    assert again.calls() == 0 and sum(project.sample_counts().values()) == 10


def test_a_resumed_wave_sends_the_same_requests_and_is_served_from_the_cache(project, capable):
    """Wave 1 keeps 10 of 30 (calls 1 and 2 repeat call 0); wave 2 is calls 3 and 4. Call 3 fails and
    stops the run after call 4's reply arrived. The rerun's wave 2 lists the same samples, so call 4
    comes from the cache and only call 3 reaches the model."""
    scenario = capable("synth_gsm8k_percentages")["synth"]
    llm = ScriptedLLM()
    llm.enqueue("synth", [scenario[0]] * 3 + [EndpointError("endpoint went away"), scenario[2]])
    with pytest.raises(EndpointError, match="endpoint went away"):
        run(project, llm, per_leaf=30)
    assert sum(project.sample_counts().values()) == 10
    resumed = ScriptedLLM()
    resumed.enqueue("synth", scenario[1:2])
    run(project, resumed, per_leaf=30)
    assert resumed.calls() == 1
    assert [r.messages for r in resumed.history] == [llm.history[3].messages]  # the same list as before
    stored = [s.instruction for s in project.samples()]
    assert stored[10:] == samples_of("synth_gsm8k_percentages", 1)[:6] + samples_of("synth_gsm8k_percentages", 2)
    assert project.stats().cached == 1


def test_a_reply_cut_off_is_asked_again_with_a_larger_budget_and_never_stored(project, capable):
    llm = ScriptedLLM()
    llm.enqueue("synth", capable("synth_cut_off")["synth"])
    report = run(project, llm, per_leaf=10)
    budget = call_budget(project.tree(), leaf_id(project), SynthOptions())
    assert [r.max_tokens for r in llm.history] == [budget, 2 * budget, min(4 * budget, MAX_TOKENS_CAP)]
    assert len({r.seed for r in llm.history}) == 1  # the same question, with room to finish
    stored = [s.instruction for s in project.samples()]
    assert stored == samples_of("synth_cut_off", 2) and report.failed_calls == 0
    assert not any(text.endswith(("how long is", "how far would it")) for text in stored)


def test_a_reply_still_cut_off_at_the_cap_is_a_failed_attempt(project, capable):
    """With the cap at twice the budget, the second cut-off reply ends the attempt; the re-ask says
    why, at the capped budget, and its whole reply is stored."""
    budget = call_budget(project.tree(), leaf_id(project), SynthOptions())
    llm = ScriptedLLM()
    llm.enqueue("synth", capable("synth_cut_off")["synth"])
    run(project, llm, per_leaf=10, max_tokens=2 * budget)
    assert [r.max_tokens for r in llm.history] == [budget, 2 * budget, 2 * budget]
    assert "cut off at the token limit" in llm.history[2].messages[-1][1]
    assert [s.instruction for s in project.samples()] == samples_of("synth_cut_off", 2)


def test_ask_json_never_parses_a_cut_off_reply_as_whole(capable):
    """The model closed the JSON early around a truncated last sample: it parses, yet it is not taken."""
    closed_early = capable("synth_cut_off")["synth"][0]
    assert len(SamplesReply.model_validate_json(closed_early.text).samples) == 10
    llm = ScriptedLLM()
    llm.enqueue("synth", [closed_early] * 4)
    request = ChatRequest.chat(None, "Write 10 samples", max_tokens=500, seed=1, meta={"purpose": "synth"})
    with pytest.raises(ParseError, match=r"cut off at the token limit \(1000 tokens\)"):
        asyncio.run(ask_json(llm, request, SamplesReply, attempts=2, what="samples", max_tokens_cap=1000))
    assert [r.max_tokens for r in llm.history] == [500, 1000, 1000]


def test_a_looping_reply_gets_no_larger_budget():
    loop = '{"samples": ["' + " ".join(f"Test {i}:" for i in range(1, 200))
    assert is_loop(loop)
    for name in ("synth_gsm8k_percentages", "synth_code_instructions", "synth_cut_off", "math_topic_15"):
        for items in load_capable(name)["replies"].values():
            assert not any(is_loop(item["text"]) for item in items), name
    llm = ScriptedLLM()
    llm.enqueue("synth", [ChatResult(text=loop, model="m", finish_reason="length")] * 2)
    request = ChatRequest.chat(None, "Write 10 samples", max_tokens=500, seed=1, meta={"purpose": "synth"})
    with pytest.raises(ParseError, match="no usable samples after 2 attempts .*cut off at the token limit"):
        asyncio.run(ask_json(llm, request, SamplesReply, attempts=2, what="samples"))
    assert [r.max_tokens for r in llm.history] == [500, 500]


def test_a_cut_off_response_is_retried_and_one_still_cut_off_is_not_stored(project, capable):
    scenario = capable("synth_cut_off")
    llm = ScriptedLLM()
    llm.enqueue("response", scenario["response"])
    report = run(project, llm, per_leaf=2, per_call=2, responses=True)
    first, second = project.samples()
    assert first.response == scenario["response"][1].text  # the whole chain of thought
    assert second.response is None and second.response_call_id  # cut off three times: no response
    assert report.responses_cut_off == 1
    assert [r.max_tokens for r in llm.history if r.purpose() == "response"] == [1024, 2048, 1024, 2048, 4096]


def test_sampled_nodes_are_drawn_per_sample_and_scale_the_leaf(tmp_path):
    countries = tuple(f"Country {c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    with Project.create(tmp_path / "p", task="Geography quiz questions") as project:

        def build(tree: T.Tree) -> T.Tree:
            tree = T.attach_split(tree, tree.root_id, criterion="Country", values=[], pool=countries, provenance=LLM)
            return T.approve(tree, [k.id for k in tree.children(tree.root_id)])

        project.apply("grow", build, actor="llm")
        tree = project.tree()
        leaf = tree.leaves()[0]
        assert leaf_target(tree.path(leaf.id), SynthOptions(per_leaf=2)) == 20  # 2 x 10^1
        plan = plan_synthesis(tree, {}, SynthOptions(per_leaf=2), model="m")
        assert plan.calls == 2 and plan.samples == 20 and "x10 samples per sampled node" in plan.summary()
        assert plan_synthesis(tree, {}, SynthOptions(per_leaf=2, sampled_scale=1), model="m").samples == 2

        llm = ScriptedLLM()
        report = run(project, llm, per_leaf=2)
        samples = project.samples()
        assert report.added == 20 and llm.calls("synth") == 2
        text = prompt(llm.history[0])
        lines = text.split("Attributes of each sample:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        drawn = [json.loads(line.split(". ", 1)[1])[0]["value"] for line in lines]
        assert len(lines) == 10 and [s.path[0]["value"] for s in samples[:10]] == drawn
        assert all(s.path[0]["criterion"] == "Country" and s.path[0]["value"] in countries for s in samples)
        assert len({s.path[0]["value"] for s in samples}) > 5  # a fresh draw per sample, not per call
        again = ScriptedLLM()
        run(project, again, per_leaf=2)
        assert again.calls() == 0


def test_the_budget_follows_the_nearest_pivots_and_the_cap(project):
    tree = project.tree()
    leaf = leaf_id(project)
    assert P.samples_budget(10) == 1100  # no pivots: 110 tokens a sample, as before
    short, long = ["What is 15% of 80?"] * 10, ["A much longer problem. " * 20] * 10
    assert P.samples_budget(10, short) == 16 + 10 * (48 + 4)  # the floor
    assert P.samples_budget(10, long) > P.samples_budget(10, PIVOTS) > P.samples_budget(10, short)
    assert P.approx_tokens("小明有3个苹果") >= 7  # characters outside ASCII count about one token each
    assert call_budget(tree, leaf, SynthOptions()) == P.samples_budget(10, PIVOTS)  # the root's pivots
    assert call_budget(tree, leaf, SynthOptions(max_tokens=800)) == 800
    plan = plan_synthesis(tree, {}, SynthOptions(per_leaf=10), model="m")
    longer = T.with_nodes(tree, [dataclasses.replace(tree.node(tree.root_id), pivots=tuple(long))])
    assert plan_synthesis(longer, {}, SynthOptions(per_leaf=10), model="m").completion_tokens > plan.completion_tokens


# -- through the CLI and a real HTTP endpoint --------------------------------------------------------


def test_cli_synth_over_http_retries_cut_off_replies(tmp_path, monkeypatch):
    """``treesynth synth`` against an OpenAI-compatible server that cuts replies off at the budget it
    is given: samples and responses are asked again with larger budgets; a response that never fits
    is not stored and the summary says so."""
    from helpers_http import FakeOpenAIServer, RecordedRequest, Reply, openai_flags

    from treesynth_core.cli.app import app

    full = samples_of("synth_cut_off", 2)
    cut_early = load_capable("synth_cut_off")["replies"]["synth"][0]["text"]
    never_fits = full[3]

    def respond(request: RecordedRequest) -> Reply:
        body, text = request.body, request.last_user_message()
        if '{"samples"' in text:  # cut off until the budget is twice the first one
            first_budget[0] = first_budget[0] or body["max_tokens"]
            if body["max_tokens"] < 2 * first_budget[0]:
                return Reply.ok(cut_early, finish_reason="length")
            return Reply.ok(json.dumps({"samples": full}))
        if text.startswith(never_fits) or body["max_tokens"] < 2048:
            return Reply.ok("Step 1: The first", finish_reason="length")
        return Reply.ok("Step 1: work it out.\nFinal answer: 42.")

    first_budget = [0]
    tree_file = tmp_path / "tree.json"
    tree_file.write_text(
        json.dumps(
            {
                "format": "treesynth-tree",
                "version": 1,
                "task": "Grade-school math word problems",
                "style": "GSM8K-style",
                "root": {
                    "criterion": "Math topic",
                    "pivots": list(PIVOTS),
                    "children": [{"value": "Speed and distance"}],
                },
            }
        )
    )
    for var in ("TREESYNTH_LLM", "TREESYNTH_BASE_URL", "TREESYNTH_MODEL"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()
    proj = tmp_path / "proj"
    with FakeOpenAIServer(respond=respond, model="capable-model") as server:
        created = runner.invoke(
            app,
            [
                "new",
                str(proj),
                "--from-tree",
                str(tree_file),
                *openai_flags(server.base_url, "capable-model"),
            ],
        )
        assert created.exit_code == 0, created.output
        result = runner.invoke(app, ["synth", str(proj), "--per-leaf", "10", "--responses", "--json"])
        assert result.exit_code == 0, result.output
        requests = server.chat_requests
    data = json.loads(result.stdout)
    assert data["added"] == 10 and data["failed_calls"] == 0 and data["responses_cut_off"] == 1
    samples_requests = [r for r in requests if '{"samples"' in r.last_user_message()]
    schema = samples_requests[0].response_format["json_schema"]["schema"]
    assert schema["properties"]["samples"]["minItems"] == 10  # 10 a call by default
    assert [r.body["max_tokens"] for r in samples_requests] == [first_budget[0], 2 * first_budget[0]]
    assert first_budget[0] == P.samples_budget(10, PIVOTS)
    with Project.open(proj) as project:
        samples = project.samples()
    assert [s.instruction for s in samples] == full
    assert [s.response is None for s in samples] == [text == never_fits for text in full]
    assert all(s.response == "Step 1: work it out.\nFinal answer: 42." for s in samples if s.instruction != never_fits)
    text = runner.invoke(app, ["synth", str(proj), "--per-leaf", "10", "--estimate"]).stdout
    assert "0 samples to make" in text


def test_ten_samples_a_call_is_the_one_default_everywhere():
    """Leaf synthesis, the flat baseline (compared with the tree on equal terms) and rebalancing (the
    paper's balance also fills in batches of 10) share one default; the CLI commands show it."""

    from typer.main import get_command

    from treesynth_core.cli.app import app
    from treesynth_core.data.balance import BalanceOptions, shortfall_options
    from treesynth_core.generate.baseline import BaselineOptions
    from treesynth_core.generate.synth import PER_CALL

    assert PER_CALL == SynthOptions().per_call == BalanceOptions.per_call == BaselineOptions.per_call == 10
    options = shortfall_options(30, ["leaf"])
    assert options.per_call == PER_CALL and options.sampled_scale == 1  # balance targets are its own
    commands = get_command(app).commands
    for name in ("synth", "baseline", "balance"):
        [param] = [p for p in commands[name].params if p.name == "per_call"]
        assert param.default == PER_CALL, name


def test_job_summaries_say_how_many_responses_were_cut_off():
    from treesynth_core.generate.baseline import BaselineReport
    from treesynth_core.generate.synth import SynthReport
    from treesynth_core.jobs.specs import job_spec
    from treesynth_core.store import RunStats

    stats = RunStats(3, 0, 0, 3, 0, 0, 0, 0, 0.0, by_command={}, by_model={}, runs=[])
    assert "2 responses were cut off" in job_spec("synth").summary(SynthReport(added=5, responses_cut_off=2), stats)
    assert "cut off" not in job_spec("synth").summary(SynthReport(added=5), stats)
    baseline = BaselineReport(requested=5, total=5, responses_cut_off=1)
    assert "1 responses were cut off" in job_spec("baseline").summary(baseline, stats)
