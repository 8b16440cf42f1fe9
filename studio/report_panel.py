"""The Export page's report for stakeholders: one self-contained HTML file to download (the same
page as ``treesynth report``), made from what the project already holds: the embeddings and map the
Coverage page computed are read, never computed here."""

from __future__ import annotations

import streamlit as st

from studio.coverage_panel import StoredFeatures, stored_kind
from studio.state import AppState
from studio.widgets import md
from treesynth_core.errors import TreeSynthError
from treesynth_core.report.collect import SAMPLES_PER_LEAF, collect_report
from treesynth_core.report.render import render_html
from treesynth_core.store import Project


def report_html(project: Project, name: str, samples_per_leaf: int = SAMPLES_PER_LEAF) -> str:
    """The report page, with the score card and map from the stored embedding features (if any)."""
    kind = stored_kind(project, "embeddings")
    embedder = StoredFeatures(kind) if kind else None
    return render_html(collect_report(project, embedder=embedder, samples_per_leaf=samples_per_leaf, name=name))


def report_panel(state: AppState, project: Project) -> None:
    """A button that makes the report, and a download button for it."""
    with st.container(border=True):
        st.markdown("**Report for stakeholders**")
        st.caption(
            "One HTML file that opens offline: the task, the tree with sample counts, the score card against the "
            "flat baseline with Vendi against n, the coverage map, samples per leaf and the dataset card. "
            "Scores and the map come from the Coverage page's features."
        )
        size, make, download = st.columns([1, 1, 1.3], vertical_alignment="bottom")
        per_leaf = size.number_input(
            "Samples per leaf", min_value=0, max_value=50, value=SAMPLES_PER_LEAF, key="export.report.per_leaf"
        )
        if make.button("Make the report", key="export.report.make", icon=":material/summarize:", width="stretch"):
            try:
                with st.spinner("Writing the report\u2026"):
                    state.last_report = report_html(project, state.project_name, int(per_leaf)).encode("utf-8")
            except TreeSynthError as exc:
                st.error(md(str(exc)), icon=":material/error:")
        if state.last_report is not None:
            download.download_button(
                "Download the report (HTML)",
                state.last_report,
                file_name=f"{state.project_name}-report.html",
                mime="text/html",
                key="export.report.download",
                icon=":material/download:",
                width="stretch",
            )
