"""The Concepts page with AppTest: documents added from a folder, extraction and generation run as
real background jobs on the scripted fake LLM; the graph's data, search and selection, the walk
preview; and the pure graph view (top-N, search, edge widths, documents and questions of a node)."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio import concept_graph as CG
from studio import concepts_panel as CP
from studio.widgets import PAGE_CONCEPTS, PAGE_COVERAGE, md
from tests.apptest import create_project, new_app, run, texts, wait_for_job
from tests.fakes import HashEmbedder, ScriptedLLM
from treesynth_core.concepts.graph import build_graph, node_id
from treesynth_core.concepts.model import DocConcepts, Topic
from treesynth_core.concepts.store import load_concepts, load_documents, save_concepts
from treesynth_core.jobs import background as jobs
from treesynth_core.llm.recording import CallRecord
from treesynth_core.llm.timing import logged_model
from treesynth_core.store import Project
from treesynth_core.store.samples import Sample

DOCS = {
    "loops.md": "Python loops: the while statement repeats a block; break leaves the innermost loop early, "
    "continue skips to the next iteration, and an else clause runs when the loop ends normally.",
    "functions.md": "Python functions: def binds a function object; arguments bind parameters, defaults are "
    "evaluated once, and return hands a value back to the caller through the stack.",
    "classes.md": "Python classes: class statements create types; methods receive instances as self, "
    "inheritance resolves attributes through the method resolution order of bases.",
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    return docs


def concepts_page(projects: Path):
    at = create_project(new_app(), "docs", "Questions about the Python language")
    at.switch_page(PAGE_CONCEPTS)
    return run(at), projects / "docs"


def add_folder(at, folder: Path):
    """Add the documents of ``folder`` on the Concepts page."""
    at.radio(key="concepts.source").set_value("folder")
    run(at)
    at.text_input(key="concepts.folder").input(str(folder))
    at.button(key="concepts.add").click()
    return run(at)


def click_and_wait(at, key: str, project_dir: Path):
    at.button(key=key).click()
    run(at)
    job = wait_for_job(project_dir)
    assert job.status == "done", (job.error, job.message)
    return run(at), job


def test_documents_extraction_graph_search_walks_and_generation(projects, folder):
    at, project_dir = concepts_page(projects)
    assert "No documents yet" in texts(at)
    add_folder(at, folder)
    with Project.open(project_dir) as project:
        assert sorted(d.doc_id for d in load_documents(project)) == sorted(DOCS)
    assert "Documents to extract" in [m.label for m in at.metric]

    at, job = click_and_wait(at, "concepts.extract", project_dir)
    assert job.kind == "concepts-extract" and "concepts of 3 documents extracted" in job.message
    with Project.open(project_dir) as project:
        extracted = load_concepts(project)
    assert len(extracted) == 3
    body = texts(at)
    assert "Extracting concepts finished in " in body and "3 documents:" in body
    graph = build_graph(extracted)

    # search selects the best match; its documents are listed
    at.text_input(key="concepts.search").input("while")
    run(at)
    selected = at.session_state["concepts.selected"]
    assert selected == node_id("concept", "while")
    assert "1 match" in texts(at)
    details = texts(at)
    assert "Concept: while" in details and f"{graph.degree(selected)} neighbours" in details
    assert [e.label for e in at.expander if "loops" in e.label] == [md("loops.md")]

    # the walk preview shows each walk's concepts and grounding documents
    walk_texts = [m.value for m in at.markdown if "Concepts:" in m.value]
    assert len(walk_texts) == 5
    assert any("Grounding documents:" in c.value for c in at.caption)

    # generation: the estimate, then the job fills the set
    at.radio(key="concepts.level").set_value(2)
    at.number_input(key="concepts.n").set_value(4)
    run(at)
    assert "Questions to make" in [m.label for m in at.metric]
    at, job = click_and_wait(at, "concepts.generate", project_dir)
    assert job.kind == "concepts-synth"
    with Project.open(project_dir) as project:
        rows = project.samples(sample_set="concepts-l2")
    assert len(rows) == 4 and all(r.extra["provenance"] == "concepts" for r in rows)
    assert md("concepts-l2") in texts(at)
    # the selected concept now lists the questions that combined it (if any did)
    used = CG.questions_using(rows, selected)
    assert f"{len(used)} questions" in texts(at)

    # the new set is scored on the Coverage page, beside any other set
    jobs.set_featurizer_factory(lambda space: HashEmbedder(dim=32, name=f"emb:fake-{space}"))
    try:
        at.switch_page(PAGE_COVERAGE)
        run(at)
        at.multiselect(key="coverage.sets").set_value(["concepts-l2"])
        at.button(key="coverage.sets.score").click()
        run(at)
    finally:
        jobs.set_featurizer_factory(None)
    table = next(df.value for df in at.dataframe if "concepts-l2" in df.value.columns)
    assert list(table["score"])[0] == "Vendi" and table["concepts-l2"].iloc[0] != "\u2013"


def test_a_rerun_never_starts_a_second_job(projects, folder):
    at, project_dir = concepts_page(projects)
    add_folder(at, folder)
    at.button(key="concepts.extract").click()
    run(at)
    run(at)  # a rerun while (or after) it runs
    wait_for_job(project_dir)
    with Project.open(project_dir) as project:
        assert len(project.jobs(kind="concepts-extract", limit=10)) == 1


def test_extraction_shows_progress_and_stops(projects, tmp_path):
    many = tmp_path / "many"
    many.mkdir()
    for i in range(40):
        (many / f"doc{i:02}.txt").write_text(f"Document number {i} about generators, iterators and closures.")
    jobs.set_llm_factory(lambda settings: ScriptedLLM(delay=0.4))
    at, project_dir = concepts_page(projects)
    add_folder(at, many)
    at.button(key="concepts.extract").click()
    run(at)
    assert at.button(key="concepts.extract").disabled  # while it runs, no second start
    bars = [p for p in at.get("progress")]
    assert bars and "Extracting concepts" in bars[0].proto.text
    at.button(key="concepts.stop").click()
    run(at)
    job = wait_for_job(project_dir)
    if job.status == "done":  # it finished before the stop arrived
        pytest.skip("the extraction finished before it could be stopped")
    assert job.status == "cancelled"
    run(at)
    assert any("Extracting concepts stopped" in w.value for w in at.warning)
    with Project.open(project_dir) as project:
        assert len(load_concepts(project)) < 40  # stopped early; what was extracted is kept


def test_labels_from_a_file_show_as_text(projects):
    at, project_dir = concepts_page(projects)
    evil = "<img src=x onerror=alert(1)> **bold**"
    with Project.open(project_dir) as project:
        save_concepts(project, [DocConcepts("d1", "any", "web", (Topic(evil, ("alpha", "beta")),))])
    run(at)
    at.text_input(key="concepts.search").input("img src")
    run(at)
    assert at.session_state["concepts.selected"] == node_id("topic", evil)
    shown = [m.value for m in at.markdown if "onerror" in m.value]
    assert shown and all(md(evil) in v for v in shown)  # escaped: shown as written, no tag, no bold


# -- the graph view (pure) ------------------------------------------------------------------------


def _docs(n: int) -> list[DocConcepts]:
    return [
        DocConcepts(f"d{i}", "any", "s", (Topic(f"topic {i % 3}", (f"c{i}", f"c{i + 1}", "shared")),)) for i in range(n)
    ]


def test_the_graph_is_keyed_by_the_bytes_it_was_built_from(project):
    """An extraction writes concepts while the page reads them: the docs and the digest that keys the
    graph caches come from one read, so a graph of fewer documents is never filed under a newer digest."""
    save_concepts(project, _docs(2))
    first = CP.stored_concepts(project)
    save_concepts(project, _docs(3))
    second = CP.stored_concepts(project)
    assert [len(first.docs), len(second.docs)] == [2, 3] and first.digest != second.digest
    assert CP.stored_concepts(project) == second


def test_view_draws_top_nodes_plus_matches_and_the_selection():
    graph = build_graph(_docs(12))
    view = CG.concept_view(graph, top_n=4, matches=[node_id("concept", "c11")], selected=node_id("concept", "c0"))
    ids = [n["id"] for n in view.nodes]
    assert ids[:4] == CG.by_degree(graph)[:4] and node_id("concept", "shared") == ids[0]
    assert ids[4:] == [node_id("concept", "c11"), node_id("concept", "c0")]
    kinds = {n["kind"]: n["shape"] for n in view.nodes}
    assert kinds == {"concept": "dot", "topic": "box"}
    match = next(n for n in view.nodes if n["id"] == node_id("concept", "c11"))
    assert match["color"]["border"] == CG.MATCH_BORDER
    assert all(e["from"] in ids and e["to"] in ids for e in view.edges)
    assert view.payload()["total"] == graph.number_of_nodes() and view.payload()["shown"] == 6
    # the same graph, the same picture
    again = CG.concept_view(graph, top_n=4, matches=[node_id("concept", "c11")], selected=node_id("concept", "c0"))
    assert again.version == view.version


def test_edge_width_grows_with_the_shared_documents():
    graph = build_graph(_docs(12))
    view = CG.concept_view(graph, top_n=50)
    widths = {e["count"]: e["width"] for e in view.edges}
    assert widths[1] == 1.0 and widths[max(widths)] > widths[1]
    assert CG.edge_width(10_000) == 8.0


def test_search_puts_an_exact_label_first_and_ignores_case():
    graph = build_graph(_docs(12))
    assert CG.search(graph, "C1")[0] == node_id("concept", "c1")
    assert set(CG.search(graph, "c1")) >= {node_id("concept", "c1"), node_id("concept", "c10")}
    assert CG.search(graph, "  ") == []


def test_documents_and_questions_of_a_node():
    docs = _docs(4)
    assert CG.documents_of(docs, node_id("concept", "c1")) == ["d0", "d1"]
    assert CG.documents_of(docs, node_id("topic", "topic 0")) == ["d0", "d3"]
    rows = [
        Sample(leaf_id="", key="a", instruction="q1", path=[], extra={"concepts": ["C1", "shared"]}),
        Sample(leaf_id="", key="b", instruction="q2", path=[], extra={"concepts": ["c2"], "topics": ["Topic 0"]}),
    ]
    assert [s.instruction for s in CG.questions_using(rows, node_id("concept", "c1"))] == ["q1"]
    assert [s.instruction for s in CG.questions_using(rows, node_id("topic", "topic 0"))] == ["q2"]


def test_bad_documents_are_one_clear_error_and_long_ones_are_reported_split(projects, tmp_path):
    """A non-UTF-8 file is an error naming it (nothing added) until its encoding is given; a long
    document is split into chunks and an empty one skipped, and the notice says how many."""
    from treesynth_core.concepts.documents import SMALL_CHUNK_CHARS, Document, split_documents

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "latin.txt").write_bytes("Caf\xe9 cr\xe8me: the while loop repeats.".encode("latin-1"))
    big = ("The for statement iterates over the items of any sequence, in order. " * 12 + "\n\n") * 300
    (docs / "big.md").write_text(big, encoding="utf-8")
    (docs / "empty.txt").write_text("  \n", encoding="utf-8")
    chunks = split_documents([Document("big.md", big)], SMALL_CHUNK_CHARS).chunked["big.md"]
    at, project_dir = concepts_page(projects)
    add_folder(at, docs)
    errors = " ".join(e.value for e in at.error).replace("\\", "")
    assert "latin.txt is not valid utf-8: byte 0xe9" in errors
    with Project.open(project_dir) as project:
        assert load_documents(project) == []
    at.text_input(key="concepts.encoding").input("latin-1")
    at.button(key="concepts.add").click()
    run(at)
    assert not at.error
    notice = " ".join(t.value for t in at.toast).replace("\\", "")
    assert f"Added {chunks + 1} documents, 1 long ones split into {chunks} chunks, 1 empty ones skipped" in notice
    with Project.open(project_dir) as project:
        stored = {d.doc_id: d.text for d in load_documents(project)}
    assert stored["latin.txt"].startswith("Café crème") and len(stored) == chunks + 1
    parts = [stored[f"big.md#{i}"] for i in range(1, chunks + 1)]
    assert "".join("".join(p.split()) for p in parts) == "".join(big.split())  # nothing cut off


def test_the_concept_legend_draws_topics_square_and_concepts_round():
    """The shared ``legendElement`` (studio.vis_component) draws a round swatch for items marked ``dot``."""
    assert {item["key"]: item["dot"] for item in CG.legend()} == {"topic": False, "concept": True, "match": True}


def test_the_time_card_fits_its_range_and_its_help_has_it_in_full(projects, folder):
    at, project_dir = concepts_page(projects)
    with Project.open(project_dir) as project:  # extraction calls of 20-40 s: three take 72 s to 2 min
        model = logged_model(project.settings())
        for seconds in (20.0, 30.0, 40.0):
            project.log_call(CallRecord(latency_s=seconds, backend="embedded", model=model, purpose="concepts"))
    at = add_folder(at, folder)
    card = next(m for m in at.metric if m.label == "Time")
    assert card.value == "1\u20132 min"  # not "72 s–2 min", which a narrow card cuts off
    assert card.proto.help.startswith("72 s\u20132 min: the middle half of this project's recent call times")
    assert "Time 72 s\u20132 min, from 3 earlier concepts calls." in texts(at)
