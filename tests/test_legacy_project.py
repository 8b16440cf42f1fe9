"""A project made by an earlier release (tests/fixtures/legacy_project_ed34279) opens and works."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from treesynth_core.cli.app import app
from treesynth_core.store import Project

LEGACY = Path(__file__).parent / "fixtures" / "legacy_project_ed34279"


@pytest.fixture
def legacy(tmp_path) -> Path:
    folder = tmp_path / "legacy"
    folder.mkdir()
    shutil.copy(LEGACY / "treesynth.db", folder / "treesynth.db")
    return folder


def test_the_tree_samples_sets_and_settings_are_all_there(legacy):
    with Project.open(legacy) as project:
        tree = project.tree()
        assert tree.task.startswith("Grade-school math")
        first = tree.children(tree.root_id)
        assert first[0].value.endswith("(renamed)")
        assert first[-1].pruned and not first[0].pruned
        assert all(n.approved for n in tree.nodes.values())
        assert project.sample_sets() == {"mydata": 6, "tree": 12}
        settings = project.settings()
        assert settings.backend == "openai" and settings.model == "legacy-model"
        assert settings.prompts == "auto" and settings.prompt_profile() == "paper"
        assert [e.kind for e in project.history()] == ["prune", "rename", "import"]


def test_undo_export_and_stats_work_on_it(legacy, tmp_path):
    with Project.open(legacy) as project:
        restored = project.undo()
        assert restored is not None
        assert not restored.children(restored.root_id)[-1].pruned
    runner = CliRunner()
    out = tmp_path / "data.jsonl"
    result = runner.invoke(app, ["export", str(legacy), "--format", "jsonl", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12
    stats = runner.invoke(app, ["stats", str(legacy), "--json"])
    counted = json.loads(stats.output)
    assert stats.exit_code == 0 and counted["calls"] == 6
    assert (counted["requests"], counted["failed_requests"], counted["retries"]) == (6, 0, 0)  # one try each
    shown = runner.invoke(app, ["show", str(legacy)])
    assert shown.exit_code == 0 and "(renamed)" in shown.output
