"""Batch generation: shard files, the Files/Batches client against a fake server, collecting OpenAI
and ``vllm run-batch`` output, and the round trip prepare -> collect -> synth with zero online calls."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers_batch import FakeBatchServer, make_project, reply_for, run_batch
from tests.helpers_http import FakeOpenAIServer, RecordedRequest, Reply
from treesynth_core.batch.collect import read_outcomes
from treesynth_core.batch.files import read_calls, read_jsonl, write_shards
from treesynth_core.batch.replay import BatchRequest
from treesynth_core.cli.app import app
from treesynth_core.llm.pricing import batch_price, price_for
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.store import Project
from treesynth_core.store.samples import UNROUTED, NewSample
from treesynth_core.tree import model as T

FIXTURES = Path(__file__).parent / "fixtures" / "batch"
runner = CliRunner()
MODEL = ("--llm", "openai", "--model", "gpt-4o-mini")
SYNTH = ("--per-leaf", "4", "--per-call", "2", "--responses")


def invoke(*args: object, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.stdout


def samples_of(folder: Path) -> list[tuple[str, str, str | None]]:
    with Project.open(folder) as p:
        tree = p.tree()
        return sorted((tree.node(s.leaf_id).value, s.key, s.instruction, s.response) for s in p.samples())


def online(request: RecordedRequest) -> Reply:
    return Reply(body=reply_for(request.body))


def prepare(folder: Path, *extra: object) -> dict:
    return json.loads(invoke("batch", folder, "prepare", "--synth", *SYNTH, *MODEL, *extra, "--json"))


def lines_of(files: list[str]) -> list[dict]:
    return [line for f in files for line in read_jsonl(Path(f))]


def test_shards_split_at_the_line_and_byte_limits(tmp_path):
    requests = [
        BatchRequest(f"k{i}", {"model": "m", "messages": [{"role": "user", "content": "x" * 50}]}) for i in range(7)
    ]
    shards = write_shards(requests, tmp_path / "a", max_lines=3)
    assert [s.requests for s in shards] == [3, 3, 1]
    assert [line["custom_id"] for s in shards for line in read_jsonl(s.path)] == [f"k{i}" for i in range(7)]
    line = next(read_jsonl(shards[0].path))
    assert line["method"] == "POST" and line["url"] == "/v1/chat/completions" and line["body"]["model"] == "m"
    assert read_calls(shards[0].path)["k0"].purpose == ""
    size = shards[0].path.stat().st_size // 3  # one line's bytes
    by_bytes = write_shards(requests, tmp_path / "b", max_bytes=2 * size + 1)
    assert [s.requests for s in by_bytes] == [2, 2, 2, 1]
    assert all(s.path.stat().st_size <= 2 * size + 1 for s in by_bytes)


def test_shards_break_at_openais_50000_lines(tmp_path):
    requests = (BatchRequest(f"k{i}", {"m": 1}) for i in range(50_001))
    shards = write_shards(requests, tmp_path)
    assert [s.requests for s in shards] == [50_000, 1]


def test_batch_price_is_half_the_online_price():
    settings = BackendSettings(backend="openai", model="gpt-4o-mini")
    online_price, batch = price_for("gpt-4o-mini", settings), batch_price("gpt-4o-mini", settings)
    assert online_price is not None and batch == (online_price[0] / 2, online_price[1] / 2)


def test_vllm_output_lines_are_read_as_replies_and_failures():
    outcomes = {o.custom_id: o for o in read_outcomes(FIXTURES / "vllm_output.jsonl")}
    assert outcomes["b2v1:aaaa"].body is not None and outcomes["b2v1:aaaa"].error is None
    assert outcomes["b2v1:bbbb"].body is None and "HTTP 400" in (outcomes["b2v1:bbbb"].error or "")
    assert outcomes["b2v1:cccc"].body is not None  # cut off: kept; the run that uses it asks again


def test_round_trip_prepare_vllm_collect_synth_matches_online_with_zero_calls(tmp_path):
    online_dir = make_project(tmp_path / "online")
    batch_dir = tmp_path / "batch"
    shutil.copytree(online_dir, batch_dir)
    with FakeOpenAIServer(respond=online) as server:
        invoke("synth", online_dir, *SYNTH, *MODEL, "--base-url", server.base_url, "-q")
        online_bodies = sorted(json.dumps(r.body, sort_keys=True) for r in server.requests if r.method == "POST")

    prepared_bodies, rounds = [], 0
    while (round_ := prepare(batch_dir))["requests"]:
        rounds += 1
        prepared_bodies += [json.dumps(line["body"], sort_keys=True) for line in lines_of(round_["files"])]
        outputs = []
        for i, shard in enumerate(round_["files"]):
            outputs += ["--from", tmp_path / f"out-{rounds}-{i}.jsonl"]
            run_batch(Path(shard), Path(outputs[-1]))
        invoke("batch", batch_dir, "collect", *outputs, *MODEL)
        assert rounds < 5
    assert rounds == 2  # the samples, then their responses
    statuses = json.loads(invoke("batch", batch_dir, "status", *MODEL, "--json"))["batches"]
    assert {b["status"] for b in statuses} == {"collected"}  # submit would send none of them
    assert sorted(prepared_bodies) == online_bodies  # exactly the requests the online run sends

    with FakeOpenAIServer(respond=online) as server:
        invoke("synth", batch_dir, *SYNTH, *MODEL, "--base-url", server.base_url, "-q")
        assert [r for r in server.requests if r.method == "POST"] == []
    assert samples_of(batch_dir) == samples_of(online_dir)
    assert len(samples_of(batch_dir)) == 8 and all(response for *_, response in samples_of(batch_dir))


def test_cut_off_batch_replies_are_asked_again_bigger_in_the_next_round(tmp_path):
    def cut(body) -> bool:  # every other samples call is cut off at its first budget (256 tokens)
        return "response_format" in body and body["max_tokens"] == 256 and body["seed"] % 2 == 0

    online_dir = make_project(tmp_path / "online")
    batch_dir = tmp_path / "batch"
    shutil.copytree(online_dir, batch_dir)
    with FakeOpenAIServer(respond=lambda r: Reply(body=reply_for(r.body, cut))) as server:
        invoke("synth", online_dir, *SYNTH, *MODEL, "--base-url", server.base_url, "-q")
        online_bodies = sorted(json.dumps(r.body, sort_keys=True) for r in server.requests if r.method == "POST")
    assert any(json.loads(b)["max_tokens"] == 512 for b in online_bodies)  # the online run asked again
    prepared, rounds = [], 0
    while (round_ := prepare(batch_dir))["requests"]:
        rounds += 1
        prepared += [json.dumps(line["body"], sort_keys=True) for line in lines_of(round_["files"])]
        run_batch(Path(round_["files"][0]), tmp_path / f"out-{rounds}.jsonl", model=lambda b: reply_for(b, cut))
        invoke("batch", batch_dir, "collect", "--from", tmp_path / f"out-{rounds}.jsonl", *MODEL)
        assert rounds < 6
    assert sorted(prepared) == online_bodies
    with FakeOpenAIServer(respond=online) as server:
        invoke("synth", batch_dir, *SYNTH, *MODEL, "--base-url", server.base_url, "-q")
        assert [r for r in server.requests if r.method == "POST"] == []
    assert samples_of(batch_dir) == samples_of(online_dir)


def test_verified_run_with_duplicates_takes_more_rounds_and_still_matches_online(tmp_path):
    synth = (*SYNTH, "--verify", "3")
    online_dir = make_project(tmp_path / "online")
    batch_dir = tmp_path / "batch"
    shutil.copytree(online_dir, batch_dir)

    def model(body):
        return reply_for(body, repeat=True)

    with FakeOpenAIServer(respond=lambda r: Reply(body=model(r.body))) as server:
        invoke("synth", online_dir, *synth, *MODEL, "--base-url", server.base_url, "-q")
        online_bodies = sorted(json.dumps(r.body, sort_keys=True) for r in server.requests if r.method == "POST")
    prepared, rounds = [], 0
    while (round_ := json.loads(invoke("batch", batch_dir, "prepare", "--synth", *synth, *MODEL, "--json")))[
        "requests"
    ]:
        rounds += 1
        prepared += [json.dumps(line["body"], sort_keys=True) for line in lines_of(round_["files"])]
        run_batch(Path(round_["files"][0]), tmp_path / f"out-{rounds}.jsonl", model=model)
        invoke("batch", batch_dir, "collect", "--from", tmp_path / f"out-{rounds}.jsonl", *MODEL)
        assert rounds < 8
    assert rounds >= 3  # samples, their verification draws, then another wave for the leaves short of one
    assert sorted(prepared) == online_bodies
    with FakeOpenAIServer(respond=online) as server:
        invoke("synth", batch_dir, *synth, *MODEL, "--base-url", server.base_url, "-q")
        assert [r for r in server.requests if r.method == "POST"] == []
    assert samples_of(batch_dir) == samples_of(online_dir)
    assert len(samples_of(batch_dir)) == 8


def test_collect_twice_changes_nothing(tmp_path):
    folder = make_project(tmp_path / "p")
    round_ = prepare(folder, "--max-lines", "1")
    assert len(round_["files"]) == round_["requests"] == 4  # one file a request
    out = tmp_path / "out.jsonl"
    with out.open("w") as handle:
        for shard in round_["files"]:
            run_batch(Path(shard), tmp_path / "one.jsonl")
            handle.write((tmp_path / "one.jsonl").read_text())
    first = json.loads(invoke("batch", folder, "collect", "--from", out, *MODEL, "--json"))
    second = json.loads(invoke("batch", folder, "collect", "--from", out, *MODEL, "--json"))
    assert (first["replies"], first["already_collected"]) == (4, 0)
    assert (second["replies"], second["already_collected"]) == (0, 4)
    with Project.open(folder) as p:
        stats = p.stats()
    assert stats.by_command["batch-collect"].calls == 4  # logged once, with their tokens
    assert stats.by_command["batch-collect"].prompt_tokens == 400


def test_submit_status_collect_through_the_batches_endpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-0123456789")
    folder = make_project(tmp_path / "p")
    with FakeBatchServer() as server:
        url = ("--base-url", server.base_url)
        assert prepare(folder, "--max-lines", "3")["requests"] == 4
        sent = invoke("batch", folder, "submit", *MODEL, *url)
        assert server.base_url in sent and "Submitted 2 batches" in sent
        assert all(a == "Bearer sk-test-secret-0123456789" for a in server.state.auth)
        statuses = []
        for _ in range(3):
            data = json.loads(invoke("batch", folder, "status", *MODEL, *url, "--json"))
            statuses.append({b["status"] for b in data["batches"]})
        assert statuses == [{"in_progress"}, {"finalizing"}, {"completed"}]
        got = json.loads(invoke("batch", folder, "collect", *MODEL, *url, "--json"))
        assert (got["replies"], got["failed"], got["waiting"]) == (4, 0, [])
        assert prepare(folder)["requests"] == 8  # the next round: a response for each sample
        assert (
            json.loads(invoke("batch", folder, "status", *MODEL, *url, "--json"))["batches"][0]["status"] == "collected"
        )
    secret = b"sk-test-secret-0123456789"
    for path in folder.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    with sqlite3.connect(folder / "treesynth.db") as conn:
        assert not any(secret.decode() in str(row) for row in conn.execute("SELECT * FROM batches"))


def test_expired_and_partly_failed_batches_keep_what_came_back(tmp_path):
    folder = make_project(tmp_path / "p")
    with FakeBatchServer(final="expired", finish_lines=3, fail_every=2) as server:
        url = ("--base-url", server.base_url)
        first = prepare(folder)
        invoke("batch", folder, "submit", *MODEL, *url)
        waiting = json.loads(invoke("batch", folder, "collect", *MODEL, *url, "--json"))
        assert waiting["waiting"] and waiting["replies"] == 0
        for _ in range(3):
            invoke("batch", folder, "status", *MODEL, *url)
        got = json.loads(invoke("batch", folder, "collect", *MODEL, *url, "--json"))
    assert (got["replies"], got["failed"]) == (2, 1)  # 3 of 4 ran before it expired, one failed
    again = prepare(folder)
    sent_before = {line["custom_id"] for line in lines_of(first["files"])}
    again_ids = {line["custom_id"] for line in lines_of(again["files"])}
    assert len(sent_before & again_ids) == 2  # the failed one and the one that never ran
    with Project.open(folder) as p:
        failed = p.stats().by_command["batch-collect"].failed
    assert failed == 1


def test_prepare_needs_the_openai_backend_and_a_model(tmp_path):
    folder = make_project(tmp_path / "p")
    result = runner.invoke(app, ["batch", str(folder), "prepare", "--synth", "--llm", "embedded"])
    assert result.exit_code == 1 and "--llm openai --model" in result.output


def test_submit_to_a_server_without_batches_says_so(tmp_path):
    folder = make_project(tmp_path / "p")
    prepare(folder)
    with FakeOpenAIServer() as server:
        result = runner.invoke(app, ["batch", str(folder), "submit", *MODEL, "--base-url", server.base_url])
    assert result.exit_code == 1 and "vllm run-batch" in result.output


def test_stats_and_the_estimate_use_the_batch_price(tmp_path):
    folder = make_project(tmp_path / "p")
    online_est = json.loads(invoke("synth", folder, *SYNTH, *MODEL, "--estimate", "--json"))
    batch_est = json.loads(invoke("synth", folder, *SYNTH, *MODEL, "--estimate", "--batch", "--json"))
    assert batch_est["cost_usd"] == pytest.approx(online_est["cost_usd"] / 2)
    round_ = prepare(folder)
    assert round_["run_cost_usd"] == pytest.approx(batch_est["cost_usd"])
    run_batch(Path(round_["files"][0]), tmp_path / "out.jsonl")
    invoke("batch", folder, "collect", "--from", tmp_path / "out.jsonl", *MODEL)
    invoke("settings", folder, "--llm", "openai", "--model", "gpt-4o-mini")
    stats = json.loads(invoke("stats", folder, "--json"))
    full = price_for("gpt-4o-mini", None)
    assert full is not None
    # 4 calls of 100 prompt and 50 completion tokens, at half price
    assert stats["cost_usd"] == pytest.approx((400 * full[0] + 200 * full[1]) / 2e6)


def test_route_round_trip_one_level_a_round_then_zero_calls(tmp_path):
    online_dir = tmp_path / "online"
    with Project.create(online_dir, task="Math word problems") as p:
        tree = T.replace_criterion(p.tree(), p.tree().root_id, "Operation", ["addition", "subtraction"])
        for kid in tree.children(tree.root_id):
            tree = T.replace_criterion(tree, kid.id, "Entity", ["fruit", "money"])
        p.replace_tree(tree)
        texts = ["3 apples plus 4 apples", "10 coins minus 3", "9 pears minus 4", "5 coins plus 2 coins"]
        rows = [
            NewSample(leaf_id=UNROUTED, key=f"row:{i}", instruction=t, path=[], sample_set="data")
            for i, t in enumerate(texts)
        ]
        p.import_samples(rows, sample_set="data")
    batch_dir = tmp_path / "batch"
    shutil.copytree(online_dir, batch_dir)
    route = ("--set", "data", "--router", "llm", *MODEL)
    with FakeOpenAIServer(respond=online) as server:
        invoke("route", online_dir, *route, "--base-url", server.base_url, "-q")
        online_bodies = sorted(json.dumps(r.body, sort_keys=True) for r in server.requests if r.method == "POST")
    prepared, rounds = [], 0
    while (round_ := json.loads(invoke("batch", batch_dir, "prepare", "--route", "--set", "data", *MODEL, "--json")))[
        "requests"
    ]:
        rounds += 1
        prepared += [json.dumps(line["body"], sort_keys=True) for line in lines_of(round_["files"])]
        run_batch(Path(round_["files"][0]), tmp_path / f"out-{rounds}.jsonl")
        invoke("batch", batch_dir, "collect", "--from", tmp_path / f"out-{rounds}.jsonl", *MODEL)
        assert rounds < 4
    assert rounds == 2 and sorted(prepared) == online_bodies  # one level of the tree a round
    with FakeOpenAIServer(respond=online) as server:
        invoke("route", batch_dir, *route, "--base-url", server.base_url, "-q")
        assert [r for r in server.requests if r.method == "POST"] == []

    def placed(folder: Path) -> list[tuple[str, str]]:
        with Project.open(folder) as p:
            return sorted((s.instruction, json.dumps(s.path)) for s in p.samples(sample_set="data"))

    assert placed(batch_dir) == placed(online_dir)
    assert all(json.loads(path) for _, path in placed(batch_dir))  # every sample reached a leaf


def test_a_batch_the_provider_failed_exits_non_zero_and_is_prepared_again(tmp_path):
    folder = make_project(tmp_path / "p")
    with FakeBatchServer(final="failed") as server:
        url = ("--base-url", server.base_url)
        first = prepare(folder)
        invoke("batch", folder, "submit", *MODEL, *url)
        for _ in range(3):
            invoke("batch", folder, "status", *MODEL, *url)
        result = runner.invoke(app, ["batch", str(folder), "collect", *MODEL, *url])
    assert result.exit_code == 1 and "failed" in result.output
    assert {line["custom_id"] for line in lines_of(prepare(folder)["files"])} == {
        line["custom_id"] for line in lines_of(first["files"])
    }


def test_preparing_twice_before_collecting_writes_no_request_twice(tmp_path):
    folder = make_project(tmp_path / "p")
    first = prepare(folder)
    again = prepare(folder)
    assert (first["requests"], again["requests"], again["already_out"]) == (4, 0, 4)
    assert "Nothing new to prepare: 4 requests are out" in invoke("batch", folder, "prepare", "--synth", *SYNTH, *MODEL)


def test_a_vllm_output_missing_lines_leaves_them_to_the_next_round(tmp_path):
    folder = make_project(tmp_path / "p")
    first = prepare(folder)
    run_batch(Path(first["files"][0]), tmp_path / "out.jsonl", skip=lambda i: i == 1)  # the process died on one
    invoke("batch", folder, "collect", "--from", tmp_path / "out.jsonl", *MODEL)
    again = prepare(folder)
    missing = lines_of(first["files"])[1]["custom_id"]
    assert missing in {line["custom_id"] for line in lines_of(again["files"])}
    assert again["already_out"] == 0


def test_status_lists_each_shard_with_what_collect_took(tmp_path):
    folder = make_project(tmp_path / "p")
    first = prepare(folder, "--max-lines", "2")
    run_batch(Path(first["files"][0]), tmp_path / "out.jsonl", skip=lambda i: i == 1)
    invoke("batch", folder, "collect", "--from", tmp_path / "out.jsonl", *MODEL)
    lines = invoke("batch", folder, "status").splitlines()
    assert len(lines) == 2
    assert "collected" in lines[0] and "1 replies, 1 missing" in lines[0]
    assert "prepared" in lines[1] and "2 requests" in lines[1]


def test_batch_replies_take_nothing_from_the_call_cap(tmp_path):
    folder = make_project(tmp_path / "p")
    round_ = prepare(folder)  # the 4 samples calls; their 8 responses follow online
    run_batch(Path(round_["files"][0]), tmp_path / "out.jsonl")
    invoke("batch", folder, "collect", "--from", tmp_path / "out.jsonl", *MODEL)
    synth = ("synth", folder, *SYNTH, *MODEL, "--json")
    with FakeOpenAIServer(respond=online) as server:
        url = ("--base-url", server.base_url)
        capped = runner.invoke(app, [str(a) for a in (*synth, *url, "--max-calls", "7")])
        assert capped.exit_code == 1 and "about 8 LLM calls, above your cap of 7" in capped.output
        data = json.loads(invoke(*synth, *url, "--max-calls", "8"))  # the 4 batch replies are not counted
        assert len([r for r in server.requests if r.method == "POST"]) == 8
    assert data["total_samples"] == 8 and all(response for *_, response in samples_of(folder))
    llm = data["llm"]
    assert (llm["calls"], llm["requests"]) == (12, 8)  # the batch replies are logged as calls, none sent
