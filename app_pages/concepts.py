"""Concepts page: SynthLLM's document-grounded questions. Add documents, extract their topics and
key concepts (a background job), explore the concept graph, preview level-3 walks, and generate
questions at level 1, 2 or 3 into a sample set of their own (a background job).

The page only lays out the panels of :mod:`studio.concepts_panel`; it polls while a job runs.
"""

from __future__ import annotations

import streamlit as st

from studio import concept_route_panel
from studio import concepts_panel as CP
from studio.job_view import job_status_fragment
from studio.state import get_state
from studio.widgets import PAGE_CONCEPTS, PAGE_COVERAGE, PAGE_DATA, require_project
from treesynth_core.concepts.store import load_documents
from treesynth_core.jobs import background as jobs

state = get_state()
project = require_project(state)
busy = jobs.active_job(project) is not None

st.title("Concepts")
st.caption(
    "Questions grounded in documents (SynthLLM): each document's topics and key concepts make one graph; "
    "questions combine a document's concepts, or concepts of different topics along a walk on the graph."
)


job_status_fragment(
    state,
    busy,
    page=PAGE_CONCEPTS,
    progress=CP.job_progress,
    outcome=CP.job_outcome,
)
documents = load_documents(project)
stored = CP.stored_concepts(project)  # read once: the graph caches are keyed by these bytes
concepts = stored.docs
tab_docs, tab_graph, tab_walks, tab_gen = st.tabs(
    ["Documents", "Concept graph", "Walks", "Generate"], default="Concept graph" if concepts else "Documents"
)

with tab_docs:
    CP.documents_form(state, project, busy=busy)
    if documents:
        CP.extraction(state, project, documents, busy=busy)
    else:
        st.info("No documents yet: add some above.", icon=":material/description:")

with tab_graph:
    if concepts:
        CP.graph_section(project, stored)
    else:
        st.info("No concepts yet: add documents and extract their concepts (the Documents tab).", icon=":material/hub:")

with tab_walks:
    if concepts:
        CP.walks_section(stored)
    else:
        st.info("Walks need the concept graph: extract concepts first.", icon=":material/hub:")

with tab_gen:
    if documents or concepts:
        CP.generation(state, project, busy=busy)
        CP.sets_overview(project)
        concept_route_panel.route_section(state, project, CP.concept_sets(project), busy=busy)
        st.page_link(
            PAGE_COVERAGE, label="Score the sets side by side on the Coverage page", icon=":material/scatter_plot:"
        )
        st.page_link(PAGE_DATA, label="Decontaminate or export them on the Data page", icon=":material/dataset:")
    else:
        st.info("Add documents first (the Documents tab).", icon=":material/description:")
