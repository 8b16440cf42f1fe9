"""``treesynth decontaminate``: the report, --drop's counts and examples, the record export honours, and
one clean error line for a bad eval set."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from treesynth_core.cli.app import app
from treesynth_core.data.examples import resolve
from treesynth_core.data.readers import iter_records
from treesynth_core.store import Project

runner = CliRunner()


def invoke(*args, ok: bool = True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def one_error_line(result) -> str:
    assert result.exit_code == 1 and "Traceback" not in result.output
    said = " ".join(result.output.split())  # the console wraps long lines
    assert said.count("error:") == 1
    return said


@pytest.fixture
def proj(tmp_path):
    """A project with the set ``mine``: 6 clean rows and 2 that copy HumanEval prompts (one upper-cased)."""
    directory = tmp_path / "p"
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


def test_decontaminate_reports_records_and_export_leaves_them_out(proj, tmp_path):
    result = invoke("decontaminate", proj, "--set", "mine", "--against", "example:humaneval")
    said = " ".join(result.output.split())
    assert "Checked 8 samples of 'mine' with word 13-grams" in said
    assert "example:humaneval (164 items): contaminated 2" in said and "export leaves them out" in said
    assert "~ example:humaneval row 6:" in said and "~ example:humaneval row 10:" in said
    out = json.loads(invoke("export", proj, "--set", "mine", "--out", tmp_path / "x.jsonl", "--json").stdout)
    assert out["rows"] == 6 and out["excluded_contaminated"] == 2
    card = (tmp_path / "x.README.md").read_text()
    assert "| example\\:humaneval | 164 | 13 |" in card and "2 samples found contaminated" in card
    out = json.loads(
        invoke("export", proj, "--set", "mine", "--out", tmp_path / "y.jsonl", "--keep-contaminated", "--json").stdout
    )
    assert out["rows"] == 8 and out["excluded_contaminated"] == 0


def test_drop_deletes_and_says_how_many_and_which(proj):
    report = json.loads(
        invoke("decontaminate", proj, "--set", "mine", "--against", "example:humaneval", "--drop", "--json").stdout
    )
    assert (report["checked"], report["flagged"], report["dropped"]) == (8, 2, 2)
    assert [e["item"] for e in report["examples"]] == ["row 6", "row 10"]
    assert all(len(e["ngram"].split()) == 13 for e in report["examples"])
    with Project.open(proj) as project:
        assert project.sample_sets() == {"mine": 6}
    result = invoke("decontaminate", proj, "--set", "mine", "--against", "example:humaneval", "--drop")
    assert "Dropped 0 contaminated samples from 'mine'" in " ".join(result.output.split())


def test_a_file_eval_set_with_a_field_and_a_smaller_n(proj, tmp_path):
    evals = tmp_path / "bench.csv"
    evals.write_text("id,text\n1,write function number 3 that reverses a string\n")
    result = json.loads(
        invoke(
            "decontaminate", proj, "--set", "mine", "--against", evals, "--field", "text", "--n", "5", "--json"
        ).stdout
    )
    assert result["flagged"] == 1 and result["sources"][0]["source"] == str(evals)


def test_bad_eval_sets_are_one_line_and_change_nothing(proj, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "no such file or sample set" in one_error_line(
        invoke("decontaminate", proj, "--set", "mine", "--against", tmp_path / "gone.jsonl", ok=False)
    )
    assert "no example dataset 'nope'" in one_error_line(
        invoke("decontaminate", proj, "--set", "mine", "--against", "example:nope", "--drop", ok=False)
    )
    assert "holds no rows" in one_error_line(
        invoke("decontaminate", proj, "--set", "mine", "--against", empty, "--drop", ok=False)
    )
    assert "no samples in the set 'tree'" in one_error_line(
        invoke("decontaminate", proj, "--against", "example:humaneval", ok=False)
    )
    missing = invoke("decontaminate", proj, "--set", "mine", ok=False)
    assert missing.exit_code == 2 and "--against" in missing.output
    with Project.open(proj) as project:
        assert project.sample_sets() == {"mine": 8} and project.contamination_checks("mine") == []


def test_decontaminate_explains_itself():
    result = invoke("decontaminate", "--help")
    assert "Usage" in result.output and "--against" in result.output and "--drop" in result.output
