"""A batch walk in rounds: ``collect`` turns a synth round's replies into samples once, the next
``prepare`` starts from the stored samples (it does not replay earlier rounds' replies), and the
last ``synth`` sends nothing and stores what the online run stores."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tests.helpers_batch import make_project, reply_for, run_batch
from tests.helpers_http import FakeOpenAIServer, Reply
from treesynth_core.batch.files import read_jsonl
from treesynth_core.cli.app import app
from treesynth_core.store import Project

runner = CliRunner()
MODEL = ("--llm", "openai", "--model", "gpt-4o-mini")
SYNTH = ("--per-leaf", "4", "--per-call", "2")


def invoke(*args: object) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def samples_of(folder: Path) -> list[tuple[str, str, str, str | None]]:
    with Project.open(folder) as p:
        tree = p.tree()
        return sorted((tree.node(s.leaf_id).value, s.key, s.instruction, s.response) for s in p.samples())


def online_run(folder: Path, synth: tuple[str, ...], model: Callable[[Mapping[str, Any]], dict[str, Any]]) -> list:
    with FakeOpenAIServer(respond=lambda r: Reply(body=model(r.body))) as server:
        invoke("synth", folder, *synth, *MODEL, "--base-url", server.base_url, "-q")
        return sorted(json.dumps(r.body, sort_keys=True) for r in server.requests if r.method == "POST")


def repeat(body: Mapping[str, Any]) -> dict[str, Any]:
    return reply_for(body, repeat=True)


class Lookups:
    """The cache keys a run looks up in the reply cache and the collected batch replies: the replies
    it replays."""

    def __init__(self, monkeypatch: Any) -> None:
        self.keys: list[str] = []
        for name in ("cache_get", "batch_reply"):
            original = getattr(Project, name)

            def spy(project: Project, key: str, _original: Any = original) -> Any:
                self.keys.append(key)
                return _original(project, key)

            monkeypatch.setattr(Project, name, spy)


def walk(
    folder: Path, tmp_path: Path, synth: tuple[str, ...], model: Any, lookups: Lookups
) -> list[tuple[list[str], list[str], dict]]:
    """prepare -> vllm run-batch -> collect until prepare finds nothing: per round, its request ids,
    the keys its prepare looked up, and what collect said."""
    rounds = []
    while True:
        lookups.keys.clear()
        prepared = json.loads(invoke("batch", folder, "prepare", "--synth", *synth, *MODEL, "--json"))
        looked_up = list(lookups.keys)
        if not prepared["requests"]:
            rounds.append(([], looked_up, {}))
            return rounds
        out = tmp_path / f"out-{len(rounds)}.jsonl"
        run_batch(Path(prepared["files"][0]), out, model=model)
        got = json.loads(invoke("batch", folder, "collect", "--from", out, *MODEL, "--json"))
        ids = [line["custom_id"] for line in read_jsonl(Path(prepared["files"][0]))]
        rounds.append((ids, looked_up, got))
        assert len(rounds) < 6


def test_each_round_replays_only_its_own_replies_and_synth_sends_nothing(tmp_path, monkeypatch):
    online_dir = make_project(tmp_path / "online")
    batch_dir = tmp_path / "batch"
    shutil.copytree(online_dir, batch_dir)
    online_bodies = online_run(online_dir, SYNTH, repeat)
    lookups = Lookups(monkeypatch)

    rounds = walk(batch_dir, tmp_path, SYNTH, repeat, lookups)

    assert len(rounds) == 3  # the samples, another call for the leaves duplicates left short, then none
    (first, _, got1), (second, looked_up2, got2), (_, looked_up3, _) = rounds
    # each leaf lost a sample to a duplicate: its first wave is stored, its next call waits for round 2
    assert (got1["samples_added"], got1["leaves_waiting"], got1["unused_replies"]) == (5, 2, 0)
    assert not set(first) & set(looked_up2)  # round 2's prepare replays nothing of round 1
    assert set(looked_up2) <= set(second)
    assert looked_up3 == []  # every leaf is full: the last prepare replays nothing
    assert got2["samples_added"] == 8 - got1["samples_added"] and got2["leaves_waiting"] == 0

    with FakeOpenAIServer(respond=lambda r: Reply(body=repeat(r.body))) as server:
        lookups.keys.clear()
        invoke("synth", batch_dir, *SYNTH, *MODEL, "--base-url", server.base_url, "-q")
        assert [r for r in server.requests if r.method == "POST"] == []
    assert lookups.keys == []  # nothing left to fill: synth replays nothing either
    with Project.open(batch_dir) as p:
        assert p.stats().by_command["synth"].requests == 0  # collect's runs from the replies sent nothing
    prepared_bodies = sorted(
        json.dumps(line["body"], sort_keys=True)
        for f in sorted((batch_dir / "batches").rglob("shard-*.jsonl"))
        if not f.name.endswith(".calls.jsonl")
        for line in read_jsonl(f)
    )
    assert prepared_bodies == online_bodies  # exactly the requests the online run sends
    assert samples_of(batch_dir) == samples_of(online_dir) and len(samples_of(batch_dir)) == 8


def test_responses_wait_for_their_round_and_come_out_as_online(tmp_path, monkeypatch):
    synth = (*SYNTH, "--responses")
    online_dir = make_project(tmp_path / "online")
    batch_dir = tmp_path / "batch"
    shutil.copytree(online_dir, batch_dir)
    online_run(online_dir, synth, reply_for)
    lookups = Lookups(monkeypatch)

    rounds = walk(batch_dir, tmp_path, synth, reply_for, lookups)

    assert len(rounds) == 3
    (first, _, got1), (second, _, got2), (_, looked_up3, _) = rounds
    # the samples wait for their responses: nothing stored, and their replies count as unused
    assert (got1["samples_added"], got1["leaves_waiting"], got1["unused_replies"]) == (0, 2, len(first))
    assert (got2["samples_added"], got2["leaves_waiting"], got2["unused_replies"]) == (8, 0, 0)
    assert looked_up3 == []
    with FakeOpenAIServer(respond=lambda r: Reply(body=reply_for(r.body))) as server:
        invoke("synth", batch_dir, *synth, *MODEL, "--base-url", server.base_url, "-q")
        assert [r for r in server.requests if r.method == "POST"] == []
    assert samples_of(batch_dir) == samples_of(online_dir)
    assert all(response for *_, response in samples_of(batch_dir))


def test_an_unusable_reply_is_counted_and_asked_again_in_the_next_round(tmp_path, monkeypatch):
    folder = make_project(tmp_path / "p")
    bad: set[int] = set()

    def model(body: Mapping[str, Any]) -> dict[str, Any]:
        reply = reply_for(body)
        if not bad:  # the first request gets a reply that is not JSON
            bad.add(1)
            reply["choices"][0]["message"]["content"] = "Sure! Here are your samples."
        return reply

    rounds = walk(folder, tmp_path, SYNTH, model, Lookups(monkeypatch))
    first = rounds[0][2]
    # the other leaf is filled; this one's wave waits whole for the re-ask (its good reply waits too)
    assert (first["samples_added"], first["leaves_waiting"], first["unusable_replies"]) == (4, 1, 1)
    assert first["unused_replies"] == 2
    # its wave is taken again whole, the bad reply with it (never cached, so counted again)
    assert (rounds[1][2]["samples_added"], rounds[1][2]["unusable_replies"], rounds[1][2]["unused_replies"]) == (
        4,
        1,
        1,
    )
    assert len(samples_of(folder)) == 8
