"""Small pieces shared by the pages: the project guard, notices, safe text, the pages' paths (jobs on the
pages: :mod:`studio.job_view`)."""

from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from studio.state import AppState
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.llm.timing import logged_model
from treesynth_core.store import Project
from treesynth_core.text import escape_markdown

PAGE_PROJECT = "app_pages/project.py"
PAGE_TREE = "app_pages/tree.py"
PAGE_SYNTH = "app_pages/synthesize.py"
PAGE_EXPORT = "app_pages/export.py"
PAGE_DATA = "app_pages/data.py"
PAGE_CONCEPTS = "app_pages/concepts.py"
PAGE_COVERAGE = "app_pages/coverage.py"

#: Seconds between polls of a running job (the graph and the counts refresh this often).
POLL_S = 1.0

EMBEDDED_WARNING = (
    "The embedded model (SmolLM2-135M) runs offline on this machine, but it is tiny: the criteria and "
    "values it proposes are weak. Use it to try the workflow; for a real dataset, open an example tree "
    "or point TreeSynth at a capable OpenAI-compatible model."
)


def md(text: str) -> str:
    """Escape text (values, criteria, samples, paths, LLM replies, server errors) for Streamlit markdown,
    so it shows literally: see :func:`~treesynth_core.text.escape_markdown`."""
    return escape_markdown(text)


def form_error(text: str) -> None:
    """Why a form's button did nothing: an error right where it is drawn (call it just under the
    button), and the same as a toast, which is in view even when the button sits at the bottom of
    the window. ``text`` shows literally."""
    st.error(md(text), icon=":material/error:")
    st.toast(md(text), icon=":material/error:")


NOTICE_ICONS = {
    "success": ":material/check_circle:",
    "info": ":material/info:",
    "warning": ":material/warning:",
    "error": ":material/error:",
}


def show_notices(state: AppState) -> None:
    """Show and forget the notices callbacks left for this rerun (their text is shown literally)."""
    for notice in state.pop_notices():
        text = md(notice.text)
        if notice.toast:
            st.toast(text, icon=NOTICE_ICONS[notice.kind])
        elif notice.kind == "error":
            st.error(text, icon=":material/error:")
        elif notice.kind == "warning":
            st.warning(text, icon=":material/warning:")
        elif notice.kind == "info":
            st.info(text, icon=":material/info:")
        else:
            st.toast(text, icon=":material/check_circle:")


def require_project(state: AppState) -> Project:
    """The open project; otherwise a pointer to the Project page, and the page stops."""
    project = state.project()
    if project is None:
        show_notices(state)
        st.info(
            "No project is open yet. Create one, or open an example tree, on the Project page.",
            icon=":material/folder_open:",
        )
        st.page_link(PAGE_PROJECT, label="Go to the Project page", icon=":material/arrow_forward:")
        st.stop()
    return project


def still_open(state: AppState) -> Project:
    """For a fragment that polls (``run_every``), first thing on each of its runs: the open project,
    checked again. A fragment's own runs skip the page's :func:`require_project`, so a project folder
    deleted or moved since the page ran would raise inside it; instead :meth:`AppState.project` closes
    the project and leaves its notice, and the whole page reruns to say so (as :func:`require_project`)."""
    project = state.project()
    if project is None:
        st.rerun(scope="app")
    return project


def model_name(settings: BackendSettings) -> str:
    """The model name samples and estimates are recorded under (as the CLI names it)."""
    return logged_model(settings)


def button_row() -> DeltaGenerator:
    """A row for buttons side by side that wraps onto two lines when the panel is too narrow for
    their labels (columns would cut the labels off instead)."""
    return st.container(horizontal=True, gap="small")
