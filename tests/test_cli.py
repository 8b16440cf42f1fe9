"""The ``treesynth`` CLI end to end with the scripted fake LLM (injected at our own seam)."""

from __future__ import annotations

import inspect
import json
import sqlite3

import pytest
from typer.testing import CliRunner

from tests.fakes import ScriptedLLM
from tests.helpers_http import openai_flags
from treesynth_core.cli.app import app
from treesynth_core.cli.common import BACKEND_OPTIONS, NO_LLM_RUN_OPTIONS, LlmRunOptions, option_groups
from treesynth_core.jobs import runs

runner = CliRunner()


def invoke(*args: str, ok: bool = True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def grown(tmp_path, fake):
    proj = tmp_path / "proj"
    invoke("new", proj, "--task", "Math word problems", "--style", "GSM8K-style")
    invoke("grow", proj, "--depth", "2", "--pivots", "4", "--auto-approve", "-q")
    return proj


def show(proj) -> dict:
    return json.loads(invoke("show", proj, "--json").stdout)


def all_commands():
    from typer.main import get_command

    root = get_command(app)
    for name, command in root.commands.items():
        if hasattr(command, "commands"):
            for sub in command.commands:
                yield [name, "DIR", sub]
        else:
            yield [name]


@pytest.mark.parametrize("command", list(all_commands()), ids=" ".join)
def test_every_command_has_help(command):
    result = invoke(*command, "--help")
    assert "Usage" in result.output and len(result.output) > 100


def test_new_grow_show_synth_export_stats(tmp_path, fake):
    proj = grown(tmp_path, fake)
    data = show(proj)
    assert data["root"]["criterion"] == "Operation" and len(data["leaves"]) >= 4
    result = invoke("synth", proj, "--per-leaf", "3", "--per-call", "3", "--json")
    synth = json.loads(result.stdout)
    assert synth["added"] == 3 * len(data["leaves"]) and synth["short_leaves"] == []
    out = tmp_path / "out" / "data.jsonl"
    invoke("export", proj, "--format", "jsonl", "--out", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == synth["added"]
    assert rows[0]["messages"][0]["role"] == "user" and rows[0]["Operation"]
    assert (tmp_path / "out" / "data.tree.json").exists() and (tmp_path / "out" / "data.README.md").exists()
    stats = json.loads(invoke("stats", proj, "--json").stdout)
    assert stats["by_command"]["grow"]["calls"] > 0 and stats["by_command"]["synth"]["calls"] > 0


def test_rerunning_grow_and_synth_makes_zero_calls(tmp_path, fake):
    proj = grown(tmp_path, fake)
    invoke("synth", proj, "--per-leaf", "3", "-q")
    before = json.loads(invoke("stats", proj, "--json").stdout)
    invoke("grow", proj, "--depth", "2", "--pivots", "4", "--auto-approve", "-q")
    invoke("synth", proj, "--per-leaf", "3", "-q")
    after = json.loads(invoke("stats", proj, "--json").stdout)
    assert after["calls"] == before["calls"]
    assert [r["calls"] for r in after["runs"][:2]] == [0, 0]


def test_review_flow_with_edits_undo_redo(tmp_path, fake):
    proj = tmp_path / "proj"
    invoke("new", proj, "--task", "Math word problems")
    result = invoke("grow", proj, "--depth", "2", "--pivots", "4")
    assert "await review" in result.output
    invoke("edit", proj, "approve", "--level", "1")
    invoke("edit", proj, "prune", "subtraction")
    invoke("edit", proj, "rename", "addition", "adding up")
    invoke("edit", proj, "rename", "root", "Arithmetic operation", "--criterion")
    invoke("edit", proj, "add-value", "root", "division")
    tree = show(proj)
    kids = {c["value"]: c for c in tree["root"]["children"]}
    assert tree["root"]["criterion"] == "Arithmetic operation"
    assert kids["subtraction"].get("pruned") and "adding up" in kids and "division" in kids
    invoke("edit", proj, "undo")
    assert "division" not in {c["value"] for c in show(proj)["root"]["children"]}
    invoke("edit", proj, "redo")
    assert "division" in {c["value"] for c in show(proj)["root"]["children"]}
    history = json.loads(invoke("edit", proj, "history", "--json").stdout)
    assert history[0]["kind"] == "add-value" and history[-1]["kind"] == "grow"
    invoke("grow", proj, "--depth", "2", "--pivots", "4")
    tree = show(proj)
    kids = {c["value"]: c for c in tree["root"]["children"]}
    assert kids["adding up"]["children"] and not kids["subtraction"].get("children")


def test_merge_replace_lock_remove(tmp_path, fake):
    proj = grown(tmp_path, fake)
    invoke("edit", proj, "merge", "addition", "subtraction", "--value", "add or subtract")
    invoke("edit", proj, "lock", "add or subtract")
    locked = invoke("edit", proj, "rename", "add or subtract", "x", ok=False)
    assert locked.exit_code == 1 and "locked" in locked.output
    invoke("edit", proj, "lock", "add or subtract", "--unlock")
    invoke("edit", proj, "replace-criterion", "add or subtract", "Setting", "school", "farm")
    invoke("edit", proj, "remove-value", "multiplication")
    values = {c["value"]: c for c in show(proj)["root"]["children"]}
    assert set(values) == {"add or subtract"}
    assert [c["value"] for c in values["add or subtract"]["children"]] == ["school", "farm"]


def test_save_and_load_tree(tmp_path, fake):
    proj = grown(tmp_path, fake)
    path = tmp_path / "tree.json"
    invoke("save-tree", proj, path)
    other = tmp_path / "other"
    invoke("new", other, "--from-tree", path)
    assert show(other)["root"] == show(proj)["root"]


@pytest.mark.parametrize("task", ["", "   "])
def test_empty_task_is_a_clear_error(tmp_path, task):
    result = invoke("new", tmp_path / "p", "--task", task, ok=False)
    assert result.exit_code == 1 and "empty" in result.output and "Traceback" not in result.output


def test_missing_and_corrupt_projects(tmp_path):
    result = invoke("show", tmp_path / "nope", ok=False)
    assert result.exit_code == 1 and "nope" in result.output and "Traceback" not in result.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "treesynth.db").write_bytes(b"this is not a database" * 100)
    result = invoke("grow", bad, ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_ctrl_c_mid_grow_keeps_work_and_rerun_resumes(tmp_path, monkeypatch):
    calls = {"n": 0}

    class Interrupting(ScriptedLLM):
        async def complete(self, request):
            calls["n"] += 1
            if calls["n"] == 6:
                raise KeyboardInterrupt
            return await super().complete(request)

    monkeypatch.setattr(runs, "default_factory", lambda settings: Interrupting())
    proj = tmp_path / "proj"
    invoke("new", proj, "--task", "Math word problems")
    result = invoke("grow", proj, "--depth", "2", "--pivots", "3", "--auto-approve", "-q", ok=False)
    assert result.exit_code == 130 and "rerun" in result.output
    stats = json.loads(invoke("stats", proj, "--json").stdout)
    assert stats["runs"][0]["status"] == "interrupted"
    assert show(proj)["root"]["criterion"] == "Operation"  # the root finished before Ctrl-C
    monkeypatch.setattr(runs, "default_factory", lambda settings: ScriptedLLM())
    invoke("grow", proj, "--depth", "2", "--pivots", "3", "--auto-approve", "-q")
    tree = show(proj)
    assert all(c.get("children") for c in tree["root"]["children"])


def test_budget_cap_refuses_before_start(tmp_path, fake):
    proj = grown(tmp_path, fake)
    result = invoke("synth", proj, "--per-leaf", "10", "--max-calls", "1", ok=False)
    assert result.exit_code == 1 and "cap of 1" in result.output
    estimate = json.loads(invoke("synth", proj, "--per-leaf", "10", "--estimate", "--json").stdout)
    assert estimate["calls"] >= 2 and estimate["cost_usd"] == 0
    assert estimate["calls_max"] > estimate["calls"]
    # the fake's calls are not the embedded model's: a guess, as a range
    assert estimate["time"]["basis"] == "no calls yet: a guess"
    assert 0 < estimate["time"]["low_s"] < estimate["time"]["high_s"]
    text = invoke("synth", proj, "--per-leaf", "10", "--estimate").stdout
    line = next(x for x in text.splitlines() if x.startswith("Estimate:"))  # one line, not wrapped at 80
    assert len(line) > 80 and "calls (at most" in line and "tokens" in line and "no calls yet: a guess" in line


def test_settings_never_store_a_key(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret-value-123")
    proj = tmp_path / "p"
    invoke("new", proj, "--task", "t", "--llm", "openai", "--model", "gpt-4o-mini", "--api-key-env", "MY_KEY")
    shown = invoke("settings", proj, "--json").stdout
    assert json.loads(shown)["api_key_env"] == "MY_KEY"
    raw = (proj / "treesynth.db").read_bytes()
    assert b"sk-secret" not in raw
    bad = invoke("settings", proj, "--api-key-env", "sk-secret-value-123", ok=False)
    assert bad.exit_code == 1 and "NAME" in bad.output


def test_no_samples_export_is_a_clear_error(tmp_path, fake):
    proj = grown(tmp_path, fake)
    result = invoke("export", proj, "--out", tmp_path / "x.jsonl", ok=False)
    assert result.exit_code == 1 and "no samples" in result.output


def test_db_is_consistent_after_everything(tmp_path, fake):
    proj = grown(tmp_path, fake)
    invoke("synth", proj, "--per-leaf", "2", "-q")
    conn = sqlite3.connect(proj / "treesynth.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_endpoint_down_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TREESYNTH_MAX_RETRIES", "1")
    proj = tmp_path / "p"
    invoke("new", proj, "--task", "t", "--llm", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m")
    result = invoke("grow", proj, "-q", ok=False)
    assert result.exit_code == 1
    assert "127.0.0.1:9" in result.output and "Traceback" not in result.output
    stats = json.loads(invoke("stats", proj, "--json").stdout)
    assert stats["runs"][0]["status"] == "failed"


def test_ctrl_c_mid_synth_resumes_without_duplicates(tmp_path, monkeypatch, fake):
    proj = grown(tmp_path, fake)
    calls = {"n": 0}

    class Interrupting(ScriptedLLM):
        async def complete(self, request):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return await super().complete(request)

    monkeypatch.setattr(runs, "default_factory", lambda settings: Interrupting())
    result = invoke("synth", proj, "--per-leaf", "4", "--per-call", "2", "--concurrency", "1", "-q", ok=False)
    assert result.exit_code == 130
    partial = json.loads(invoke("show", proj, "--json").stdout)["sample_counts"]
    assert 0 < sum(partial.values()) < 4 * len(show(proj)["leaves"])
    monkeypatch.setattr(runs, "default_factory", lambda settings: ScriptedLLM())
    invoke("synth", proj, "--per-leaf", "4", "--per-call", "2", "-q")
    counts = show(proj)["sample_counts"]
    assert set(counts.values()) == {4}


def test_prices_give_a_cost_estimate(tmp_path, fake):
    proj = tmp_path / "p"
    invoke(
        "new",
        proj,
        "--task",
        "Math word problems",
        *openai_flags("http://127.0.0.1:1/v1", "fake-model"),
    )
    invoke("grow", proj, "--depth", "1", "--pivots", "3", "-q")
    unknown = json.loads(invoke("stats", proj, "--json").stdout)
    assert unknown["cost_usd"] is None
    invoke("settings", proj, "--price", "fake-model=1.0,2.0")
    priced = json.loads(invoke("stats", proj, "--json").stdout)
    expected = (priced["prompt_tokens"] * 1.0 + priced["completion_tokens"] * 2.0) / 1e6
    assert priced["cost_usd"] == pytest.approx(expected) and priced["cost_usd"] > 0
    bad = invoke("settings", proj, "--price", "nonsense", ok=False)
    assert bad.exit_code == 1 and "MODEL=INPUT,OUTPUT" in bad.output


def test_grow_paper_preset_runs_unattended_to_depth_4_and_explicit_flags_win(tmp_path, fake):
    proj = tmp_path / "proj"
    invoke("new", proj, "--task", "Math word problems")
    data = json.loads(invoke("grow", proj, "--paper", "--pivots", "3", "--json").stdout)
    assert data["proposed"] == 0 and data["sampled"] == 0
    tree = show(proj)
    depth = lambda node: 1 + max((depth(k) for k in node.get("children", [])), default=0)  # noqa: E731
    assert depth(tree["root"]) == 5  # the root and 4 levels, as the paper
    other = tmp_path / "other"
    invoke("new", other, "--task", "Math word problems")
    data = json.loads(invoke("grow", other, "--paper", "--review", "--depth", "3", "--pivots", "3", "--json").stdout)
    assert data["expanded"] == 1 and data["proposed"] == data["children"]  # review wins over auto-approve
    result = invoke("grow", other, "--paper", "--max-values", "0", ok=False)
    assert result.exit_code == 1 and "max_values must be at least 1" in result.output


def test_option_groups_are_declared_once_and_packed_into_one_value():
    @option_groups
    def command(directory: str, llm_run: LlmRunOptions = NO_LLM_RUN_OPTIONS, as_json: bool = False):
        return llm_run

    names = list(inspect.signature(command).parameters)
    assert names == ["directory", "max_calls", *BACKEND_OPTIONS, "quiet", "wait", "as_json"]
    assert command("d") == LlmRunOptions()
    packed = command("d", llm="openai", gguf="m.gguf", concurrency=2, quiet=True)
    assert packed.quiet and packed.max_calls is None
    assert packed.backend.overrides() == {
        "backend": "openai",
        "base_url": None,
        "model": None,
        "api_key_env": None,
        "gguf_path": "m.gguf",
        "concurrency": 2,
    }
