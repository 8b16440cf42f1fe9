"""Pieces of the Concepts page (SynthLLM's document-grounded questions): the documents and their
extraction, the concept graph and what a selected node is about, a walk preview, and generation.

Nothing here extracts or generates by itself: the ``concepts-extract`` and ``concepts-synth`` jobs
(:mod:`treesynth_core.jobs.background`) do the long work and store it; this module reads the store
through the core functions (:mod:`treesynth_core.concepts`) and renders what they return. Every text
that comes from a document, a file or an LLM reaches the page escaped: :func:`md` in markdown, and
labels drawn on the graph's canvas by :mod:`studio.concept_graph_component`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import streamlit as st

from studio import concept_graph as CG
from studio import data_panel, job_view, security
from studio.concept_graph_component import concept_graph
from studio.gaps_panel import verify_selectors
from studio.state import AppState
from studio.synth_panel import compact, time_help
from studio.widgets import PAGE_CONCEPTS, md, model_name
from treesynth_core.concepts.documents import (
    PYTHON_DOCS,
    Document,
    DocumentSet,
    chunk_chars_for,
    read_documents,
    sample_set_documents,
    split_documents,
)
from treesynth_core.concepts.extract import plan_extraction
from treesynth_core.concepts.graph import GraphStats, build_graph, graph_stats
from treesynth_core.concepts.model import DocConcepts
from treesynth_core.concepts.plan import Spend
from treesynth_core.concepts.preview import WalkPreview, preview_walks
from treesynth_core.concepts.questions import LEVELS, QuestionOptions, plan_questions
from treesynth_core.concepts.store import CONCEPTS_KEY, add_documents, concepts_of, load_concepts, load_documents
from treesynth_core.errors import TreeSynthError
from treesynth_core.jobs import background as jobs
from treesynth_core.llm import timing
from treesynth_core.store import Project
from treesynth_core.store.samples import BASELINE_SET

#: Job kinds this page starts, with what the progress bar says and what done/total counts.
JOB_LABELS = {
    "concepts-extract": "Extracting concepts",
    "concepts-synth": "Generating questions",
    "route": "Routing into the tree",
}
JOB_UNITS = {"concepts-extract": "documents", "concepts-synth": "questions", "route": "samples"}
SOURCES = {
    "python": "Python's reference topics (ships with Python)",
    "folder": "A folder of .md/.txt/.html files on this machine",
    "set": "The text of a sample set",
}
LEVEL_HELP = {
    1: "1: questions taken from one document, or newly written from it",
    2: "2: each question combines 2-3 of one document's concepts",
    3: "3: concepts of different topics along a walk on the graph, grounded in two documents",
}
TEXT_PREVIEW = 600  # characters of a document shown under a selected node
SLIDER_FROM, SLIDER_MAX = 10, 400  # the top-N slider shows above 10 nodes, up to 400
LIST_MAX = 30  # documents and questions listed for a selected node

# -- jobs -----------------------------------------------------------------------------------------


def job_progress(project: Project, job: jobs.JobState) -> None:
    unit = JOB_UNITS[job.kind]
    done = f"{job.done:,} of {job.total:,} {unit}" if job.total else f"{job.done:,} {unit}"
    status = f"{done} \u2014 {job.message}" if job.message else done
    job_view.job_progress(project, job, key="concepts", label=JOB_LABELS[job.kind], status=status)


def job_outcome(project: Project, job: jobs.JobState | None) -> None:
    """How this page's latest job ended (nothing while it runs, or for other pages' jobs)."""
    if job is None or job_view.page_of(job) != PAGE_CONCEPTS or job.kind not in JOB_LABELS:
        return
    job_view.ended(project, job, JOB_LABELS[job.kind], after_stop=" Start it again to go on.")


def spend_cards(
    spend: Spend, project: Project, state: AppState, what: tuple[str, int], purposes: tuple[str, ...]
) -> None:
    """The estimate before a run: the work, calls, tokens, cost and the time its calls of
    ``purposes`` take."""
    settings = state.settings()
    cols = st.columns(5)
    cols[0].metric(what[0], f"{what[1]:,}", border=True)
    cols[1].metric(
        "LLM calls",
        f"{spend.calls:,}",
        border=True,
        help=f"When every reply is usable; up to {spend.calls_max:,} with re-asks. Cached replies are free.",
    )
    cols[2].metric("Tokens", compact(spend.prompt_tokens + spend.completion_tokens), border=True)
    usd = "unknown" if spend.cost_usd is None else f"${spend.cost_usd:.2f}"
    cols[3].metric("Cost (about)", "free" if settings.backend == "embedded" else usd, border=True)
    took = timing.estimate_time(project, settings, purposes, spend.calls)
    cols[4].metric("Time", took.short(), border=True, help=time_help(took))  # short: a long range is cut off
    st.caption(md(f"Time {took.text()}."))


# -- documents and extraction ---------------------------------------------------------------------


def read_source(state: AppState, project: Project, source: str, where: str, encoding: str = "utf-8") -> DocumentSet:
    """The documents of a source, chunked for the backend's prompt profile, with what was split or skipped."""
    size = chunk_chars_for(state.settings().prompt_profile())
    if source == "python":
        return read_documents(PYTHON_DOCS, chunk_chars=size)
    if source == "folder":
        if not where.strip():
            raise TreeSynthError("type the path of a folder of documents first")
        return read_documents(str(Path(where).expanduser()), encoding=encoding.strip() or "utf-8", chunk_chars=size)
    return split_documents(sample_set_documents(project.samples(sample_set=where), where), size)


def documents_form(state: AppState, project: Project, *, busy: bool) -> None:
    """Choose documents and add them to the project (stored; extraction skips those already done)."""
    sources = [s for s in SOURCES if s != "folder" or not security.read_only()]
    source = st.radio("Documents", sources, format_func=SOURCES.get, key="concepts.source", horizontal=True)
    where, encoding = "", "utf-8"
    if source == "folder":
        where = data_panel.local_path(st, "Folder", key="concepts.folder", placeholder="~/docs")
        encoding = st.text_input(
            "Encoding",
            value="utf-8",
            key="concepts.encoding",
            help="How the files are encoded (decoded strictly: a byte that does not decode is an error naming "
            "the file), e.g. utf-8, latin-1, cp1252.",
        )
    elif source == "set":
        sets = [s for s in project.sample_sets() if s != BASELINE_SET]
        if not sets:
            st.caption("The project has no sample sets yet: import one on the Data page.")
            return
        where = str(st.selectbox("Sample set", sets, key="concepts.set"))
    if st.button(
        "Add these documents", key="concepts.add", icon=":material/note_add:", disabled=busy or security.read_only()
    ):
        try:
            read = read_source(state, project, source, where, encoding)
            if not read.documents:
                raise TreeSynthError(f"every document is empty ({len(read.empty_skipped)} skipped): nothing to add")
            stored = add_documents(project, read.documents)
        except (TreeSynthError, OSError) as exc:
            state.notify("error", str(exc))
        else:
            # long documents are split, never cut: say into how many chunks, and how many empty ones were skipped
            state.notify("success", f"Added {read.summary()} ({len(stored):,} in the project).")
        st.rerun()


def extraction(state: AppState, project: Project, docs: Sequence[Document], *, busy: bool) -> None:
    """The extraction estimate and its Start button."""
    done = load_concepts(project)
    settings = state.settings()
    plan = plan_extraction(docs, done, model=model_name(settings), settings=settings)
    st.caption(
        f"{plan.documents:,} documents stored, {plan.documents - plan.todo:,} extracted. Each document is asked "
        "once for its level, subject, topics and key concepts; the concepts are saved as they arrive."
    )
    if not plan.todo:
        return
    spend_cards(plan.spend, project, state, ("Documents to extract", plan.todo), timing.CONCEPT_PURPOSES)
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="concepts.extract_seed", help="Another asks anew.")
    if st.button("Extract concepts", key="concepts.extract", type="primary", icon=":material/hub:", disabled=busy):
        if job_view.start_job(state, "concepts-extract", {"seed": int(seed)}, page=PAGE_CONCEPTS):
            st.rerun()


# -- the graph ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredConcepts:
    """The stored concepts and the digest of the bytes they were read from: the caches below are
    keyed by it, so a graph is never filed under a newer version than the one it was built from
    (an extraction job writes the concepts while the page reads them)."""

    docs: list[DocConcepts]
    digest: str


def stored_concepts(project: Project) -> StoredConcepts:
    blob = project.get_blob(CONCEPTS_KEY)
    return StoredConcepts(concepts_of(blob), hashlib.sha1(blob or b"").hexdigest())


@st.cache_resource(max_entries=4)
def _graph(_docs: Sequence[DocConcepts], digest: str) -> nx.Graph:
    return build_graph(_docs)


@st.cache_data(max_entries=16)
def _view(_graph: nx.Graph, digest: str, top_n: int, matches: tuple[str, ...], selected: str | None) -> CG.ConceptView:
    return CG.concept_view(_graph, top_n=top_n, matches=matches, selected=selected)


@st.cache_data(max_entries=4)
def _stats(_graph: nx.Graph, digest: str) -> GraphStats:
    return graph_stats(_graph)


@st.cache_data(max_entries=16)
def _walks(_graph: nx.Graph, _docs: Sequence[DocConcepts], digest: str, k: int, seed: int) -> list[WalkPreview]:
    return preview_walks(_docs, k, seed=seed, graph=_graph)


def _select(node: str) -> None:
    st.session_state["concepts.selected"] = node


def graph_section(project: Project, stored: StoredConcepts) -> None:
    """Stats, the top-N slider, the search box, the graph and what the selected node is about."""
    docs, digest = stored.docs, stored.digest
    graph = _graph(docs, digest)
    stats = _stats(graph, digest)
    st.caption(
        f"{len(docs):,} documents: {stats.topics:,} topics, {stats.concepts:,} concepts, {stats.edges:,} edges "
        f"(an edge for every pair that share a document; width: how many do)."
    )
    left, right = st.columns([2, 3], vertical_alignment="bottom")
    top_n = stats.nodes
    if stats.nodes > SLIDER_FROM:
        top_n = left.slider(
            "Nodes shown (top by degree)",
            SLIDER_FROM,
            min(stats.nodes, SLIDER_MAX),
            min(CG.DEFAULT_TOP_N, stats.nodes),
            key="concepts.top_n",
            help="The nodes with the most neighbours; search matches and the selection are drawn too.",
        )
    query = right.text_input(
        "Search a topic or concept",
        key="concepts.search",
        placeholder="e.g. loop",
    )
    matches = CG.search(graph, query)
    if query != st.session_state.get("concepts.searched"):  # a new search selects its best match
        st.session_state["concepts.searched"] = query
        if matches:
            st.session_state["concepts.selected"] = matches[0]
    if query.strip():
        st.caption(md(f"{len(matches)} match{'es' if len(matches) != 1 else ''} (outlined in red)."))
    selected = st.session_state.get("concepts.selected")
    if selected not in graph:
        selected = None
    view = _view(graph, digest, int(top_n), tuple(matches[:20]), selected)
    concept_graph(view, key="concepts.graph", height=560, on_select=_select)
    if selected is not None:
        node_details(project, graph, docs, selected)
    else:
        st.caption("Click a node (or search) to see its documents and the questions that used it.")


def node_details(project: Project, graph: nx.Graph, docs: Sequence[DocConcepts], node: str) -> None:
    data = graph.nodes[node]
    doc_ids = CG.documents_of(docs, node)
    used = [s for name in concept_sets(project) for s in CG.questions_using(project.samples(sample_set=name), node)]
    with st.container(border=True, key="concepts.details"):
        st.markdown(f"**{md(data['kind'].capitalize())}: {md(data['label'])}**")
        st.caption(
            f"{graph.degree(node):,} neighbours \u00b7 {len(doc_ids):,} documents \u00b7 {len(used):,} questions"
        )
        texts = {d.doc_id: d.text for d in load_documents(project)}
        left, right = st.columns(2)
        with left:
            st.markdown("**Documents**")
            for doc_id in doc_ids[:LIST_MAX]:
                with st.expander(md(doc_id)):
                    text = texts.get(doc_id, "")
                    st.markdown(md(text[:TEXT_PREVIEW] + ("\u2026" if len(text) > TEXT_PREVIEW else "")))
            if len(doc_ids) > LIST_MAX:
                st.caption(f"\u2026 and {len(doc_ids) - LIST_MAX:,} more")
        with right:
            st.markdown("**Questions that used it**")
            if not used:
                st.caption("None yet (levels 2 and 3 record the concepts each question combines).")
            for sample in used[:LIST_MAX]:
                st.markdown(f"- {md(sample.instruction)}  \n  :gray[{md(sample.sample_set)}]")
            if len(used) > LIST_MAX:
                st.caption(f"\u2026 and {len(used) - LIST_MAX:,} more")


def concept_sets(project: Project) -> list[str]:
    """The sample sets concepts generation made: the ``concepts-l<LEVEL>`` sets and the sets that
    ``concepts-synth`` runs named."""
    named = {str(job.params.get("sample_set") or "") for job in project.jobs(kind="concepts-synth", limit=500)}
    return [name for name in project.sample_sets() if name.startswith("concepts-l") or name in named]


# -- walks ----------------------------------------------------------------------------------------


def walks_section(stored: StoredConcepts) -> None:
    st.caption(
        "Level 3 walks the graph: 1-2 steps among topics, one to a concept, 3-4 among concepts, each in "
        "proportion to the co-occurrence counts; the two documents whose concepts are closest (Jaccard) "
        "ground its questions."
    )
    a, b, _ = st.columns([1, 1, 3])
    k = int(a.number_input("Walks", 1, 50, 5, key="concepts.walks_k"))
    seed = int(b.number_input("Seed", 0, 2**31 - 1, 0, key="concepts.walks_seed"))
    graph = _graph(stored.docs, stored.digest)
    walks = _walks(graph, stored.docs, stored.digest, k, seed)
    if not walks:
        st.info("No walks: the graph has no topics.", icon=":material/info:")
    for i, walk in enumerate(walks, 1):
        with st.container(border=True):
            topics = " \u2192 ".join(md(t) for t in walk.topics)
            concepts = ", ".join(md(c) for c in walk.concepts) or "(none)"
            st.markdown(f"**{i}.** {topics}  \nConcepts: {concepts}")
            grounding = ", ".join(f"{md(d)} ({s:.2f})" for d, s in walk.documents)
            st.caption(f"Grounding documents: {grounding or 'none share a concept'}")


# -- generation -----------------------------------------------------------------------------------


def generation(state: AppState, project: Project, *, busy: bool) -> None:
    """Level, n and responses; the estimate; Start (the ``concepts-synth`` job)."""
    c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
    level = int(c1.radio("Level", LEVELS, index=2, format_func=LEVEL_HELP.get, key="concepts.level"))
    n = int(c2.number_input("Questions (n)", 1, 100_000, QuestionOptions.n, key="concepts.n"))
    responses = c3.checkbox("Also answer them", key="concepts.responses", help="A second call per question.")
    draws, answer = verify_options(disabled=not responses)
    options = QuestionOptions(level=level, n=n, responses=responses, verify=draws, answer=answer)
    settings = state.settings()
    try:
        plan = plan_questions(project, options, model=model_name(settings), settings=settings)
    except TreeSynthError as exc:
        st.error(md(str(exc)), icon=":material/error:")
        return
    st.caption(md(f"Into the sample set {options.default_set()}; a rerun fills it up to n, served from the cache."))
    if plan.need:
        purposes = timing.QUESTION_PURPOSES + (timing.RESPONSE_PURPOSES if responses else ())
        spend_cards(plan.spend, project, state, ("Questions to make", plan.need), purposes)
    else:
        st.caption(md(f"{options.default_set()} already holds {n:,} questions: raise n to add more."))
    params: dict[str, object] = {"level": level, "n": n, "responses": responses}
    if draws:
        params |= {"verify": draws, "answer": answer}
    if st.button(
        "Generate questions",
        key="concepts.generate",
        type="primary",
        icon=":material/auto_awesome:",
        disabled=busy or not plan.need,
    ):
        if job_view.start_job(state, "concepts-synth", params, page=PAGE_CONCEPTS):
            st.rerun()


def verify_options(*, disabled: bool) -> tuple[int, str]:
    """Majority-vote verification of the answers (as the Coverage page's gap filling): k draws per
    question, kept only when most agree on the final answer; off without answers."""
    c1, c2 = st.columns(2)
    draws, answer = verify_selectors(
        c1,
        c2,
        prefix="concepts",
        disabled=disabled,
        draws_help="Answer each question k times and keep it only when most answers agree on the final answer "
        '(numbers compared numerically); the kept answer is the majority\'s. Needs "Also answer them".',
    )
    return (0, QuestionOptions.answer) if disabled else (draws, answer)


def sets_overview(project: Project) -> None:
    """The concepts sets, their first rows, and where to use them."""
    sets = concept_sets(project)
    if not sets:
        return
    counts = project.sample_sets()
    st.markdown("**Generated sets**")
    for name in sets:
        st.markdown(f"- **{md(name)}** \u2014 {counts[name]:,} questions")
    shown = st.selectbox("First rows of a set", sets, key="concepts.browse")
    st.dataframe(data_panel.first_rows(project, shown), key="concepts.rows", hide_index=True, width="stretch")
