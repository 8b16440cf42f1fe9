"""Job banners that tell the truth (issue 13), with AppTest: a finished job says its outcome, not its last
progress line; a job's banner shows on the page that started it, other pages name it in one line with a
link; a reload keeps a job this tab started as its own (another tab's reads so); the time left counts
down while the first reply is out; and no widget warns that the session state set its value too."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio.widgets import PAGE_CONCEPTS, PAGE_DATA, PAGE_SYNTH
from tests.apptest import (
    new_app,
    open_example,
    reload,
    run,
    run_fragments,
    start_synthesis,
    texts,
    wait_for_job,
    wait_for_run,
    widget_state_warnings,
)
from tests.fakes import GatedLLM, HashEmbedder
from treesynth_core.data.examples import EXAMPLES
from treesynth_core.data.ingest import ColumnMap, import_file
from treesynth_core.jobs import background as jobs
from treesynth_core.jobs.lease import run_lease
from treesynth_core.store import Project


def plain(at: AppTest) -> str:
    return texts(at).replace("\\", "")


def bars(at: AppTest) -> list[str]:
    return [str(p.proto.text) for p in at.get("progress")]


def buttons(at: AppTest) -> set[str]:
    return {str(b.key) for b in at.button}


def links(at: AppTest) -> list[str]:
    return [str(link.label) for link in at.get("page_link")]


@pytest.fixture
def coding(projects: Path):
    """The python_coding example's folder, with HumanEval imported as ``imported``, on a fake embedder."""
    jobs.set_featurizer_factory(lambda space: HashEmbedder(dim=64, name=f"emb:fake-{space}"))
    yield projects / "example-python_coding"
    jobs.set_featurizer_factory(None)


def import_humaneval(folder: Path) -> None:
    example = EXAMPLES["humaneval"]
    with Project.open(folder) as project:
        import_file(project, example.path(), ColumnMap(**example.mapping), sample_set="imported")


def test_a_reload_keeps_this_tabs_synthesis_its_own_and_the_wait_counts_down(projects: Path) -> None:
    folder = projects / "example-gsm8k_math"
    gate = threading.Event()
    jobs.set_llm_factory(lambda settings: GatedLLM(gate))
    with widget_state_warnings() as warned:
        at = start_synthesis(open_example(new_app()), per_leaf=2)
        try:
            wait_for_run(folder)  # its run has started: the first reply is out
            run(at)
            bar = next(text for text in bars(at) if "Synthesizing" in text)
            assert "first reply pending" in bar and " left" in bar, bar  # no reply yet: the wait counts
            again = reload(at, PAGE_SYNTH)
            assert "started in another tab" not in plain(again)  # the same tab, after a reload
            assert "synth.job.stop" in buttons(again)
            assert again.number_input(key="synth.per_leaf").value == 2  # the form shows the run
            other = new_app(project=folder.name)  # a tab of its own
            other.switch_page(PAGE_SYNTH)
            assert "A synthesis started in another tab is running" in plain(run(other))
        finally:
            gate.set()
            assert wait_for_job(folder).status == "done"
        done = run(again)
    assert warned == []  # the form's running values are set through the session state alone
    outcome = next(s.value for s in done.success if "Synthesis" in s.value)
    assert outcome.startswith("Synthesis finished in ") and "added " in outcome


def toasts(at: AppTest, word: str) -> list[str]:
    return [str(t.value) for t in at.toast if word in str(t.value)]


def test_a_job_that_ends_while_its_page_polls_says_how_in_a_toast_in_its_own_tab(projects: Path) -> None:
    """Walking the app: a job's outcome shows where its progress was, under its form's button, often
    out of view when it ends; a toast says it wherever the page is scrolled (once, in the tab that
    started it)."""
    folder = projects / "example-gsm8k_math"
    gate = threading.Event()
    jobs.set_llm_factory(lambda settings: GatedLLM(gate))
    at = start_synthesis(open_example(new_app()), per_leaf=2)
    other = new_app(project=folder.name)
    other.switch_page(PAGE_SYNTH)
    try:
        wait_for_run(folder)
        run(at)
        run(other)  # both pages poll the running job
    finally:
        gate.set()
        assert wait_for_job(folder).status == "done"
    assert not toasts(at, "Synthesis finished")
    run_fragments(at)  # the poll that finds the job ended reruns the page
    assert toasts(at, "Synthesis finished") and "added " in toasts(at, "Synthesis finished")[0]
    run(at)
    assert not toasts(at, "Synthesis finished")  # once
    run_fragments(other)
    assert not toasts(other, "Synthesis finished")  # not the other tab's job


def test_a_data_pages_job_is_one_line_on_the_concepts_page(coding: Path) -> None:
    gate = threading.Event()
    jobs.set_llm_factory(lambda settings: GatedLLM(gate))
    at = open_example(new_app(), "python_coding")
    import_humaneval(coding)
    at.switch_page(PAGE_DATA)
    run(at)
    at.radio(key="data.route.router").set_value("llm")
    at.number_input(key="data.route.agreement").set_value(0)
    at.button(key="data.route.run").click()
    run(at)
    try:
        assert "data.stop" in buttons(at) and any("Routing the samples" in text for text in bars(at))
        at.switch_page(PAGE_CONCEPTS)
        run(at)
        assert bars(at) == [] and not {"data.stop", "concepts.stop"} & buttons(at)  # not the Data page's banner
        assert "A routing job is running \u2014 open Data" in links(at)
    finally:
        gate.set()
        assert wait_for_job(coding).status == "done"
    run(at)
    assert "Routing" not in "\n".join(s.value for s in at.success)  # the Data page's outcome stays there
    at.switch_page(PAGE_DATA)
    run(at)
    outcome = next(s.value for s in at.success if "Routing the samples" in s.value)
    assert outcome.startswith("Routing the samples finished in ") and "routed 164 of 164" in outcome


def test_a_commands_finished_job_shows_its_result_not_its_last_progress_line(coding: Path) -> None:
    at = open_example(new_app(), "python_coding")
    import_humaneval(coding)
    with Project.open(coding) as project, run_lease(project, "route", {"sample_set": "imported"}) as beat:
        beat.report(164, 164, "embedding the samples (stored for next time)")  # as `treesynth route` does
        beat.result = "routed 164 of 164: 150 in leaves, 14 fit no value, 0 errors (no LLM calls)"
    at.switch_page(PAGE_DATA)
    said = plain(run(at))
    assert "Routing the samples finished in " in said and ": routed 164 of 164: 150 in leaves" in said
    assert "embedding the samples" not in said
