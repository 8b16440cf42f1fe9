"""Two tabs on one project (issue 13 item 7), in the app: two AppTest sessions on one project
folder. One renames, the other sees a notice naming the edit and the new name; the other's stale
edit of the renamed node is refused with a message, changing nothing; a start button pressed while
the other tab's job runs is refused with a message, starting nothing."""

from __future__ import annotations

import threading
from pathlib import Path

from streamlit.testing.v1 import AppTest

from studio.job_view import other_tab_refusal
from studio.tabs import others_arrived, others_notice
from studio.tree_panel import wkey
from studio.widgets import PAGE_SYNTH as SYNTH
from studio.widgets import PAGE_TREE
from tests.apptest import new_app, open_example, run, select, state_of, texts, tree_of, wait_for_job
from tests.fakes import GatedLLM
from treesynth_core.jobs import background as jobs
from treesynth_core.store import EditRecord, Project


def plain(at: AppTest) -> str:
    return texts(at).replace("\\", "")


def two_tabs() -> tuple[AppTest, AppTest]:
    first = open_example(new_app())
    second = new_app(project="example-gsm8k_math")
    second.switch_page(PAGE_TREE)
    return first, run(second)


def rename(at: AppTest, node_id: str, new: str) -> AppTest:
    at.text_input(key=wkey("value", node_id)).input(new)
    at.button(key="edit.rename").click()
    return run(at)


def test_another_tabs_rename_is_shown_and_a_stale_edit_of_it_refused(projects: Path) -> None:
    first, second = two_tabs()
    folder = projects / "example-gsm8k_math"
    tree = tree_of(folder)
    node = tree.children(tree.root_id)[0]
    second = select(second, node.id)  # the second tab looks at the node, then the first renames it
    rename(select(first, node.id), node.id, "Ratios and rates")
    assert "Another tab or person" not in plain(first)  # its own edit is no news to it

    rename(second, node.id, "Proportions")  # made on the tree as it was before the first's rename
    said = plain(second)
    assert f'your rename was not made: "{node.value}" was changed since you looked' in said, said
    assert f'rename "{node.value}" → "Ratios and rates" by app:' in said
    assert tree_of(folder).nodes[node.id].value == "Ratios and rates"
    assert "Another tab or person made 1 edit since you last looked: " in said
    assert second.text_input(key=wkey("value", node.id)).value == "Ratios and rates"  # what is there now

    second = run(second)  # seen now: no notice again
    assert "Another tab or person" not in plain(second)
    rename(second, node.id, "Proportions")  # made on the fresh tree: it goes through
    assert tree_of(folder).nodes[node.id].value == "Proportions"
    first = run(first)
    assert 'made 1 edit since you last looked: rename "Ratios and rates" → "Proportions"' in plain(first)
    assert "another tab or person made 1 edit since, which it keeps" in plain(first)


def test_the_idle_tree_pages_poll_finds_another_tabs_edit(projects: Path) -> None:
    """What the Tree page's poll (``studio.tabs.watch``, every few seconds) asks: whether other owners
    edited since this tab looked; when they did, it redraws the page, and the notice shows."""
    first, second = two_tabs()
    folder = projects / "example-gsm8k_math"
    tree = tree_of(folder)
    node = tree.children(tree.root_id)[0]
    with Project.open(folder) as project:
        assert not others_arrived(state_of(second), project)
        rename(select(first, node.id), node.id, "Ratios and rates")
        assert others_arrived(state_of(second), project)  # the second tab's poll redraws it now
        assert not others_arrived(state_of(first), project)  # its own edit is no news to the first
        said = plain(run(second))  # the redraw
        assert "Another tab or person made 1 edit since you last looked" in said
        assert not others_arrived(state_of(second), project)  # seen: no more redraws


def test_a_start_while_another_tabs_job_runs_is_refused(projects: Path) -> None:
    folder = projects / "example-gsm8k_math"
    gate = threading.Event()
    jobs.set_llm_factory(lambda settings: GatedLLM(gate))
    first, second = two_tabs()
    for at in (first, second):
        at.switch_page(SYNTH)
        run(at)
    first.button(key="synth.start").click()
    run(first)
    try:
        second.button(key="synth.start").click()  # its page was drawn before the first's job started
        run(second)
        said = plain(second)
        assert "A synthesis started in another tab is running (started " in said, said
        assert "; Stop it there or wait." in said
        with Project.open(folder) as project:
            assert len(project.jobs()) == 1
    finally:
        gate.set()
        assert wait_for_job(folder).status == "done"


def test_the_notice_names_the_latest_edits_and_counts_the_rest() -> None:
    def edit(i: int, kind: str, owner: str = "app:other") -> EditRecord:
        return EditRecord(i, "ts", kind, {}, "human", owner, False, 1, what=f"{kind} {i}")

    edits = [edit(1, "grow"), edit(2, "grow"), edit(3, "rename", "app:me"), edit(4, "prune"), edit(5, "approve")]
    edits.append(edit(6, "lock"))
    assert others_notice(edits, "app:me") == (
        "Another tab or person made 5 edits since you last looked: prune 4, approve 5, lock 6 and 2 grow "
        "before; the graph shows them."
    )
    assert others_notice(edits[2:3], "app:me") is None


def test_the_refusal_says_how_long_ago_the_job_started() -> None:
    job = jobs.JobState(
        "j1", "grow", {}, "running", 0, None, "", None, "2026-01-01T00:00:00+00:00", None, None, heartbeat=0.0
    )
    started = 1767225600.0  # 2026-01-01T00:00:00Z
    assert other_tab_refusal(job, now=started + 12) == (
        "A growth started in another tab is running (started 12 s ago); Stop it there or wait."
    )
