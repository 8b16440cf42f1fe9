"""A read-only project folder (issue 12, item 7): read commands work on it, write commands say the
folder is read-only in one line, and nothing calls it damaged."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.trees import with_leaves
from treesynth_core.cli.app import app
from treesynth_core.errors import ProjectError
from treesynth_core.store import Project
from treesynth_core.store import db as db_module
from treesynth_core.store.samples import NewSample

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def made(tmp_path: Path) -> Path:
    path = tmp_path / "P"
    with Project.create(path, task="Grade-school math word problems") as project:
        with_leaves(project, ["a", "b"])
        project.add_samples(NewSample(leaf_id=leaf, key="0:0", instruction=f"q {leaf}", path=[]) for leaf in "ab")
    return path


def check_reads_work_and_writes_refuse(path: Path, out: Path) -> None:
    shown = invoke("show", path)
    assert shown.exit_code == 0, shown.output
    assert "damaged" not in shown.output
    stats = invoke("stats", path, "--json")
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.output)["calls"] == 0
    exported = invoke("export", path, "--out", out / "d.jsonl")
    assert exported.exit_code == 0, exported.output
    assert len((out / "d.jsonl").read_text().splitlines()) == 2
    for command in (["settings", path, "--model", "x"], ["synth", path, "--per-leaf", "1", "-q"]):
        refused = invoke(*command)
        assert refused.exit_code == 1
        errors = [line for line in refused.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "read-only" in errors[0] and "damaged" not in refused.output, refused.output
    with Project.open(path) as project, pytest.raises(ProjectError, match="is read-only"):
        project.save_settings(project.settings())


@pytest.fixture
def not_writable(monkeypatch: pytest.MonkeyPatch, made: Path) -> Iterator[Path]:
    """``made`` as a process without write access sees it (root ignores chmod, so ask os.access)."""
    real = os.access

    def access(path: object, mode: int, **kw: object) -> bool:
        if mode & os.W_OK and Path(str(path)).resolve().is_relative_to(made.resolve()):
            return False
        return real(path, mode, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(db_module.os, "access", access)
    yield made


def test_a_project_this_process_cannot_write_is_read_but_not_written(not_writable, tmp_path):
    check_reads_work_and_writes_refuse(not_writable, tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod")
def test_a_chmod_read_only_folder_is_read_but_not_written(made, tmp_path):
    db = made / "treesynth.db"
    for extra in (made / "treesynth.db-wal", made / "treesynth.db-shm"):
        assert not extra.exists() or extra.stat().st_size >= 0
    db.chmod(stat.S_IRUSR | stat.S_IRGRP)
    made.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        check_reads_work_and_writes_refuse(made, tmp_path)
    finally:
        made.chmod(stat.S_IRWXU)
        db.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_a_read_only_project_that_needs_migrating_says_so(not_writable):
    import sqlite3

    conn = sqlite3.connect(not_writable / "treesynth.db")
    with conn:
        conn.execute("DELETE FROM _migrations WHERE name = 'm013_run_lease'")
    conn.close()
    result = invoke("show", not_writable)
    assert result.exit_code == 1
    assert "needs 1 schema update(s), but its folder is read-only" in result.output
    assert "damaged" not in result.output
