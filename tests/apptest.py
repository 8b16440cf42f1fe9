"""AppTest helpers shared by the app's test modules: start the app, rerun it, read its messages,
create or open a project, and wait for the background job a button started."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from studio.widgets import PAGE_SYNTH as SYNTH
from treesynth_core.jobs import background as jobs
from treesynth_core.store import Project
from treesynth_core.tree.model import Tree

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


def new_app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def tree_of(folder: Path) -> Tree:
    """The stored tree of the project at ``folder``."""
    with Project.open(folder) as project:
        return project.tree()


def select(at: AppTest, node_id: str) -> AppTest:
    """Pick ``node_id`` in the Tree page's node search and rerun."""
    at.selectbox(key="tree.search").set_value(node_id)
    return run(at)


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
    parts += [s.value for s in at.success] + [w.value for w in at.warning] + [i.value for i in at.info]
    return "\n".join(str(p) for p in parts)


def create_project(at: AppTest, name: str = "demo", task: str = "Grade-school math word problems") -> AppTest:
    at.text_input(key="new.name").input(name)
    at.text_input(key="new.task").input(task)
    at.button(key="new.create").click()
    return run(at)


def open_example(at: AppTest, name: str = "gsm8k_math") -> AppTest:
    at.button(key=f"example.{name}").click()
    return run(at)


def wait_for_job(folder: Path) -> jobs.JobState:
    with Project.open(folder) as project:
        job = jobs.latest_job(project)
    assert job is not None
    return jobs.wait_job(folder, job.id, timeout=60)


def start_and_wait(at: AppTest, folder: Path) -> AppTest:
    """Click Start synthesis, wait for the job to finish, and show the page after it."""
    at.button(key="synth.start").click()
    run(at)
    assert wait_for_job(folder).status == "done"
    return run(at)


def start_synthesis(at: AppTest, per_leaf: int = 2) -> AppTest:
    """Open the Synthesize page, set the samples per leaf and click Start synthesis (no wait)."""
    at.switch_page(SYNTH)
    run(at)
    at.number_input(key="synth.per_leaf").set_value(per_leaf)
    at.button(key="synth.start").click()
    return run(at)


def synthesize(at: AppTest, folder: Path, per_leaf: int = 2) -> AppTest:
    at.switch_page(SYNTH)
    run(at)
    at.number_input(key="synth.per_leaf").set_value(per_leaf)
    run(at)
    return start_and_wait(at, folder)
