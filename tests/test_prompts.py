"""Prompt profiles: which backend gets which prompts, and what each profile's prompts say."""

from __future__ import annotations

import pytest

from tests.fakes import ScriptedLLM
from treesynth_core.errors import ConfigError
from treesynth_core.llm.recording import CachedLLM, LoggedLLM
from treesynth_core.llm.settings import BackendSettings, merge_settings
from treesynth_core.prompts import templates as P

PATH = [("Operation", "addition"), ("Entity", "fruit")]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (BackendSettings(), "small"),
        (BackendSettings(gguf_path="/models/qwen2.5-7b-instruct-q4_k_m.gguf"), "paper"),
        (BackendSettings(backend="openai", model="gpt-4o-mini"), "paper"),
        (BackendSettings(prompts="paper"), "paper"),
        (BackendSettings(backend="openai", model="gpt-4o-mini", prompts="small"), "small"),
    ],
)
def test_profile_follows_the_backend_unless_the_project_sets_it(settings, expected):
    assert settings.prompt_profile() == expected
    assert expected in settings.describe_prompts()


def test_an_unknown_profile_is_a_clear_settings_error():
    with pytest.raises(ConfigError, match="invalid setting prompts"):
        merge_settings(None, {"prompts": "huge"})


def test_profile_for_reads_the_backend_through_the_recording_wrappers(tmp_path):
    from treesynth_core.store import Project

    fake = ScriptedLLM()
    assert P.profile_for(fake) == "paper"  # test doubles stand for capable models
    fake.prompt_profile = "small"  # type: ignore[attr-defined]
    with Project.create(tmp_path / "p", task="t") as project:
        wrapped = CachedLLM(LoggedLLM(fake, project, None))
        assert P.profile_for(wrapped) == "small"


def test_paper_prompts_follow_the_reference_skeleton():
    samples = P.samples_prompt("Grade-school math word problems", "GSM8K-style", PATH, 10)
    assert samples.startswith("You are an expert")
    assert "1. Each sample is one complete, realistic example of the task: Grade-school math" in samples
    assert "2. Follow this style" in samples and "GSM8K-style" in samples
    assert '"value": "addition"' in samples
    assert "diverse from all potential perspectives" in samples
    criterion = P.criterion_prompt("Math", "", PATH, ["a sample", "another one"], ["Operation", "Entity"])
    assert 'already used: "Operation", "Entity".' in criterion
    assert "topic, difficulty, format" not in criterion  # the reference suggests no dimensions
    assert "Supply and demand" in criterion  # single concepts with "and" are allowed
    coverage = P.coverage_prompt("Math", "", PATH, "Setting", ["school"], 10)
    assert coverage.startswith("You are an expert analyst") and "- school" in coverage


def test_small_prompts_stay_short():
    for profile in P.PROFILES:
        samples = P.samples_prompt("Math", "GSM8K-style", PATH, 5, profile=profile)
        assert samples.endswith('Reply in JSON: {"samples": [...]} with exactly 5 strings.')
    small = P.samples_prompt("Math", "GSM8K-style", PATH, 5, profile="small")
    paper = P.samples_prompt("Math", "GSM8K-style", PATH, 5, profile="paper")
    assert len(small.splitlines()) <= 5 < len(paper.splitlines())
    assert "Answer the request above as well as you can." in P.response_prompt("t", "", "Q?", profile="small")
    assert "step by step" in P.response_prompt("t", "", "Q?", profile="paper")


def test_cli_settings_sets_the_prompt_profile(tmp_path):
    from typer.testing import CliRunner

    from treesynth_core.cli.app import app

    runner = CliRunner()
    directory = str(tmp_path / "p")
    assert runner.invoke(app, ["new", directory, "--task", "Math word problems"]).exit_code == 0
    shown = runner.invoke(app, ["settings", directory])
    assert "small prompts (auto)" in shown.output
    changed = runner.invoke(app, ["settings", directory, "--prompts", "paper"])
    assert changed.exit_code == 0 and "paper prompts (set for this project)" in changed.output
    bad = runner.invoke(app, ["settings", directory, "--prompts", "huge"])
    assert bad.exit_code == 1 and "invalid setting prompts" in bad.output
