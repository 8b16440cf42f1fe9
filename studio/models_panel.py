"""The Project page's list of local models: OpenAI-compatible servers running on this machine and GGUF
files in the usual caches (see :mod:`treesynth_core.llm.discovery`), each one click to use.

"Use" saves the open project's backend settings (and the form above shows them); without a project it
fills in the new-project form. A server is used with the key variable ``$TREESYNTH_LOCAL_API_KEY``, so
it never gets the key of ``$OPENAI_API_KEY``.
"""

from __future__ import annotations

import streamlit as st

from studio import security
from studio.state import AppState, get_state
from studio.widgets import md
from treesynth_core.errors import TreeSynthError
from treesynth_core.llm.discovery import (
    LOCAL_KEY_ENV,
    Discovery,
    GgufFile,
    LocalServer,
    discover,
    gguf_settings,
    ports_from_env,
    server_settings,
)
from treesynth_core.llm.settings import BackendSettings

FOUND_KEY = "models.found"
#: The settings a Use button chose for the new-project form (its inputs show them as their defaults).
NEW_PRESET = "models.new_preset"
#: The widget keys of the Project page's backend forms (an open project's, a new project's).
FORM_FIELDS = ("backend", "base_url", "model", "key_env", "conc", "prompts")


def _found(refresh: bool = False) -> Discovery:
    """What discovery found, once per session (again on Look again)."""
    if refresh or FOUND_KEY not in st.session_state:
        st.session_state[FOUND_KEY] = discover(ports_from_env())
    found: Discovery = st.session_state[FOUND_KEY]
    return found


def _apply(settings: BackendSettings, form: str) -> None:
    """Use ``settings``: save them to the open project, or fill in the new-project form."""
    state = get_state()
    project = state.project()
    if project is not None:
        project.save_settings(settings)
        for field in FORM_FIELDS:  # the form above shows the saved settings again
            st.session_state.pop(f"{form}.{field}", None)
        state.notify("success", f"Now using {settings.describe()}.")
        return
    for field in FORM_FIELDS:  # not set through the session state: the inputs take the preset as default
        st.session_state.pop(f"new.{field}", None)
    st.session_state[NEW_PRESET] = settings
    state.notify("success", f"The new project will use {settings.describe()}.")


def use_server(server: LocalServer, model: str, form: str) -> None:
    """The Use button of a server's model."""
    state = get_state()
    project = state.project()
    try:
        _apply(server_settings(project.settings() if project else None, server, model), form)
    except TreeSynthError as exc:
        state.notify("error", str(exc))


def use_gguf(gguf: GgufFile, form: str) -> None:
    """The Use button of a GGUF file (an open project's embedded backend runs it)."""
    state = get_state()
    project = state.project()
    if project is None:
        return
    try:
        _apply(gguf_settings(project.settings(), gguf), form)
    except TreeSynthError as exc:
        state.notify("error", str(exc))


def local_models(state: AppState, *, form: str = "settings") -> None:
    """The local models section; ``form``: the key prefix of the open project's backend form."""
    has_project = state.project() is not None
    locked = has_project and security.read_only()
    found = _found()
    # Open when it found something; closed (one line) when not, so a newcomer's first sight is the
    # examples, not an empty box.
    with st.expander("Local models on this machine", icon=":material/computer:", expanded=found.any):
        if st.button("Look again", key="models.refresh", icon=":material/refresh:"):
            found = _found(refresh=True)
        ports = ", ".join(str(port) for port in found.ports)
        st.caption(
            f"OpenAI-compatible servers answering on 127.0.0.1 (ports {ports}; nothing else is probed), and GGUF "
            "files in Ollama's model store, LM Studio's models folder and the Hugging Face cache. A server "
            f"found here gets no API key (its key variable is ${LOCAL_KEY_ENV}: set it only if the server "
            "wants one), never your $OPENAI_API_KEY."
        )
        st.markdown("**Servers**")
        if not found.servers:
            st.caption("No server answered. Start Ollama, LM Studio, vLLM or llama.cpp's server, then look again.")
        for server in found.servers:
            _server_rows(server, form, locked)
        st.markdown("**GGUF files**")
        if not found.ggufs:
            st.caption("No GGUF files in the usual caches.")
        for i, gguf in enumerate(found.ggufs):
            left, right = st.columns([5, 1], vertical_alignment="center")
            left.markdown(f"{md(gguf.source)}: {md(gguf.name)} \u00b7 {gguf.size_text()}")
            right.button(
                "Use",
                key=f"models.gguf.{i}",
                on_click=use_gguf,
                args=(gguf, form),
                disabled=locked or not has_project,
                help=None if has_project else "Open or create a project first: its embedded backend runs the file.",
                width="stretch",
            )


def _server_rows(server: LocalServer, form: str, locked: bool) -> None:
    st.markdown(f"{md(server.kind)} at {md(server.base_url)}")
    if not server.models:
        st.caption("It serves no model yet.")
    for model in server.models:
        left, right = st.columns([5, 1], vertical_alignment="center")
        left.markdown(f"\u2003{md(model)}")
        right.button(
            "Use",
            key=f"models.server.{server.port}.{model}",
            on_click=use_server,
            args=(server, model, form),
            disabled=locked,
            width="stretch",
        )
