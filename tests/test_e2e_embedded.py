"""The whole pipeline on the real embedded model (SmolLM2-135M through llama.cpp), offline:
new -> grow (depth 2) -> synth -> export, then a rerun that costs zero LLM calls.

What the 135M model writes differs from CPU to CPU, so this asserts only what holds on any of
them: every command finishes, every node the growth tried either split (into children with values)
or stayed a leaf with a note saying why, every leaf got its samples or is reported short, the export
holds exactly the stored samples, and a rerun is served from the cache. Growth that must yield
particular children is tested through scripted capable-model replies (test_grow.py, test_browser.py).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from treesynth_core.cli.app import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def tree_nodes(node: dict) -> list[dict]:
    """A node of ``show --json``'s tree and all its descendants."""
    return [node, *(n for child in node.get("children", []) for n in tree_nodes(child))]


def invoke(*args, exits: tuple[int, ...] = (0,)):
    """Run a command that should exit with one of ``exits``: growth and synthesis may exit 1 (no
    usable reply at all) or 3 (some work got none) with the 135M model."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code in exits, result.output
    return result


LLM_EXITS = (0, 1, 3)


def test_embedded_pipeline_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("TREESYNTH_LLM", "TREESYNTH_BASE_URL", "TREESYNTH_MODEL"):
        monkeypatch.delenv(var, raising=False)
    proj = tmp_path / "proj"
    invoke("new", proj, "--task", "Short questions about animals", "--style", "one question per sample")
    grow_args = ("grow", proj, "--depth", "2", "--pivots", "3", "--max-values", "2", "--auto-approve", "--json")
    grown = invoke(*grow_args, exits=LLM_EXITS)
    tree = json.loads(invoke("show", proj, "--json").stdout)
    nodes = tree_nodes(tree["root"])
    failed = [n for n in nodes if str(n.get("note") or "").startswith("expansion failed:")]
    assert not any(n.get("expanded") for n in failed)  # a failed expansion is no leaf: it grows again
    if grown.exit_code == 1:  # no usable pivots for the root: it stays growable (and is synthesized as a leaf)
        assert "0 of 1 node expanded" in grown.output and [n["id"] for n in failed] == [tree["root"]["id"]]
    else:
        first_grow = json.loads(grown.stdout)
        assert first_grow["expanded"] >= 1 and first_grow["llm"]["calls"] > 0 and len(failed) == first_grow["failed"]
        assert len(nodes) == first_grow["nodes"] and tree["leaves"] and len(tree["leaves"]) == first_grow["leaves"]
        split = [n for n in nodes if n.get("children")]
        assert first_grow["expanded"] == len(split) + first_grow["kept_as_leaf"] + first_grow["failed"]
        for node in split:  # a split names its criterion and gives each child a value
            assert node["criterion"].strip() and all(str(c.get("value") or "").strip() for c in node["children"])
    kept = [n for n in nodes if n.get("expanded") and not n.get("children")]
    assert all(str(n.get("note") or "").strip() for n in kept)  # a node left a leaf says why

    synth_args = ("synth", proj, "--per-leaf", "2", "--per-call", "2", "--json")
    first_synth = json.loads(invoke(*synth_args, exits=(0, 3)).stdout)
    assert first_synth["llm"]["calls"] > 0
    counts = json.loads(invoke("show", proj, "--json").stdout)["sample_counts"]
    assert sum(counts.values()) == first_synth["total_samples"]
    for leaf in tree["leaves"]:  # every leaf got its samples, or is reported short
        assert counts.get(leaf, 0) >= 2 or leaf in first_synth["short_leaves"]

    out = tmp_path / "data.jsonl"
    invoke("export", proj, "--format", "jsonl", "--out", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == first_synth["total_samples"]
    assert all(r["messages"][0]["content"].strip() for r in rows)
    assert all(r["model"].startswith("SmolLM2-135M-Instruct") for r in rows)

    # Rerunning the same build costs nothing when every node and leaf got a usable reply: every request
    # is served from the project's cache. Work that got none is asked again (unusable replies are not cached).
    if not failed and not first_synth["failed_leaves"]:
        again_grow = json.loads(invoke(*grow_args).stdout)
        again_synth = json.loads(invoke(*synth_args).stdout)
        assert again_grow["llm"]["calls"] == 0 and again_synth["llm"]["calls"] == 0
        stats = json.loads(invoke("stats", proj, "--json").stdout)
        assert [r["calls"] for r in stats["runs"][:2]] == [0, 0]
    elif failed:  # the failed expansions are asked again, not served from the cache
        invoke(*grow_args, exits=LLM_EXITS)
        stats = json.loads(invoke("stats", proj, "--json").stdout)
        assert stats["runs"][0]["command"] == "grow" and stats["runs"][0]["calls"] + stats["runs"][0]["failed"] > 0
