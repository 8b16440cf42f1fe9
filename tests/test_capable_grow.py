"""Growth on replies written the way capable models answer (``tests/fixtures/capable/``): what the
model said survives. Every legitimate value becomes a child, complete lists never collapse, open-ended
ones become one sampled child with a full pool, glued values are dropped with a note and doubtful ones
flagged; through the scripted LLM and through the real HTTP client and CLI."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from tests.capable import capable_responder, load_capable
from tests.fakes import ScriptedLLM
from tests.helpers_http import FakeOpenAIServer, openai_flags
from treesynth_core.cli.app import app
from treesynth_core.generate.grow import GrowOptions, grow
from treesynth_core.llm.recording import recording
from treesynth_core.store import Project
from treesynth_core.tree import model as T


def scripted(capable, name: str) -> ScriptedLLM:
    llm = ScriptedLLM(model="capable-model")
    for purpose, results in capable(name).items():
        llm.enqueue(purpose, results)
    return llm


def grow_root(tmp_path, capable, name: str, task: str, **options):
    llm = scripted(capable, name)
    with Project.create(tmp_path / name, task=task) as project:
        wrapped = recording(llm, project, project.start_run("grow", {}))
        report = asyncio.run(grow(project, wrapped, GrowOptions(max_depth=1, **options)))
        tree = project.tree()
    assert T.problems(tree) == []
    return tree, report, llm


def named(name: str, purpose: str) -> list[dict]:
    return [json.loads(item["text"]) for item in load_capable(name)["replies"][purpose]]


def named_values(name: str) -> list[str]:
    """Every value a scenario's criterion and coverage replies name, in order, without repeats."""
    values = list(dict.fromkeys(named(name, "criterion")[0]["values"]))
    for reply in named(name, "coverage"):
        values += reply["new_values"]
    return values


def test_math_topic_15_gives_15_children(tmp_path, capable):
    tree, report, llm = grow_root(tmp_path, capable, "math_topic_15", "Grade-school math word problems")
    kids = tree.children(tree.root_id)
    assert [k.value for k in kids] == named_values("math_topic_15") and len(kids) == 15
    assert tree.root.split_criterion == "Math topic" and tree.root.note == ""
    assert report.sampled == 0 and not any(k.pool or k.flag for k in kids)
    assert llm.calls("criterion") == 1 and llm.calls("coverage") == 1


def test_tricky_labels_all_become_children(tmp_path, capable):
    tree, report, llm = grow_root(
        tmp_path, capable, "homework_topics_20", "Homework help questions from high-school students", pivots=16
    )
    kids = [k.value for k in tree.children(tree.root_id)]
    assert kids == named_values("homework_topics_20") and len(kids) == 20
    assert {
        "C++ programming",
        "File I/O in Python",
        "Speed (km/h) and unit conversion",
        "R&D and innovation",
        "Q&A sessions for exam review",
        "A+ study habits",
        "Supply and demand",
    } <= set(kids)
    assert tree.root.note == "" and report.flagged == 0 and report.sampled == 0


def test_a_list_completed_over_four_rounds_gives_every_value(tmp_path, capable):
    tree, report, llm = grow_root(tmp_path, capable, "programming_language_42", "Programming questions and exercises")
    kids = [k.value for k in tree.children(tree.root_id)]
    assert kids == named_values("programming_language_42") and len(kids) == 42
    assert {"C", "C++", "C#", "F#", "Objective-C"} <= set(kids)
    assert llm.calls("coverage") == 4 and report.sampled == 0 and tree.root.note == ""


def test_an_open_ended_list_becomes_one_sampled_child_with_a_full_pool(tmp_path, capable):
    tree, report, llm = grow_root(tmp_path, capable, "country_open_ended", "Trivia questions about countries")
    (child,) = tree.children(tree.root_id)
    assert report.sampled == 1 and len(child.pool) >= 50
    assert list(child.pool) == named_values("country_open_ended")[: len(child.pool)]
    assert "Bosnia and Herzegovina" in child.pool and "Trinidad and Tobago" in child.pool
    assert llm.calls("coverage") == 5  # stops once the pool passes the threshold, as the paper's loop
    assert "60 values exceed the threshold of 50" in tree.root.note


def test_a_glued_value_is_dropped_and_a_doubtful_one_flagged(tmp_path, capable):
    tree, report, llm = grow_root(
        tmp_path, capable, "operation_glued_and_suspicious", "Grade-school math word problems"
    )
    kids = {k.value: k for k in tree.children(tree.root_id)}
    assert list(kids) == [
        "Addition",
        "Subtraction",
        "Multiplication",
        "Division",
        "Multiplication and exponents",
        "Percentages",
        "Order of operations",
    ]
    assert llm.calls("criterion") == 1  # the reply was not re-asked
    assert '"Addition and subtraction" combines the values "Addition", "Subtraction"' in tree.root.note
    assert kids["Multiplication and exponents"].flag.startswith('may combine "Multiplication" and "exponents"')
    assert [k for k in kids if kids[k].flag] == ["Multiplication and exponents"] and report.flagged == 1


def test_auto_approve_keeps_flags_for_a_later_review(tmp_path, capable):
    tree, _, _ = grow_root(tmp_path, capable, "operation_glued_and_suspicious", "Math word problems", auto_approve=True)
    flagged = [k for k in tree.children(tree.root_id) if k.flag]
    assert len(flagged) == 1 and flagged[0].approved


runner = CliRunner()


def invoke(*args: object) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("paper", [False, True])
def test_cli_grows_15_of_15_through_a_real_http_endpoint(tmp_path, paper):
    proj = tmp_path / "proj"
    with FakeOpenAIServer(model="gpt-4o", respond=capable_responder("math_topic_15")) as server:
        invoke(
            "new",
            proj,
            "--task",
            "Grade-school math word problems",
            *openai_flags(server.base_url, "gpt-4o"),
        )
        flags = ["--paper", "--depth", "1"] if paper else []
        data = json.loads(invoke("grow", proj, *flags, "--json"))
        bodies = [r.body for r in server.chat_requests]
    assert data["children"] == 15 and data["sampled"] == 0 and data["flagged"] == 0
    assert [b["response_format"]["json_schema"]["name"] for b in bodies] == ["samples", "criterion", "coverage"]
    assert all(b["model"] == "gpt-4o" for b in bodies)
    shown = json.loads(invoke("show", proj, "--json"))
    values = [kid["value"] for kid in shown["root"]["children"]]
    assert values == named_values("math_topic_15")
    # --paper approves without review; without it the children await review
    assert all(kid.get("approved", True) is paper for kid in shown["root"]["children"])


def test_cli_shows_flags_and_a_persons_approval_clears_them(tmp_path):
    proj = tmp_path / "proj"
    with FakeOpenAIServer(respond=capable_responder("operation_glued_and_suspicious")) as server:
        invoke(
            "new",
            proj,
            "--task",
            "Math word problems",
            *openai_flags(server.base_url, "m"),
        )
        out = invoke("grow", proj)
    assert "1 value is flagged for review" in out
    shown = " ".join(invoke("show", proj).replace("│", " ").split())
    assert '⚑ may combine "Multiplication" and "exponents"' in shown and "flagged for review" in shown
    invoke("edit", proj, "approve", "Multiplication and exponents")
    assert "⚑ may" not in " ".join(invoke("show", proj).replace("│", " ").split())
