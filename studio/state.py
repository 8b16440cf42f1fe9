"""The app's state: one typed object under one ``st.session_state`` key.

:class:`AppState` holds what one browser session is doing: the open project (one connection per
session: it is per-user mutable state, so never in ``st.cache_resource``), the selected node, the
graph view, the leaves highlighted from the Coverage map's selection, and notices to show after the
next rerun. Widgets keep their own keys; everything else
lives here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import streamlit as st

from studio import browser_tab
from studio import graph as G
from treesynth_core.data.export import ExportResult
from treesynth_core.errors import ProjectError, ProjectGone, TreeSynthError
from treesynth_core.llm.settings import BackendSettings, merge_settings, settings_from_env
from treesynth_core.store import Project
from treesynth_core.tree.model import Tree

SESSION_KEY = "treesynth"
PROJECTS_ENV = "TREESYNTH_PROJECTS"
URL_PARAM = "project"
#: Up to this many highlighted leaves, the Tree page opens the paths to them; more would unfold too
#: much of a big tree (their folded ancestors are still marked).
REVEAL_MAX = 40

NoticeKind = Literal["success", "info", "warning", "error"]


def new_session_owner() -> str:
    """The owner of one browser session's edits (``app:`` and 8 hex digits): its undo and redo
    act on them, and on the growth it started."""
    return f"app:{uuid.uuid4().hex[:8]}"


def projects_dir() -> Path:
    """Where new projects and opened examples go: ``$TREESYNTH_PROJECTS`` or ``./projects``."""
    return Path(os.environ.get(PROJECTS_ENV) or "projects").expanduser()


def list_projects() -> list[Path]:
    """Project folders directly under :func:`projects_dir`, newest first."""
    root = projects_dir()
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / "treesynth.db").is_file()]
    return sorted(found, key=lambda p: (p / "treesynth.db").stat().st_mtime, reverse=True)


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    text: str
    #: Only as a toast, in view wherever the page is scrolled (for what the page also shows in place).
    toast: bool = False


@dataclass
class AppState:
    """Everything one browser session keeps between reruns."""

    project_path: Path | None = None
    selected: str | None = None
    view: G.View = field(default_factory=G.View)
    highlight: frozenset[str] = frozenset()  # leaves of the Coverage map's selection, marked on the Tree page
    count_set: str = "tree"  # the sample set whose per-node counts the Tree page's graph shows
    notices: list[Notice] = field(default_factory=list)
    last_export: ExportResult | None = None  # the Export page's latest result, for its download buttons
    last_report: bytes | None = None  # the Export page's latest stakeholder report (HTML), for its download
    focus_seq: int = 0  # bumped when the search box asks the graph to bring a node into view
    fit_seq: int = 0  # bumped when the graph should fit its new view (a focused subtree, other levels)
    full_screen: bool = False  # the Tree page's graph fills the window (the editor column hidden)
    url_checked: bool = False
    trusted_endpoints: frozenset[str] = frozenset()  # project-named endpoints confirmed in this session
    tab: str = ""  # this browser tab's token, kept in the URL across reloads (see studio.browser_tab)
    owner: str = field(default_factory=new_session_owner)  # whose edits this session's are (undo acts on them)
    seen_tree: Tree | None = None  # the tree the Tree page showed last: its edits carry it (see studio.tabs)
    seen_head: int | None = None  # the edit log's head when the Tree page looked last
    _project: Project | None = field(default=None, repr=False)

    # -- the project ------------------------------------------------------------------------------
    def project(self) -> Project | None:
        """The open project (its connection is opened lazily, once per session)."""
        if self.project_path is None:
            return None
        if self._project is None or self._project.path != self.project_path:
            try:
                self._project = Project.open(self.project_path, owner=self.owner)
            except TreeSynthError as exc:
                self.project_path, self._project = None, None
                self.notify("error", str(exc))
                return None
        try:
            self._project.check_present()
        except ProjectGone as exc:
            self.close()
            self.notify(
                "error",
                f"The project folder {exc.folder} was deleted or moved while it was open; your last edit "
                "was not saved, if you made one. The project is closed now.",
            )
            return None
        return self._project

    def open(self, path: Path | str) -> Project:
        """Open the project at ``path`` (a ProjectError says what is wrong) and reset the view."""
        project = Project.open(path, owner=self.owner)
        self.close()
        self._project, self.project_path = project, project.path
        self.selected, self.highlight = None, frozenset()
        tree = project.tree()
        self.view = G.View(show_depth=G.default_levels(tree))
        return project

    def adopt(self, project: Project) -> Project:
        """Make a just-created project the open one (its edits from now on are this session's)."""
        self.close()
        project.owner = self.owner
        self._project, self.project_path = project, project.path
        self.selected, self.highlight = None, frozenset()
        self.view = G.View(show_depth=G.default_levels(project.tree()))
        return project

    def close(self) -> None:
        if self._project is not None:
            self._project.close()
        self._project, self.project_path, self.selected, self.last_export = None, None, None, None
        self.last_report = None
        self.highlight = frozenset()
        self.seen_tree, self.seen_head = None, None

    @property
    def project_name(self) -> str:
        return self.project_path.name if self.project_path else ""

    def tree(self) -> Tree:
        project = self.project()
        if project is None:
            raise ProjectError("no project is open: create or open one on the Project page")
        return project.tree()

    def settings(self) -> BackendSettings:
        """The backend the project's jobs use: its saved settings, then ``TREESYNTH_*`` variables."""
        project = self.project()
        saved = project.settings() if project is not None else BackendSettings()
        return merge_settings(saved, settings_from_env())

    # -- selection and view -----------------------------------------------------------------------
    def select(self, node_id: str | None, *, focus: bool = False) -> None:
        self.selected = node_id
        if focus:
            self.view = replace(self.view, focus=node_id)

    def set_highlight(self, leaf_ids: Iterable[str]) -> None:
        """Highlight these leaves on the Tree page (and open the paths to them, up to
        :data:`REVEAL_MAX`); the same set again changes nothing, so folds made since stay."""
        wanted = frozenset(leaf_ids)
        if wanted == self.highlight:
            return
        self.highlight = wanted
        project = self.project()
        if project is not None and 0 < len(wanted) <= REVEAL_MAX:
            self.view = self.view.reveal(project.tree(), wanted)

    def clear_highlight(self) -> None:
        self.highlight = frozenset()

    def valid_selection(self, tree: Tree) -> str | None:
        """Forget a selected node, focus or highlighted leaves the tree no longer has."""
        if self.selected is not None and self.selected not in tree.nodes:
            self.selected = None
        if any(node_id not in tree.nodes for node_id in self.highlight):
            self.highlight = frozenset(node_id for node_id in self.highlight if node_id in tree.nodes)
        if self.view.focus is not None and self.view.focus not in tree.nodes:
            self.view = replace(self.view, focus=None)
        return self.selected

    # -- notices ----------------------------------------------------------------------------------
    def notify(self, kind: NoticeKind, text: str, *, toast: bool = False) -> None:
        self.notices.append(Notice(kind, text, toast))

    def pop_notices(self) -> list[Notice]:
        out, self.notices = self.notices, []
        return out


def get_state() -> AppState:
    """This session's :class:`AppState` (created on first use)."""
    state = st.session_state.get(SESSION_KEY)
    if not isinstance(state, AppState):
        state = AppState()
        st.session_state[SESSION_KEY] = state
    return state


def sync_url(state: AppState) -> None:
    """Keep ``?project=NAME`` and ``?tab=TOKEN`` in the URL, so a browser reload reopens the project
    and is the same tab again (its edits and jobs stay its own: see :mod:`studio.browser_tab`).

    Only folders under :func:`projects_dir` are reopened from the URL, by name.
    """
    params = st.query_params
    if not state.url_checked:
        state.url_checked = True
        state.tab = browser_tab.claim(
            params.get(browser_tab.TAB_PARAM), browser_tab.current_session(), browser_tab.session_alive
        )
        state.owner = browser_tab.owner_of(state.tab)
        name = params.get(URL_PARAM)
        if state.project_path is None and name and "/" not in name and "\\" not in name and name not in (".", ".."):
            candidate = projects_dir() / name
            if (candidate / "treesynth.db").is_file():
                try:
                    state.open(candidate)
                except TreeSynthError as exc:
                    state.notify("error", str(exc))
    if state.tab and params.get(browser_tab.TAB_PARAM) != state.tab:
        params[browser_tab.TAB_PARAM] = state.tab
    ref = _url_ref(state.project_path)
    if ref and params.get(URL_PARAM) != ref:
        params[URL_PARAM] = ref
    elif not ref and URL_PARAM in params:
        del params[URL_PARAM]


def _url_ref(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        if path.resolve().parent == projects_dir().resolve():
            return path.name
    except OSError:
        return None
    return None
