"""``batch prepare``'s dry run: it reads the project and keeps its writes in memory, so the project
is neither changed nor copied (its cost is what the run reads, not the size of the project)."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest

from tests.helpers_batch import make_project, run_batch
from treesynth_core.batch.dry_run import DryRunStore
from treesynth_core.batch.prepare import synth_requests
from treesynth_core.batch.rounds import collect_files, write_round
from treesynth_core.errors import ProjectError
from treesynth_core.generate.synth import SynthOptions
from treesynth_core.llm.base import ChatResult
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.store import Project
from treesynth_core.store.samples import NewSample
from treesynth_core.tree import model as T

SETTINGS = BackendSettings(backend="openai", model="gpt-4o-mini")
OPTIONS = SynthOptions(per_leaf=4, per_call=2, responses=True)


def rows(folder: Path, table: str) -> list[tuple]:
    with sqlite3.connect(folder / "treesynth.db") as conn:
        return sorted(conn.execute(f"SELECT * FROM {table}").fetchall())  # noqa: S608 - a fixed table name


def leaves(project: Project) -> list[str]:
    return [leaf.id for leaf in project.tree().leaves()]


def test_writes_stay_in_the_dry_run_and_its_reads_see_them(tmp_path):
    with Project.open(make_project(tmp_path / "p")) as project:
        first, second = leaves(project)
        project.add_samples([NewSample(first, "0:0", "How much is 10% of 50?", [])])
        store = DryRunStore(project)
        assert [s.key for s in store.samples(leaf_id=first)] == ["0:0"]
        new = [NewSample(first, "0:0", "again", []), NewSample(first, "1:0", "What is 1/2 of 8?", [])]
        assert store.add_samples(new) == 1  # a stored key is skipped, as the project skips it
        store.skip_keys(second, ["s2:7"])
        store.cache_put("k", ChatResult("reply", "m"))
        assert [s.instruction for s in store.samples(leaf_id=first)] == ["How much is 10% of 50?", "What is 1/2 of 8?"]
        assert store.sample_counts() == {first: 2}
        assert store.sample_keys(second) == {"s2:7"} and store.sample_keys(first) == {"0:0", "1:0"}
        assert store.cache_get("k") == ChatResult("reply", "m", cached=True)
        store.cache_evict("k")
        assert store.cache_get("k") is None
        assert project.sample_counts() == {first: 1} and project.sample_keys(second) == set()
        assert project.cache_get("k") is None


def test_samples_of_a_pruned_leaf_are_dropped_as_the_project_drops_them(tmp_path):
    with Project.open(make_project(tmp_path / "p")) as project:
        first, second = leaves(project)
        project.apply("prune", lambda tree: T.prune(tree, second))
        added = DryRunStore(project).add_samples([NewSample(first, "0:0", "a", []), NewSample(second, "0:0", "b", [])])
        assert (added, added.dropped) == (1, 1)


def test_a_dry_run_does_not_place_samples(tmp_path):
    with Project.open(make_project(tmp_path / "p")) as project:
        with pytest.raises(ProjectError, match="does not place samples"):
            DryRunStore(project).assign_leaves({1: ("leaf", [])})


def test_prepare_copies_nothing_and_changes_only_the_batch_records(tmp_path, monkeypatch):
    folder = make_project(tmp_path / "p")
    with Project.open(folder) as project:
        written = write_round(project, synth_requests(project, SETTINGS, OPTIONS).requests)
        run_batch(written.shards[0].path, tmp_path / "out.jsonl")
        collect_files(project, [tmp_path / "out.jsonl"], "gpt-4o-mini")
    before = {table: rows(folder, table) for table in ("samples", "llm_cache", "llm_calls", "deleted_samples")}
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))  # a copy would need room here
    with Project.open(folder) as project:
        second = synth_requests(project, SETTINGS, OPTIONS)  # the replies make samples; their responses are next
    assert len(second.requests) == 8
    assert {table: rows(folder, table) for table in before} == before
