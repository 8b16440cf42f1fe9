"""Undo that is yours (issue 12 item 5): every edit has an owner (an app session, ``cli:<user>`` or
``$TREESYNTH_OWNER``, a growth job its starter's), undo and redo act on one owner's edits unless
asked for all owners', and an undo or redo that a later edit by someone else would break is
refused with one line, changing nothing."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from studio.tree_panel import undo_summary, wkey
from studio.widgets import PAGE_TREE
from tests.apptest import new_app, open_example, run, texts
from tests.fakes import ScriptedLLM
from treesynth_core.cli.app import app
from treesynth_core.errors import EditConflict
from treesynth_core.jobs import background as jobs
from treesynth_core.store import Project
from treesynth_core.store.history import OWNER_ENV, default_owner
from treesynth_core.tree import model as T
from treesynth_core.tree.edits import run_edit

runner = CliRunner()


def values(tree: T.Tree) -> set[str]:
    return {n.value or "" for n in tree.nodes.values() if not n.is_root}


def node_id(tree: T.Tree, value: str) -> str:
    return next(n.id for n in tree.nodes.values() if n.value == value)


def add(project: Project, value: str) -> T.Tree:
    return project.apply("add-value", lambda t: T.add_value(t, t.root_id, value, criterion="Topic"))


def rename(project: Project, old: str, new: str) -> T.Tree:
    target = node_id(project.tree(), old)
    return project.apply("rename", lambda t: T.rename_value(t, target, new), args={"node_id": target})


@pytest.fixture
def pair(project: Project) -> Iterator[tuple[Project, Project]]:
    """Two owners on one project, each with its own connection (two processes, or two app tabs)."""
    project.owner = "alice"
    add(project, "Algebra")
    other = Project.open(project.path, owner="bob")
    try:
        yield project, other
    finally:
        other.close()


# -- owners ----------------------------------------------------------------------------------------


def test_default_owner_is_the_cli_user_unless_the_variable_names_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OWNER_ENV, raising=False)
    assert default_owner().startswith("cli:") and len(default_owner()) > len("cli:")
    monkeypatch.setenv(OWNER_ENV, "  nightly-script ")
    assert default_owner() == "nightly-script"


def test_each_edit_records_its_owner_beside_its_role(pair: tuple[Project, Project]) -> None:
    alice, bob = pair
    add(bob, "Geometry")
    assert [(r.owner, r.actor) for r in alice.history()] == [("bob", "human"), ("alice", "human")]


# -- undo and redo act on the owner's edits --------------------------------------------------------


def test_undo_leaves_the_other_owners_edits_alone(pair: tuple[Project, Project]) -> None:
    """The issue's repro: one process's undo removed 7 of another process's 20 edits."""
    alice, bob = pair
    for i in range(20):
        add(alice, f"a{i}")
        if i % 3 == 0:
            add(bob, f"b{i}")
    for _ in range(7):
        assert bob.undo() is not None
    tree = alice.tree()
    assert {f"a{i}" for i in range(20)} <= values(tree)
    assert not any(v.startswith("b") for v in values(tree))
    assert bob.undo() is None  # bob has nothing left; alice's edits stay
    assert alice.undo_state().undoable == 21 and bob.undo_state().redoable == 7


def test_a_new_edit_empties_only_its_owners_redo_stack(pair: tuple[Project, Project]) -> None:
    alice, bob = pair
    add(bob, "Geometry")
    bob.undo()
    add(alice, "Logic")  # another owner's edit: bob can still redo
    assert bob.can_redo() and bob.redo() is not None and "Geometry" in values(bob.tree())
    bob.undo()
    add(bob, "Sets")  # his own new edit drops his redo stack
    assert not bob.can_redo() and bob.redo() is None


def test_undo_all_takes_the_latest_edit_of_anyone(pair: tuple[Project, Project]) -> None:
    alice, bob = pair
    add(bob, "Geometry")
    assert alice.undo(all_owners=True) is not None and "Geometry" not in values(alice.tree())
    assert alice.redo(all_owners=True) is not None and "Geometry" in values(alice.tree())
    while alice.undo(all_owners=True) is not None:
        pass
    assert alice.tree().nodes.keys() == {alice.tree().root_id}


# -- conflicts are refused, changing nothing -------------------------------------------------------


def test_undo_refuses_when_another_owner_changed_the_same_node(pair: tuple[Project, Project]) -> None:
    alice, bob = pair
    rename(alice, "Algebra", "Algebra I")
    rename(bob, "Algebra I", "Algebra 1")
    bob_edit = alice.history(limit=1)[0].id
    before, log = alice.tree(), alice.history()
    with pytest.raises(
        EditConflict, match=rf"can't undo 'rename \"Algebra\"' \(edit \d+\): .* by bob \(edit {bob_edit}\)"
    ):
        alice.undo()
    assert alice.tree() == before and alice.history() == log
    bob.undo()  # once bob's rename is undone, alice's can be
    assert alice.undo() is not None and "Algebra" in values(alice.tree())


def test_undo_refuses_an_inverse_that_would_orphan_another_owners_node(pair: tuple[Project, Project]) -> None:
    alice, bob = pair
    algebra = node_id(alice.tree(), "Algebra")
    bob.apply("add-value", lambda t: T.add_value(t, algebra, "Linear", criterion="Kind"))
    add(alice, "Logic")
    alice.undo()  # Logic: untouched by bob
    with pytest.raises(EditConflict, match="Algebra.* was changed since by bob"):
        alice.undo()  # adding Algebra: bob split it since
    assert "Linear" in values(alice.tree())


def test_redo_refuses_when_the_tree_moved_on_and_the_refusal_keeps_the_redo(pair: tuple[Project, Project]) -> None:
    alice, bob = pair
    add(alice, "Geometry")
    alice.undo()  # Geometry gone; alice may redo it
    add(bob, "geometry")  # no node in common, but redoing alice's would repeat a sibling value
    with pytest.raises(EditConflict, match="can't redo 'add-value' .*the tree would break.*repeats sibling"):
        alice.redo()
    assert alice.can_redo() and values(alice.tree()) == {"Algebra", "geometry"}
    bob.undo()
    assert alice.redo() is not None and values(alice.tree()) == {"Algebra", "Geometry"}


def test_redo_refuses_when_an_edit_it_followed_was_undone(pair: tuple[Project, Project]) -> None:
    alice, bob = pair
    rename(alice, "Algebra", "Algebra I")
    rename(bob, "Algebra I", "Algebra 1")
    bob.undo()
    alice.undo()  # Algebra I -> Algebra: bob's rename found "Algebra I"
    with pytest.raises(EditConflict, match="can't redo 'rename \"Algebra I\"'.* by alice"):
        bob.redo()
    assert values(bob.tree()) == {"Algebra"}


def test_edits_from_before_owners_are_everyones(project: Project) -> None:
    add(project, "Algebra")
    add(project, "Geometry")
    with sqlite3.connect(project.path / "treesynth.db") as conn:  # as the m015 migration leaves them
        conn.execute("UPDATE edits SET owner = 'legacy'")
    with Project.open(project.path, owner="app:12345678") as tab:
        assert tab.undo_state().undoable == 2
        assert tab.undo() is not None and values(tab.tree()) == {"Algebra"}


def test_the_migration_fills_owners_and_touched_nodes_of_old_edits(project: Project) -> None:
    add(project, "Algebra")
    rename(project, "Algebra", "Algebra I")
    project.replace_tree(T.new_tree("Another task"))
    db = project.path / "treesynth.db"
    with sqlite3.connect(db) as conn:  # as a database from before m015
        expected = conn.execute("SELECT edit_id, node_id FROM edit_touches ORDER BY 1, 2").fetchall()
        conn.execute("DROP TABLE edit_touches")
        conn.execute("DROP INDEX edits_owner")
        conn.execute("ALTER TABLE edits DROP COLUMN owner")
        conn.execute("DELETE FROM _migrations WHERE name = 'm015_edit_owners'")
    with Project.open(project.path) as again:
        assert {r.owner for r in again.history()} == {"legacy"}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT edit_id, node_id FROM edit_touches ORDER BY 1, 2").fetchall() == expected
    assert any(key == "meta:task" for _, key in expected)


# -- growth jobs ------------------------------------------------------------------------------------


def test_a_growth_job_edits_as_the_owner_that_started_it(project: Project) -> None:
    jobs.set_llm_factory(lambda settings: ScriptedLLM())
    try:
        job = jobs.start_job(project.path, "grow", {"max_depth": 1, "pivots": 2}, owner="app:0a1b2c3d")
        assert jobs.wait_job(project.path, job.id, timeout=60).status == "done"
    finally:
        jobs.set_llm_factory(None)
    assert {(r.kind, r.owner) for r in project.history()} == {("grow", "app:0a1b2c3d")}
    assert project.undo() is None  # not this process's edit
    with Project.open(project.path, owner="app:0a1b2c3d") as session:
        assert session.undo() is not None and len(session.tree().nodes) == 1


# -- the CLI ---------------------------------------------------------------------------------------


def cli(owner: str, *args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args], env={OWNER_ENV: owner})
    return result.exit_code, result.output


def test_cli_undo_is_per_owner_and_a_conflict_is_one_line(tmp_path: Path) -> None:
    proj = tmp_path / "p"
    assert cli("alice", "new", proj, "--task", "Math word problems")[0] == 0
    for value in ("addition", "subtraction"):
        assert cli("alice", "edit", proj, "add-value", "root", value, "--criterion", "Operation")[0] == 0
    assert cli("bob", "edit", proj, "add-value", "root", "division")[0] == 0
    assert cli("bob", "edit", proj, "rename", "subtraction", "taking away")[0] == 0

    code, output = cli("alice", "edit", proj, "undo")
    assert code == 1 and len(output.strip().splitlines()) == 1
    assert "can't undo 'add-value' (edit 2): \"subtraction\" was changed since by bob (edit 4)" in output
    assert output.strip().endswith("undo across all owners (--all)")

    code, output = cli("bob", "edit", proj, "undo")
    assert code == 0 and 'Undone: rename "subtraction" \u2192 "taking away"' in " ".join(output.split())
    code, output = cli("alice", "edit", proj, "undo")  # now alice's own latest: subtraction
    assert code == 0
    with Project.open(proj) as project:
        assert values(project.tree()) == {"addition", "division"}
        history = json.loads(cli("x", "edit", proj, "history", "--json")[1])
    assert [(h["kind"], h["owner"], h["undone"]) for h in history] == [
        ("rename", "bob", True),
        ("add-value", "bob", False),
        ("add-value", "alice", True),
        ("add-value", "alice", False),
    ]
    code, output = cli("carol", "edit", proj, "undo")
    assert code == 0 and "Nothing of yours (carol) to undo; 2 later edits by others can be undone with --all" in output
    assert cli("carol", "edit", proj, "undo", "--all")[0] == 0
    with Project.open(proj) as project:
        assert values(project.tree()) == {"addition"}


# -- the app: two browser sessions on one project --------------------------------------------------


def rename_in_app(at, node: str, new: str):
    at.selectbox(key="tree.search").set_value(node)
    run(at)
    at.text_input(key=wkey("value", node)).input(new)
    at.button(key="edit.rename").click()
    return run(at)


def test_two_app_sessions_undo_their_own_edits(projects: Path) -> None:
    first = open_example(new_app())
    second = new_app(project="example-gsm8k_math")
    second.switch_page(PAGE_TREE)
    folder = projects / "example-gsm8k_math"
    with Project.open(folder) as project:
        tree = project.tree()
    kids = tree.children(tree.root_id)
    a, b = kids[0], kids[1]

    rename_in_app(first, a.id, "first's rename")
    second = run(second)
    rename_in_app(second, b.id, "second's rename")
    second.button(key="tree.undo").click()
    run(second)
    with Project.open(folder) as project:
        now = project.tree()
    assert now.nodes[a.id].value == "first's rename" and now.nodes[b.id].value == b.value
    first = run(first)
    assert "Yours: 1 to undo, 0 to redo" in texts(first).replace("\\", "")

    rename_in_app(second, a.id, "second's other rename")
    first = run(first)
    summary = "another tab or person made 1 edit since, which it keeps (latest: rename by app:"
    assert summary in texts(first).replace("\\", "")
    first.button(key="tree.undo").click()
    run(first)
    assert "can't undo 'rename" in texts(first) and "undo across all owners" in texts(first)
    with Project.open(folder) as project:
        assert project.tree().nodes[a.id].value == "second's other rename"
    first.toggle(key="tree.undo_all").set_value(True)
    run(first)
    first.button(key="tree.undo").click()
    run(first)
    with Project.open(folder) as project:
        assert project.tree().nodes[a.id].value == "first's rename"


def test_undo_summary_counts_the_sessions_edits_and_names_others() -> None:
    from treesynth_core.store import EditRecord, UndoState

    other = EditRecord(9, "ts", "grow", {}, "llm", "cli:bob", False, 3)
    state = UndoState("app:1", 2, 1, others_since=3, latest_other=other, latest_mine='rename "a" \u2192 "b"')
    assert undo_summary(state, all_owners=False) == (
        'Undo undoes your last edit (rename "a" \u2192 "b"); another tab or person made 3 edits since, which '
        "it keeps (latest: grow by cli:bob, edit 9). Yours: 2 to undo, 1 to redo."
    )
    none = UndoState("app:1", 0, 0, others_since=0, latest_other=None)
    assert undo_summary(none, all_owners=False) == "You have no edit to undo. Yours: 0 to undo, 0 to redo."
    assert undo_summary(state, all_owners=True).startswith("Undo and redo act on the latest edit of anyone.")


def test_a_tree_file_is_the_starting_point_not_an_edit(tmp_path: Path) -> None:
    """Undo after opening a tree file never erases the tree (issue 13 item 1): loading it is not an edit."""
    folder = tmp_path / "p"
    result = runner.invoke(app, ["new", str(folder), "--from-tree", "assets/trees/gsm8k_math.json"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"Next: treesynth show {folder} to review it, then treesynth synth {folder}" in said  # not grow
    with Project.open(folder) as project:
        loaded = project.tree()
        assert len(loaded.nodes) > 50 and project.history() == []
        assert not project.can_undo(all_owners=True)
        first = next(iter(loaded.children(loaded.root_id)))
        project.apply("rename", lambda t: T.rename_value(t, first.id, "renamed"))
        assert project.undo(all_owners=True) is not None
        assert project.undo(all_owners=True) is None
        assert project.tree() == loaded


def test_a_too_long_task_given_with_a_tree_file_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["new", str(tmp_path / "p"), "--from-tree", "assets/trees/gsm8k_math.json", "--task", "x" * 5000]
    )
    assert result.exit_code == 1 and "4,000" in result.output
    assert not (tmp_path / "p" / "treesynth.db").exists()


def test_undo_and_redo_say_what_they_took(tmp_path: Path) -> None:
    with Project.create(tmp_path / "p", task="Math word problems") as project:
        project.apply("add", lambda t: T.add_value(t, t.root_id, "Algebra", criterion="Topic"))
        algebra = next(iter(project.tree().children(project.tree().root_id)))
        run_edit(project, "rename", node_id=algebra.id, new_value="Algebra I")
        run_edit(project, "rename-criterion", node_id=project.tree().root_id, new_criterion="Subject")
        run_edit(project, "prune", node_id=algebra.id)
        taken = [project.replay(undo=True) for _ in range(3)]
        assert [t.what for t in taken if t is not None] == [
            'prune "Algebra I"',
            'rename-criterion "Topic" \u2192 "Subject"',
            'rename "Algebra" \u2192 "Algebra I"',
        ]
        redone = project.replay(undo=False)
        assert redone is not None and redone.what == 'rename "Algebra" \u2192 "Algebra I"'
