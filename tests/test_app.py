"""Every page of the Streamlit app, driven with AppTest through native widgets.

Growth and synthesis run as real background jobs on the scripted fake LLM: a test starts a job with
a button, waits for it with ``jobs.wait_job`` and reruns the page to see the result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio.tree_panel import wkey
from studio.widgets import PAGE_EXPORT as EXPORT
from studio.widgets import PAGE_PROJECT as PROJECT
from studio.widgets import PAGE_SYNTH as SYNTH
from studio.widgets import PAGE_TREE as TREE
from tests.apptest import (
    create_project,
    delete_first_sample,
    new_app,
    open_example,
    run,
    select,
    start_and_wait,
    start_synthesis,
    synthesize,
    texts,
    tree_of,
    wait_for_job,
)
from tests.fakes import GatedLLM, ScriptedLLM
from treesynth_core.generate.synth import PER_CALL
from treesynth_core.jobs import background as jobs
from treesynth_core.store import Project
from treesynth_core.store.samples import NewSample


def node(tree, value):
    return next(n for n in tree.nodes.values() if n.value == value)


# -- Project page ---------------------------------------------------------------------------------


def test_first_page_offers_examples_and_a_new_project_and_warns_about_the_embedded_model(projects):
    at = new_app()
    assert [t.value for t in at.title] == ["Project"]
    keys = {b.key for b in at.button}
    assert {"example.gsm8k_math", "example.python_coding", "example.customer_support", "new.create"} <= keys
    assert any("tiny" in w.value for w in at.warning)


def test_a_duplicate_name_error_shows_right_under_the_create_button(projects):
    """Issue 13 item 8: not below the fold, away from the button; a toast says it too."""
    at = create_project(new_app())
    at.switch_page(PROJECT)
    at = create_project(run(at))
    assert [t.value for t in at.title] == ["Project"]  # nothing opened
    order = [(type(e).__name__, str(getattr(e, "key", None) or getattr(e, "value", ""))) for e in at.main]
    button = order.index(("Button", "new.create"))
    assert order[button + 1][0] == "Error" and "already holds" in order[button + 1][1]
    assert any("already holds" in t.value for t in at.toast)


def test_create_project_opens_the_tree_page(projects):
    at = create_project(new_app())
    assert [t.value for t in at.title] == ["Tree"]
    assert (projects / "demo" / "treesynth.db").is_file()
    assert tree_of(projects / "demo").task == "Grade-school math word problems"
    assert "1 node, 0 levels" in texts(at)


def test_create_project_errors_are_shown(projects):
    at = new_app()
    at.text_input(key="new.name").input("demo")
    at.button(key="new.create").click()
    run(at)
    assert any("task description is empty" in e.value for e in at.error)


def openai_settings() -> AppTest:
    """A new project's Project page with the OpenAI-compatible backend at a closed local port."""
    at = create_project(new_app())
    at.switch_page(PROJECT)
    run(at)
    at.radio(key="settings.backend").set_value("openai")
    run(at)
    at.text_input(key="settings.base_url").input("http://127.0.0.1:9/v1")
    at.text_input(key="settings.model").input("my-model")
    return at


def test_backend_settings_keep_the_key_out_of_the_project(projects, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret-value-123456789")
    at = openai_settings()
    at.text_input(key="settings.key_env").input("MY_KEY")
    run(at)
    assert "MY\\_KEY is set" in texts(at)
    at.button(key="settings.save").click()
    run(at)
    with Project.open(projects / "demo") as project:
        saved = project.settings()
    assert saved.backend == "openai" and saved.api_key_env == "MY_KEY" and saved.model == "my-model"
    db = (projects / "demo" / "treesynth.db").read_bytes()
    assert b"sk-secret-value" not in db


def test_prompt_profile_is_chosen_and_saved_per_project(projects):
    at = create_project(new_app())
    at.switch_page(PROJECT)
    run(at)
    assert at.selectbox(key="settings.prompts").value == "auto"
    at.selectbox(key="settings.prompts").set_value("paper")
    at.button(key="settings.save").click()
    run(at)
    assert "paper prompts" in texts(at)
    with Project.open(projects / "demo") as project:
        assert project.settings().prompts == "paper"
        assert project.settings().prompt_profile() == "paper"


def test_test_connection_says_what_is_wrong(projects):
    at = openai_settings()
    at.button(key="settings.test").click()
    run(at)
    assert at.error and "Connection failed" in at.error[0].value


def test_open_example_and_reopen_it_from_the_url(projects):
    at = open_example(new_app())
    assert [t.value for t in at.title] == ["Tree"]
    assert "65 nodes" in texts(at)
    assert at.query_params["project"] in ("example-gsm8k_math", ["example-gsm8k_math"])
    # A browser reload is a new session: the project comes back from the URL.
    again = new_app(project="example-gsm8k_math")
    assert "example-gsm8k\\_math" in texts(again)
    # Opening the example again keeps the person's edits.
    assert open_example(new_app()).title[0].value == "Tree"


def test_open_an_existing_project(projects):
    create_project(new_app(), name="first")
    at = new_app()
    at.selectbox(key="open.choice").set_value(projects / "first")
    at.button(key="open.button").click()
    run(at)
    assert [t.value for t in at.title] == ["Tree"]


def test_pages_without_a_project_point_to_the_project_page(projects):
    at = new_app()
    for page in (TREE, SYNTH, EXPORT):
        at.switch_page(page)
        run(at)
        assert any("No project is open" in i.value for i in at.info)


# -- Tree page ------------------------------------------------------------------------------------


def grow(at: AppTest, folder: Path, *, depth: int = 1, auto: bool = False) -> AppTest:
    at.number_input(key="grow.depth").set_value(depth)
    if auto:
        at.toggle(key="grow.auto").set_value(True)
    at.button(key="grow.start").click()
    run(at)
    job = wait_for_job(folder)
    assert job.status == "done", job
    return run(at)


def test_grow_then_review_with_native_widgets(projects):
    folder = projects / "demo"
    at = grow(create_project(new_app()), folder)
    tree = tree_of(folder)
    kids = tree.children(tree.root_id)
    assert [k.value for k in kids][:2] == ["addition", "subtraction"]
    assert all(k.status == "proposed" for k in kids)
    assert "awaiting review" in texts(at)

    first, second, third = kids[0], kids[1], kids[2]
    at = select(at, first.id)
    at.button(key="edit.approve").click()
    run(at)
    assert tree_of(folder).nodes[first.id].approved

    at = select(at, second.id)
    at.button(key="edit.prune").click()
    run(at)
    assert tree_of(folder).nodes[second.id].pruned
    at.button(key="edit.restore").click()
    run(at)
    assert not tree_of(folder).nodes[second.id].pruned

    at = select(at, third.id)
    at.text_input(key=wkey("value", third.id)).input("times tables")
    at.button(key="edit.rename").click()
    run(at)
    assert tree_of(folder).nodes[third.id].value == "times tables"

    at.button(key="tree.undo").click()
    run(at)
    assert tree_of(folder).nodes[third.id].value == "multiplication"
    at.button(key="tree.redo").click()
    run(at)
    assert tree_of(folder).nodes[third.id].value == "times tables"


def test_values_criterion_lock_and_levels(projects):
    folder = projects / "demo"
    at = grow(create_project(new_app()), folder)
    tree = tree_of(folder)
    root = tree.root_id
    add, sub = node(tree, "addition"), node(tree, "subtraction")

    at.button(key="level.approve").click()
    run(at)
    assert all(k.approved for k in tree_of(folder).children(root))

    at = select(at, root)
    at.text_input(key=wkey("add", root)).input("percentages")
    at.button(key="edit.add_value").click()
    run(at)
    assert node(tree_of(folder), "percentages").approved

    at = select(at, add.id)
    at.selectbox(key=wkey("merge", add.id)).set_value(sub.id)
    at.text_input(key=wkey("merge_value", add.id)).input("addition or subtraction")
    at.button(key="edit.merge").click()
    run(at)
    merged = tree_of(folder)
    assert sub.id not in merged.nodes and merged.nodes[add.id].value == "addition or subtraction"

    at.text_input(key=wkey("new_criterion", add.id)).input("Entity")
    at.text_area(key=wkey("new_values", add.id)).input("fruit\nmoney\n\n")
    at.button(key="edit.replace_criterion").click()
    run(at)
    assert [k.value for k in tree_of(folder).children(add.id)] == ["fruit", "money"]

    at.text_input(key=wkey("criterion", add.id)).input("Thing counted")
    at.button(key="edit.rename_criterion").click()
    run(at)
    assert tree_of(folder).nodes[add.id].split_criterion == "Thing counted"

    at.button(key="edit.lock").click()
    run(at)
    assert tree_of(folder).nodes[add.id].locked
    assert at.button(key="edit.prune").disabled
    at.button(key="edit.unlock").click()
    run(at)

    fruit = node(tree_of(folder), "fruit")
    at = select(at, fruit.id)
    at.button(key="edit.remove").click()
    run(at)
    assert fruit.id not in tree_of(folder).nodes

    at.selectbox(key="level.depth").set_value(2)
    run(at)
    at.button(key="level.prune").click()
    run(at)
    assert node(tree_of(folder), "money").pruned


def test_edit_errors_show_as_messages(projects):
    folder = projects / "demo"
    at = grow(create_project(new_app()), folder)
    kid = tree_of(folder).children(tree_of(folder).root_id)[0]
    at = select(at, kid.id)
    at.text_input(key=wkey("value", kid.id)).input("subtraction")  # a sibling's value
    at.button(key="edit.rename").click()
    run(at)
    assert at.error and "repeats sibling" in at.error[0].value


def test_grow_a_subtree_and_fold_it(projects):
    folder = projects / "demo"
    at = grow(create_project(new_app()), folder, depth=2, auto=True)
    tree = tree_of(folder)
    assert tree.levels() == 2
    add = node(tree, "addition")
    at = select(at, add.id)
    at.button(key="edit.fold").click()
    run(at)
    assert at.button(key="edit.fold").label == "Unfold subtree"
    at.number_input(key="grow.depth").set_value(3)
    run(at)
    at.button(key="edit.grow_subtree").click()
    run(at)
    assert wait_for_job(folder).status == "done"
    run(at)
    grown = tree_of(folder)
    assert grown.levels() == 3
    assert all(n.depth < 3 or grown.ancestors(n.id)[1].id == add.id for n in grown.nodes.values())


def test_levels_shown_and_search_focus(projects):
    at = open_example(new_app())
    at.selectbox(key="tree.depth").set_value("all")
    run(at)
    tree = tree_of(projects / "example-gsm8k_math")
    deep = max(tree.nodes.values(), key=lambda n: n.depth)
    at = select(at, deep.id)
    assert deep.value in texts(at).replace("\\", "")


def test_a_running_job_is_not_started_twice(projects):
    folder = projects / "demo"
    gate = threading.Event()  # the job runs until the test lets it end, however slow the machine
    jobs.set_llm_factory(lambda settings: GatedLLM(gate))
    at = create_project(new_app())
    at.toggle(key="grow.auto").set_value(True)
    at.number_input(key="grow.depth").set_value(2)
    at.button(key="grow.start").click()
    run(at)
    assert at.button(key="grow.start").disabled
    assert any("Growing the tree" in p.text for p in at.get("progress")) or "Growing" in texts(at)
    other = new_app(project="demo")  # a second browser tab
    other.switch_page(TREE)
    run(other)
    assert other.button(key="grow.start").disabled
    with Project.open(folder) as project:
        assert len(project.jobs()) == 1
    at.button(key="tree.job.stop").click()
    gate.set()
    run(at)
    assert wait_for_job(folder).status in ("cancelled", "done")


def test_two_sessions_editing_one_project(projects):
    folder = projects / "demo"
    first = grow(create_project(new_app()), folder)
    second = new_app(project="demo")
    second.switch_page(TREE)
    run(second)
    kids = tree_of(folder).children(tree_of(folder).root_id)
    first = select(first, kids[0].id)
    second = select(second, kids[1].id)
    first.button(key="edit.prune").click()
    second.button(key="edit.approve").click()
    run(first)
    run(second)
    tree = tree_of(folder)
    assert tree.nodes[kids[0].id].pruned and tree.nodes[kids[1].id].approved
    assert "1 pruned" in texts(run(second))


# -- Synthesize and Export ------------------------------------------------------------------------


def test_synthesize_estimate_run_browse_and_delete(projects):
    folder = projects / "example-gsm8k_math"
    at = open_example(new_app())
    at.switch_page(SYNTH)
    run(at)
    at.number_input(key="synth.per_leaf").set_value(2)
    run(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Leaves"] == "56" and metrics["Samples to make"] == "112"
    assert at.number_input(key="synth.per_call").value == PER_CALL  # the paper's 10, from the core
    assert int(metrics["LLM calls"]) >= 56
    at = synthesize(at, folder)
    with Project.open(folder) as project:
        counts = project.sample_counts()
    assert len(counts) == 56 and set(counts.values()) == {2}
    assert any("Synthesis finished" in s.value for s in at.success)
    assert at.button(key="synth.start").disabled  # every leaf already has its samples

    leaf = at.selectbox(key="samples.leaf").value
    doomed = delete_first_sample(at, folder, leaf)
    with Project.open(folder) as project:
        assert doomed not in {s.id for s in project.samples(leaf_id=leaf)}


def test_a_leaf_left_short_is_reported_and_another_seed_tops_it_up(projects):
    folder = projects / "example-gsm8k_math"
    llm = ScriptedLLM()  # the first run's replies repeat one problem; later replies are new
    llm.enqueue("synth", [json.dumps({"samples": ["Ann has 2 pens and buys 3. How many now?"] * 2})] * 3)
    jobs.set_llm_factory(lambda settings: llm)
    at = open_example(new_app())
    at.switch_page(SYNTH)
    run(at)
    leaf = tree_of(folder).leaves(approved_only=True)[0].id
    at.radio(key="synth.scope").set_value("picked")
    run(at)
    at.multiselect(key="synth.picked").set_value([leaf])
    at.number_input(key="synth.per_leaf").set_value(2)
    at.number_input(key="synth.per_call").set_value(2)
    at = start_and_wait(run(at), folder)
    assert any("1 leaf stayed below the target" in s.value and "another seed" in s.value for s in at.warning)
    with Project.open(folder) as project:
        assert project.sample_counts() == {leaf: 1}
    at.number_input(key="synth.seed").set_value(1)
    start_and_wait(run(at), folder)
    with Project.open(folder) as project:
        assert project.sample_counts() == {leaf: 2}


def test_synthesize_estimate_is_a_range_from_the_projects_own_calls(projects):
    """Issue 13 item 4: a range and what it rests on; a guess until the project has calls."""
    from studio.widgets import md
    from treesynth_core.llm.recording import CallRecord
    from treesynth_core.llm.settings import BackendSettings
    from treesynth_core.llm.timing import logged_model

    folder = projects / "example-gsm8k_math"
    at = open_example(new_app())
    at.switch_page(SYNTH)
    run(at)
    time = next(m for m in at.metric if m.label == "Time")
    assert "\u2013" in time.value and "a guess" in time.proto.help
    assert md(f"{time.value}, no calls yet: a guess") in texts(at)  # in view, not only in the help
    with Project.open(folder) as project:
        for seconds in (2.0, 3.0, 4.0, 5.0, 6.0, 30.0):
            record = CallRecord(backend="embedded", model=logged_model(BackendSettings()), purpose="synth")
            project.log_call(dataclasses.replace(record, latency_s=seconds))
    run(at)
    time = next(m for m in at.metric if m.label == "Time")
    assert "\u2013" in time.value and "from 6 earlier synth calls" in time.proto.help


class FirstCallsLLM(ScriptedLLM):
    """The scripted LLM answering its first ``free`` calls at once and the rest once ``gate`` is set."""

    def __init__(self, gate: threading.Event, free: int = 1) -> None:
        super().__init__()
        self.gate, self.free = gate, free

    async def complete(self, request):
        self.free -= 1
        while self.free < 0 and not self.gate.is_set():
            await asyncio.sleep(0.02)
        return await super().complete(request)


def test_synthesis_progress_counts_calls_and_samples_from_the_first_call(projects):
    """Issue 13 item 4: not "0 leaves filled" for a minute."""
    folder = projects / "example-gsm8k_math"
    gate = threading.Event()
    jobs.set_llm_factory(lambda settings: FirstCallsLLM(gate))
    at = start_synthesis(open_example(new_app()))
    try:
        with Project.open(folder) as project:
            deadline = time.monotonic() + 30
            while not project.sample_counts() and time.monotonic() < deadline:
                time.sleep(0.05)
        run(at)
        bar = next(p.proto.text for p in at.get("progress") if "Synthesizing" in p.proto.text)
        assert "1 call, 2 samples" in bar and "of 56 leaves done" in bar and "min left" in bar
        assert bar.count("2 samples") == 1  # the job's own "2 samples" message is not repeated
    finally:
        gate.set()
        assert wait_for_job(folder).status == "done"


def test_metric_counts_are_compact():
    from studio.synth_panel import compact

    assert [compact(n) for n in (0, 950, 1_000, 12_345, 118_452, 4_200_000)] == [
        "0",
        "950",
        "1.0k",
        "12.3k",
        "118k",
        "4.2M",
    ]


def test_synthesize_picked_leaves_with_responses(projects):
    folder = projects / "example-gsm8k_math"
    at = open_example(new_app())
    at.switch_page(SYNTH)
    run(at)
    tree = tree_of(folder)
    leaves = [leaf.id for leaf in tree.leaves(approved_only=True)][:2]
    at.radio(key="synth.scope").set_value("picked")
    run(at)
    # nothing picked yet: no estimate over all leaves, a prompt to pick, and no start
    assert "Leaves" not in {m.label for m in at.metric}
    assert any("Pick the leaves" in i.value for i in at.info)
    assert at.button(key="synth.start").disabled
    at.multiselect(key="synth.picked").set_value(leaves)
    at.radio(key="synth.kind").set_value("pair")
    at.number_input(key="synth.per_leaf").set_value(1)
    run(at)
    assert {m.label: m.value for m in at.metric}["Leaves"] == "2"
    at.button(key="synth.start").click()
    run(at)
    assert wait_for_job(folder).status == "done"
    with Project.open(folder) as project:
        samples = project.samples()
    assert {s.leaf_id for s in samples} == set(leaves)
    assert all(s.response for s in samples)


def test_an_interrupted_synthesis_resumes(projects):
    folder = projects / "example-gsm8k_math"
    jobs.set_llm_factory(lambda settings: ScriptedLLM(delay=0.3))
    at = start_synthesis(open_example(new_app()))
    at.button(key="synth.job.stop").click()
    run(at)
    assert wait_for_job(folder).status in ("cancelled", "done")
    run(at)
    if at.button(key="synth.start").disabled:  # it finished before the stop arrived
        pytest.skip("the run finished before it could be stopped")
    assert any("stopped" in w.value for w in at.warning)
    at.button(key="synth.resume").click()
    run(at)
    assert wait_for_job(folder).status == "done"
    with Project.open(folder) as project:
        assert set(project.sample_counts().values()) == {2} and len(project.sample_counts()) == 56


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_export_writes_data_tree_and_card_with_downloads(projects, fmt):
    folder = projects / "demo"
    at = grow(create_project(new_app()), folder, auto=True)
    at = synthesize(at, folder)
    at.switch_page(EXPORT)
    run(at)
    at.radio(key="export.format").set_value(fmt)
    at.button(key="export.run").click()
    run(at)
    assert at.success and "Wrote" in at.success[0].value
    exports = folder / "exports"
    names = sorted(p.name for p in exports.iterdir())
    downloads = [b for b in at.get("download_button")]
    assert len(downloads) == 3
    if fmt == "jsonl":
        assert names == ["demo-dataset.README.md", "demo-dataset.jsonl", "demo-dataset.tree.json"]
        rows = [json.loads(line) for line in (exports / "demo-dataset.jsonl").read_text().splitlines()]
        assert rows and rows[0]["messages"][0]["role"] == "user" and rows[0]["model"] == "fake-model"
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        assert pq.read_table(exports / "demo-dataset.parquet").num_rows == len(rows_of(folder))
    else:
        from datasets import load_from_disk

        assert len(load_from_disk(str(exports / "demo-dataset"))) == len(rows_of(folder))
        assert (exports / "demo-dataset" / "README.md").is_file()
    card = next(exports.rglob("*README.md")).read_text()
    assert "Grade-school math word problems" in card and "fake-model" in card  # escaped markdown


def rows_of(folder: Path):
    with Project.open(folder) as project:
        return project.samples()


def test_export_without_samples_points_to_synthesize(projects):
    at = create_project(new_app())
    at.switch_page(EXPORT)
    run(at)
    assert any("no samples" in i.value for i in at.info)


def test_a_tree_of_thousands_of_nodes_stays_responsive(projects):
    """A 2,380-node tree draws within the graph's budget (its speed: benchmarks/tree_view.py)."""
    from tests.trees import wide_tree

    big = wide_tree(fanout=13, depth=3)  # 2,380 nodes
    with Project.create(projects / "big", task=big.task) as project:
        project.replace_tree(big, kind="import")
    at = new_app(project="big")
    at.switch_page(TREE)
    run(at)
    assert "2,380 nodes" in texts(at)
    deep = "r.12.12.12"
    at = select(at, deep)
    assert "v3-12" in texts(at)
    assert len(at.selectbox(key="tree.search").options) == 2380


def test_another_process_reading_the_project_never_hides_the_apps_writes(projects):
    """Opening a project must not drop the SQLite locks of connections this process already holds:
    otherwise another process (the CLI, a second server) deletes the WAL under them and later
    writes are lost."""
    import subprocess
    import sys

    folder = projects / "demo"
    at = create_project(new_app())
    Project.open(folder).close()  # a second open in the process that holds the app's connection
    read = "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from nodes').fetchone()[0])"
    db = str(folder / "treesynth.db")
    assert subprocess.run([sys.executable, "-c", read, db], capture_output=True, text=True).stdout.strip() == "1"
    at.text_input(key=wkey("add", tree_of(folder).root_id)).input("fractions")
    at.text_input(key=wkey("add_criterion", tree_of(folder).root_id)).input("Topic")
    at.button(key="edit.add_value").click()
    run(at)
    assert subprocess.run([sys.executable, "-c", read, db], capture_output=True, text=True).stdout.strip() == "2"


def test_export_a_chosen_sample_set_with_provenance(projects):
    from treesynth_core.data.examples import resolve
    from treesynth_core.data.ingest import ColumnMap, import_file

    at = open_example(new_app(), "python_coding")
    folder = next(p for p in projects.iterdir() if p.is_dir())
    humaneval, _ = resolve("example:humaneval")
    with Project.open(folder) as project:
        cmap = ColumnMap(instruction="prompt", output="canonical_solution")
        import_file(project, humaneval, cmap, sample_set="humaneval", limit=7)
    at.switch_page(EXPORT)
    run(at)
    picker = at.selectbox(key="export.set")
    assert picker.value == "humaneval"  # the only set: the tree has no samples yet
    at.button(key="export.run").click()
    run(at)
    data = folder / "exports" / f"{folder.name}-humaneval.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(rows) == 7 and {r["provenance"] for r in rows} == {"original"}
    assert rows[0]["messages"][1]["role"] == "assistant"


def test_tree_page_shows_the_counts_of_a_chosen_sample_set(projects):
    from studio import graph as G
    from treesynth_core.data.examples import resolve
    from treesynth_core.data.ingest import ColumnMap, import_file

    at = open_example(new_app(), "python_coding")
    folder = next(p for p in projects.iterdir() if p.is_dir())
    with Project.open(folder) as project:
        leaf = project.tree().leaves()[0]
        import_file(project, resolve("example:humaneval")[0], ColumnMap(instruction="prompt"), sample_set="he", limit=5)
        ids = [s.id for s in project.samples(sample_set="he")]
        project.assign_leaves({i: (leaf.id, []) for i in ids})
    at.switch_page(TREE)
    run(at)
    assert "5 samples in he" in texts(at)  # nothing synthesized yet: the dataset's counts, not zeros
    with Project.open(folder) as project:
        project.add_samples([NewSample(leaf_id=leaf.id, key="0:0", instruction="a synthesized one", path=[])])
    run(at)
    picker = at.selectbox(key="tree.count_set")
    assert picker.options == ["tree", "he"] and picker.value == "he"
    assert "tree: 1 sample, he: 5 samples" in picker.help  # the counts in its help, the graph stays up
    picker.set_value("tree")
    run(at)
    badge = texts(at).split(":violet-badge[", 1)[1].split("]", 1)[0]
    assert not at.exception and badge.endswith(" 1 sample"), badge
    with Project.open(folder) as project:
        data = G.build_graph(project.tree(), counts=project.sample_counts(sample_set="he"))
    assert any("5 samples" in str(node) for node in data.nodes)


# -- growth with a capable model ------------------------------------------------------------------


def test_the_app_grows_a_node_through_an_http_endpoint_and_shows_all_15_children(projects):
    from tests.capable import capable_responder, named_values_of
    from tests.helpers_http import FakeOpenAIServer
    from treesynth_core.llm.settings import BackendSettings

    jobs.set_llm_factory(None)  # the real backend from the project's settings
    with FakeOpenAIServer(model="gpt-4o", respond=capable_responder("math_topic_15")) as server:
        settings = BackendSettings(backend="openai", base_url=server.base_url, model="gpt-4o")
        Project.create(projects / "capable", task="Grade-school math word problems", settings=settings).close()
        at = new_app()
        at.selectbox(key="open.choice").set_value(projects / "capable")
        at.button(key="open.button").click()
        run(at)
        assert [t.value for t in at.title] == ["Tree"]
        at.button(key="edit.grow_node").click()  # the root is selected
        run(at)
        assert wait_for_job(projects / "capable").status == "done"
        run(at)
    tree = tree_of(projects / "capable")
    kids = [k.value for k in tree.children(tree.root_id)]
    assert kids == named_values_of("math_topic_15") and len(kids) == 15
    assert at.selectbox(key="tree.search").options[1:] == kids  # every child is on the page...
    assert {tree.nodes[k.id].status for k in tree.children(tree.root_id)} == {"proposed"}  # ...awaiting review
    assert "15 awaiting review" in texts(at)


def test_the_editor_shows_a_flag_and_approving_clears_it(projects):
    from tests.capable import capable_results

    def factory(settings):
        llm = ScriptedLLM(model="capable-model")
        for purpose, results in capable_results("operation_glued_and_suspicious").items():
            llm.enqueue(purpose, results)
        return llm

    jobs.set_llm_factory(factory)
    folder = projects / "demo"
    at = create_project(new_app())
    at.number_input(key="grow.pivots").set_value(10)  # the scenario's 10 pivots
    at = grow(at, folder)
    odd = node(tree_of(folder), "Multiplication and exponents")
    assert odd.flag
    at = select(at, odd.id)
    assert any("may combine" in w.value for w in at.warning)
    assert "flagged for review" in texts(at)
    at.button(key="edit.approve").click()
    run(at)
    assert tree_of(folder).nodes[odd.id].flag == ""
    assert not any("may combine" in w.value for w in at.warning)


def test_the_paper_preset_grows_unattended_to_the_papers_depth(projects):
    folder = projects / "demo"
    at = create_project(new_app())
    at.toggle(key="grow.paper").set_value(True)
    run(at)
    assert at.number_input(key="grow.depth.paper").value == 4 and at.number_input(key="grow.depth.paper").disabled
    assert at.toggle(key="grow.auto.paper").value
    at.button(key="grow.start").click()
    run(at)
    job = wait_for_job(folder)
    assert job.status == "done", job
    assert job.params["max_depth"] == 4 and job.params["auto_approve"] and job.params["max_values"] == 50
    tree = tree_of(folder)
    assert tree.levels() == 4 and all(n.approved for n in tree.nodes.values())


def test_a_cli_run_holding_the_project_is_shown_where_jobs_start(projects):
    folder = projects / "example-gsm8k_math"
    at = open_example(new_app())
    with Project.open(folder) as project:  # a `treesynth synth` in another process holds the lease
        held, _ = project.claim_job("synth", {"per_leaf": 10})
    conn = sqlite3.connect(folder / "treesynth.db")
    with conn:
        conn.execute("UPDATE jobs SET pid = ? WHERE id = ?", (os.getppid(), held.id))
    conn.close()
    at.switch_page(SYNTH)
    run(at)
    shown = [i.value for i in at.info if "another run is working on this project" in i.value]
    assert len(shown) == 1 and f"synth, pid {os.getppid()}" in shown[0], texts(at)
    assert not at.exception and not [b for b in at.button if b.key == "synth.start"]
    with Project.open(folder) as project:
        assert [j.id for j in project.jobs()] == [held.id]
