"""Concept extraction and level 1-3 questions: hand-written capable-model replies replayed through
the scripted fake LLM and a real-HTTP fake endpoint, and the ``treesynth concepts`` commands end to
end on the corpus that ships with Python (``pydoc_data.topics``)."""

from __future__ import annotations

import asyncio
import json
import zlib
from pathlib import Path

import networkx as nx
import pytest
from typer.testing import CliRunner

from tests.capable import capable_responder, load_capable
from tests.fakes import ScriptedLLM
from tests.helpers_http import FakeOpenAIServer, openai_flags
from treesynth_core.cli.app import app
from treesynth_core.concepts.documents import Document, python_docs
from treesynth_core.concepts.extract import ExtractOptions, extract_concepts
from treesynth_core.concepts.graph import build_graph, node_id
from treesynth_core.concepts.model import read_jsonl
from treesynth_core.concepts.questions import QuestionOptions, make_questions
from treesynth_core.concepts.store import load_concepts, save_documents
from treesynth_core.data.export import export_set

runner = CliRunner()
SCENARIO = "concepts_python_docs"


def pydoc(*names: str) -> list[Document]:
    by_id = {d.doc_id: d for d in python_docs()}
    return [by_id[name] for name in names]


@pytest.fixture
def extracted(project, capable):
    """The project with three Python reference topics and their hand-written concepts."""
    save_documents(project, pydoc(*load_capable(SCENARIO)["documents"]))
    llm = ScriptedLLM()
    llm.enqueue("concepts", capable(SCENARIO)["concepts"])
    report = asyncio.run(extract_concepts(project, llm, ExtractOptions()))
    assert report.extracted == 3 and report.failed == []
    return project


def test_extraction_stores_what_the_model_said(extracted, capable):
    docs = load_concepts(extracted)
    assert [d.doc_id for d in docs] == ["break", "continue", "while"]
    written = json.loads(capable(SCENARIO)["concepts"][0].text)
    assert docs[0].to_json() == {"doc_id": "break", **written}
    g = build_graph(docs)
    # concepts the documents share are one node, linked across documents
    assert g.edges[node_id("concept", "while loop"), node_id("concept", "for loop")]["count"] == 2
    assert g.edges[node_id("topic", "Loop control flow"), node_id("concept", "break statement")]["count"] == 2


def test_extraction_asks_each_document_once_and_skips_what_is_stored(extracted):
    llm = ScriptedLLM()
    report = asyncio.run(extract_concepts(extracted, llm, ExtractOptions()))
    assert llm.calls() == 0 and report.already == 3 and report.extracted == 0


def test_an_unusable_extraction_is_counted_and_left_out(project):
    save_documents(project, pydoc("pass", "if"))
    llm = ScriptedLLM()
    llm.enqueue("concepts", ['{"level": "x", "subject": "y", "topics": []}', "not json at all"])
    report = asyncio.run(extract_concepts(project, llm, ExtractOptions(), concurrency=1))
    assert len(report.failed) == 1 and report.extracted == 1
    assert [d.doc_id for d in load_concepts(project)] == [d for d in ("if", "pass") if d not in report.failed]
    first = llm.history[0].messages[-1][1]
    assert "5 to 20 key concepts" in first and "Document:" in first


@pytest.mark.parametrize("level", [1, 2, 3])
def test_each_level_keeps_the_models_questions_with_level_and_documents(extracted, capable, level, tmp_path):
    llm = ScriptedLLM()
    replies = capable(SCENARIO)["questions"]
    llm.enqueue("questions", [replies[level - 1]])
    options = QuestionOptions(level=level, n=2, sample_set=f"q{level}", per_call=3)
    report = asyncio.run(make_questions(extracted, llm, options, concurrency=1))
    assert report.added == 2 and report.short == 0
    samples = extracted.samples(sample_set=f"q{level}")
    written = json.loads(replies[level - 1].text)["questions"]
    texts = [q["question"] if isinstance(q, dict) else q for q in written]
    assert [s.instruction for s in samples] == texts[:2]
    assert all(s.extra["level"] == level and s.extra["provenance"] == "concepts" for s in samples)
    prompt = llm.history[0].messages[-1][1]
    if level == 1:
        assert [s.extra["origin"] for s in samples] == ["original", "new"] and samples[0].extra["documents"] == [
            "break"
        ]
        assert 'tag each "original"' in prompt
    if level == 2:
        concepts = samples[0].extra["concepts"]
        assert 2 <= len(concepts) <= 3 and all(c in prompt for c in concepts)
        assert set(concepts) <= {c for t in load_concepts(extracted)[0].topics for c in t.concepts}
    if level == 3:
        docs = samples[0].extra["documents"]
        assert 1 <= len(docs) <= 2 and len(samples[0].extra["similarity"]) == len(docs)
        assert "different topics" in prompt
        assert ("Document 1:" in prompt) == (len(docs) == 2)
        assert all(c in prompt for c in samples[0].extra["concepts"])
    # the dataset card of an export says what level the set is and which documents it used
    card = export_set(extracted, f"q{level}", "jsonl", tmp_path / "out.jsonl").card.read_text(encoding="utf-8")
    row = next(line for line in card.splitlines() if line.startswith(f"| {level} |"))
    used = sorted({d for s in samples for d in s.extra["documents"]})
    assert "## Concept-generated questions" in card and f"| 2 | 0 | {len(used)} | " in row
    assert all(d in row for d in used)


def test_responses_rerun_and_resume(extracted, capable):
    llm = ScriptedLLM()
    llm.enqueue("questions", [capable(SCENARIO)["questions"][0]])
    llm.enqueue("response", capable(SCENARIO)["response"])
    options = QuestionOptions(level=1, n=3, sample_set="l1", responses=True)
    asyncio.run(make_questions(extracted, llm, options))
    samples = extracted.samples(sample_set="l1")
    assert len(samples) == 3 and samples[0].response and "Final answer" in samples[0].response
    assert all(s.response for s in samples)
    again = ScriptedLLM()
    report = asyncio.run(make_questions(extracted, again, options))
    assert again.calls() == 0 and report.added == 0 and report.total == 3
    more = asyncio.run(make_questions(extracted, again, QuestionOptions(level=1, n=5, sample_set="l1")))
    assert more.added == 2 and len(extracted.samples(sample_set="l1")) == 5


class Voter(ScriptedLLM):
    """Answers verification draws: the three draws agree (on 42) for questions whose text hashes
    even, and give three different answers otherwise."""

    @staticmethod
    def agrees(question: str) -> bool:
        return zlib.crc32(question.encode()) % 2 == 0

    def _verify(self, request):
        prompt = self._prompt(request)
        draw = int(request.meta["draw"])
        agree = any(self.agrees(q) for q in self.questions if q in prompt)
        return "Final answer: 42" if agree else f"Final answer: {draw + 1}"

    questions: list[str] = []


def test_verified_questions_keep_the_majority_answer_and_drop_the_rest(extracted, capable):
    reply = capable(SCENARIO)["questions"][0]
    llm = Voter()
    llm.questions = [q if isinstance(q, str) else q["question"] for q in json.loads(reply.text)["questions"]]
    llm.enqueue("questions", [reply] * 3)
    options = QuestionOptions(level=1, n=len(llm.questions), sample_set="v", responses=True, verify=3, extra_calls=0)
    report = asyncio.run(make_questions(extracted, llm, options))
    samples = extracted.samples(sample_set="v")
    agreeing = [q for q in llm.questions if Voter.agrees(q)]
    assert 0 < len(agreeing) < len(llm.questions)  # the scenario has both kinds
    assert sorted(s.instruction for s in samples) == sorted(agreeing)
    assert all(s.response == "Final answer: 42" and s.extra["verified"] == "3/3" for s in samples)
    assert (report.verified, report.rejected) == (len(agreeing), len(llm.questions) - len(agreeing))
    assert report.verification.reasons == {"no majority": report.rejected} and llm.calls("response") == 0
    with pytest.raises(ValueError, match="verify checks responses"):
        QuestionOptions(verify=3)


def test_level_3_on_a_graph_without_usable_walks_is_a_clear_error(project):
    from treesynth_core.concepts.model import DocConcepts, Topic
    from treesynth_core.concepts.store import save_concepts
    from treesynth_core.errors import DataError

    save_concepts(project, [DocConcepts("a", "l", "s", (Topic("A", ("one",)),))])
    with pytest.raises(DataError, match="no walk with 2 or more concepts"):
        asyncio.run(make_questions(project, ScriptedLLM(), QuestionOptions(level=3, n=3, sample_set="x")))


def test_duplicate_questions_are_dropped(extracted):
    llm = ScriptedLLM()
    same = json.dumps({"questions": ["What does break do inside a while loop nested in a try?"] * 3})
    llm.enqueue("questions", [same] * 10)
    report = asyncio.run(make_questions(extracted, llm, QuestionOptions(level=2, n=3, sample_set="d", extra_calls=1)))
    assert report.added == 1 and report.duplicates >= 2 and report.short == 2


# -- the CLI ----------------------------------------------------------------------------------------------


def invoke(*args: object, ok: bool = True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def new_project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    invoke("new", proj, "--task", "Questions about the Python language")
    return proj


OPENAI = ["--llm", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "gpt-4o"]


def test_cli_end_to_end_on_the_python_docs(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    proj = new_project(tmp_path)
    estimate = json.loads(
        invoke("concepts", proj, "extract", "--docs", "example:python-docs", "--estimate", "--json", *OPENAI).stdout
    )
    assert estimate["documents"] > 79 and estimate["todo"] == estimate["calls"] == estimate["documents"]
    assert estimate["time"]["basis"] == "no calls yet: a guess" and estimate["time"]["high_s"] > 0
    assert fake == [] or all(f.calls() == 0 for f in fake)
    assert "no documents yet" in invoke("concepts", proj, "extract", *OPENAI, ok=False).output  # the estimate kept none
    capped = invoke("concepts", proj, "extract", "--docs", "example:python-docs", "--max-calls", "5", *OPENAI, ok=False)
    assert capped.exit_code == 1 and "above your cap of 5" in capped.output and fake == []
    data = json.loads(invoke("concepts", proj, "extract", "--docs", "example:python-docs", "--json", *OPENAI).stdout)
    assert data["extracted"] == estimate["documents"] and data["llm"]["calls"] == data["extracted"]
    out = tmp_path / "g.graphml"
    graph = json.loads(invoke("concepts", proj, "graph", "--out", out, "--json").stdout)
    assert graph["topics"] > 50 and graph["concepts"] > 200 and sum(graph["edges_by_part"].values()) == graph["edges"]
    back = nx.read_graphml(out)
    assert back.number_of_nodes() == graph["nodes"] and {k for _, k in back.nodes(data="kind")} == {"topic", "concept"}
    assert all("weight" in e for *_, e in back.edges(data=True))
    walks = json.loads(invoke("concepts", proj, "walks", "-k", "4", "--json").stdout)
    assert len(walks) == 4 and all(len(w["documents"]) == 2 for w in walks)
    for level in (1, 2, 3):
        made = json.loads(invoke("concepts", proj, "synth", "--level", level, "--n", "7", "--json", *OPENAI).stdout)
        assert made["added"] == 7 and made["sample_set"] == f"concepts-l{level}"
    rerun = json.loads(invoke("concepts", proj, "synth", "--level", "3", "--n", "7", "--json", *OPENAI).stdout)
    assert rerun["added"] == 0 and rerun["llm"]["calls"] == 0
    sets = invoke("sets", proj).stdout
    assert "concepts-l1" in sets and "concepts-l3" in sets
    text = invoke("concepts", proj, "synth", "--level", "2", "--n", "9", *OPENAI).output
    assert "Plan: level 2: 2 questions to make" in text and "Added 2 level-2 questions" in text
    jsonl = tmp_path / "c.jsonl"
    invoke("concepts", proj, "export", jsonl)
    other = new_project(tmp_path / "other")
    invoke("concepts", other, "import", jsonl)
    again = json.loads(invoke("concepts", other, "graph", "--json").stdout)
    assert {k: again[k] for k in ("nodes", "edges", "degree_histogram")} == {
        k: graph[k] for k in ("nodes", "edges", "degree_histogram")
    }


def test_cli_through_a_real_http_endpoint_with_capable_replies(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for d in pydoc(*load_capable(SCENARIO)["documents"]):
        (docs / f"{d.doc_id}.txt").write_text(d.text, encoding="utf-8")
    with FakeOpenAIServer(model="gpt-4o", respond=capable_responder(SCENARIO)) as server:
        proj = tmp_path / "proj"
        invoke("new", proj, "--task", "Python questions", *openai_flags(server.base_url, "gpt-4o"))
        data = json.loads(invoke("concepts", proj, "extract", "--docs", docs, "--json", "--concurrency", "1").stdout)
        made = json.loads(invoke("concepts", proj, "synth", "--level", "1", "--n", "3", "--json").stdout)
        bodies = [r.body for r in server.chat_requests]
    assert data["extracted"] == 3 and made["added"] == 3
    assert [b["response_format"]["json_schema"]["name"] for b in bodies] == ["concepts"] * 3 + ["questions"]
    exported = tmp_path / "c.jsonl"
    invoke("concepts", proj, "export", exported)
    assert {d.doc_id for d in read_jsonl(exported)} == {"break.txt", "continue.txt", "while.txt"}


def test_cli_bad_inputs_are_one_clear_line(tmp_path, fake):
    proj = new_project(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "latin.md").write_bytes("R\xe9sum\xe9 of loops".encode("latin-1"))
    result = invoke("concepts", proj, "extract", "--docs", docs, ok=False)
    assert (
        result.exit_code == 1 and "is not valid utf-8: byte 0xe9" in result.output and "Traceback" not in result.output
    )
    (docs / "latin.md").write_text("", encoding="utf-8")
    result = invoke("concepts", proj, "extract", "--docs", docs, ok=False)
    assert result.exit_code == 1 and "every document is empty (1 skipped)" in result.output
    result = invoke("concepts", proj, "extract", "--docs", docs, "--set", "x", ok=False)
    assert "not both" in result.output
    result = invoke("concepts", proj, "graph", ok=False)
    assert result.exit_code == 1 and "no concepts yet" in result.output
    result = invoke("concepts", proj, "synth", "--level", "4", ok=False)
    assert result.exit_code == 1 and "level must be 1, 2 or 3" in result.output
    result = invoke("concepts", proj, "synth", "--verify", "3", ok=False)
    assert result.exit_code == 1 and "verify checks responses" in " ".join(result.output.split())
    result = invoke("concepts", proj, "synth", "--responses", "--verify", "3", "--answer", "code", ok=False)
    assert result.exit_code == 1 and "unknown answer extractor 'code'" in " ".join(result.output.split())
    assert fake == []


def test_cli_walks_print_labels_as_written(tmp_path):
    proj = new_project(tmp_path)
    path = tmp_path / "c.jsonl"
    topics = '[{"topic": "[bold]Markup[/bold]", "concepts": ["[red]x[/red]", "[/]", "y"]}]'
    path.write_text(f'{{"doc_id": "a", "level": "l", "subject": "s", "topics": {topics}}}\n', encoding="utf-8")
    invoke("concepts", proj, "import", path)
    text = invoke("concepts", proj, "walks", "-k", "1").stdout
    assert "[bold]Markup[/bold]" in text and "| a (" in text


def test_cli_a_malformed_jsonl_line_imports_nothing(tmp_path):
    proj = new_project(tmp_path)
    good = '{"doc_id": "a", "level": "l", "subject": "s", "topics": [{"topic": "t", "concepts": ["c", "d"]}]}\n'
    path = tmp_path / "c.jsonl"
    path.write_text(
        good + '{"doc_id": "b", "level": "l", "subject": "s", "topics": [{"topic": "t"}]}\n', encoding="utf-8"
    )
    result = invoke("concepts", proj, "import", path, ok=False)
    assert result.exit_code == 1 and "line 2: topics.0.concepts: Field required" in result.output
    assert "no concepts yet" in invoke("concepts", proj, "export", tmp_path / "out.jsonl", ok=False).output
    path.write_text(good, encoding="utf-8")
    assert json.loads(invoke("concepts", proj, "import", path, "--json").stdout) == {"imported": 1, "total": 1}


def test_cli_extract_from_a_sample_set(tmp_path, fake):
    proj = new_project(tmp_path)
    rows = tmp_path / "docs.jsonl"
    rows.write_text(
        "".join(json.dumps({"text": d.text}) + "\n" for d in pydoc("pass", "if", "while")), encoding="utf-8"
    )
    invoke("import", proj, rows, "--map", "instruction=text", "--set", "docs")
    data = json.loads(invoke("concepts", proj, "extract", "--set", "docs", "--json", "--llm", "embedded", "-q").stdout)
    assert data["extracted"] == 3 and data["read"] == 3


def test_a_hand_written_jsonl_gives_the_same_graph_and_walks_as_the_llms_extraction(extracted, capable, tmp_path):
    """The same concepts typed by a person (keys in another order, spacing of their own) and imported
    give the graph, GraphML and walks the model's extraction gave."""
    from treesynth_core.concepts.graph import write_graphml
    from treesynth_core.concepts.preview import preview_walks

    def respace(label: str) -> str:
        return "  " + label.replace(" ", "   ") + " "

    lines = []
    for doc_id, reply in zip(load_capable(SCENARIO)["documents"], capable(SCENARIO)["concepts"], strict=True):
        written = json.loads(reply.text)
        topics = [
            {"concepts": [respace(c) for c in t["concepts"]], "topic": respace(t["topic"])} for t in written["topics"]
        ]
        lines.append(
            json.dumps({"topics": topics, "subject": written["subject"], "level": written["level"], "doc_id": doc_id})
        )
    hand = tmp_path / "hand.jsonl"
    hand.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proj = new_project(tmp_path)
    invoke("concepts", proj, "import", hand)
    from treesynth_core.store import Project

    with Project.open(proj) as other:
        typed = load_concepts(other)
    by_llm = load_concepts(extracted)
    assert typed == by_llm
    a, b = build_graph(typed), build_graph(by_llm)
    assert nx.utils.graphs_equal(a, b) and a.number_of_edges() > 100
    write_graphml(a, tmp_path / "a.graphml")
    write_graphml(b, tmp_path / "b.graphml")
    assert (tmp_path / "a.graphml").read_bytes() == (tmp_path / "b.graphml").read_bytes()
    assert preview_walks(typed, 20, seed=5) == preview_walks(by_llm, 20, seed=5)


def test_cli_a_malformed_jsonl_line_leaves_the_stored_concepts_as_they_were(tmp_path):
    proj = new_project(tmp_path)
    line = '{{"doc_id": "{}", "level": "l", "subject": "s", "topics": [{{"topic": "t", "concepts": ["{}", "d"]}}]}}\n'
    good = tmp_path / "good.jsonl"
    good.write_text(line.format("a", "c") + line.format("b", "e"), encoding="utf-8")
    invoke("concepts", proj, "import", good)
    before = invoke("concepts", proj, "export", tmp_path / "before.jsonl")
    assert before.exit_code == 0
    bad = tmp_path / "bad.jsonl"
    # line 1 would update "a", line 2 add "z": neither may land when line 3 is broken
    bad.write_text(
        line.format("a", "changed") + line.format("z", "new") + '{"doc_id": "q", "level": \n', encoding="utf-8"
    )
    for extra in ([], ["--replace"]):
        result = invoke("concepts", proj, "import", bad, *extra, ok=False)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "bad.jsonl line 3 is not JSON" in " ".join(result.output.split())
        assert len(result.output.strip().splitlines()) <= 2  # one clean line (the console may wrap it)
        invoke("concepts", proj, "export", tmp_path / "after.jsonl")
        assert (tmp_path / "after.jsonl").read_bytes() == (tmp_path / "before.jsonl").read_bytes()
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(line.format("a", "caf\u00e9").encode("latin-1"))
    result = invoke("concepts", proj, "import", latin, ok=False)
    assert result.exit_code == 1 and "latin.jsonl is not UTF-8 (byte" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    invoke("concepts", proj, "export", tmp_path / "after.jsonl")
    assert (tmp_path / "after.jsonl").read_bytes() == (tmp_path / "before.jsonl").read_bytes()


def test_cli_a_20_mb_document_is_chunked_and_the_chunks_are_reported(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    proj = new_project(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    paragraph = "The while statement repeats a suite as long as its condition holds true. " * 15 + "\n\n"
    text = paragraph * (20_000_000 // len(paragraph) + 1)
    (docs / "big.txt").write_text(text, encoding="utf-8")
    (docs / "empty.md").write_text(" \n\n ", encoding="utf-8")
    (docs / "small.txt").write_text("The pass statement does nothing.", encoding="utf-8")
    flags = ["--docs", docs, "--chunk-chars", "1000000", *OPENAI]
    estimate = invoke("concepts", proj, "extract", *flags, "--estimate").output
    assert "1 long ones split into 21 chunks" in estimate and "1 empty ones skipped" in estimate
    estimated = json.loads(invoke("concepts", proj, "extract", *flags, "--estimate", "--json").stdout)
    assert estimated["chunked"] == {"big.txt": 21} and estimated["empty_skipped"] == ["empty.md"]
    assert estimated["todo"] == estimated["read"] == 22
    data = json.loads(invoke("concepts", proj, "extract", *flags, "--json").stdout)
    assert data["chunked"] == {"big.txt": 21} and data["empty_skipped"] == ["empty.md"]
    assert data["read"] == 22 and data["extracted"] == 22 and data["failed"] == []
    from treesynth_core.concepts.store import load_documents
    from treesynth_core.store import Project

    with Project.open(proj) as project:
        stored = load_documents(project)
    pieces = [d for d in stored if d.doc_id.startswith("big.txt#")]
    assert [d.doc_id for d in pieces] == [f"big.txt#{i}" for i in range(1, 22)]
    # nothing is cut off: every word of the 20 MB arrives, in order
    assert "".join("".join(d.text.split()) for d in pieces) == "".join(text.split())
