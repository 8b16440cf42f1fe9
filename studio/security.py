"""What the app exposes and to whom: the warning when it listens beyond this machine, the read-only
share mode, and the once-per-session confirmation of an endpoint only the project names.

The rules themselves live in the core (:class:`~treesynth_core.llm.settings.Endpoint`); this module
reads Streamlit's ``server.address`` and ``$TREESYNTH_READ_ONLY`` and draws the notices and the button.
"""

from __future__ import annotations

import ipaddress
import os

import streamlit as st

from studio.state import AppState
from treesynth_core.llm.settings import BackendSettings, Endpoint, settings_from_env
from treesynth_core.text import escape_markdown as md

READ_ONLY_ENV = "TREESYNTH_READ_ONLY"
#: What a person who can reach the app can do with this machine, unless the app runs read-only.
EXPOSED = (
    "import any file on this machine by its path, open any folder as a project, change the backend settings "
    "and run paid LLM jobs with this machine's API keys"
)


def read_only() -> bool:
    """Share mode (``TREESYNTH_READ_ONLY=1``, as ``make share`` sets): no local-path import, no opening
    folders by path, no settings edits, no jobs."""
    return os.environ.get(READ_ONLY_ENV, "").strip().lower() not in ("", "0", "false", "no")


def server_address() -> str:
    """The address Streamlit listens on (``server.address``; empty: every interface)."""
    return str(st.get_option("server.address") or "")


def exposed(address: str) -> bool:
    """Whether an app bound to ``address`` can be reached from other machines."""
    if address in ("localhost",):
        return False
    try:
        return not ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return True  # empty (every interface) or a host name


def exposure_banner() -> None:
    """A warning on every page while the app listens beyond this machine, naming what is exposed."""
    address = server_address()
    if read_only():
        st.info(
            "Read-only share mode: importing files by path, opening folders by path, settings edits and jobs are off.",
            icon=":material/lock:",
        )
    if not exposed(address):
        return
    where = md(address) if address else "every network interface"
    if read_only():
        st.warning(
            f"This app listens on {where}, without a login: anyone who can reach it can read the open projects.",
            icon=":material/public:",
        )
        return
    st.warning(
        f"This app listens on {where}, without a login: anyone who can reach it can {EXPOSED}. Share it "
        f"read-only ({READ_ONLY_ENV}=1, as make share does), or bind it to 127.0.0.1.",
        icon=":material/public:",
    )


def endpoint_for(state: AppState, settings: BackendSettings | None = None) -> Endpoint | None:
    """Where the open project's requests go (``settings``: as a form shows them, else as saved plus
    ``TREESYNTH_*`` variables); None for the embedded backend. A field counts as the project's unless
    the environment or a form edit chose it."""
    project = state.project()
    saved = project.settings() if project is not None else BackendSettings()
    env = settings_from_env()
    settings = settings or state.settings()
    if settings.backend != "openai":
        return None
    edited = {name for name in ("base_url", "api_key_env") if getattr(settings, name) != getattr(saved, name)}
    return Endpoint.of(saved, settings, chosen={*env, *edited})


def endpoint_problem(state: AppState, settings: BackendSettings | None = None) -> str | None:
    """Why requests may not go out yet (None: they may): see :meth:`Endpoint.problem`."""
    target = endpoint_for(state, settings)
    if target is None:
        return None
    return target.problem(trust_endpoint=target.url in state.trusted_endpoints, how="app")


def endpoint_notice(state: AppState) -> None:
    """In the sidebar: where requests go, and the confirmation an endpoint only the project names needs
    (once per session)."""
    target = endpoint_for(state)
    if target is None:
        return
    problem = endpoint_problem(state)
    if problem is None:
        st.caption(f":material/send: {md(target.notice())}")
        return
    st.warning(md(problem), icon=":material/gpp_maybe:")
    if target.problem(trust_endpoint=True) is None and not read_only():  # only the endpoint needs a yes
        if st.button(
            f"Trust {md(target.host)} for this session", key="security.trust", icon=":material/verified_user:"
        ):
            state.trusted_endpoints = state.trusted_endpoints | {target.url}
            st.rerun()
