"""The Data page with AppTest: import (the bundled HumanEval file, a path, an upload), routing,
rebalancing and growing a tree from the data run as real background jobs on the scripted fake LLM
and a hashed-words fake embedder; the SynthLLM fit runs on the paper's example points."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from studio.widgets import PAGE_DATA
from tests.apptest import create_project, new_app, open_example, run, start_synthesis, texts, wait_for_job
from tests.fakes import GatedLLM, HashEmbedder
from treesynth_core.data.examples import EXAMPLES
from treesynth_core.data.ingest import ColumnMap, import_file
from treesynth_core.jobs import background as jobs
from treesynth_core.store import Project

EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture
def data(projects, tmp_path):
    jobs.set_featurizer_factory(lambda space: HashEmbedder(dim=64, name=f"emb:fake-{space}"))
    yield projects / "example-python_coding"
    jobs.set_featurizer_factory(None)


def data_page(at=None):
    at = at or open_example(new_app(), "python_coding")
    at.switch_page(PAGE_DATA)
    return run(at)


def click_and_wait(at, key, folder, status="done"):
    at.button(key=key).click()
    run(at)
    job = wait_for_job(folder)
    assert job.status == status, (job.error, job.message)
    return run(at), job


def seed_example(folder: Path, name: str = "imported") -> None:
    """Import HumanEval with the core function (what the import job runs)."""
    example = EXAMPLES["humaneval"]
    with Project.open(folder) as project:
        import_file(project, example.path(), ColumnMap(**example.mapping), sample_set=name)


def selectbox(at, label):
    return next(s for s in at.selectbox if s.label == label)


def table(at, *columns: str):
    """The first table holding these columns (st.dataframe keys do not reach AppTest)."""
    return next(df.value for df in at.dataframe if set(columns) <= set(df.value.columns))


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def sets_of(folder: Path) -> dict[str, int]:
    with Project.open(folder) as project:
        return project.sample_sets()


def no_raw_html(at) -> None:
    """No markdown-rendered element carries a raw tag: user text reaches markdown escaped."""
    for element in [*at.markdown, *at.caption, *at.error, *at.warning, *at.info, *at.success]:
        assert "<img" not in str(element.value) and "<b>" not in str(element.value), element.value


def test_example_button_previews_humaneval_with_its_mapping(data):
    at = data_page()
    assert [t.value for t in at.title] == ["Data"]
    assert "The project has no samples yet" in texts(at)
    at.button(key="data.example").click()
    at = run(at)
    assert at.text_input(key="data.path").value == "example:humaneval"
    assert "HumanEval.jsonl.gz: jsonl" in texts(at) and "MIT" in texts(at)
    preview = table(at, "prompt", "canonical_solution")
    assert len(preview) == 5 and {"prompt", "canonical_solution"} <= set(preview.columns)
    assert selectbox(at, "Instruction column").value == "prompt"
    assert selectbox(at, "Output column (the response)").value == "canonical_solution"
    assert selectbox(at, "Messages column (chat rows)").value == "(none)"  # an option, never the placeholder
    assert not at.button(key="data.import").disabled


def test_import_job_adds_the_example_set(data):
    at = data_page()
    at.button(key="data.example").click()
    at = run(at)
    at, job = click_and_wait(at, "data.import", data)
    assert job.kind == "import" and "imported 164 rows" in job.message
    assert sets_of(data) == {"imported": 164}
    shown = table(at, "sample set", "samples")
    assert dict(zip(shown["sample set"], shown["samples"], strict=True)) == {"imported": 164}
    # issue 13 item 8: the success shows at the Import button, before the form's warning (the name is taken now)
    order = [(type(e).__name__, str(getattr(e, "key", None) or getattr(e, "value", ""))) for e in at.main]
    button = order.index(("Button", "data.import"))
    messages = [(kind, text) for kind, text in order[button:] if kind == "Success" or ":orange[" in text]
    assert messages[0][0] == "Success" and "imported 164 rows" in messages[0][1]
    assert len(messages) > 1 and "imported" in messages[1][1]
    assert [kind for kind, _ in order[:button]].count("Success") == 0  # not out of view at the top


def test_route_rebalance_and_score(data):
    at = data_page()
    seed_example(data)
    at = run(at)
    assert "Not routed on the current tree yet." in texts(at)
    assert "No sample of this set is in a leaf yet" in texts(at)
    assert at.button(key="data.balance.run").disabled

    # route with the embedding router, agreement against the LLM router on 10 samples
    at.radio(key="data.route.router").set_value("embedding")
    at.number_input(key="data.route.agreement").set_value(10)
    at = run(at)
    with Project.open(data) as project:
        levels = project.tree().levels()
    assert f"Up to {10 * levels} LLM calls" in texts(at)  # the agreement's 10 samples, one call a level at most
    at, job = click_and_wait(at, "data.route.run", data)
    assert job.kind == "route" and "routed 164 of 164" in job.message
    seen = metrics(at)
    assert seen["Routed"] == "164" and seen["Not routed"] == "0"
    assert int(seen["In a leaf"]) + int(seen["None fits"]) + int(seen["Errors"]) == 164
    assert seen["Agreement with the LLM router"].endswith("%")
    assert "the LLM router put" in texts(at)
    if int(seen["None fits"]):
        stopped = table(at, "stopped at", "samples")
        assert stopped["samples"].sum() == int(seen["None fits"])
    assert "Placed by the embedding router" in texts(at)
    assert len(at.get("plotly_chart")) == 1  # samples per leaf

    # the plan before running, then the balance job
    at.number_input(key="data.balance.per_leaf").set_value(2)
    at = run(at)
    plan = table(at, "leaf", "kept", "dropped")
    assert len(plan) == 55 and {"leaf", "before", "kept", "dropped", "synthesize", "approved"} <= set(plan.columns)
    assert plan["kept"].max() <= 2 and plan["before"].sum() == int(seen["In a leaf"])
    assert metrics(at)["Unrouted"] == seen["None fits"]
    shortfall = plan["synthesize"]  # 2 per leaf at most: one call each (per_call = min(5, 2))
    assert f"takes about {int((shortfall > 0).sum())} LLM calls" in texts(at)
    at, job = click_and_wait(at, "data.balance.run", data)
    assert job.kind == "balance" and "balanced into 'balanced'" in job.message
    sets = sets_of(data)
    assert sets["imported"] == 164 and 0 < sets["balanced"] <= 2 * 55
    seen = metrics(at)
    assert int(seen["Original"]) + int(seen["Synthesized"]) == sets["balanced"] == int(seen["Samples"])
    assert int(seen["Original"]) == int(plan["kept"].sum())
    counts = table(at, "leaf", "before", "after")
    assert counts["after"].max() <= 2 and counts["after"].sum() == sets["balanced"]
    assert any(link.label == "Go to the Export page" for link in at.get("page_link"))

    # before/after diversity at equal n, on demand
    at.toggle(key="data.balance.score").set_value(True)
    at = run(at)
    seen = metrics(at)
    assert float(seen["Vendi after"]) > 1.0 and int(seen["n"]) >= 2
    assert list(table(at, "score", "before", "after")["score"])[:3] == ["Vendi", "G-Vendi", "mean cosine"]

    # a browser reload (a new session): the latest runs' choices come back, not the page's defaults
    again = run(new_app(project=data.name))
    again.switch_page(PAGE_DATA)
    again = run(again)
    assert again.number_input(key="data.balance.per_leaf").value == 2
    assert again.selectbox(key="data.balance.set").value == "imported"  # the source, not the balanced set
    assert again.radio(key="data.route.router").value == "embedding"
    assert again.number_input(key="data.route.agreement").value == 10


def test_scaling_example_fit_shows_the_plateau_and_both_laws(data):
    at = data_page()
    at.button(key="data.scale.fit").click()
    at = run(at)
    assert any("no points" in e.value for e in at.error)  # the empty table

    at.radio(key="data.scale.source").set_value("example")
    at = run(at)
    assert selectbox(at, "Metric").value == "accuracy_percent"
    assert len(at.data_editor[0].value) == 7
    at.button(key="data.scale.fit").click()
    at = run(at)
    seen = metrics(at)
    assert float(seen["Plateau, rectified law (tokens (billions))"].replace(",", "")) > 4.5
    assert seen["Better on held-out points"] in ("rectified", "power")
    fits = table(at, "law", "B", "D_l")
    assert list(fits["law"]) == ["rectified", "power"] and {"B", "D_l", "beta", "E", "held-out RMSE"} <= set(fits)
    assert fits["D_l"][1] == "\u2013"  # the power law has no D_l
    assert len(at.get("plotly_chart")) == 1  # the fit figure


def test_a_malformed_file_shows_the_line_and_imports_nothing(data, tmp_path):
    at = data_page()
    early = tmp_path / "early.jsonl"
    early.write_text('{"question": "q1", "answer": "a"}\n{"question": "q2"\n')
    at.text_input(key="data.path").input(str(early))
    at = run(at)
    assert any("line 2" in e.value for e in at.error)
    assert "data.import" not in [b.key for b in at.button]

    # a bad row after the preview: the import job fails, names the line and rolls everything back
    late = tmp_path / "late.jsonl"
    late.write_text("".join(f'{{"question": "q{i}", "answer": "a{i}"}}\n' for i in range(1, 8)) + "{oops\n")
    at.text_input(key="data.path").input(str(late))
    at = run(at)
    assert not at.error and len(table(at, "question", "answer")) == 5
    at, job = click_and_wait(at, "data.import", data, status="failed")
    assert "line 8" in job.error
    assert any("line 8" in e.value and "failed" in e.value for e in at.error)
    assert sets_of(data) == {}

    # an upload is staged under the project and previewed the same way
    at.text_input(key="data.path").input("")
    at.file_uploader(key="data.upload").set_value(("bad.jsonl", early.read_bytes(), "application/json"))
    at = run(at)
    assert any("line 2" in e.value for e in at.error)
    assert (data / "uploads" / "bad.jsonl").read_bytes() == early.read_bytes()
    assert sets_of(data) == {}


def test_sample_text_shows_literally_and_a_set_is_deleted_after_confirmation(data, tmp_path):
    at = data_page()
    file = tmp_path / "evil.jsonl"
    file.write_text(f'{{"instruction": "{EVIL}", "output": "<b>bold</b>"}}\n{{"instruction": "fine", "output": "x"}}\n')
    at.text_input(key="data.path").input(str(file))
    at = run(at)
    assert table(at, "instruction", "output")["instruction"][0] == EVIL
    with Project.open(data) as project:
        import_file(project, file, ColumnMap(instruction="instruction", output="output"), sample_set="<b>evil</b>")
    at = run(at)
    at.selectbox(key="data.browse").set_value("<b>evil</b>")
    at = run(at)
    rows = table(at, "instruction", "response", "leaf")
    assert rows["instruction"][0] == EVIL and rows["response"][0] == "<b>bold</b>"
    no_raw_html(at)
    assert any("\\<b\\>evil\\</b\\>" in m.value for m in at.markdown)

    at.button(key="data.delete.<b>evil</b>").click()
    at = run(at)
    assert sets_of(data) == {}


def test_a_tree_grows_from_the_data_when_it_has_no_leaves(projects):
    jobs.set_featurizer_factory(lambda space: HashEmbedder(dim=64, name=f"emb:fake-{space}"))
    try:
        at = create_project(new_app(), "fresh", "Python programming problems")
        folder = projects / "fresh"
        seed_example(folder, "he")
        at = data_page(at)
        assert "The tree is only its root" in texts(at)
        assert at.button(key="data.route.run").disabled
        at.number_input(key="data.grow.depth").set_value(1)
        at, job = click_and_wait(run(at), "data.grow.run", folder)
        assert job.kind == "grow" and job.params["pivots_from"] == "he"
        assert "Growing a tree from the data finished in " in texts(at)
        with Project.open(folder) as project:
            tree = project.tree()
            samples = {s.instruction[:400] for s in project.samples(sample_set="he")}
        assert len(tree.nodes) > 1 and set(tree.root.pivots) <= samples
        assert not at.button(key="data.route.run").disabled
    finally:
        jobs.set_featurizer_factory(None)


def test_rebalance_says_which_leaves_stay_short_and_the_job_counts_the_plan(data):
    from treesynth_core.tree import model as T

    at = data_page()
    seed_example(data)
    with Project.open(data) as project:
        first, second = project.tree().leaves()[:2]
        ids = [s.id for s in project.samples(sample_set="imported")]
        project.assign_leaves({i: (first.id, []) for i in ids})  # routed: all in the first leaf
        project.apply("approve", lambda t: T.approve(t, [second.id], approved=False))  # a short leaf not approved
    at = run(at)
    at.number_input(key="data.balance.per_leaf").set_value(2)
    at, job = click_and_wait(run(at), "data.balance.run", data)
    # 53 leaves x 2: the first leaf keeps 2 originals, the second is not approved
    assert "synthesized 106 of 106 planned" in job.message
    assert any("1 of 55 leaves are below the target of 2" in w.value for w in at.warning)


def test_coverage_explains_an_empty_tree_set_beside_imported_data(data):
    at = open_example(new_app(), "python_coding")
    seed_example(data, "humaneval")
    at.switch_page("app_pages/coverage.py")
    at = run(at)
    assert any("humaneval" in i.value and "Data page" in i.value for i in at.info)


def test_export_warns_about_rows_without_responses(data):
    from treesynth_core.store.samples import NewSample

    at = open_example(new_app(), "python_coding")
    with Project.open(data) as project:
        leaf = project.tree().leaves()[0]
        project.add_samples([NewSample(leaf_id=leaf.id, key=f"0:{i}", instruction=f"q {i}", path=[]) for i in range(3)])
    at.switch_page("app_pages/export.py")
    at = run(at)
    assert "3 of 3 rows have no response" in texts(at)


def test_decontaminate_tab_checks_a_set_and_export_leaves_the_contaminated_out(data):
    from treesynth_core.store.samples import NewSample

    at = open_example(new_app(), "python_coding")
    seed_example(data, "he")
    with Project.open(data) as project:
        prompt = project.samples(sample_set="he")[2].instruction
        rows = [f"Write a haiku number {i} about the sea and the sky {EVIL}" for i in range(3)] + ["Solve: " + prompt]
        project.add_samples(
            NewSample(leaf_id="", key=f"k{i}", instruction=text, path=[], sample_set="mine")
            for i, text in enumerate(rows)
        )
    at = data_page(at)
    assert "Not checked against any eval set yet." in texts(at)
    selectbox(at, "Sample set to check").set_value("mine")
    at = run(at)
    assert at.multiselect(key="data.decon.against").value == ["example:humaneval"]
    assert at.text_input(key="data.decon.path").value == ""  # an eval file by path: off when shared read-only
    at, job = click_and_wait(at, "data.decon.run", data)
    assert "checked 4 samples of 'mine': 1 contaminated (by eval set: example:humaneval (1))" in job.message
    checks = table(at, "eval set", "contaminated")
    assert list(checks["eval set"]) == ["example:humaneval"] and list(checks["contaminated"]) == [1]
    hits = table(at, "shared words")
    assert list(hits["eval item"]) == ["row 3"] and len(hits["shared words"][0].split()) == 13
    assert "1 samples of mine are recorded as contaminated" in texts(at)
    no_raw_html(at)

    at.switch_page("app_pages/export.py")
    at = run(at)
    selectbox(at, "Sample set").set_value("mine")
    at = run(at)
    assert "1 samples of this set were found in an eval set" in texts(at)
    shown = texts(at).replace("\\", "")  # the report is escaped markdown
    assert "Decontamination: mine was checked against example:humaneval (" in shown
    assert "13-grams): 1 of 4 contaminated (the dataset card lists it)" in shown
    at.button(key="export.run").click()
    at = run(at)
    assert any("Wrote 3 rows" in s.value for s in at.success)
    at.checkbox(key="export.keep_contaminated").check()
    at.button(key="export.run").click()
    at = run(at)
    assert any("Wrote 4 rows" in s.value for s in at.success)
    selectbox(at, "Sample set").set_value("he")
    at = run(at)
    assert "Decontamination: he was not checked against any eval set" in texts(at).replace("\\", "")


def test_another_pages_job_shows_a_notice_while_it_runs(projects):
    """The Data page's job status (``studio.job_view.job_status_fragment``) while a synthesis runs."""
    folder = projects / "example-gsm8k_math"
    gate = threading.Event()
    jobs.set_llm_factory(lambda settings: GatedLLM(gate))
    at = start_synthesis(open_example(new_app()))
    try:
        at.switch_page(PAGE_DATA)
        run(at)
        assert "A synthesis job is running \u2014 open Synthesize" in [link.label for link in at.get("page_link")]
        assert not at.get("progress")  # one line with a link, not the Synthesize page's banner
    finally:
        gate.set()
        assert wait_for_job(folder).status == "done"
