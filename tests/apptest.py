"""AppTest helpers shared by the app's test modules: start the app, rerun it, reload it, read its
messages and the warnings Streamlit logs, create or open a project, and wait for the background job a
button started."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from streamlit.testing.v1 import AppTest, local_script_runner

from studio.browser_tab import TAB_PARAM
from studio.state import SESSION_KEY, AppState
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


def state_of(at: AppTest) -> AppState:
    """The app state of ``at``'s session."""
    state = at.session_state[SESSION_KEY]
    assert isinstance(state, AppState)
    return state


def reload(at: AppTest, page: str | None = None) -> AppTest:
    """What a browser reload of ``at``'s tab gives: a new session on the same address (its query
    parameters, the open project and the tab's token), on ``page``."""
    state = state_of(at)
    query = {TAB_PARAM: state.tab} | ({"project": state.project_path.name} if state.project_path else {})
    again = new_app(**query)
    if page is not None:
        again.switch_page(page)
        run(again)
    return again


@contextmanager
def widget_state_warnings() -> Iterator[list[str]]:
    """The warnings Streamlit logs in the block about a widget given a default value whose key the
    session state set too ("... was created with a default value but also had its value set via the
    Session State API."). Streamlit logs it once per process, so its flag is reset first."""
    from streamlit.elements.lib import policies

    caught: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record.getMessage())

    log = logging.getLogger(policies.__name__)
    handler = Collect(logging.WARNING)
    policies._shown_default_value_warning = False
    log.addHandler(handler)
    try:
        yield caught
    finally:
        log.removeHandler(handler)


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


def wait_for_run(folder: Path, timeout: float = 30.0) -> jobs.JobState:
    """The latest job once its run of LLM calls has started (a background thread starts it a moment
    after the click; under load, after the page's next run)."""
    deadline = time.monotonic() + timeout
    while True:
        with Project.open(folder) as project:
            job = jobs.latest_job(project)
        if job is not None and job.run_id:
            return job
        assert time.monotonic() < deadline, f"no run started in {timeout:g} s"
        time.sleep(0.05)


def delete_first_sample(at: AppTest, folder: Path, leaf_id: str) -> int:
    """Pick the first sample of ``leaf_id`` in the sample browser and delete it; returns its id."""
    with Project.open(folder) as project:
        doomed = project.samples(leaf_id=leaf_id)[0].id
    at.multiselect(key=f"samples.delete.{leaf_id}").set_value([doomed])
    run(at)
    at.button(key="samples.delete").click()
    run(at)
    return doomed


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


def shown(at: AppTest, key: str) -> str:
    """The option text the selectbox ``key`` shows."""
    box = at.selectbox(key=key)
    assert box.index is not None, f"{key} shows no option"
    return str(box.options[box.index])


def held_by_browser(at: AppTest, key: str, before: str) -> str:
    """The option text a browser shows in the selectbox ``key`` after the last run, when it showed
    ``before``: the new option text if the run set the box's value, else still ``before``."""
    return shown(at, key) if at.selectbox(key=key).proto.set_value else before


def run_as_browser(at: AppTest, held: dict[str, str]) -> AppTest:
    """Rerun ``at`` as a browser does whose selectboxes (by key) still hold these option texts. A
    browser keeps the text it showed while a run relabels the options (Streamlit sends no new value for
    a choice it did not reset) and sends that text back on the next rerun; AppTest would send the new
    label, so a changed label would go unnoticed."""
    states = at._tree.get_widget_states()
    ids = {at.selectbox(key=key).id: text for key, text in held.items()}
    for state in states.widgets:
        if state.id in ids:
            state.string_value = ids[state.id]
    at._run(states)
    assert not at.exception, at.exception
    return at


def run_fragments(at: AppTest) -> AppTest:
    """A run of only the page's fragments, as a fragment's ``run_every`` timer asks for between the
    page's runs (AppTest has no such run: its run request is given the fragments' ids)."""
    ids = list(at._fragment_storage._fragments)
    assert ids, "the page has no fragment"
    fragments_only = functools.partial(
        local_script_runner.RerunData, fragment_id_queue=ids, is_fragment_scoped_rerun=True
    )
    with mock.patch.object(local_script_runner, "RerunData", fragments_only):
        at.run()
    assert not at.exception, at.exception
    return at
