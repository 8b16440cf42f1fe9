"""Fault injection, the reply side (issue 12, items 2 and 3): a fake OpenAI-compatible server sends
malformed JSON, replies that fail validation and replies cut off at the token limit, to ``treesynth
grow`` and ``treesynth synth`` run in-process. Unusable replies are logged as failed and never cached;
a run that made nothing exits 1 with one line, a partly failed one exits 3; once the server is
healthy, a rerun retries exactly the failed work."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from tests.fakes import HashEmbedder, ScriptedLLM
from tests.helpers_http import FakeOpenAIServer, RecordedRequest, Reply, openai_flags, purpose_of
from treesynth_core.cli import common
from treesynth_core.cli.app import app
from treesynth_core.errors import ParseError
from treesynth_core.llm.base import ChatRequest, ChatResult, cache_key
from treesynth_core.llm.recording import recording
from treesynth_core.prompts.replies import SamplesReply, ask_json
from treesynth_core.store import Project
from treesynth_core.tree import model as T

runner = CliRunner()
VALUES = ["addition", "subtraction", "multiplication"]
TREE = {
    "format": "treesynth-tree",
    "version": 1,
    "task": "Grade-school math word problems",
    "style": "one short word problem",
    "root": {"criterion": "Operation", "children": [{"value": v} for v in VALUES]},
}


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("TREESYNTH_BASE_URL", "TREESYNTH_API_KEY_ENV", "TREESYNTH_LLM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TREESYNTH_MAX_RETRIES", "0")
    monkeypatch.setitem(common.STATE, "announced", set())


def words(seed: str, n: int = 6) -> str:
    """A sample no other sample is a near duplicate of: words drawn from a hash of ``seed``."""
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return "Question: " + " ".join("w" + digest[i * 6 : i * 6 + 6] for i in range(n)) + "?"


def healthy(request: RecordedRequest) -> Reply:
    """Usable replies for growth (pivots, criterion, coverage) and synthesis (samples)."""
    purpose, n = purpose_of(request), len(request.body["messages"][-1]["content"])
    stamp = f"{n}:{request.body.get('seed')}:{request.last_user_message()}"
    if purpose == "criterion":
        pivots = request.last_user_message().count("\n- ") or 3
        values = [VALUES[i % 3] for i in range(max(pivots, 3))]
        return Reply.ok(json.dumps({"criterion": "Operation", "values": values}))
    if purpose == "coverage":
        return Reply.ok(json.dumps({"new_values": [], "complete": True}))
    if purpose == "route":
        return Reply.ok(json.dumps({"value": VALUES[0]}))
    if purpose == "concepts":
        topic = {"topic": "arithmetic", "concepts": ["sums", "differences", "products"]}
        return Reply.ok(json.dumps({"level": "school", "subject": "math", "topics": [topic]}))
    if purpose == "questions":
        return Reply.ok(json.dumps({"questions": [words(f"{stamp}:{i}") for i in range(5)]}))
    return Reply.ok(json.dumps({"samples": [words(f"{stamp}:{i}") for i in range(10)]}))


#: Unusable replies: not JSON, JSON that fails validation, and JSON cut off at the token limit.
FAULTS: dict[str, Callable[[RecordedRequest], Reply]] = {
    "malformed": lambda request: Reply.ok("Sure! Here are your samples: {samples: [oops"),
    "invalid": lambda request: Reply.ok(json.dumps({"items": ["x"], "criterion": "", "values": ["other"]})),
    "truncated": lambda request: Reply.ok('{"samples": ["A farmer has', finish_reason="length"),
}


class Switch:
    """A ``respond`` callback: ``fault`` answers the requests ``hit`` picks, the rest are healthy."""

    def __init__(self) -> None:
        self.fault: Callable[[RecordedRequest], Reply] | None = None
        self.hit: Callable[[RecordedRequest], bool] = lambda request: True

    def __call__(self, request: RecordedRequest) -> Reply:
        if self.fault is not None and self.hit(request):
            return self.fault(request)
        return healthy(request)


@pytest.fixture
def server():
    switch = Switch()
    with FakeOpenAIServer(respond=switch) as fake:
        fake.switch = switch  # type: ignore[attr-defined]
        yield fake


def new_project(tmp_path, server, tree: bool) -> object:
    proj = tmp_path / "p"
    extra: list[object] = []
    if tree:
        path = tmp_path / "tree.json"
        path.write_text(json.dumps(TREE))
        extra = ["--from-tree", path]
    assert invoke("new", proj, "--task", TREE["task"], *extra, *openai_flags(server.base_url, "m")).exit_code == 0
    return proj


def stats(proj) -> dict:
    result = invoke("stats", proj, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_error_line(result) -> str:
    """The one line that says why the run failed: the last on stderr, and the only one of its kind."""
    lines = result.stderr.strip().splitlines()
    assert sum(1 for line in lines if line.startswith(("error:", "partly failed:"))) == 1, result.stderr
    return lines[-1]


def sample_rows(proj) -> list[tuple[str, str]]:
    with Project.open(proj) as project:
        return [(s.leaf_id, s.instruction) for s in project.samples()]


# -- synth ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_synth_with_every_reply_unusable_fails_and_caches_nothing_then_resumes(tmp_path, server, fault):
    proj = new_project(tmp_path, server, tree=True)
    server.switch.fault = FAULTS[fault]
    result = invoke("synth", proj, "--per-leaf", 4, "--per-call", 4, "-q")
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert line.startswith("error: 0 of 12 samples made: the model gave no usable samples"), line
    assert "nothing unusable was cached, rerun when the endpoint is fixed" in line
    assert sample_rows(proj) == []
    sent = len(server.chat_requests)
    counted = stats(proj)
    assert sent >= 3 and counted["failed"] == sent and counted["calls"] == 0 and counted["cached"] == 0
    assert counted["runs"][0]["status"] == "failed"

    server.switch.fault = None  # the endpoint is fixed: every call is asked again, nothing from the cache
    again = invoke("synth", proj, "--per-leaf", 4, "--per-call", 4, "-q")
    assert again.exit_code == 0, again.output
    rows = sample_rows(proj)
    assert len(rows) == 12 and len(set(rows)) == 12
    assert len(server.chat_requests) - sent == 3  # one paid call per leaf
    assert stats(proj)["runs"][0] | {"calls": 3, "failed": 0, "status": "ok"} == stats(proj)["runs"][0]


def test_synth_with_one_leaf_unusable_exits_3_and_a_rerun_retries_that_leaf_only(tmp_path, server):
    proj = new_project(tmp_path, server, tree=True)
    server.switch.fault = FAULTS["malformed"]
    server.switch.hit = lambda request: any("subtraction" in m["content"] for m in request.body["messages"])
    result = invoke("synth", proj, "--per-leaf", 4, "--per-call", 4, "-q")
    assert result.exit_code == 3, result.output
    line = one_error_line(result)
    assert line.startswith("partly failed: 8 of 12 samples made; 1 leaf got no usable reply"), line
    assert "rerun to retry them" in line
    assert len(sample_rows(proj)) == 8
    sent = len(server.chat_requests)
    assert stats(proj)["failed"] == sent - 2 and stats(proj)["runs"][0]["status"] == "partial"

    server.switch.fault = None
    again = invoke("synth", proj, "--per-leaf", 4, "--per-call", 4, "-q")
    assert again.exit_code == 0, again.output
    rows = sample_rows(proj)
    assert len(rows) == 12 and len(set(rows)) == 12
    assert len(server.chat_requests) - sent == 1  # only the failed leaf's call; the others are full


def test_a_baseline_from_unusable_replies_fails_and_is_made_on_the_next_run(tmp_path, server):
    proj = new_project(tmp_path, server, tree=True)
    server.switch.fault = FAULTS["malformed"]
    result = invoke("baseline", proj, "--n", 4, "--per-call", 4, "-q")
    assert result.exit_code == 1, result.output
    assert one_error_line(result).startswith("error: 0 of 4 baseline samples made: the model gave no usable samples")
    sent = len(server.chat_requests)
    assert stats(proj)["failed"] == sent and stats(proj)["calls"] == 0

    server.switch.fault = None
    again = invoke("baseline", proj, "--n", 4, "--per-call", 4, "-q", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["total"] == 4 and len(server.chat_requests) - sent == 1


# -- grow -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_grow_with_every_reply_unusable_keeps_the_root_growable_and_recovers(tmp_path, server, fault):
    proj = new_project(tmp_path, server, tree=False)
    server.switch.fault = FAULTS[fault]
    if fault == "invalid":  # valid pivots, then criteria that fail validation
        server.switch.hit = lambda request: purpose_of(request) == "criterion"
    result = invoke("grow", proj, "--pivots", 3, "-q")
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert line.startswith("error: 0 of 1 node expanded: the model gave no usable"), line
    assert "run grow again when the endpoint is fixed" in line
    with Project.open(proj) as project:
        root = project.tree().root
    assert not root.expanded and root.note.startswith("expansion failed:") and "grow again to retry" in root.note
    sent = len(server.chat_requests)
    assert stats(proj)["failed"] == sent - (1 if fault == "invalid" else 0)

    server.switch.fault = None
    again = invoke("grow", proj, "--pivots", 3, "-q", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["children"] == 3
    assert len(server.chat_requests) > sent  # asked again: no unusable reply was served from the cache
    with Project.open(proj) as project:
        tree = project.tree()
    assert tree.root.split_criterion == "Operation" and sorted(k.value for k in tree.children(tree.root_id)) == sorted(
        VALUES
    )


def test_a_root_left_as_a_leaf_by_an_older_version_grows_again(tmp_path, server):
    """Before this fix a failed root was marked expanded ("kept as a leaf: the model gave no usable
    ...") and every later grow said "Nothing to grow"."""
    proj = new_project(tmp_path, server, tree=False)
    with Project.open(proj) as project:
        note = "kept as a leaf: the model gave no usable pivot samples after 3 attempts (last problem: x)"
        project.apply("grow", lambda tree: T.mark_leaf(tree, tree.root_id, note=note))
    result = invoke("grow", proj, "--pivots", 3, "-q", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["children"] == 3


# -- the recording stack --------------------------------------------------------------------------
def test_an_unusable_reply_is_logged_as_failed_and_a_cached_one_is_evicted(project: Project):
    llm = ScriptedLLM()
    llm.enqueue("samples", ["not json at all", json.dumps({"samples": ["a real sample here", "another one too"]})])
    request = ChatRequest.chat(None, "write 2 samples", seed=5, meta={"purpose": "samples"})
    wrapped = recording(llm, project, project.start_run("synth", {}))
    with pytest.raises(ParseError, match="no usable samples after 1 attempt "):
        asyncio.run(ask_json(wrapped, request, SamplesReply, attempts=1, what="samples"))
    key = cache_key(wrapped.backend, wrapped.model, request)
    assert project.cache_get(key) is None
    counts = project.stats()
    assert counts.failed == 1 and counts.calls == 0
    # a bad reply an older version cached is evicted and asked again
    project.cache_put(key, ChatResult(text="cached garbage", model="m"))
    reply, result = asyncio.run(ask_json(wrapped, request, SamplesReply, attempts=1, what="samples"))
    assert reply.samples == ["a real sample here", "another one too"] and not result.cached
    cached = project.cache_get(key)
    assert cached is not None and cached.text == result.text


# -- route, balance, fill-gaps, concepts --------------------------------------------------------------
def fails_on_malformed_replies(server, args: tuple[object, ...], begins: str) -> str:
    """Run ``args`` with every reply malformed: it exits 1 with one line beginning ``begins``."""
    server.switch.fault = FAULTS["malformed"]
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert line.startswith(begins) and "nothing unusable was cached" in line, line
    server.switch.fault = None
    return line


def imported(tmp_path, server, rows: int = 3) -> object:
    """A project with the tree and ``rows`` samples imported as the set "mine"."""
    proj = new_project(tmp_path, server, tree=True)
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps({"instruction": words(f"row {i}"), "output": "4"}) + "\n" for i in range(rows)))
    assert invoke("import", proj, data, "--set", "mine").exit_code == 0
    return proj


def test_route_with_every_reply_unusable_fails_and_routes_on_the_next_run(tmp_path, server):
    proj = imported(tmp_path, server)
    args = ("route", proj, "--set", "mine", "--router", "llm", "-q")
    line = fails_on_malformed_replies(server, args, "error: 0 of 3 samples routed: the model gave no usable value")
    assert "run route again when the endpoint is fixed" in line
    sent = len(server.chat_requests)
    assert stats(proj)["failed"] == sent and stats(proj)["calls"] == 0

    again = invoke(*args, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["leaf"] == 3 and len(server.chat_requests) - sent == 3


def test_route_with_one_sample_unusable_exits_3_and_a_rerun_routes_that_sample_only(tmp_path, server):
    proj = imported(tmp_path, server)
    server.switch.fault = FAULTS["malformed"]
    server.switch.hit = lambda request: any(words("row 1") in m["content"] for m in request.body["messages"])
    args = ("route", proj, "--set", "mine", "--router", "llm", "-q")
    result = invoke(*args)
    assert result.exit_code == 3, result.output
    line = one_error_line(result)
    assert line.startswith("partly failed: 2 of 3 samples routed; 1 sample got no usable reply"), line
    assert stats(proj)["runs"][0]["status"] == "partial"
    sent = len(server.chat_requests)

    server.switch.fault = None
    again = invoke(*args, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["leaf"] == 3 and len(server.chat_requests) - sent == 1


def test_balance_with_every_reply_unusable_fails_and_fills_the_leaves_on_the_next_run(tmp_path, server):
    proj = imported(tmp_path, server, rows=2)
    assert invoke("route", proj, "--set", "mine", "--router", "llm", "-q").exit_code == 0
    args = ("balance", proj, "--set", "mine", "--per-leaf", 2, "--per-call", 2, "--no-score", "-q")
    line = fails_on_malformed_replies(
        server, args, "error: 0 of 4 samples synthesized: the model gave no usable samples"
    )
    assert "run balance again when the endpoint is fixed" in line
    sent = len(server.chat_requests)
    assert stats(proj)["runs"][0]["status"] == "failed" and stats(proj)["cached"] == 0

    again = invoke(*args, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["synthesized"] == 4 and len(server.chat_requests) - sent == 2


def test_fill_gaps_with_every_reply_unusable_fails_and_runs_on_the_next_run(tmp_path, server, monkeypatch):
    monkeypatch.setattr(common, "load_embedder", lambda project, spec: HashEmbedder(dim=32))
    proj = new_project(tmp_path, server, tree=True)
    assert invoke("synth", proj, "--per-leaf", 4, "--per-call", 4, "-q").exit_code == 0
    args = ("fill-gaps", proj, "--embeddings", "--rounds", 1, "--per-round", 4, "-q")
    fails_on_malformed_replies(
        server, args, "error: 0 of 1 gap-filling call answered: the model gave no usable samples"
    )
    sent = len(server.chat_requests)
    assert len(sample_rows(proj)) == 12 and stats(proj)["runs"][0]["status"] == "failed"

    again = invoke(*args, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["failed_calls"] == 0 and len(server.chat_requests) - sent == 1


def documents(tmp_path) -> object:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("sums", "products"):
        (folder / f"{name}.md").write_text(f"# {name}\n\nHow {name} of whole numbers are worked out, with examples.\n")
    return folder


def test_concepts_extract_with_every_reply_unusable_fails_and_extracts_on_the_next_run(tmp_path, server):
    proj = new_project(tmp_path, server, tree=False)
    args = ("concepts", proj, "extract", "--docs", documents(tmp_path), "-q")
    fails_on_malformed_replies(server, args, "error: 0 of 2 documents extracted: the model gave no usable concepts")
    sent = len(server.chat_requests)
    assert stats(proj)["failed"] == sent and stats(proj)["calls"] == 0

    again = invoke("concepts", proj, "extract", "-q", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["extracted"] == 2 and len(server.chat_requests) - sent == 2


def test_concepts_synth_with_every_reply_unusable_fails_and_makes_the_questions_on_the_next_run(tmp_path, server):
    proj = new_project(tmp_path, server, tree=False)
    assert invoke("concepts", proj, "extract", "--docs", documents(tmp_path), "-q").exit_code == 0
    args = ("concepts", proj, "synth", "--level", 2, "--n", 4, "-q")
    fails_on_malformed_replies(server, args, "error: 0 of 4 questions made: the model gave no usable questions")
    assert sample_rows(proj) == [] and stats(proj)["runs"][0]["status"] == "failed"

    again = invoke(*args, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["total"] == 4


def test_fill_gaps_with_one_call_unusable_exits_3(tmp_path, server, monkeypatch):
    monkeypatch.setattr(common, "load_embedder", lambda project, spec: HashEmbedder(dim=32))
    proj = new_project(tmp_path, server, tree=True)
    assert invoke("synth", proj, "--per-leaf", 4, "--per-call", 4, "-q").exit_code == 0
    server.switch.fault = FAULTS["malformed"]
    spoiled: list[str] = []  # the first gap-filling call's prompt: every attempt of that call fails

    def first_gap_call(request) -> bool:
        prompt = next((m["content"] for m in request.body["messages"] if "NEW examples" in m["content"]), None)
        if prompt is None:
            return False
        spoiled.extend([] if spoiled else [prompt])
        return prompt == spoiled[0]

    server.switch.hit = first_gap_call
    result = invoke("fill-gaps", proj, "--embeddings", "--rounds", 1, "--per-round", 10, "-q")
    assert result.exit_code == 3, result.output
    assert one_error_line(result).startswith("partly failed: 1 of 2 gap-filling calls answered"), result.output
    assert "round generated" in " ".join(result.output.split())


def test_a_shortfall_counts_one_in_the_singular():
    from treesynth_core.generate.shortfall import Shortfall

    one = Shortfall("nodes expanded", 0, 1, "nodes", 1, "", "run grow again").message()
    assert one.startswith("0 of 1 node expanded: the model gave no usable reply")
    some = Shortfall("samples made", 3, 4, "leaves", 1, "bad JSON", "rerun").message()
    assert some.startswith("3 of 4 samples made; 1 leaf got no usable reply: bad JSON.")
    many = Shortfall("baseline samples made", 1, 9, "calls", 2, "bad JSON", "rerun").message()
    assert many.startswith("1 of 9 baseline samples made; 2 calls got no usable reply")


def test_leaves_short_for_unusable_replies_are_told_to_rerun_not_to_change_seed():
    """Walking the app: two leaves that got no usable reply were also counted among the leaves that
    "stayed below the target: run again with another seed" (a seed does not fix an unusable reply)."""
    from treesynth_core.generate.synth import SynthReport
    from treesynth_core.jobs.specs import synth_summary

    report = SynthReport(
        leaves=3, added=1, wanted=6, duplicates=1, short_leaves=["a", "b", "c"], failed_leaves=["b", "c"]
    )
    report.last_problem = "bad JSON"
    assert report.repeated_leaves == ["a"]
    text = synth_summary(report, None)
    assert "1 leaf stayed below the target (the model repeated itself)" in text
    assert "2 leaves got no usable reply: bad JSON." in text
    assert "added 1 sample, 1 duplicate dropped" in text
    report.short_leaves = ["b", "c"]
    assert "another seed" not in synth_summary(report, None)


def test_a_run_that_made_less_than_asked_for_is_partial_whatever_the_reason():
    """Walking the app: a flat baseline that made 0 of 4 samples (every usable reply repeated one
    already made) finished in a green success box."""
    from treesynth_core.generate.baseline import BaselineReport
    from treesynth_core.generate.shortfall import left_short
    from treesynth_core.generate.synth import SynthReport

    assert left_short(BaselineReport(requested=4, wanted=4, calls=4))  # 0 of 4, no failed call
    assert not left_short(BaselineReport(requested=4, wanted=4, added=4, total=4))
    assert left_short(SynthReport(short_leaves=["a"]))
    assert not left_short(SynthReport(leaves=2, added=4))
