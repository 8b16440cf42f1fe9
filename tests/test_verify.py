"""Majority-vote verification (Prismatic Synthesis): the vote itself, fill gaps and synthesis with
``verify`` through the scripted fake answering as a capable model would, the CLI flags, and a rerun
served from the LLM cache."""

from __future__ import annotations

import asyncio
import json
import re
import zlib

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.fakes import HashEmbedder, ScriptedLLM
from tests.trees import split_root
from treesynth_core.cli import common as cli_common
from treesynth_core.cli import coverage as cli_coverage
from treesynth_core.cli.app import app
from treesynth_core.coverage.diversity import vendi_score
from treesynth_core.generate.agreement import leaf_agreement
from treesynth_core.generate.gap_options import GapOptions
from treesynth_core.generate.gap_report import last_report
from treesynth_core.generate.gaps import fill_gaps, smallest_clusters
from treesynth_core.generate.synth import SynthOptions, synthesize
from treesynth_core.generate.verify import (
    NO_ANSWER,
    NO_MAJORITY,
    TIE,
    VERIFY_TEMPERATURE,
    extract_answer,
    majority_vote,
    number_key,
    verify,
)
from treesynth_core.jobs import runs
from treesynth_core.llm.base import ChatResult
from treesynth_core.llm.recording import recording
from treesynth_core.store import Project
from treesynth_core.store.samples import NewSample

cli_coverage.register(app)
runner = CliRunner()

# -- the vote -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1000", "1,000", "1000.0", "1e3", "1.0E+3", "$1,000", "1000."])
def test_numbers_in_different_forms_are_equal(text):
    assert number_key(text) == "1000"


def test_number_key_refuses_what_is_not_one_number():
    assert [number_key(t) for t in ("", "twelve", "1/2", "3 apples", "1e999")] == [None] * 5
    assert number_key("-0.50") == "-0.5" and number_key(".25") == "0.25"


def test_different_forms_of_one_answer_agree():
    draws = [
        "Each basket holds 250 apples, so 4 baskets hold 4 * 250 = 1,000 apples.",
        "4 x 250 = 1000.0",
        "The farmer has 1e3 apples.",
    ]
    vote = majority_vote(draws)
    assert vote.verified and vote.answer == "1000" and vote.kept == 0 and vote.answers == ("1000",) * 3


def test_the_kept_draw_is_the_first_of_the_majority():
    vote = majority_vote(["So the answer is 7.", "So the answer is 12.", "It comes to 12.0 in all."])
    assert (vote.answer, vote.kept, vote.reason) == ("12", 1, "")


def test_all_different_is_no_majority_and_an_even_split_is_a_tie():
    assert majority_vote(["It is 1.", "It is 2.", "It is 3."]).reason == NO_MAJORITY
    tie = majority_vote(["5", "6", "5.0", "6.0"])
    assert not tie.verified and tie.reason == TIE and tie.answer is None and tie.kept is None
    # two of four is not a strict majority even when the rest have no answer
    assert majority_vote(["5", "5", "no idea", None]).reason == NO_MAJORITY


def test_draws_without_a_final_answer_do_not_vote():
    assert majority_vote(["I cannot tell.", None, "No numbers here."]).reason == NO_ANSWER
    assert majority_vote(["9", "9", None]).answer == "9"  # two of three still agree
    assert majority_vote(["9", None, None]).reason == NO_MAJORITY  # one of three is no majority


def test_boxed_and_last_number_read_different_answers():
    text = r"We need $x^2 = 49$, so $x = \boxed{7}$; checking with 3 other values confirms it for all 3."
    assert extract_answer(text, "last-number") == "3"
    assert extract_answer(text, "boxed") == "7"
    assert extract_answer(r"The answer is \boxed{\frac{1}{2}}.", "boxed") == r"\frac{1}{2}"
    assert extract_answer(r"\boxed{1,000} then \boxed{ 1e3 }", "boxed") == "1000"
    assert extract_answer(r"cut off at \boxed{\frac{1}{", "boxed") is None
    assert extract_answer("No box, just 42.", "boxed") is None
    draws = [r"\boxed{x + 1}", r"so \boxed{x+1}", r"\boxed{x - 1}"]
    assert majority_vote(draws, "boxed").answer == "x+1"  # spaces do not matter
    assert majority_vote(draws, "last-number").answer == "1"  # the last number cannot tell them apart
    with pytest.raises(ValueError, match="unknown answer extractor 'code'"):
        extract_answer("1", "code")


# -- capable-model answers, replayed --------------------------------------------------------------

AGREE = [  # three solutions of one problem, the final answer written three ways
    "There are 4 crates with 250 bolts each. 4 * 250 = 1000. The shop has 1,000 bolts.",
    "Step 1: one crate holds 250 bolts.\nStep 2: four crates hold 4 x 250 = 1000.0 bolts.\nAnswer: 1000",
    "Multiply: 250 * 4 = 1e3. So the final answer is 1000.",
]
DISAGREE = [  # three solutions that end in three different answers
    "Half of 18 is 9, plus 4 gives 13. The answer is 13.",
    "18 / 2 = 9 and 9 - 4 = 5. The answer is 5.",
    "18 - 4 = 14, halved is 7. The answer is 7.",
]


class Solver(ScriptedLLM):
    """Writes gap candidates and samples as usual (gap prompts: "bolts" questions and "halves"
    questions in turn), and answers verification draws as a capable model: the same final answer
    for a bolts question (or a sample of a leaf "farm" or "addition"), three different ones otherwise
    (draw ``i`` gets solution ``i``)."""

    def _gaps(self, request):
        n = int(request.schema["properties"]["samples"]["maxItems"])
        kinds = ["bolts crates shop inventory", "halves subtract puzzle"]
        return json.dumps(
            {"samples": [f"{kinds[i % 2]} question {request.seed} number {i} about item {i * 7}" for i in range(n)]}
        )

    def _verify(self, request):
        draw = int(request.meta["draw"])
        prompt = self._prompt(request)
        agree = any(mark in prompt for mark in ("bolts", "[farm]", "[addition]"))
        return (AGREE if agree else DISAGREE)[draw % 3]


def gap_project(folder) -> Project:
    """Two leaves of ten samples each; every sample has a response."""
    p = Project.create(folder, task="Word problems", style="short")
    split_root(p, "Topic", ["farm", "science"])
    rows = [
        NewSample(leaf.id, f"0:{i}", f"{leaf.value} problem {i}: {word} {i * 3}", [], response=f"It is {i}.")
        for leaf in p.tree().leaves()
        for i, word in enumerate(["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta", "iota", "rho"])
    ]
    p.add_samples(rows)
    return p


def two_directions(samples):
    """Features: one direction per leaf, so the pool's two clusters are equally large and every
    cluster counts as sparse (candidates lean one way or the other by their words)."""
    rows = []
    for s in samples:
        side = [1.0, 0.0] if "farm" in s.instruction or "bolts" in s.instruction else [0.0, 1.0]
        rows.append(side + [zlib.crc32(s.instruction.encode()) % 100 / 1000])  # distinct texts, distinct rows
    return np.asarray(rows)


def test_fill_gaps_keeps_only_candidates_whose_answers_agree(tmp_path):
    with gap_project(tmp_path / "p") as project:
        llm = Solver()
        options = GapOptions(rounds=1, per_round=4, per_call=2, space="embeddings", verify=3)
        report = asyncio.run(fill_gaps(project, llm, two_directions, options))
        kept = [s for s in project.samples() if s.extra.get("origin") == "fill-gaps"]
    assert (report.candidates, report.verified, report.rejected) == (4, 2, 2)
    assert report.rejected_reasons == {NO_MAJORITY: 2}
    assert report.accepted == len(kept) == 2 and report.acceptance_rate == 0.5
    [only] = report.per_round
    assert (only.candidates, only.verified, only.rejected, only.kept, only.acceptance_rate) == (4, 2, 2, 2, 0.5)
    assert all("bolts" in s.instruction for s in kept)
    assert all(s.response == AGREE[0] and s.extra["verified"] == "3/3" for s in kept)
    draws = [r for r in llm.history if r.purpose() == "verify"]
    assert len(draws) == 12 and llm.calls("response") == 0  # verification replaces the single response
    assert {r.temperature for r in draws} == {VERIFY_TEMPERATURE} and len({r.seed for r in draws}) == 12


def test_fill_gaps_reports_rejections_per_leaf_clusters_and_the_curve(tmp_path):
    with gap_project(tmp_path / "p") as project:
        farm, science = (leaf.id for leaf in project.tree().leaves())
        options = GapOptions(rounds=2, per_round=4, per_call=2, space="embeddings", verify=3, shots_from="smallest")
        report = asyncio.run(fill_gaps(project, Solver(), two_directions, options))
        pool = project.samples()
    assert (report.verify, report.answer, report.shots_from) == (3, "last-number", "smallest")
    leaves = {farm, science}
    for r in report.per_round:
        assert sum(r.verified_by_leaf.values()) == r.verified and sum(r.rejected_by_leaf.values()) == r.rejected
        assert set(r.verified_by_leaf) | set(r.rejected_by_leaf) <= leaves
        assert r.clusters == 2 and sum(n for _, n in r.cluster_sizes) == 2 and 1 <= r.sparse <= 2
    assert sum(size * n for size, n in report.per_round[0].cluster_sizes) == 20
    assert sum(report.rejected_by_leaf().values()) == report.rejected > 0
    assert [p.round for p in report.curve] == [-1, 0, 1]
    assert [p.n for p in report.curve] == [20, 20 + report.per_round[0].kept, len(pool)]
    assert report.curve[0].kept == report.curve[0].random == pytest.approx(report.before)
    assert report.curve[-1].kept == pytest.approx(vendi_score(two_directions(pool)))


def test_fill_gaps_with_boxed_answers_rejects_draws_without_a_box(tmp_path):
    with gap_project(tmp_path / "p") as project:
        options = GapOptions(per_round=2, per_call=2, space="embeddings", verify=3, answer="boxed")
        report = asyncio.run(fill_gaps(project, Solver(), two_directions, options))
    assert (report.verified, report.rejected, report.accepted) == (0, 2, 0)
    assert report.rejected_reasons == {NO_ANSWER: 2}
    assert [(r.candidates, r.kept) for r in report.per_round] == [(2, 0)]


def test_synthesis_verifies_responses_per_leaf(tmp_path):
    with Project.create(tmp_path / "p", task="Word problems", style="short") as project:
        tree = split_root(project, "Topic", ["farm", "science"])
        farm, science = (leaf.id for leaf in tree.leaves())
        options = SynthOptions(per_leaf=2, per_call=2, responses=True, verify=3, extra_calls=0)
        llm = Solver()
        report = asyncio.run(synthesize(project, llm, options))
        stored = {leaf: project.samples(leaf_id=leaf) for leaf in (farm, science)}
    assert (report.verification[farm].verified, report.verification[farm].rejected) == (2, 0)
    assert (report.verification[science].verified, report.verification[science].rejected) == (0, 2)
    assert report.verification[science].reasons == {NO_MAJORITY: 2}
    assert (report.verified, report.rejected, report.added) == (2, 2, 2)
    assert len(stored[farm]) == 2 and stored[science] == [] and science in report.short_leaves
    assert all(s.response == AGREE[0] and s.extra["verified"] == "3/3" for s in stored[farm])
    assert llm.calls("verify") == 12 and llm.calls("response") == 0


def test_synth_options_check_verification():
    with pytest.raises(ValueError, match="verify checks responses"):
        SynthOptions(verify=3)
    with pytest.raises(ValueError, match="at least 2 draws"):
        SynthOptions(responses=True, verify=1)
    with pytest.raises(ValueError, match="unknown answer extractor 'words'"):
        GapOptions(verify=3, answer="words")


def test_a_rerun_is_served_from_the_cache_and_cut_off_draws_are_not_kept(tmp_path):
    with Project.create(tmp_path / "p", task="t") as project:
        inner = Solver()
        inner.enqueue("verify", [ChatResult(text="4 * 250 = 10", model="m", finish_reason="length")])
        llm = recording(inner, project, None)

        def ask():
            return asyncio.run(
                verify(llm, "bolts crates?", draws=3, extractor="last-number", seed=0, key=("k",), max_tokens=64)
            )

        first = ask()
        assert first.vote.answers[0] is None and first.vote.answer == "1000" and first.response == AGREE[1]
        assert len(inner.history) == 3
        again = ask()  # the two usable draws come from the cache; the cut-off one is asked again
        assert len(inner.history) == 4 and again.vote.answers == ("1000",) * 3 and again.response == AGREE[0]
        third = ask()
        assert len(inner.history) == 4 and third == again


# -- the CLI --------------------------------------------------------------------------------------


@pytest.fixture
def solver(monkeypatch):
    made: list[Solver] = []

    def factory(settings):
        made.append(Solver())
        return made[-1]

    monkeypatch.setattr(runs, "default_factory", factory)
    monkeypatch.setattr(cli_common, "load_embedder", lambda project, spec: HashEmbedder(dim=32))
    return made


def run_cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def succeed(*args):
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return result


def grown(tmp_path):
    proj = tmp_path / "proj"
    succeed("new", proj, "--task", "Math word problems", "--style", "GSM8K-style")
    succeed("grow", proj, "--depth", "1", "--pivots", "4", "--auto-approve", "-q")
    return proj


def test_cli_synth_verify_reports_per_leaf(tmp_path, solver):
    proj = grown(tmp_path)  # leaves "addition", "subtraction", ...: only "addition" questions get agreeing answers
    args = ["synth", proj, "--per-leaf", "2", "--per-call", "2", "--responses", "--verify", "3"]
    data = json.loads(succeed(*args, "--json").stdout)
    assert data["verify"] == 3 and data["verified"] == 2 and data["rejected"] >= 2
    assert data["acceptance_rate"] == pytest.approx(2 / (2 + data["rejected"]))
    per_leaf = sorted((c["verified"], c["rejected"]) for c in data["verification"].values())
    with Project.open(proj) as project:  # the project keeps the votes per leaf for the app and the card
        kept_votes = {leaf: (a.verified, a.rejected) for leaf, a in leaf_agreement(project).items()}
    assert kept_votes == {
        leaf: (c["verified"], c["rejected"])
        for leaf, c in data["verification"].items()
        if c["verified"] or c["rejected"]
    }
    assert per_leaf[-1] == (2, 0) and all(v == 0 and r > 0 for v, r in per_leaf[:-1])
    assert all(
        c["rejected_reasons"] == {NO_MAJORITY: c["rejected"]} for c in data["verification"].values() if c["rejected"]
    )
    text = " ".join(succeed(*args, "--seed", "1").output.split())  # "addition" is full: only rejections remain
    assert re.search(r"Verification \(3 draws, majority vote\): 0 verified, \d+ rejected \(\d+% accepted\)", text)


def test_cli_verify_flags_are_checked(tmp_path, solver):
    proj = grown(tmp_path)
    made = len(solver)
    for args, message in [
        (["synth", proj, "--verify", "3"], "verify checks responses"),
        (["synth", proj, "--responses", "--verify", "1"], "at least 2 draws"),
        (["synth", proj, "--responses", "--verify", "3", "--answer", "code"], "unknown answer extractor 'code'"),
        (["fill-gaps", proj, "--embeddings", "--verify", "3", "--answer", "code"], "unknown answer extractor"),
    ]:
        result = run_cli(*args)
        assert result.exit_code != 0 and message in " ".join(result.output.split()), result.output
        assert "Traceback" not in result.output
    assert len(solver) == made  # refused before any LLM was made


def test_cli_fill_gaps_verify_reports_rounds(tmp_path, solver):
    proj = grown(tmp_path)
    succeed("synth", proj, "--per-leaf", "6", "--per-call", "3", "-q")
    args = ["fill-gaps", proj, "--embeddings", "--rounds", "2", "--per-round", "4", "--verify", "3"]
    data = json.loads(succeed(*args, "--json").stdout)
    assert [r["round"] for r in data["per_round"]] == [0, 1]
    assert data["verified"] + data["rejected"] == data["candidates"] == 8
    assert data["verified"] > 0 and data["rejected"] > 0
    for r in data["per_round"]:
        assert r["verified"] + r["rejected"] == r["candidates"] and r["kept"] <= r["verified"]
        assert r["acceptance_rate"] == pytest.approx(r["kept"] / r["candidates"])
    assert set(data["leaves"]) == {
        leaf for r in data["per_round"] for leaf in [*r["verified_by_leaf"], *r["rejected_by_leaf"]]
    }
    assert all(label.startswith("Operation=") for label in data["leaves"].values())
    assert [p["n"] for p in data["curve"]] == [
        data["n"],
        data["n"] + data["per_round"][0]["kept"],
        data["n"] + data["accepted"],
    ]
    output = succeed(*args, "--seed", "5").output
    text = " ".join(output.split())
    assert re.search(r"Verification \(3 draws, majority vote\): \d+ verified, \d+ rejected", text)
    header = next(line for line in output.splitlines() if line.split()[:3] == ["round", "generated", "verified"])
    rows = output.splitlines()[output.splitlines().index(header) + 1 :][:2]
    assert [row.split()[1] for row in rows] == ["4", "4"]
    assert "cluster sizes (clusters x size):" in output and "Rejected by the vote, per leaf:" in output
    with Project.open(proj) as project:
        stored = last_report(project)
        agreement = leaf_agreement(project)
    assert stored is not None and stored.verify == 3
    assert [r.round for r in stored.per_round] == [int(row.split()[0]) for row in rows]
    assert sum(a.rejected for a in agreement.values()) == data["rejected"] + stored.rejected
    out = tmp_path / "data.jsonl"
    succeed("export", proj, "--out", out)
    card = (tmp_path / "data.README.md").read_text()
    kept = data["accepted"] + stored.accepted
    assert "## Verification and gap filling" in card
    assert f"{kept} samples were kept only because a strict majority of 3 independent answers" in card
    assert f"Gap filling (Prismatic Synthesis, arXiv 2505.20161): {kept} samples from" in card
    votes = sum(a.votes for a in agreement.values())
    assert f"{sum(a.verified for a in agreement.values())} of {votes} questions agreed" in card
    assert (
        f"{stored.verified} agreed, {stored.rejected} rejected" in card and "few-shot examples from the sparse" in card
    )


# -- where the few-shot examples come from --------------------------------------------------------


def test_smallest_clusters_are_the_smallest_tenth():
    labels = np.repeat(np.arange(12), [5, 1, 3, 2, 10, 4, 4, 6, 7, 8, 9, 11])
    # ceil(12 * 0.1) = 2 clusters: sizes 1 (cluster 1) and 2 (cluster 3)
    assert np.flatnonzero(smallest_clusters(labels, 12)).tolist() == [1, 3]
    empty = np.repeat([0, 2], [3, 5])  # cluster 1 is empty: never a source of examples
    assert np.flatnonzero(smallest_clusters(empty, 3, 0.5)).tolist() == [0, 2]


def test_level_weighted_shots_follow_the_levels(tmp_path):
    with gap_project(tmp_path / "p") as project:
        heavy = project.samples()[12]  # a science sample: weight 10^6 against 1 for each other one
        project.add_samples(
            [NewSample(heavy.leaf_id, "hard", "science olympiad problem about zebra orbits", [], extra={"level": 1e6})]
        )
        llm = Solver()
        options = GapOptions(per_round=6, per_call=2, space="embeddings", shots_from="levels")
        asyncio.run(fill_gaps(project, llm, two_directions, options))
    prompts = [r for r in llm.history if r.purpose() == "gaps"]
    assert len(prompts) == 3
    assert all("zebra orbits" in r.messages[0][1] and r.meta["node_id"] == heavy.leaf_id for r in prompts)
    with pytest.raises(ValueError, match="unknown few-shot source 'random'"):
        GapOptions(shots_from="random")


def test_cli_refuses_an_unknown_few_shot_source(tmp_path, solver):
    result = run_cli("fill-gaps", grown(tmp_path), "--embeddings", "--shots-from", "random")
    assert result.exit_code != 0 and "unknown few-shot source 'random'" in " ".join(result.output.split())
    assert "Traceback" not in result.output
