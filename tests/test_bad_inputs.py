"""Bad inputs end in one clean line and leave nothing half done (issue 12, items 4 and 8): a CSV
quote never closed, an export the disk refuses, a tree 1,000 levels deep, a 10 MB task or value,
an error longer than the terminal is wide, and Ctrl-C while the command is still importing."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from treesynth_core.cli.app import app
from treesynth_core.data import export as export_module
from treesynth_core.data.export import export_samples
from treesynth_core.data.readers import iter_records
from treesynth_core.errors import DataError, TreeError, TreeSynthError
from treesynth_core.store import Project
from treesynth_core.store.samples import NewSample
from treesynth_core.tree import model as T
from treesynth_core.tree.file import read_tree_file, tree_from_json
from treesynth_core.tree.limits import MAX_DEPTH, MAX_LABEL_CHARS, MAX_STYLE_CHARS, MAX_TASK_CHARS

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def invoke(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert "Traceback" not in output
    return lines[0]


# -- CSV: a quote never closed ----------------------------------------------------------------------
def unclosed_csv(path: Path, rows: int = 1000, bad: int = 2) -> Path:
    lines = ["instruction,output"] + [f'"q{i} oops,a{i}' if i == bad else f"q{i},a{i}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_csv_quote_never_closed_names_the_line_it_opened_on(tmp_path):
    path = unclosed_csv(tmp_path / "bad.csv")
    with pytest.raises(DataError, match=r"bad\.csv: a quote opened in row 3 \(line 4\) is never closed"):
        list(iter_records(path))


@pytest.mark.parametrize("text", ['a,b\n1,"open\n', 'a,b\n1,"open', 'a\n"x\n\n'])
def test_csv_quote_open_at_the_end_of_the_file(tmp_path, text):
    path = tmp_path / "end.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match="is never closed"):
        list(iter_records(path))


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ('a,b\n1,"x\ny"\n2,3', [{"a": "1", "b": "x\ny"}, {"a": "2", "b": "3"}]),  # no newline at the end
        ("a\n1\n2\n", [{"a": "1"}, {"a": "2"}]),
        ("a,b\n", []),
        ("\n\n", []),
        ('a,b\n"say ""hi""",2\n', [{"a": 'say "hi"', "b": "2"}]),
    ],
)
def test_csv_with_closed_quotes_reads_every_row(tmp_path, text, rows):
    path = tmp_path / "ok.csv"
    path.write_text(text, encoding="utf-8")
    assert [record for _, record in iter_records(path)] == rows


def cut(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.mark.parametrize("name", ["cut.jsonl", "cut.json", "cut.jsonl.gz", "cut.parquet"])
def test_other_readers_refuse_a_file_cut_short(tmp_path, name):
    """A guard (these already failed loudly): a file cut in the middle is an error, not fewer rows."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(500)]
    path = tmp_path / name
    lines = "".join(json.dumps(row) + "\n" for row in rows).encode()
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif name.endswith(".gz"):
        path.write_bytes(gzip.compress(lines))
    else:
        path.write_bytes(json.dumps(rows).encode() if name.endswith(".json") else lines)
    with pytest.raises(DataError, match="cut|not valid JSON|could not read|not a readable Parquet"):
        list(iter_records(cut(path)))


def test_import_of_csv_with_unclosed_quote_fails_and_imports_nothing(project, tmp_path):
    path = unclosed_csv(tmp_path / "bad.csv")
    project.close()
    code, output = invoke("import", project.path, path)
    assert code == 1
    assert "line 4" in one_error_line(output)
    with Project.open(project.path) as reopened:
        assert reopened.sample_sets() == {}


# -- export: an unwritable folder, a full disk --------------------------------------------------------
@pytest.fixture
def samples(project):
    root = project.tree().root_id
    project.add_samples(NewSample(root, str(i), f"question {i}", [], response=f"answer {i}") for i in range(3))
    return project.samples()


def full_disk(monkeypatch, fail_on: str = ".tree.json") -> None:
    """Python writing a file named like ``fail_on`` (or any file it opens by descriptor) fails as if
    the disk were full; Parquet data, written by Arrow itself, still lands."""
    real_open = open

    def fake_open(file, *args, **kwargs):
        if fail_on in os.fspath(file):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(file, *args, **kwargs)

    def fake_fdopen(fd, *args, **kwargs):
        os.close(fd)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("builtins.open", fake_open)
    monkeypatch.setattr(os, "fdopen", fake_fdopen)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_on_a_full_disk_keeps_the_previous_export_and_no_temp_file(project, samples, tmp_path, monkeypatch, fmt):
    out = tmp_path / "out" / f"data.{fmt}"
    export_samples(project.tree(), samples[:1], fmt, out)  # type: ignore[arg-type]
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    full_disk(monkeypatch)
    with pytest.raises(TreeSynthError, match=r"could not write .*No space left on device: free some space"):
        export_samples(project.tree(), samples, fmt, out)  # type: ignore[arg-type]
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before


def test_export_into_an_unwritable_folder_is_one_line(project, samples, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "locked"))

    monkeypatch.setattr(export_module.tempfile, "mkstemp", refuse)
    project.close()
    code, output = invoke("export", project.path, "--out", tmp_path / "locked" / "data.jsonl")
    assert code == 1
    assert "Permission denied: export to a folder you can write to" in one_error_line(output)
    assert not (tmp_path / "locked").exists() or not list((tmp_path / "locked").iterdir())


def test_export_failure_shows_the_traceback_with_debug(project, samples, tmp_path, monkeypatch):
    full_disk(monkeypatch, fail_on="data.jsonl")
    project.close()
    result = runner.invoke(app, ["--debug", "export", str(project.path), "--out", str(tmp_path / "data.jsonl")])
    assert result.exit_code == 1
    assert isinstance(result.exception, TreeSynthError)
    assert list(tmp_path.glob(".data.jsonl*")) == []


# -- a tree 1,000 levels deep -------------------------------------------------------------------------
def deep_tree_text(levels: int) -> str:
    """A tree file of one chain ``levels`` deep, built as text (json.dumps itself recurses)."""
    opened = [f'{{"value": "v{i}", "criterion": "c{i + 1}", "children": [' for i in range(1, levels)]
    return (
        '{"format": "treesynth-tree", "version": 1, "task": "Deep", "root": {"criterion": "c1", "children": ['
        + "".join(opened)
        + f'{{"value": "v{levels}"}}'
        + "]}" * (levels - 1)
        + "]}}"
    )


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 300, 1000])
def test_a_tree_too_deep_is_refused_by_the_file_reader(levels):
    with pytest.raises(TreeError, match=f"more than {MAX_DEPTH} levels deep"):
        tree_from_json(deep_tree_text(levels))


def test_a_tree_at_the_maximum_depth_reads_and_writes(project):
    tree = tree_from_json(deep_tree_text(MAX_DEPTH))
    assert tree.levels() == MAX_DEPTH
    project.replace_tree(tree)
    leaf = next(n for n in project.tree().nodes.values() if n.depth == MAX_DEPTH)
    with pytest.raises(TreeError, match=f"more than {MAX_DEPTH} levels deep"):
        T.add_value(project.tree(), leaf.id, "one more", criterion="deeper")


def test_new_from_a_tree_1000_levels_deep_is_one_line(tmp_path):
    path = tmp_path / "deep.tree.json"
    path.write_text(deep_tree_text(1000), encoding="utf-8")
    code, output = invoke("new", tmp_path / "p", "--from-tree", path)
    assert code == 1
    assert f"more than {MAX_DEPTH} levels deep" in one_error_line(output)
    with pytest.raises(TreeError, match="levels deep"):
        read_tree_file(path)  # the project API's way in


def test_a_deep_tree_built_in_code_is_refused_by_the_store(project):
    tree = project.tree()
    parent = tree.root_id
    nodes = dict(tree.nodes)
    nodes[parent] = T.replace(tree.root, split_criterion="c0")
    for depth in range(1, 200):
        node_id = f"n{depth}"
        nodes[node_id] = T.Node(
            id=node_id,
            parent_id=parent,
            depth=depth,
            criterion=f"c{depth - 1}",
            value=f"v{depth}",
            split_criterion=f"c{depth}" if depth < 199 else None,
        )
        parent = node_id
    deep = T.Tree(task=tree.task, style=tree.style, nodes=nodes, root_id=tree.root_id)
    with pytest.raises(TreeError, match="levels deep"):
        project.replace_tree(deep)
    assert len(project.tree().nodes) == 1


# -- a 10 MB task or value ------------------------------------------------------------------------------
def test_a_task_too_long_is_refused_before_the_folder_is_made(tmp_path):
    with pytest.raises(
        TreeError, match=f"the task is 10,000,000 characters long .*the most TreeSynth takes is {MAX_TASK_CHARS:,}"
    ):
        Project.create(tmp_path / "p", task="x" * 10_000_000)
    assert not (tmp_path / "p").exists()
    with pytest.raises(TreeError, match="the style is"):
        Project.create(tmp_path / "p", task="Math", style="s" * (MAX_STYLE_CHARS + 1))
    Project.create(tmp_path / "p", task="t" * MAX_TASK_CHARS, style="s" * MAX_STYLE_CHARS).close()


def test_cli_new_with_a_10_mb_task_is_one_short_line(tmp_path):
    code, output = invoke("new", tmp_path / "p", "--task", "x" * 10_000_000)
    assert code == 1
    assert len(one_error_line(output)) < 300


def rename_only_value(tree: T.Tree, root: str, new_value: str) -> T.Tree:
    """Rename the root's only child."""
    (kid,) = tree.children(root)
    return T.rename_value(tree, kid.id, new_value)


@pytest.mark.parametrize(
    "edit",
    [
        lambda t, root, long: T.add_value(t, root, long, criterion="Topic"),
        lambda t, root, long: T.add_value(t, root, "Fractions", criterion=long),
        lambda t, root, long: T.replace_criterion(t, root, "Topic", ["Fractions", long]),
        lambda t, root, long: rename_only_value(T.add_value(t, root, "Fractions", criterion="Topic"), root, long),
    ],
)
def test_edits_refuse_a_value_or_criterion_too_long(project, edit):
    tree = project.tree()
    with pytest.raises(TreeError, match=f"is {MAX_LABEL_CHARS + 1:,} characters long"):
        edit(tree, tree.root_id, "v" * (MAX_LABEL_CHARS + 1))


@pytest.mark.parametrize(
    ("root", "task", "message"),
    [
        (
            {"criterion": "Topic", "children": [{"value": "v" * 5000}]},
            "Math",
            r"root\.children\[0\]: the value is 5,000",
        ),
        ({"criterion": "c" * 301, "children": [{"value": "Fractions"}]}, "Math", "root: the criterion is 301"),
        ({"criterion": "Topic", "children": [{"value": "Fractions"}]}, "t" * 10_000, "the task is 10,000"),
    ],
)
def test_tree_file_with_text_too_long_is_refused(root, task, message):
    text = json.dumps({"format": "treesynth-tree", "version": 1, "task": task, "root": root})
    with pytest.raises(TreeError, match=message):
        tree_from_json(text)


# -- one line, whatever the width; Ctrl-C while importing ---------------------------------------------------
def python_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREESYNTH_")}
    return env | {"PYTHONPATH": str(ROOT), "COLUMNS": "80", "NO_COLOR": "1"}


def test_a_long_error_stays_one_line_when_stderr_is_piped(tmp_path):
    missing = tmp_path / ("folder-" + "x" * 200) / "project"
    done = subprocess.run(
        [sys.executable, "-m", "treesynth_core.cli", "show", str(missing)],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=120,
    )
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert str(missing) in line and len(line) > 200


def test_ctrl_c_while_the_command_imports_exits_130_without_a_traceback(tmp_path):
    """``python -m treesynth_core.cli`` interrupted while it imports the app: an import hook in the
    child says "ready" and waits as the import of ``treesynth_core.cli.app`` starts, so the interrupt
    lands inside that import every time (no timing involved)."""
    script = (
        "import runpy, sys, time\n"
        "class Hold:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'treesynth_core.cli.app':\n"
        "            print('ready', flush=True)\n"
        "            time.sleep(60)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Hold())\n"
        "sys.argv = ['treesynth', 'show', sys.argv[1]]\n"
        "runpy.run_module('treesynth_core.cli', run_name='__main__', alter_sys=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "p")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(),
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert "Traceback" not in stderr
    assert child.returncode in (130, -signal.SIGINT), stderr  # -2: killed by SIGINT, which a shell shows as 130
