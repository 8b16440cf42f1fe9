"""Routing and gap filling on replies written the way capable models answer
(``tests/fixtures/capable/route_*.json`` and ``gaps_*.json``): what the model said survives.

Routing: every sample lands where the model's reply puts it, whatever form the reply takes (the exact
value, other case or spacing, a trailing period, extra keys, a fenced JSON after a sentence, "none of
these" in its usual wordings, a reply cut off by ``max_tokens``); nothing is dropped and the counts add
up; through the scripted LLM and through the real HTTP client and CLI. Gap filling: long
multi-sentence samples are stored whole, a reply cut off by ``max_tokens`` is asked again with a
larger budget and never stored cut, and what is kept follows the sparse-cluster rule."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.capable import capable_responder, load_capable
from tests.fakes import ScriptedLLM
from tests.helpers_http import FakeOpenAIServer, openai_flags
from treesynth_core.cli.app import app
from treesynth_core.data import routing as R
from treesynth_core.data.pipeline import route_dataset
from treesynth_core.generate.gap_options import GapOptions
from treesynth_core.generate.gaps import fill_gaps, sparse_clusters, spherical_kmeans
from treesynth_core.seeding import stable_seed
from treesynth_core.store import Project
from treesynth_core.store.samples import UNROUTED, NewSample
from treesynth_core.tree import model as T
from treesynth_core.tree.file import read_tree_file

ROOT = Path(__file__).resolve().parents[1]
GSM8K_TREE = ROOT / "assets" / "trees" / "gsm8k_math.json"
ROUTE = "route_gsm8k_reply_forms"


def scripted(capable, name: str) -> ScriptedLLM:
    llm = ScriptedLLM(model="capable-model")
    for purpose, results in capable(name).items():
        llm.enqueue(purpose, results)
    return llm


# -- routing ----------------------------------------------------------------------------------------


def route_samples(name: str) -> list[dict[str, Any]]:
    return list(load_capable(name)["samples"])


def node_at(tree: T.Tree, values: list[str]) -> T.Node:
    """The node reached from the root by the listed values, exactly as the tree spells them."""
    node = tree.root
    for value in values:
        node = next(kid for kid in tree.children(node.id) if kid.value == value)
    return node


def sample_in(prompt: str) -> str:
    return prompt.split("Sample:\n", 1)[1].split("\n\nWhich value", 1)[0]


def assert_routed_as_the_replies_say(project: Project, report: dict[str, Any], name: str) -> None:
    """Every sample sits where a person reading its replies puts it; the counts add up."""
    tree = project.tree()
    expected = route_samples(name)
    placed = {s.instruction: s for s in project.samples(sample_set="data")}
    assert len(placed) == len(expected)
    for item in expected:
        sample, node = placed[item["text"]], node_at(tree, item["lands"])
        criteria = [step.criterion for step in tree.path(node.id)]
        assert sample.path == [{"criterion": c, "value": v} for c, v in zip(criteria, item["lands"], strict=True)]
        if item.get("none_fits"):
            assert sample.leaf_id == UNROUTED, item["text"]
        else:
            assert not tree.children(node.id) and sample.leaf_id == node.id, item["text"]
    fits = [item for item in expected if not item.get("none_fits")]
    none = [item for item in expected if item.get("none_fits")]
    assert report["total"] == report["routed"] == len(expected) and report["not_routed"] == 0
    assert (report["leaf"], report["none_fits"], report["errors"]) == (len(fits), len(none), 0)
    assert sum(report["per_leaf"].values()) + report["none_fits"] == report["total"]  # nothing dropped
    for item in fits:
        assert report["per_leaf"][node_at(tree, item["lands"]).id] >= 1
    stops = {entry["node_id"]: entry["count"] for entry in report["none_fits_at"]}
    assert stops == {node_at(tree, item["lands"]).id: 1 for item in none}


def assert_each_request_was_about_its_sample(prompts: list[str], max_tokens: list[int], name: str) -> None:
    """The replies were served sample by sample, level by level, and the cut-off one was asked again
    with the same prompt and a larger budget (so each reply answered the sample it was written for)."""
    replies = load_capable(name)["replies"]["route"]
    expected: list[str] = []
    for item in route_samples(name):
        expected += [item["text"]] * (len(item["lands"]) + bool(item.get("none_fits")))
    cut = [i for i, reply in enumerate(replies) if reply.get("finish_reason") == "length"]
    for i in cut:  # the cut-off reply is followed by the same request at a larger budget
        expected.insert(i + 1, expected[i])
        assert prompts[i + 1] == prompts[i] and max_tokens[i + 1] == 2 * max_tokens[i]
    assert [sample_in(p) for p in prompts] == expected and len(prompts) == len(replies)


@pytest.fixture
def gsm8k(tmp_path):
    with Project.create(tmp_path / "p", task="Grade-school math word problems") as project:
        project.replace_tree(read_tree_file(GSM8K_TREE))
        rows = [
            NewSample(leaf_id=UNROUTED, key=f"row:{i}", instruction=item["text"], path=[], sample_set="data")
            for i, item in enumerate(route_samples(ROUTE), 1)
        ]
        project.import_samples(rows, sample_set="data")
        yield project


def test_every_reply_form_lands_the_sample_where_the_model_said(gsm8k, capable):
    llm = scripted(capable, ROUTE)
    routed = asyncio.run(route_dataset(gsm8k, sample_set="data", router="llm", llm=llm, agreement_n=0, concurrency=1))
    report = dataclasses.asdict(routed)  # as --json prints it
    assert_routed_as_the_replies_say(gsm8k, report, ROUTE)
    requests = [r for r in llm.history if r.purpose() == "route"]
    assert not llm.queues["route"]  # every scripted reply was used, none was left over
    assert_each_request_was_about_its_sample(
        [r.messages[-1][1] for r in requests], [r.max_tokens or 0 for r in requests], ROUTE
    )
    assert all(len(r.messages) == 1 for r in requests)  # no reply needed a repair turn
    # paths carry the values as the tree spells them, not as the model wrote them
    paths = {json.dumps(s.path) for s in gsm8k.samples(sample_set="data")}
    assert not any(form in p for p in paths for form in ("Farming", "Only.", "  multiplication", "\u2013", "School"))


@pytest.mark.parametrize(
    "reply",
    [
        "addition only",
        "Addition only",
        "ADDITION ONLY",
        "  addition only\n",
        "Addition only.",
        '"addition only"',
        "- addition only",
    ],
)
def test_a_value_a_person_would_accept_is_accepted(reply):
    tree = read_tree_file(GSM8K_TREE)
    llm = ScriptedLLM()
    llm.enqueue("route", [json.dumps({"value": reply}), json.dumps({"value": "cooking"})])
    route = asyncio.run(R.LLMRouter(llm, tree).route(1, "She bakes 12 cookies and then 9 more."))
    assert route.status == "leaf" and route.leaf_id == node_at(tree, ["addition only", "cooking"]).id
    assert route.path[0] == {"criterion": "Operations used", "value": "addition only"}
    assert llm.calls("route") == 2  # accepted as it was: no re-ask


@pytest.mark.parametrize(
    "reply",
    ["none of these", "None of these.", "NONE OF THESE", "None of the above", "none of the above.", "None"],
)
def test_none_fits_in_the_wordings_models_use(reply):
    tree = read_tree_file(GSM8K_TREE)
    llm = ScriptedLLM()
    llm.enqueue("route", [json.dumps({"value": reply, "reason": "It is a poem, not a math problem."})])
    route = asyncio.run(R.LLMRouter(llm, tree).route(1, "Write a haiku about the sea."))
    assert route.status == "none" and route.stopped_at == tree.root_id and route.path == []
    assert llm.calls("route") == 1


def test_a_listed_value_named_none_is_that_value_not_none_fits():
    tree = T.new_tree("Unit conversion problems")
    tree = T.attach_split(
        tree, tree.root_id, criterion="Units", values=["none", "metric", "imperial"], provenance=T.Provenance("human")
    )
    llm = ScriptedLLM()
    llm.enqueue("route", [json.dumps({"value": "None"})])
    route = asyncio.run(R.LLMRouter(llm, tree).route(1, "How many apples are in 3 bags of 4?"))
    assert route.status == "leaf" and route.path == [{"criterion": "Units", "value": "none"}]


def test_a_value_that_is_not_listed_is_still_asked_again():
    tree = read_tree_file(GSM8K_TREE)
    llm = ScriptedLLM()
    llm.enqueue("route", [json.dumps({"value": "exponents"}), json.dumps({"value": "fractions"})])
    route = asyncio.run(R.LLMRouter(llm, tree).route(1, "What is 2 to the power of 5?"))
    assert route.status == "error" and '"fractions" is not one of the listed values' in route.detail


runner = CliRunner()


def invoke(*args: object) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_routes_every_reply_form_through_a_real_http_endpoint(tmp_path, monkeypatch):
    for var in ("TREESYNTH_LLM", "TREESYNTH_BASE_URL", "TREESYNTH_MODEL"):
        monkeypatch.delenv(var, raising=False)
    proj, data = tmp_path / "proj", tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps({"question": s["text"]}) + "\n" for s in route_samples(ROUTE)))
    responder = capable_responder(ROUTE)
    with FakeOpenAIServer(model="gpt-4o", respond=responder) as server:
        invoke(
            "new",
            proj,
            "--from-tree",
            GSM8K_TREE,
            *openai_flags(server.base_url, "gpt-4o"),
        )
        imported = json.loads(invoke("import", proj, data, "--set", "data", "--map", "instruction=question", "--json"))
        report = json.loads(invoke("route", proj, "--set", "data", "--router", "llm", "--concurrency", "1", "--json"))
        requests = server.chat_requests
        again = json.loads(invoke("route", proj, "--set", "data", "--router", "llm", "--json"))
        assert len(server.chat_requests) == len(requests)  # a rerun asks nothing: every route is stored
    assert responder.left() == {} and set(responder.asked) == {"route"}
    assert imported["imported"] == len(route_samples(ROUTE)) and imported["sample_set"] == "data"
    assert {r.body["model"] for r in requests} == {"gpt-4o"}
    assert {r.body["temperature"] for r in requests} == {R.ROUTE_TEMPERATURE}
    assert_each_request_was_about_its_sample(
        [r.last_user_message() for r in requests], [r.body["max_tokens"] for r in requests], ROUTE
    )
    with Project.open(proj) as project:
        assert_routed_as_the_replies_say(project, report, ROUTE)
    assert (again["leaf"], again["none_fits"], again["errors"]) == (report["leaf"], report["none_fits"], 0)


# -- gap filling ------------------------------------------------------------------------------------

GAPS = "gaps_music_long"
DIM = 64
#: Words that set a text's topic (one direction each); every other word adds a little hashed noise.
TOPIC_WORDS = {
    0: {"apple", "apples", "orchard", "farmer", "farm", "tree", "trees", "basket", "baskets", "harvest"},
    1: {
        "music",
        "musicians",
        "orchestra",
        "concert",
        "violin",
        "violins",
        "cello",
        "cellos",
        "piano",
        "choir",
        "band",
        "drum",
        "guitar",
        "flute",
        "songs",
        "album",
        "albums",
        "lesson",
        "lessons",
        "recital",
    },
}


def topic_vector(text: str) -> np.ndarray:
    """A deterministic stand-in for sample features: farm texts point one way, music texts another."""
    v = np.zeros(DIM, dtype=np.float32)
    for word in re.findall(r"[a-z]+", text.lower()):
        topic = next((t for t, words in TOPIC_WORDS.items() if word in words), None)
        if topic is not None:
            v[topic] += 3.0
        else:
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
            v[len(TOPIC_WORDS) + h % (DIM - len(TOPIC_WORDS))] += 0.3
    return v


class TopicFeaturize:
    name = "fake:topics"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, samples):
        self.seen += [s.instruction for s in samples]
        return np.stack([topic_vector(s.instruction) for s in samples])


FARM = [
    f"A farmer picks {n} apples from each tree in the orchard. How many apples does he pick from 6 trees?"
    for n in range(10, 26)
]
MUSIC = [
    "A school orchestra has 24 violin players and 8 cello players. How many string players are there?",
    "Concert tickets cost $12 each. The choir sells 45 tickets. How much money does the choir raise?",
    "A music teacher gives 3 piano lessons a day for 5 days. How many lessons does she give?",
    "The band shares 96 pages of sheet music equally among 8 musicians. How many pages does each get?",
]


@pytest.fixture
def farm_and_music(tmp_path):
    with Project.create(tmp_path / "g", task="Grade-school math word problems") as project:

        def build(tree: T.Tree) -> T.Tree:
            tree = T.attach_split(
                tree, tree.root_id, criterion="Topic", values=["farm", "music"], provenance=T.Provenance("human")
            )
            return T.approve(tree, [k.id for k in tree.children(tree.root_id)])

        project.apply("grow", build)
        farm, music = (leaf.id for leaf in project.tree().leaves())
        rows = [
            NewSample(farm, f"0:{i}", text, [{"criterion": "Topic", "value": "farm"}]) for i, text in enumerate(FARM)
        ]
        rows += [
            NewSample(music, f"1:{i}", text, [{"criterion": "Topic", "value": "music"}]) for i, text in enumerate(MUSIC)
        ]
        project.add_samples(rows)
        yield project


def gap_texts(name: str) -> tuple[list[str], str]:
    """The samples of the whole replies, in order, and the cut-off reply's truncated last sample."""
    replies = load_capable(name)["replies"]["gaps"]
    whole = [t for r in replies if r["finish_reason"] == "stop" for t in json.loads(r["text"])["samples"]]
    cut = next(json.loads(r["text"])["samples"][-1] for r in replies if r["finish_reason"] == "length")
    return whole, cut


def test_long_samples_are_kept_whole_and_a_cut_off_reply_is_asked_again(farm_and_music, capable):
    llm, featurize = scripted(capable, GAPS), TopicFeaturize()
    report = asyncio.run(fill_gaps(farm_and_music, llm, featurize, GapOptions(per_round=10, per_call=5), concurrency=1))
    whole, cut = gap_texts(GAPS)
    drifts = load_capable(GAPS)["drifts"]
    kept = [s for s in farm_and_music.samples() if s.extra.get("origin") == "fill-gaps"]
    music = farm_and_music.tree().leaves()[1]

    # the cut-off reply was asked again with the same messages and twice the budget, and never parsed
    requests = [r for r in llm.history if r.purpose() == "gaps"]
    assert len(requests) == 3 and not llm.queues["gaps"]
    assert requests[1].messages == requests[0].messages and len(requests[1].messages) == 1
    assert (
        requests[1].max_tokens == 2 * (requests[0].max_tokens or 0) and requests[2].max_tokens == requests[0].max_tokens
    )
    assert report.failed_calls == 0 and report.candidates == len(whole) == 10
    assert cut not in featurize.seen and not any(s.instruction == cut for s in farm_and_music.samples())

    # what lands in the sparse (music) cluster is kept, character for character; the drifts are not
    assert sorted(s.instruction for s in kept) == sorted(t for t in whole if t not in drifts)
    assert report.accepted == len(kept) == 8 and report.acceptance_rate == 0.8 and report.duplicates == 0
    assert max(len(s.instruction) for s in kept) > 600  # longer than the examples shown in a prompt
    assert all(len(re.findall(r"[.?!](?:\s|$)", s.instruction)) >= 3 for s in kept)  # multi-sentence
    assert all(s.leaf_id == music.id and s.path == [{"criterion": "Topic", "value": "music"}] for s in kept)


def test_the_kept_count_follows_the_sparse_cluster_rule(farm_and_music, capable):
    pool = farm_and_music.samples()
    report = asyncio.run(
        fill_gaps(
            farm_and_music,
            scripted(capable, GAPS),
            TopicFeaturize(),
            GapOptions(per_round=10, per_call=5),
            concurrency=1,
        )
    )
    # the rule, applied here by hand: k = max(2, round(n / 10)) clusters of the pool; clusters smaller
    # than the size at index floor(k * 0.5) of the ascending sizes are sparse; a candidate is kept when
    # its nearest centroid is a sparse cluster (and it is no near-duplicate: none are here)
    X = np.stack([topic_vector(s.instruction) for s in pool])
    k = max(2, round(len(pool) / 10))
    centroids, labels = spherical_kmeans(X, k, seed=stable_seed(0, "gaps-kmeans", 0))
    sparse = sparse_clusters(labels, k, 0.5)
    assert sorted(np.bincount(labels, minlength=k)) == [len(MUSIC), len(FARM)] and sparse.sum() == 1
    whole, _ = gap_texts(GAPS)
    Y = np.stack([topic_vector(t) for t in whole])
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    in_sparse = [t for t, c in zip(whole, (Y @ centroids.T).argmax(axis=1), strict=True) if sparse[c]]
    kept = sorted(s.instruction for s in farm_and_music.samples() if s.extra.get("origin") == "fill-gaps")
    assert kept == sorted(in_sparse) and report.accepted == len(in_sparse)
    assert set(whole) - set(in_sparse) == set(load_capable(GAPS)["drifts"])
