"""The whole pipeline on the real embedded model (SmolLM2-135M through llama.cpp), offline:
new -> grow (depth 2) -> synth -> export, then a rerun that costs zero LLM calls."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from treesynth_core.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_embedded_pipeline_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("TREESYNTH_LLM", "TREESYNTH_BASE_URL", "TREESYNTH_MODEL"):
        monkeypatch.delenv(var, raising=False)
    proj = tmp_path / "proj"
    invoke("new", proj, "--task", "Short questions about animals", "--style", "one question per sample")
    grow_args = ("grow", proj, "--depth", "2", "--pivots", "3", "--max-values", "2", "--auto-approve", "--json")
    first_grow = json.loads(invoke(*grow_args).stdout)
    assert first_grow["expanded"] >= 1 and first_grow["llm"]["calls"] > 0
    tree = json.loads(invoke("show", proj, "--json").stdout)
    assert tree["leaves"]

    synth_args = ("synth", proj, "--per-leaf", "2", "--per-call", "2", "--json")
    first_synth = json.loads(invoke(*synth_args).stdout)
    assert first_synth["total_samples"] > 0

    out = tmp_path / "data.jsonl"
    invoke("export", proj, "--format", "jsonl", "--out", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == first_synth["total_samples"]
    assert all(r["messages"][0]["content"].strip() for r in rows)
    assert rows[0]["model"].startswith("SmolLM2-135M-Instruct")

    # Rerunning the same build costs nothing: every request is served from the project's cache.
    again_grow = json.loads(invoke(*grow_args).stdout)
    again_synth = json.loads(invoke(*synth_args).stdout)
    assert again_grow["llm"]["calls"] == 0 and again_synth["llm"]["calls"] == 0
    stats = json.loads(invoke("stats", proj, "--json").stdout)
    assert [r["calls"] for r in stats["runs"][:2]] == [0, 0]
    assert stats["failed"] == 0
