"""Project page: open an example tree, create a project, open one, and choose the LLM backend."""

from __future__ import annotations

import os

import streamlit as st

from studio import models_panel, projects, security
from studio.state import get_state, list_projects, projects_dir
from studio.widgets import EMBEDDED_WARNING, PAGE_TREE, form_error, md, show_notices
from treesynth_core.errors import TreeSynthError
from treesynth_core.llm.settings import BackendSettings, is_loopback, merge_settings

state = get_state()
st.title("Project")
st.caption(
    "A project holds one task's tree, its samples and a log of every LLM call, in one folder under "
    f"{md(str(projects_dir()))}"
)
show_notices(state)


def backend_form(current: BackendSettings, *, key: str) -> BackendSettings | None:
    """Backend fields; returns the settings they describe (None if invalid, with the error shown)."""
    labels = {"embedded": "Embedded (offline, SmolLM2-135M)", "openai": "OpenAI-compatible endpoint"}
    backend = st.radio(
        "LLM backend",
        list(labels),
        format_func=labels.get,
        key=f"{key}.backend",
        index=list(labels).index(current.backend),
        horizontal=True,
    )
    prompts = prompts_select(current, key=key)
    if backend == "embedded":
        st.warning(EMBEDDED_WARNING, icon=":material/lightbulb:")
        return merge_settings(current, {"backend": "embedded", "prompts": prompts})
    left, right = st.columns(2)
    base_url = left.text_input(
        "Base URL",
        value=current.base_url or "",
        key=f"{key}.base_url",
        placeholder="https://api.openai.com/v1 or http://127.0.0.1:8000/v1",
    )
    model = right.text_input("Model", value=current.model or "", key=f"{key}.model", placeholder="gpt-4o-mini")
    left, right = st.columns(2)
    key_env = left.text_input(
        "API key environment variable",
        value=current.api_key_env,
        key=f"{key}.key_env",
        help="The NAME of the variable that holds the key (set it before starting the app). "
        "The key itself is never written to the project, the logs or exports.",
    )
    concurrency = right.number_input("Requests in flight", 1, 1024, value=current.concurrency, key=f"{key}.conc")
    if key_env.strip():
        if os.environ.get(key_env.strip()):
            left.caption(f":green[:material/check: ${md(key_env.strip())} is set]")
        elif is_loopback(base_url):
            left.caption(f":material/info: ${md(key_env.strip())} is not set: a server on this machine gets no key")
        else:
            left.caption(f":orange[:material/warning: ${md(key_env.strip())} is not set in this app's environment]")
    try:
        return merge_settings(
            current,
            {
                "backend": "openai",
                "base_url": base_url.strip() or None,
                "model": model.strip() or None,
                "api_key_env": key_env,
                "concurrency": int(concurrency),
                "prompts": prompts,
            },
        )
    except TreeSynthError as exc:
        st.error(md(str(exc)), icon=":material/error:")
        return None


PROMPT_LABELS = {
    "auto": "Automatic",
    "paper": "Paper (capable models)",
    "small": "Small (the embedded 135M model)",
}


def prompts_select(current: BackendSettings, *, key: str) -> str:
    """The prompt profile choice; ``auto`` follows the backend."""
    return st.selectbox(
        "Prompts",
        list(PROMPT_LABELS),
        format_func=PROMPT_LABELS.get,
        index=list(PROMPT_LABELS).index(current.prompts),
        key=f"{key}.prompts",
        help="Paper: the reference implementation's prompts (a role, numbered requirements, a diversity "
        "rule), written for GPT-4o-class APIs and 7B-70B models. Small: a few short lines, which the "
        "embedded 135M model follows better. Automatic gives the embedded default model the small "
        "prompts and every other model (an endpoint, or a GGUF you chose) the paper ones.",
    )


def test_connection(settings: BackendSettings) -> None:
    problem = security.endpoint_problem(state, settings)
    if problem is not None:
        st.error(md(problem), icon=":material/gpp_maybe:")
        return
    with st.spinner("Sending a tiny request\u2026"):
        try:
            answer = projects.check_connection(settings)
        except TreeSynthError as exc:
            st.error(f"Connection failed: {md(str(exc))}", icon=":material/error:")
        else:
            st.success(f"Connected. {md(answer)}", icon=":material/check_circle:")


def opened(project_name: str) -> None:
    state.notify("success", f"Opened {project_name}.")
    st.switch_page(PAGE_TREE)


project = state.project()
if project is not None:
    tree = project.tree()
    with st.container(border=True):
        left, right = st.columns([4, 1], vertical_alignment="center")
        left.markdown(f"#### :material/folder: {md(state.project_name)}")
        left.markdown(f"**Task:** {md(tree.task)}")
        if tree.style:
            left.markdown(f"**Style:** {md(tree.style)}")
        left.caption(
            f"{len(tree.nodes)} nodes, {len(tree.leaves())} leaves, "
            f"{sum(project.sample_counts().values())} samples \u00b7 {md(str(project.path))}"
        )
        if right.button("Close project", key="project.close", icon=":material/close:"):
            state.close()
            st.rerun()
        right.page_link(PAGE_TREE, label="Open the tree", icon=":material/account_tree:")
    st.subheader("Backend")
    saved = project.settings()
    settings = backend_form(saved, key="settings")
    left, right, _ = st.columns([1, 1, 3])
    locked = security.read_only()
    if left.button(
        "Save settings",
        key="settings.save",
        type="primary",
        disabled=settings is None or locked,
        icon=":material/save:",
        help="Off in read-only share mode." if locked else None,
    ):
        assert settings is not None
        project.save_settings(settings)
        st.success(
            f"Saved: {md(settings.describe())}; {md(settings.describe_prompts())}", icon=":material/check_circle:"
        )
    if right.button(
        "Test connection", key="settings.test", disabled=settings is None or locked, icon=":material/cable:"
    ):
        assert settings is not None
        test_connection(settings)
    st.divider()

models_panel.local_models(state)

st.subheader("Open an example")
st.caption(
    "Trees written by people, ready to review and synthesize from \u2014 the quickest way to see "
    "what a good tree looks like, even on the embedded model."
)
found = projects.examples()
if not found:
    st.caption("No example trees found in assets/trees.")
columns = st.columns(max(1, min(3, len(found))))
for i, example in enumerate(found):
    with columns[i % len(columns)].container(border=True):
        st.markdown(f"**{md(example.task)}**")
        st.caption(f"{example.leaves} leaves, {example.levels} levels \u00b7 first split: {md(example.criterion)}")
        copied = projects.has_copy(example)
        if copied:
            st.caption("Opens your copy, with your edits; a fresh copy starts from the example again.")
        label = "Open your copy" if copied else "Open example"
        if st.button(label, key=f"example.{example.name}", icon=":material/play_arrow:"):
            try:
                state.adopt(projects.open_example(example))
            except TreeSynthError as exc:
                st.error(md(str(exc)), icon=":material/error:")
            else:
                opened(state.project_name)
        if copied and st.button("Fresh copy", key=f"example.{example.name}.fresh", icon=":material/restart_alt:"):
            try:
                state.adopt(projects.fresh_example(example))
            except TreeSynthError as exc:
                st.error(md(str(exc)), icon=":material/error:")
            else:
                opened(state.project_name)

new_tab, open_tab = st.tabs([":material/add: New project", ":material/folder_open: Open a project"])
with new_tab:
    name = st.text_input("Project name", key="new.name", placeholder="math-word-problems")
    task = st.text_input(
        "Task description", key="new.task", placeholder="Grade-school math word problems with a worked answer"
    )
    style = st.text_input(
        "Task style (optional)", key="new.style", placeholder="GSM8K-style: 2-8 steps, one numeric answer"
    )
    new_settings = backend_form(st.session_state.get(models_panel.NEW_PRESET) or BackendSettings(), key="new")
    if st.button("Create project", key="new.create", type="primary", icon=":material/add:"):
        try:
            if new_settings is None:
                raise TreeSynthError("fix the backend settings first")
            state.adopt(projects.create_project(name, task, style, new_settings))
        except TreeSynthError as exc:
            form_error(str(exc))
        else:
            opened(state.project_name)

with open_tab:
    existing = list_projects()
    if existing:
        choice = st.selectbox(
            "Projects in " + md(str(projects_dir())), existing, format_func=lambda p: p.name, key="open.choice"
        )
        if st.button("Open", key="open.button", icon=":material/folder_open:") and choice is not None:
            try:
                state.open(choice)
            except TreeSynthError as exc:
                st.error(md(str(exc)), icon=":material/error:")
            else:
                opened(state.project_name)
    else:
        st.caption(f"No projects in {md(str(projects_dir()))} yet.")
    if not security.read_only():  # shared read-only: only the projects folder
        path = st.text_input("Or a project folder anywhere", key="open.path", placeholder="/path/to/project")
        if st.button("Open folder", key="open.path_button", disabled=not path.strip()):
            try:
                state.open(os.path.expanduser(path.strip()))
            except TreeSynthError as exc:
                st.error(md(str(exc)), icon=":material/error:")
            else:
                opened(state.project_name)
