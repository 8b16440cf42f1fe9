"""The concept graph of SynthLLM (level 3) and what feeds it: documents, chunking, the concepts
JSONL, graph construction, seeded walks and Jaccard grounding. No LLM here."""

from __future__ import annotations

import math
import random
from collections import Counter
from itertools import islice
from pathlib import Path

import networkx as nx
import pytest

from treesynth_core.concepts.documents import (
    PYTHON_DOCS,
    Document,
    chunk_text,
    decode,
    html_text,
    read_documents,
    split_documents,
)
from treesynth_core.concepts.graph import EPS, build_graph, graph_stats, node_id, subgraph, write_graphml
from treesynth_core.concepts.model import DocConcepts, Topic, jsonl_lines, read_jsonl, write_jsonl
from treesynth_core.concepts.walks import Walker, ground, jaccard, usable_walks
from treesynth_core.errors import DataError


def doc(doc_id: str, *topics: tuple[str, list[str]], level: str = "college", subject: str = "python") -> DocConcepts:
    return DocConcepts(doc_id, level, subject, tuple(Topic(t, tuple(cs)) for t, cs in topics))


#: Three documents: "loops" shares "for loop" with "iteration" and "break" with "exceptions".
DOCS = [
    doc("loops", ("Loop control", ["for loop", "while loop", "break"])),
    doc("iteration", ("Iteration", ["for loop", "iterator", "StopIteration"]), ("Loop control", ["for loop"])),
    doc("exceptions", ("Exceptions", ["try statement", "StopIteration", "break"])),
]


# -- graph ----------------------------------------------------------------------------------------


def test_every_co_occurring_pair_is_an_edge_weighted_log_count():
    g = build_graph(DOCS)
    loop, forl, brk = node_id("topic", "Loop control"), node_id("concept", "for loop"), node_id("concept", "break")
    # "Loop control" and "for loop" co-occur in two documents; "for loop" and "break" in one
    assert g.edges[loop, forl]["count"] == 2 and g.edges[loop, forl]["weight"] == pytest.approx(math.log(2 + EPS))
    assert g.edges[forl, brk]["count"] == 1 and g.edges[forl, brk]["weight"] == pytest.approx(math.log(1 + EPS))
    # a document's nodes form a clique; documents that share nothing are not linked
    nodes = {node_id("topic", "Exceptions"), node_id("concept", "try statement"), node_id("concept", "break")}
    assert all(g.has_edge(u, v) for u in nodes for v in nodes if u < v)
    assert not g.has_edge(node_id("concept", "try statement"), node_id("concept", "while loop"))
    # brute force: the number of edges is the number of distinct pairs over all documents
    pairs = set()
    for d in DOCS:
        ids = {node_id("topic", t.topic) for t in d.topics} | {
            node_id("concept", c) for t in d.topics for c in t.concepts
        }
        pairs |= {frozenset((u, v)) for u in ids for v in ids if u != v}
    assert g.number_of_edges() == len(pairs)


def test_nodes_are_merged_by_label_but_topics_and_concepts_stay_apart():
    g = build_graph([doc("a", ("Loops", ["For Loop", "loops"])), doc("b", ("loops", ["for  loop"]))])
    assert g.nodes[node_id("concept", "for loop")] == {"kind": "concept", "label": "For Loop"}
    assert g.nodes[node_id("topic", "Loops")]["kind"] == "topic"
    assert g.nodes[node_id("concept", "loops")]["kind"] == "concept"  # same words, another kind, another node
    assert g.edges[node_id("topic", "loops"), node_id("concept", "for loop")]["count"] == 2


def test_the_three_subgraphs_split_the_edges_by_the_kinds_of_their_ends():
    g = build_graph(DOCS)
    parts = {part: subgraph(g, part) for part in ("topic-topic", "topic-concept", "concept-concept")}
    assert sum(p.number_of_edges() for p in parts.values()) == g.number_of_edges()
    kinds = {
        part: {tuple(sorted((g.nodes[u]["kind"], g.nodes[v]["kind"]))) for u, v in p.edges} for part, p in parts.items()
    }
    assert kinds == {
        "topic-topic": {("topic", "topic")},
        "topic-concept": {("concept", "topic")},
        "concept-concept": {("concept", "concept")},
    }
    stats = graph_stats(g)
    assert stats.edges_by_part == {part: p.number_of_edges() for part, p in parts.items()}
    assert stats.nodes == stats.topics + stats.concepts == g.number_of_nodes()
    assert sum(stats.degree_histogram.values()) == stats.nodes


def test_graphml_keeps_kind_label_and_weight(tmp_path: Path):
    g = build_graph(DOCS)
    write_graphml(g, tmp_path / "g.graphml")
    back = nx.read_graphml(tmp_path / "g.graphml")
    assert set(back.nodes) == set(g.nodes) and back.number_of_edges() == g.number_of_edges()
    u, v = node_id("topic", "Loop control"), node_id("concept", "for loop")
    assert back.edges[u, v]["weight"] == pytest.approx(g.edges[u, v]["weight"])
    assert back.nodes[u]["kind"] == "topic" and back.nodes[v]["label"] == "for loop"
    # the summary stats (nodes, edges by part, degree distribution) are the same read back from the file
    assert graph_stats(back) == graph_stats(g)
    assert {e["count"] for *_, e in back.edges(data=True)} == {e["count"] for *_, e in g.edges(data=True)}


# -- the concepts JSONL -----------------------------------------------------------------------------


def test_jsonl_round_trip_and_a_hand_written_file_gives_the_same_graph(tmp_path: Path):
    path = tmp_path / "c.jsonl"
    assert write_jsonl(DOCS, path) == 3
    assert read_jsonl(path) == DOCS
    hand = tmp_path / "hand.jsonl"
    hand.write_text(
        '{"doc_id": "loops", "level": "college", "subject": "python", "topics": [{"topic": "Loop control", '
        '"concepts": ["for loop", "while loop", "break"]}]}\n\n'
        '{"doc_id": "iteration", "level": "college", "subject": "python", "topics": [{"topic": "Iteration", '
        '"concepts": ["for loop", "iterator", "StopIteration"]}, '
        '{"topic": "Loop control", "concepts": ["for loop"]}]}\n'
        '{"doc_id": "exceptions", "level": "college", "subject": "python", "topics": [{"topic": "Exceptions", '
        '"concepts": ["try statement", "StopIteration", "break"]}]}\n',
        encoding="utf-8",
    )
    a, b = build_graph(read_jsonl(hand)), build_graph(DOCS)
    assert nx.utils.graphs_equal(a, b)
    assert jsonl_lines(read_jsonl(hand)) == path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"line 2 is not JSON"),
        ('{"doc_id": "x", "level": "", "subject": "", "topics": []}', r"line 2: topics: Value error, no topics"),
        ('{"doc_id": "x", "level": "", "subject": "", "topics": [{"topic": "t", "concepts": []}]}', r"no concepts"),
        (
            '{"level": "", "subject": "", "topics": [{"topic": "t", "concepts": ["c"]}]}',
            r"line 2: doc_id: Field required",
        ),
        (
            '{"doc_id": "loops", "level": "", "subject": "", "topics": [{"topic": "t", "concepts": ["c"]}]}',
            r"appears twice",
        ),
    ],
)
def test_a_malformed_line_is_one_clear_error(tmp_path: Path, line: str, message: str):
    path = tmp_path / "bad.jsonl"
    path.write_text(jsonl_lines(DOCS[:1]) + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_jsonl(path)


def test_a_non_utf8_or_empty_concepts_file_is_one_clear_error(tmp_path: Path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(jsonl_lines(DOCS[:1]).replace("loops", "boucl\u00e9s").encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.jsonl is not UTF-8 \(byte \d+\); concepts JSONL files are UTF-8"):
        read_jsonl(path)
    (tmp_path / "blank.jsonl").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="holds no concept lines"):
        read_jsonl(tmp_path / "blank.jsonl")


def test_concepts_are_cleaned_deduplicated_and_capped():
    path_text = (
        '{"doc_id": "d", "level": " high  school ", "subject": "math", "topics": ['
        + ", ".join(f'{{"topic": "t{i}", "concepts": ["a", " A ", "b"] }}' for i in range(7))
        + "]}"
    )
    from treesynth_core.concepts.model import parse_line

    d = parse_line(path_text, "line 1")
    assert d.level == "high school" and len(d.topics) == 5 and d.topics[0].concepts == ("a", "b")


# -- walks and grounding ------------------------------------------------------------------------------


def star_graph() -> nx.Graph:
    """Topic T co-occurs with A in 6 documents, with B in 3 and with C in 1; A-B in 2, A-C in 1."""
    docs = (
        [doc(f"a{i}", ("T", ["A"])) for i in range(4)]
        + [doc("ab1", ("T", ["A", "B"])), doc("ab2", ("T", ["A", "B"]))]
        + [
            doc("b", ("T", ["B"])),
            doc("ac", ("T", ["A", "C"])),
            doc("u", ("U", ["C"])),
            doc("tu", ("T", ["X"]), ("U", ["X"])),
        ]
    )
    return build_graph(docs)


def test_walks_are_seeded_and_enumerate_every_topic_once_per_epoch():
    g = build_graph(DOCS)
    walker = Walker(g)
    first = list(walker.walks(seed=3, epochs=4))
    assert first == list(Walker(g).walks(seed=3, epochs=4))
    assert first != list(Walker(g).walks(seed=4, epochs=4))
    topics = sorted(n for n, k in g.nodes(data="kind") if k == "topic")
    for epoch in range(4):
        assert sorted(w.start for w in first[epoch * len(topics) : (epoch + 1) * len(topics)]) == topics
    for w in first:
        assert 1 <= len(w.topics) <= 3 and all(g.nodes[t]["kind"] == "topic" for t in w.topics)
        assert 1 <= len(w.concepts) <= 5 and all(g.nodes[c]["kind"] == "concept" for c in w.concepts)
        assert all(g.has_edge(a, b) for a, b in zip(w.topics, w.topics[1:], strict=False))
        assert g.has_edge(w.topics[-1], w.concepts[0])


def test_transition_frequencies_match_co_occurrence_proportions():
    g = star_graph()
    walker, rng = Walker(g), random.Random(0)
    t = node_id("topic", "T")
    n = 20_000
    seen = Counter(walker.step(t, "concept", rng) for _ in range(n))
    counts = {c: g.edges[t, c]["count"] for c in g.neighbors(t) if g.nodes[c]["kind"] == "concept"}
    total = sum(counts.values())
    for c, count in counts.items():
        p = count / total
        assert abs(seen[c] / n - p) < 4 * math.sqrt(p * (1 - p) / n), (c, seen[c] / n, p)
    # and within whole walks: the first concept after topic T
    firsts = Counter(w.concepts[0] for w in walker.walks(seed=1, epochs=8000) if w.topics[-1] == t)
    m = sum(firsts.values())
    a = node_id("concept", "A")
    p = counts[a] / total
    assert m > 3000 and abs(firsts[a] / m - p) < 4 * math.sqrt(p * (1 - p) / m)


def weighted_graph() -> nx.Graph:
    """Topic T0 shares k documents with topic Tk (k = 1..4); concept h shares k documents with concept ck
    (k = 1..5); nothing else links them."""
    docs = [
        doc(f"t{k}-{i}", ("T0", [f"p{k}-{i}"]), (f"T{k}", [f"q{k}-{i}"])) for k in range(1, 5) for i in range(k)
    ] + [doc(f"h{k}-{i}", ("H", ["h", f"c{k}"])) for k in range(1, 6) for i in range(k)]
    return build_graph(docs)


def chi_square_p(observed: Counter, expected_share: dict[str, float]) -> float:
    from scipy.stats import chisquare

    n = sum(observed.values())
    keys = sorted(expected_share)
    assert set(observed) <= set(keys)
    return float(chisquare([observed[k] for k in keys], [n * expected_share[k] for k in keys]).pvalue)


def test_transition_frequencies_pass_a_chi_square_test_against_the_counts():
    """Over many seeded steps and walks, where a step goes fits the co-occurrence proportions (chi-square,
    p > 0.001), and the same draws reject uniform transitions (the test can fail)."""
    g = weighted_graph()
    walker = Walker(g)
    h = node_id("concept", "h")
    rng = random.Random(7)
    steps = Counter(walker.step(h, "concept", rng) for _ in range(30_000))
    share = {node_id("concept", f"c{k}"): k / 15 for k in range(1, 6)}
    assert chi_square_p(steps, share) > 1e-3
    assert chi_square_p(steps, dict.fromkeys(share, 1 / 5)) < 1e-9
    # topic -> topic inside whole walks: the second topic of every walk that starts at T0
    t0 = node_id("topic", "T0")
    seconds = Counter(w.topics[1] for w in walker.walks(seed=11, epochs=6000) if w.start == t0)
    assert sum(seconds.values()) == 6000  # T0 starts once per epoch and always has a topic to go to
    share = {node_id("topic", f"T{k}"): k / 10 for k in range(1, 5)}
    assert chi_square_p(seconds, share) > 1e-3
    assert chi_square_p(seconds, dict.fromkeys(share, 1 / 4)) < 1e-9


def test_a_node_without_neighbours_of_the_kind_ends_its_stage():
    g = build_graph([doc("lonely", ("Only", ["single"]))])
    (w,) = Walker(g).walks(seed=0, epochs=1)
    assert w.topics == (node_id("topic", "Only"),) and w.concepts == (node_id("concept", "single"),)


def test_usable_walks_end_when_no_walk_can_reach_two_concepts():
    lonely = Walker(build_graph([doc("a", ("A", ["one"])), doc("b", ("B", ["two"]))]))
    assert list(usable_walks(lonely, seed=0)) == []
    walks = list(islice(usable_walks(Walker(build_graph(DOCS)), seed=0), 50))
    assert len(walks) == 50 and all(len(w.concepts) >= 2 for w in walks)


def test_grounding_takes_the_top_two_documents_by_jaccard():
    assert jaccard(frozenset("ab"), frozenset("bc")) == pytest.approx(1 / 3)
    assert jaccard(frozenset(), frozenset()) == 0.0
    walk = [node_id("concept", "for loop"), node_id("concept", "break"), node_id("concept", "iterator")]
    # loops {for loop, while loop, break}: 2/4; iteration {for loop, iterator, StopIteration}: 2/4;
    # exceptions {try statement, StopIteration, break}: 1/5
    top = ground(walk, DOCS)
    assert top == [("loops", pytest.approx(0.5)), ("iteration", pytest.approx(0.5))]
    assert ground([node_id("concept", "try statement")], DOCS, k=2) == [("exceptions", pytest.approx(1 / 3))]
    assert ground([node_id("concept", "nowhere")], DOCS) == []


# -- documents ------------------------------------------------------------------------------------------


def test_chunks_put_together_give_back_the_whole_text():
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma\n", "delta\n\n", "x" * 300]
    text = " ".join(rng.choice(words) for _ in range(5000))
    chunks = chunk_text(text, 1000)
    assert "".join(chunks) == text and all(len(c) <= 1000 for c in chunks) and len(chunks) > 5
    assert chunk_text("short", 1000) == ["short"]
    assert "".join(chunk_text("y" * 2500, 1000)) == "y" * 2500  # no break anywhere: cut at the size


def test_a_20_mb_document_is_chunked_not_truncated():
    paragraph = "The for statement iterates over the items of a sequence. " * 20 + "\n\n"
    big = Document("big", paragraph * (20_000_000 // len(paragraph) + 1))
    read = split_documents([big, Document("empty", "  \n "), Document("small", "A short one.")], 12_000)
    assert read.empty_skipped == ["empty"] and read.chunked["big"] == len(read.documents) - 1
    pieces = [d for d in read.documents if d.doc_id.startswith("big#")]
    # every word arrives, in order: only whitespace at a chunk's edges is trimmed
    assert "".join("".join(d.text.split()) for d in pieces) == "".join(big.text.split())
    assert pieces[0].doc_id == "big#1" and max(len(d.text) for d in pieces) <= 12_000
    assert "1 empty ones skipped" in read.summary()


def test_folders_read_markdown_text_and_html(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.md").write_text("# Loops\n\nThe for loop.", encoding="utf-8")
    (tmp_path / "sub" / "b.html").write_text(
        "<html><head><title>x</title><style>p{}</style></head>"
        "<body><p>Caf&eacute; &amp; tea</p><script>bad()</script></body></html>",
        encoding="utf-8",
    )
    (tmp_path / "c.txt").write_text("", encoding="utf-8")
    (tmp_path / "ignored.py").write_text("print(1)", encoding="utf-8")
    read = read_documents(str(tmp_path))
    assert [d.doc_id for d in read.documents] == ["a.md", "sub/b.html"] and read.empty_skipped == ["c.txt"]
    assert read.documents[1].text == "Café & tea"
    assert html_text("<p>one</p><p>two</p>") == "one\n\ntwo"


def test_a_non_utf8_file_is_a_clear_error_and_its_encoding_reads_it(tmp_path: Path):
    (tmp_path / "latin.txt").write_bytes("Caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.txt is not valid utf-8: byte 0xe9 at byte 4; pass its real encoding"):
        read_documents(str(tmp_path))
    assert read_documents(str(tmp_path), encoding="latin-1").documents[0].text == "Café au lait"
    with pytest.raises(DataError, match="unknown encoding 'nope'"):
        decode(b"x", "nope", "f")


def test_bad_sources_are_clear_errors(tmp_path: Path):
    with pytest.raises(DataError, match="is not a folder of documents"):
        read_documents(str(tmp_path / "missing"))
    with pytest.raises(DataError, match=r"holds no documents \(\.md"):
        read_documents(str(tmp_path))
    with pytest.raises(DataError, match="two documents have the id 'a'"):
        split_documents([Document("a", "x"), Document("a", "y")])


def test_the_python_docs_corpus_ships_with_python():
    read = read_documents(PYTHON_DOCS)
    ids = {d.doc_id for d in read.documents}
    assert {"for", "while", "break"} <= ids and len(read.documents) >= 70
    assert read.chunked and all(len(d.text) <= 12_000 for d in read.documents)
