"""The project store: opening, the edit log (undo/redo), samples, the LLM cache and call log, runs."""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.trees import with_leaves
from treesynth_core.errors import ProjectError, ProjectGone, TreeError
from treesynth_core.llm.base import ChatResult
from treesynth_core.llm.recording import CallRecord
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.store import CallCounts, EditRecord, Project, schema
from treesynth_core.store import db as db_module
from treesynth_core.store import runs as runs_module
from treesynth_core.store.samples import NewSample
from treesynth_core.tree import model as T

TASK = "Grade-school math word problems"
LLM = T.Provenance(source="llm", model="fake-model", call_id="call-1")
_COUNT_NAMES = [
    "calls",
    "cached",
    "failed",
    "requests",
    "failed_requests",
    "retries",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "proj"


@pytest.fixture
def project(folder: Path) -> Iterator[Project]:
    with Project.create(folder, task=TASK, style="Short problems.") as p:
        yield p


def grow(tree: T.Tree, node_id: str, criterion: str, values: list[str]) -> T.Tree:
    return T.attach_split(tree, node_id, criterion=criterion, values=values, pivots=["p1"], provenance=LLM)


def by_value(tree: T.Tree, value: str) -> T.Node:
    (node,) = [n for n in tree.nodes.values() if n.value == value]
    return node


def grown(project: Project) -> T.Tree:
    """Topic: Fractions, Geometry, Algebra; Geometry split on Shape: Circles, Triangles."""
    tree = project.apply("grow", lambda t: grow(t, t.root_id, "Topic", ["Fractions", "Geometry", "Algebra"]))
    geometry = by_value(tree, "Geometry").id
    return project.apply("grow", lambda t: grow(t, geometry, "Shape", ["Circles", "Triangles"]), actor="llm")


# -- create and open ------------------------------------------------------------------------------


def test_create_then_open_round_trips_task_style_settings_and_tree(folder: Path) -> None:
    settings = BackendSettings(backend="openai", model="gpt-4o-mini", base_url="http://localhost:8080/v1")
    with Project.create(folder, task=f"  {TASK}  ", style="Short.", settings=settings) as p:
        tree = grown(p)
    assert (folder / "treesynth.db").is_file()
    with Project.open(folder) as p:
        assert p.task == TASK and p.style == "Short."
        assert p.settings() == settings
        assert p.tree() == tree
        assert p.path == folder


def test_settings_default_and_save(project: Project) -> None:
    assert project.settings() == BackendSettings()
    project.save_settings(BackendSettings(backend="openai", model="m", concurrency=4))
    assert project.settings().concurrency == 4


@pytest.mark.parametrize("task", ["", "   \n"])
def test_create_rejects_an_empty_task_before_touching_disk(folder: Path, task: str) -> None:
    with pytest.raises(TreeError, match="task"):
        Project.create(folder, task=task)
    assert not folder.exists()


def test_create_refuses_a_folder_that_already_holds_a_project(project: Project, folder: Path) -> None:
    with pytest.raises(ProjectError, match="already holds a TreeSynth project"):
        Project.create(folder, task="another")


def test_create_makes_parent_folders(tmp_path: Path) -> None:
    with Project.create(tmp_path / "a" / "b", task=TASK) as p:
        assert p.tree().root.approved


def _truncated(folder: Path) -> None:
    with Project.create(folder, task=TASK) as p:
        p.add_samples(NewSample(leaf_id="x", key=str(i), instruction="q" * 500, path=[]) for i in range(300))
    db = folder / "treesynth.db"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])


def _random_bytes(folder: Path) -> None:
    folder.mkdir()
    (folder / "treesynth.db").write_bytes(bytes(range(256)) * 40)


def _empty_file(folder: Path) -> None:
    folder.mkdir()
    (folder / "treesynth.db").touch()


def _foreign_sqlite(folder: Path) -> None:
    folder.mkdir()
    with sqlite3.connect(folder / "treesynth.db") as conn:
        conn.execute("CREATE TABLE other (x)")


def _dropped_table(folder: Path) -> None:
    Project.create(folder, task=TASK).close()
    with sqlite3.connect(folder / "treesynth.db") as conn:
        conn.execute("DROP TABLE samples")


def _interrupted_create(folder: Path) -> None:
    Project.create(folder, task=TASK).close()
    with sqlite3.connect(folder / "treesynth.db") as conn:
        conn.execute("DELETE FROM meta")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda folder: None, "does not exist"),
        (lambda folder: folder.mkdir(), "not a TreeSynth project"),
        (lambda folder: folder.write_text("x"), "is a file"),
        (_random_bytes, "not an SQLite database"),
        (_empty_file, "empty"),
        (_truncated, "damaged"),
        (_foreign_sqlite, "not a TreeSynth project"),
        (_dropped_table, "tables missing: samples"),
        (_interrupted_create, "incomplete"),
    ],
    ids=[
        "missing",
        "empty-folder",
        "file",
        "random-bytes",
        "empty-db",
        "truncated",
        "foreign",
        "no-table",
        "no-meta",
    ],
)
def test_open_explains_what_is_wrong(folder: Path, make: Callable[[Path], object], message: str) -> None:
    make(folder)
    with pytest.raises(ProjectError, match=message) as info:
        Project.open(folder)
    assert str(folder) in str(info.value)


def test_a_closed_project_says_so(project: Project) -> None:
    project.close()
    project.close()  # twice is fine
    with pytest.raises(ProjectError, match="closed"):
        project.tree()


# -- migrations -----------------------------------------------------------------------------------


def test_migrate_is_idempotent() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    assert schema.migrate(conn) == [name for name, _ in schema.MIGRATIONS]
    before = schema.schema_sql(conn)
    assert schema.migrate(conn) == []
    assert schema.schema_sql(conn) == before
    assert schema.applied(conn) == [name for name, _ in schema.MIGRATIONS]
    assert schema.pending(conn) == [] and schema.missing_tables(conn) == []


def test_a_database_from_a_newer_treesynth_is_refused(project: Project, folder: Path) -> None:
    project.close()
    with sqlite3.connect(folder / "treesynth.db") as conn:
        conn.execute("INSERT INTO _migrations VALUES ('m999_from_the_future', 'later')")
    with pytest.raises(ProjectError, match="newer TreeSynth"):
        Project.open(folder)


def test_a_missing_migration_is_applied_on_open(project: Project, folder: Path) -> None:
    project.close()
    with sqlite3.connect(folder / "treesynth.db") as conn:
        conn.execute("DROP TABLE runs")
        conn.execute("DELETE FROM _migrations WHERE name = 'm007_runs'")
    with Project.open(folder) as p:
        assert p.start_run("grow")


def test_node_flags_persist_and_a_project_from_before_flags_opens(project: Project, folder: Path) -> None:
    root = project.tree().root_id
    flags = {"Mammals and birds": 'may combine "Mammals" and "birds"'}
    values = ["Mammals", "Mammals and birds"]
    llm = T.Provenance("llm")
    project.apply(
        "grow", lambda t: T.attach_split(t, root, criterion="Class", values=values, provenance=llm, flags=flags)
    )
    project.close()
    with Project.open(folder) as again:
        assert by_value(again.tree(), "Mammals and birds").flag == flags["Mammals and birds"]
    with sqlite3.connect(folder / "treesynth.db") as conn:  # as a project made before flags existed
        conn.execute("ALTER TABLE nodes DROP COLUMN flag")
        conn.execute("DELETE FROM _migrations WHERE name = 'm012_node_flag'")
    with Project.open(folder) as old:
        tree = old.tree()
        assert len(tree.nodes) == 3 and all(n.flag == "" for n in tree.nodes.values())
        assert old.undo() is not None  # edit records written before flags existed replay too


# -- edits, undo and redo -------------------------------------------------------------------------


def test_every_edit_kind_undoes_and_redoes_exactly(project: Project) -> None:
    tree = grown(project)
    states = [tree]
    ids = {v: by_value(tree, v).id for v in ("Fractions", "Geometry", "Algebra", "Circles", "Triangles")}
    edits = [
        ("approve", lambda t: T.approve(t, [ids["Circles"]])),
        ("prune", lambda t: T.prune(t, ids["Algebra"])),
        ("rename_value", lambda t: T.rename_value(t, ids["Fractions"], "Fractions and decimals")),
        ("add_value", lambda t: T.add_value(t, ids["Geometry"], "Squares")),
        ("merge", lambda t: T.merge(t, ids["Circles"], ids["Triangles"], new_value="Round and pointy")),
        (
            "replace_criterion",
            lambda t: T.replace_criterion(t, ids["Fractions"], "Operation", ["add", "split"]),
        ),
        ("remove_value", lambda t: T.remove_value(t, ids["Geometry"])),
    ]
    for kind, fn in edits:
        states.append(project.apply(kind, fn, args={"kind": kind}))
        assert project.tree() == states[-1]
    assert [r.kind for r in project.history(limit=len(edits))] == [k for k, _ in reversed(edits)]
    for expected in reversed(states[:-1]):
        assert project.undo() == expected
    for expected in states[1:]:
        assert project.redo() == expected
    assert project.redo() is None
    with Project.open(project.path) as again:  # what is on disk matches what the undo returned
        assert again.tree() == states[-1]


def test_undo_with_nothing_to_undo(project: Project) -> None:
    assert not project.can_undo() and not project.can_redo()
    assert project.undo() is None and project.redo() is None
    assert project.history() == []


def test_a_new_edit_drops_the_redo_stack(project: Project) -> None:
    tree = grown(project)
    a, b = by_value(tree, "Fractions").id, by_value(tree, "Algebra").id
    project.apply("approve", lambda t: T.approve(t, [a]))
    after_b = project.apply("prune", lambda t: T.prune(t, b))
    project.undo()  # prune undone
    assert project.can_redo()
    project.apply("lock", lambda t: T.lock(t, a))
    assert not project.can_redo() and project.redo() is None
    history = project.history()
    assert [(r.kind, r.undone) for r in history[:3]] == [("lock", False), ("prune", True), ("approve", False)]
    project.undo()  # lock
    project.undo()  # approve: the dropped prune is skipped
    assert not project.tree().node(a).approved and not project.tree().node(b).pruned
    assert project.redo() is not None and project.tree().node(a).approved  # approve again
    assert project.redo() is not None and project.tree().node(a).locked  # then lock; never the prune
    assert project.redo() is None
    assert project.tree() != after_b


def test_a_no_op_edit_is_not_recorded(project: Project) -> None:
    tree = grown(project)
    n = len(project.history())
    assert project.apply("approve", lambda t: T.approve(t, [t.root_id])) == tree
    assert len(project.history()) == n


def test_a_failing_edit_writes_nothing(project: Project) -> None:
    tree = grown(project)
    history = project.history()
    with pytest.raises(TreeError, match="root has no value"):
        project.apply("rename_value", lambda t: T.rename_value(t, t.root_id, "x"))
    with pytest.raises(KeyboardInterrupt, match="ctrl-c during an edit"):
        project.apply("grow", lambda t: (_ for _ in ()).throw(KeyboardInterrupt("ctrl-c during an edit")))
    assert project.tree() == tree and project.history() == history
    with Project.open(project.path) as again:
        assert again.tree() == tree and again.history() == history


def test_a_failed_write_rolls_back_the_whole_edit(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = grown(project)

    def explode(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(db_module, "set_meta", explode)  # fails after the node rows are written
    with pytest.raises(ProjectError, match="could not be used"):
        project.replace_tree(T.new_tree("another task"))
    monkeypatch.undo()
    assert project.tree() == tree
    with Project.open(project.path) as again:
        assert again.tree() == tree


def test_undo_after_reopening(project: Project) -> None:
    tree = grown(project)
    fractions = by_value(tree, "Fractions").id
    project.apply("prune", lambda t: T.prune(t, fractions))
    project.close()
    with Project.open(project.path) as again:
        assert again.undo() == tree
        assert not again.tree().node(fractions).pruned


def test_history_records(project: Project) -> None:
    grown(project)
    latest = project.history(limit=1)
    assert len(latest) == 1 and isinstance(latest[0], EditRecord)
    record = latest[0]
    assert (record.kind, record.actor, record.undone, record.n_changes) == ("grow", "llm", False, 3)
    assert record.ts.endswith("+00:00")


def test_replace_tree_is_one_undoable_edit_with_task_and_style(project: Project) -> None:
    before = grown(project)
    new = T.new_tree("Recipes", "Terse.")
    new = T.add_value(new, new.root_id, "Thai", criterion="Cuisine")
    imported = project.replace_tree(new)
    assert imported == new and project.task == "Recipes" and project.style == "Terse."
    assert project.history(limit=1)[0].kind == "import"
    assert project.undo() == before
    assert project.task == TASK and project.tree().root_id == before.root_id
    assert project.redo() == new


def test_replace_tree_rejects_a_broken_tree(project: Project) -> None:
    tree = T.new_tree("x")
    broken = T.with_nodes(tree, [T.Node(id="orphan", parent_id="nowhere", depth=1, value="v")])
    with pytest.raises(TreeError, match="node orphan points at a missing parent nowhere"):
        project.replace_tree(broken)


def test_two_projects_on_one_folder_lose_no_edit(project: Project) -> None:
    tree = grown(project)
    with Project.open(project.path) as tab:
        assert tab.tree() == tree
        project.apply("add_value", lambda t: T.add_value(t, t.root_id, "Probability"))
        tab.apply("add_value", lambda t: T.add_value(t, t.root_id, "Statistics"))  # sees Probability
        project.apply("add_value", lambda t: T.add_value(t, t.root_id, "Logic"))
        for p in (project, tab):
            values = {n.value for n in p.tree().children(p.tree().root_id)}
            assert {"Probability", "Statistics", "Logic"} <= values
        assert tab.undo() is not None  # undoes Logic, the latest edit, though the other tab made it
        assert "Logic" not in {n.value for n in project.tree().nodes.values()}


def test_concurrent_threads_and_connections_lose_no_edit(project: Project) -> None:
    other = Project.open(project.path)
    errors: list[BaseException] = []

    def add_many(p: Project, prefix: str) -> None:
        try:
            for i in range(15):
                p.apply(
                    "add_value",
                    functools.partial(T.add_value, value=f"{prefix}{i}", criterion="Topic", parent_id=p.tree().root_id),
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=add_many, args=(p, name))
        for p, name in [(project, "a"), (project, "b"), (other, "c"), (other, "d")]
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert not errors
    assert len(project.tree().children(project.tree().root_id)) == 60
    assert len(project.history()) == 60


_WRITER = """
import sys
from treesynth_core.tree import model as T
from treesynth_core.store import Project

with Project.open(sys.argv[1]) as p:
    for i in range(20):
        p.apply("add_value", lambda t: T.add_value(t, t.root_id, f"theirs{i}", criterion="Topic"))
"""


def test_two_processes_lose_no_edit(project: Project) -> None:
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(project.path)], env=env)
    for i in range(20):
        project.apply(
            "add_value",
            functools.partial(T.add_value, value=f"ours{i}", criterion="Topic", parent_id=project.tree().root_id),
        )
    assert writer.wait(timeout=120) == 0
    values = {n.value for n in project.tree().children(project.tree().root_id)}
    assert values == {f"ours{i}" for i in range(20)} | {f"theirs{i}" for i in range(20)}
    assert len(project.history()) == 40


def test_a_locked_project_reports_busy(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_S", 0.1)
    blocker = sqlite3.connect(project.path / "treesynth.db", isolation_level=None)
    with Project.open(project.path) as impatient:
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(ProjectError, match="busy"):
                impatient.apply("approve", lambda t: T.add_value(t, t.root_id, "x", criterion="c"))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert impatient.apply("add", lambda t: T.add_value(t, t.root_id, "x", criterion="c"))


# -- samples --------------------------------------------------------------------------------------


def sample(leaf: str, key: str, **kw: Any) -> NewSample:
    path = [{"criterion": "c", "value": leaf}]
    return NewSample(leaf_id=leaf, key=key, instruction=f"q {leaf} {key}", path=path, **kw)


def test_add_samples_is_idempotent(project: Project) -> None:
    with_leaves(project, ["a", "b"])
    batch = [sample("a", "0:0", response="r", extra={"score": 1}), sample("a", "0:1"), sample("b", "0:0")]
    assert project.add_samples(batch) == 3
    assert project.add_samples(batch) == 0
    assert project.add_samples([sample("a", "0:0", sample_set="flat")]) == 1
    assert project.add_samples([]) == 0
    stored = project.samples()
    assert [(s.leaf_id, s.key) for s in stored] == [("a", "0:0"), ("a", "0:1"), ("b", "0:0")]
    first = stored[0]
    assert first.response == "r" and first.extra == {"score": 1} and first.path[0]["value"] == "a"
    assert first.id > 0 and first.created
    assert project.sample_counts() == {"a": 2, "b": 1}
    assert project.sample_counts(sample_set="flat") == {"a": 1}
    assert project.sample_keys("a") == {"0:0", "0:1"}
    assert [s.key for s in project.samples(leaf_id="b")] == ["0:0"]
    assert len(project.samples(sample_set="flat")) == 1


def test_samples_by_many_leaves_and_delete(project: Project) -> None:
    with_leaves(project, [f"leaf{i}" for i in range(1200)])
    project.add_samples(sample(f"leaf{i}", "k") for i in range(1200))
    wanted = [f"leaf{i}" for i in range(0, 1200, 2)]
    found = project.samples(leaf_ids=iter(wanted))
    assert [s.leaf_id for s in found] == wanted
    assert project.samples(leaf_ids=[]) == []
    assert project.delete_samples([s.id for s in found] + [10**9]) == 600
    assert len(project.samples()) == 600


def test_sample_columns_match_the_samples_row_by_row(project: Project) -> None:
    """The columnar read (SQL groups, one string of ids each) agrees with the per-row one."""
    tree = grown(project)
    leaves = [n.id for n in tree.leaves()]
    rows = [
        NewSample(
            leaf_id=leaves[i % 3], key=str(i), instruction=f"q{i}", path=[{"criterion": "c", "value": str(i % 2)}]
        )
        for i in range(12)
    ]
    rows.append(NewSample(leaf_id=tree.root_id, key="b", instruction="flat", path=[], sample_set="baseline"))
    rows.append(NewSample(leaf_id="x", key="i", instruction="imported", path=[], sample_set="other"))
    project.add_samples(rows)
    project.delete_samples([project.samples()[4].id])
    columns = project.sample_columns(["tree", "baseline"])
    expected = project.samples() + project.samples(sample_set="baseline")
    assert columns.ids.tolist() == sorted(s.id for s in expected) and len(columns) == 12
    by_id = {s.id: s for s in expected}
    for sample_id, code in zip(columns.ids.tolist(), columns.origin.tolist(), strict=True):
        origin = columns.origins[code]
        sample = by_id[sample_id]
        assert (origin.sample_set, origin.leaf_id, origin.path) == (sample.sample_set, sample.leaf_id, sample.path)
    assert len(columns.origins) == 7  # 3 leaves x 2 paths, and the baseline's
    assert columns.rows_of([expected[1].id, 999, expected[0].id]).tolist() == [1, -1, 0]
    assert len(project.sample_columns([])) == 0 and len(project.sample_columns(["nothing"])) == 0
    assert project.instructions([expected[2].id, 999, expected[0].id]) == {expected[2].id: "q2", expected[0].id: "q0"}


def test_sample_columns_are_read_again_only_after_the_database_changed(project: Project, folder: Path) -> None:
    tree = grown(project)
    leaf = tree.leaves()[0].id
    project.add_samples([NewSample(leaf_id=leaf, key="a", instruction="a", path=[])])
    assert project.sample_columns(["tree", "baseline"]) is not project.sample_columns()
    first = project.sample_columns()
    assert project.sample_columns() is first and not first.ids.flags.writeable  # shared: nobody may change it
    project.add_samples([NewSample(leaf_id=leaf, key="b", instruction="b", path=[])])  # this connection
    assert len(project.sample_columns()) == 2
    with Project.open(folder) as other:  # another connection
        other.delete_samples([int(first.ids[0])])
    assert len(project.sample_columns()) == 1


def test_a_delete_of_samples_can_be_undone(project: Project) -> None:
    """Issue 13 item 5: the samples come back with their ids and their deletion marks lifted; a
    batch restores once; a set deleted as a whole forgets what was kept of it."""
    with_leaves(project, ["a", "b"])
    project.add_samples([sample("a", "0:0"), sample("a", "0:1"), sample("b", "0:0")])
    before = project.samples()
    gone = project.trash_samples([before[0].id, before[2].id, 10**9])
    assert (gone.count, gone.sample_sets) == (2, ("tree",))
    assert project.sample_keys("a") == {"0:0", "0:1"}  # the deletion mark keeps a rerun off it
    project.add_samples([sample("a", "0:2")])  # a new sample since
    assert project.restore_samples(gone.batch) == 2
    assert [s.id for s in project.samples()][:3] == [s.id for s in before]
    assert {s.key for s in project.samples(leaf_id="a")} == {"0:0", "0:1", "0:2"}
    assert project.restore_samples(gone.batch) == 0
    second = project.trash_samples([before[1].id])
    assert second.batch > gone.batch
    project.delete_sample_set("tree")
    assert project.restore_samples(second.batch) == 0


# -- LLM cache, call log, runs, stats -------------------------------------------------------------


def test_cache_put_get(project: Project) -> None:
    assert project.cache_get("b2v1:abc") is None
    result = ChatResult(text="hi", model="m", prompt_tokens=3, completion_tokens=1, latency_s=0.5, call_id="c1")
    project.cache_put("b2v1:abc", result)
    hit = project.cache_get("b2v1:abc")
    assert hit is not None and hit.cached and hit.text == "hi" and hit.call_id == "c1"
    assert hit == ChatResult(**{**result.__dict__, "cached": True})
    project.cache_put("b2v1:abc", ChatResult(text="new", model="m"))
    assert project.cache_get("b2v1:abc") == ChatResult(text="new", model="m", cached=True)


def call(run_id: str | None, **kw: Any) -> CallRecord:
    base: dict[str, Any] = dict(
        run_id=run_id,
        backend="openai",
        model="m",
        purpose="grow",
        request={"messages": []},
        response="ok",
        prompt_tokens=10,
        completion_tokens=5,
        latency_s=1.0,
    )
    return CallRecord(**{**base, **kw})


def test_stats_count_calls_cached_and_failed_per_command(project: Project) -> None:
    grow_run = project.start_run("grow", {"levels": 2})
    for _ in range(2):
        project.log_call(call(grow_run))
    project.log_call(call(grow_run, cached=True, prompt_tokens=10))
    project.log_call(call(grow_run, response=None, error="EndpointError: 500", prompt_tokens=0, completion_tokens=0))
    project.finish_run(grow_run, "failed", "the endpoint kept failing")
    synth_run = project.start_run("synth")
    call_id = project.log_call(call(synth_run, prompt_tokens=100))
    project.finish_run(synth_run)
    project.log_call(call(None))
    assert len(call_id) == 26

    stats = project.stats()
    assert (stats.calls, stats.cached, stats.failed) == (4, 1, 1)
    assert stats.prompt_tokens == 2 * 10 + 100 + 10 and stats.completion_tokens == 4 * 5
    assert stats.latency_s == pytest.approx(5.0)
    grow = CallCounts(2, 1, 1, 3, 1, 0, prompt_tokens=20, completion_tokens=10, latency_s=3.0)  # 3 requests, 1 failed
    assert stats.by_command["grow"] == grow
    assert stats.by_command["synth"].calls == 1 and stats.by_command[""].calls == 1
    runs = stats.runs
    assert [r.command for r in runs] == ["synth", "grow"]
    assert (runs[1].status, runs[1].calls, runs[1].cached, runs[1].failed) == ("failed", 2, 1, 1)
    assert runs[1].finished and runs[1].error == "the endpoint kept failing"

    one = project.stats(grow_run)
    assert (one.calls, one.cached, one.failed) == (2, 1, 1)
    assert [r.id for r in one.runs] == [grow_run]
    data = stats.to_json()  # what `treesynth stats --json` prints: the totals first, then the breakdowns
    assert list(data) == [*_COUNT_NAMES, "by_command", "by_model", "runs"]
    assert data["by_command"]["grow"] == dataclasses.asdict(grow)
    run_fields = ["id", "command", "started", "finished", "status", "error"]
    assert list(data["runs"][1]) == run_fields + _COUNT_NAMES[:6]  # the counts of calls, not tokens


def test_stats_count_every_request_failed_requests_and_retries(project: Project) -> None:
    run = project.start_run("synth")
    project.log_call(call(run, attempts=3, attempt_errors=("HTTP 503", "HTTP 429")))  # made on the third try
    project.log_call(call(run, attempts=1))
    project.log_call(call(run, cached=True, attempts=0))
    refused = ("connection refused",) * 3  # three tries, none reached the server
    project.log_call(call(run, response=None, error="could not reach", attempts=0, attempt_errors=refused))
    project.log_call(call(run, response=None, error="cancelled", attempts=1, attempt_errors=("cancelled",)))
    project.finish_run(run, "failed", "could not reach")

    stats = project.stats(run)
    counts = {"requests": 3 + 1 + 0 + 0 + 1, "failed_requests": 2 + 0 + 0 + 0 + 1, "retries": 2 + 0 + 0 + 2 + 0}
    assert {key: getattr(stats, key) for key in counts} == counts
    assert {key: getattr(stats.runs[0], key) for key in counts} == counts
    assert stats.by_command["synth"].requests == counts["requests"]


def test_calls_logged_before_attempts_were_counted_made_one_try_each() -> None:
    conn = sqlite3.connect(":memory:")
    schema.m005_llm_calls(conn)
    row = "INSERT INTO llm_calls (id, ts, backend, model, request, error, cached) VALUES (?, '', 'b', 'm', '{}', ?, ?)"
    conn.executemany(row, [("made", None, 0), ("hit", None, 1), ("failed", "HTTP 500", 0)])
    schema.m016_call_attempts(conn)
    rows = conn.execute("SELECT id, attempts, attempt_errors FROM llm_calls ORDER BY id").fetchall()
    assert rows == [("failed", 1, '["HTTP 500"]'), ("hit", 0, "[]"), ("made", 1, "[]")]


def test_finish_run_of_an_unknown_run(project: Project) -> None:
    with pytest.raises(ProjectError, match="no run"):
        project.finish_run("nope")


def test_call_logs_never_hold_keys(project: Project) -> None:
    key = "sk-proj-abcdefghijklmnop1234567890"
    record = call(
        project.start_run("grow", {"api_key": key}),
        request={
            "messages": [{"role": "user", "content": f"use {key}"}],
            "headers": {"Authorization": f"Bearer {key}", "api_key": "secret-value"},
        },
        response=f"echo {key}",
        error="401 for header 'Bearer abcdefghijklmnopqrstuv'",
    )
    project.log_call(record)
    project.close()
    raw = (project.path / "treesynth.db").read_bytes()
    for wal in project.path.glob("treesynth.db-wal"):
        raw += wal.read_bytes()
    assert b"abcdefghijklmnop" not in raw and b"secret-value" not in raw
    with sqlite3.connect(project.path / "treesynth.db") as conn:
        request, error = conn.execute("SELECT request, error FROM llm_calls").fetchone()
    assert "sk-[REDACTED]" in request and "Bearer [REDACTED]" in error


def test_redact_leaves_ordinary_text_alone() -> None:
    text = {"content": "a task-oriented, risk-assessment prompt; sk-8 is short", "max_tokens": 5}
    assert runs_module.redact_secrets(text) == text


def test_ids_sort_by_creation() -> None:
    ids = [runs_module.new_ulid() for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000 and all(len(i) == 26 for i in ids)


def test_features_and_blobs_round_trip_and_follow_deleted_samples(tmp_path):
    import numpy as np

    from treesynth_core.store.samples import NewSample

    with Project.create(tmp_path / "f", task="t") as project:
        with_leaves(project, ["l"])
        project.add_samples([NewSample(leaf_id="l", key=f"0:{i}", instruction=f"s {i}", path=[]) for i in range(3)])
        ids = [s.id for s in project.samples()]
        vectors = {i: np.full(4, i, dtype=np.float32).tobytes() for i in ids}
        project.put_features("emb:x", vectors)
        got = project.get_features("emb:x", ids + [999])
        assert set(got) == set(ids)
        assert np.frombuffer(got[ids[1]], dtype=np.float32).tolist() == [ids[1]] * 4
        assert project.get_features("emb:other", ids) == {}
        project.delete_samples([ids[0]])
        assert set(project.get_features("emb:x", ids)) == set(ids[1:])
        assert project.get_blob("k") is None
        project.put_blob("k", b"abc")
        assert project.get_blob("k") == b"abc"


def test_an_import_is_staged_hidden_and_lets_other_writers_in_between_batches(tmp_path):
    from treesynth_core.store.project import STAGING_PREFIX

    with Project.create(tmp_path / "p", task="t") as project:
        seen: list[tuple[int, dict[str, int]]] = []

        def rows():
            for i in range(7):
                yield NewSample(leaf_id="", key=f"row:{i}", instruction=f"q{i}", path=[])

        def progress(done: int) -> None:
            project.put_blob("heartbeat", str(done).encode())  # a write between batches must not fail
            seen.append((done, project.sample_sets()))

        assert project.import_samples(rows(), sample_set="data", progress=progress, batch=3) == 7
        assert [done for done, _ in seen] == [3, 6, 7]
        assert all(sets == {} for _, sets in seen)  # nothing visible until the whole file is in
        assert project.sample_sets() == {"data": 7}

        # a process killed mid-import leaves hidden staging rows: the next import of the name clears them
        project.add_samples(
            [NewSample(leaf_id="", key="row:0", instruction="stale", path=[], sample_set=STAGING_PREFIX + "more")]
        )
        assert project.import_samples(rows(), sample_set="more") == 7
        assert [s.instruction for s in project.samples(sample_set="more")][0] == "q0"
        assert project.sample_counts(sample_set=STAGING_PREFIX + "more") == {}


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("tree", "reserved for leaf synthesis"),
        ("baseline", "reserved for the flat baseline"),
        ("  ", "give the new sample set a name"),
        ("~importing:x", "marks an import still running"),
    ],
)
def test_the_store_refuses_a_dataset_under_a_name_synthesis_owns(tmp_path, name, why):
    from treesynth_core.store.samples import dataset_set_problem

    assert why in (dataset_set_problem(name) or "")
    with Project.create(tmp_path / "p", task="t") as project:
        rows = [NewSample(leaf_id="", key="row:0", instruction="q", path=[])]
        with pytest.raises(ProjectError, match=f"a dataset needs its own sample set name: .*{why}"):
            project.import_samples(iter(rows), sample_set=name)
        assert project.sample_sets() == {}


def test_a_free_name_has_no_naming_problem():
    from treesynth_core.store.samples import RESERVED_SETS, dataset_set_problem

    assert set(RESERVED_SETS) == {"tree", "baseline"}
    assert dataset_set_problem("imported") is None and dataset_set_problem("balanced") is None


def test_a_project_whose_folder_was_deleted_refuses_every_write(tmp_path: Path) -> None:
    """Issue 13 item 6: SQLite would keep writing the deleted file, and the edits would vanish."""
    folder = tmp_path / "p"
    with Project.create(folder, task="Math word problems") as project:
        shutil.rmtree(folder)
        with pytest.raises(ProjectGone, match="deleted or moved while it was open; your last edit was not saved"):
            project.apply("add-value", lambda t: T.add_value(t, t.root_id, "Algebra", criterion="Topic"))
        with pytest.raises(ProjectGone, match="deleted or moved"):
            project.check_present()
        with pytest.raises(ProjectGone, match="deleted or moved"):
            project.tree()
    moved = tmp_path / "q"
    with Project.create(folder, task="Math word problems") as project:
        project.apply("add-value", lambda t: T.add_value(t, t.root_id, "Algebra", criterion="Topic"))
        folder.rename(moved)
        with pytest.raises(ProjectGone, match="deleted or moved"):
            project.apply("add-value", lambda t: T.add_value(t, t.root_id, "Geometry", criterion="Topic"))
    with Project.open(moved) as project:
        assert [n.value for n in project.tree().children(project.tree().root_id)] == ["Algebra"]


def test_a_change_of_working_directory_is_not_a_deleted_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Project.create(Path("p"), task="Math word problems") as project:
        monkeypatch.chdir("/")
        project.apply("add-value", lambda t: T.add_value(t, t.root_id, "Algebra", criterion="Topic"))
        assert len(project.tree().nodes) == 2
