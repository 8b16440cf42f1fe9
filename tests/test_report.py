"""The stakeholder report: what :func:`collect_report` reads from a project, the safety of the HTML
(escaping, the JSON island, no network reference, the CSP), the card's markdown, and ``treesynth report``."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.fakes import HashEmbedder
from tests.trees import split_root
from treesynth_core.cli import report as cli_report
from treesynth_core.cli.app import app
from treesynth_core.coverage import maps
from treesynth_core.coverage.features.embeddings import ensure_features
from treesynth_core.data.export import escape_markdown
from treesynth_core.errors import TreeSynthError
from treesynth_core.report import markdown, svg
from treesynth_core.report.collect import collect_report
from treesynth_core.report.model import CurvePoint
from treesynth_core.report.render import csp, json_island, render_html
from treesynth_core.store import Project
from treesynth_core.store.samples import BASELINE_SET, NewSample

EVIL = "<script>alert(1)</script>"
runner = CliRunner()


@pytest.fixture
def project(project):
    """Three leaves (one with a script in its value), 4 samples in two of them, 6 flat-baseline samples,
    and an imported set with one routed and one unrouted row."""
    tree = split_root(project, "topic", ["fractions", "geometry", f"money {EVIL}"])
    leaves = tree.children(tree.root_id)
    rows = [
        NewSample(
            leaf_id=leaf.id,
            key=f"{i}:{j}",
            instruction=f"Question {j} on {leaf.value} with apples and {j * 3} pears {EVIL if j == 0 else ''}",
            path=[{"criterion": "topic", "value": leaf.value or ""}],
            response=f"Answer {j} </script><img src=x onerror=alert(2)>",
        )
        for i, leaf in enumerate(leaves[1:])
        for j in range(4)
    ]
    rows += [
        NewSample(
            leaf_id="", key=f"b{j}", instruction=f"A flat problem {j} about trains", path=[], sample_set="baseline"
        )
        for j in range(6)
    ]
    rows += [
        NewSample(
            leaf_id=leaves[0].id,
            key="d1",
            instruction="an imported row",
            path=[{"criterion": "topic", "value": "fractions"}],
            sample_set="imported",
            extra={"provenance": "original"},
        ),
        NewSample(leaf_id="", key="d2", instruction="another imported row", path=[], sample_set="imported"),
    ]
    project.add_samples(rows)
    return project


@pytest.fixture
def embedder():
    return HashEmbedder(dim=32)


def laid_out(project: Project, embedder: HashEmbedder) -> None:
    """A map of the tree's and the baseline's samples, as ``treesynth map`` would cache it."""
    samples = project.samples() + project.samples(sample_set=BASELINE_SET)
    X = ensure_features(project, samples, embedder)
    coords = np.column_stack([np.arange(len(samples), dtype=float), np.arange(len(samples)) % 3])
    key = maps.map_cache_key(embedder.name, [s.id for s in samples], X, {})
    project.put_blob(key, np.ascontiguousarray(coords, dtype=np.float64).tobytes())
    latest = {"key": key, "ids": [s.id for s in samples]}
    project.put_blob(maps._latest_key(embedder.name, 0), json.dumps(latest).encode())


class Tags(HTMLParser):
    """The start tags of a page with their attributes, and the text of its script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def parsed(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    return tags


# -- collect --------------------------------------------------------------------------------------


def test_collect_counts_samples_per_node_and_leaf(project, embedder):
    rep = collect_report(project, embedder=embedder, samples_per_leaf=2)
    root = rep.nodes[0]
    assert root.status == "root" and root.samples == 8 and root.label == project.task
    by_label = {n.label: n for n in rep.nodes}
    assert by_label["fractions"].samples == 0 and by_label["geometry"].samples == 4
    assert rep.leaf_count == 3 and rep.samples == 8 and rep.baseline_samples == 6
    assert [leaf.count for leaf in rep.leaves] == [0, 4, 4]
    assert all(len(leaf.samples) == min(2, leaf.count) for leaf in rep.leaves)
    assert rep.sets[0].name == "imported"
    assert (rep.sets[0].total, rep.sets[0].routed, rep.sets[0].unrouted, rep.sets[0].original) == (2, 1, 1, 1)
    assert "fractions" in rep.card and rep.card.startswith("---")


def test_collect_scores_against_the_baseline_with_a_curve(project, embedder):
    rep = collect_report(project, embedder=embedder)
    assert rep.scores is not None and rep.scores.has_baseline and rep.scores.n == 6
    vendi = rep.scores.rows[0]
    assert vendi.name.startswith("Vendi") and vendi.tree is not None and vendi.baseline is not None
    assert vendi.gain == pytest.approx(vendi.tree - vendi.baseline)
    assert set(rep.scores.curves) == {"tree", "baseline"}
    assert [p.n for p in rep.scores.curves["tree"]] == [2, 5, 8]
    assert rep.map_dots == () and "treesynth map" in rep.map_note


def test_collect_without_embeddings_or_samples_says_why(tmp_path, project, embedder):
    rep = collect_report(project)
    assert rep.scores is None and "without embeddings" in rep.scores_note and rep.map_dots == ()
    with Project.create(tmp_path / "empty", task="Empty task") as empty:
        bare = collect_report(empty, embedder=embedder)
    assert bare.scores is None and bare.samples == 0 and bare.nodes[0].is_leaf


class TreeOnly(HashEmbedder):
    """Features for the tree's samples only, as a store whose flat baseline grew since its features job."""

    def features(self, samples, **kwargs):
        if any(s.sample_set == BASELINE_SET for s in samples):
            raise TreeSynthError("6 samples have no emb:fake features yet: compute them")
        return super().features(samples, **kwargs)


def test_collect_scores_the_tree_alone_when_the_baseline_lacks_features(project):
    rep = collect_report(project, embedder=TreeOnly(dim=32))
    assert rep.scores is not None and not rep.scores.has_baseline and rep.scores.n == 8
    assert rep.scores.rows[0].baseline is None and rep.scores.rows[0].gain is None
    assert rep.scores_note.startswith("Scored without the flat baseline: 6 samples have no")
    page = render_html(rep)
    assert "Scored without the flat baseline" in page and "Tree \u2212 baseline" not in page


def test_collect_reads_the_cached_map(project, embedder):
    laid_out(project, embedder)
    rep = collect_report(project, embedder=embedder)
    assert len(rep.map_dots) == 14
    groups = {d.group for d in rep.map_dots}
    assert groups == {"geometry", f"money {EVIL}", maps.BASELINE_LABEL}


# -- render: safety -------------------------------------------------------------------------------


def test_every_project_text_is_escaped(project, embedder):
    laid_out(project, embedder)
    page = render_html(collect_report(project, embedder=embedder))
    tags = parsed(page)
    # the only script elements are the page's own: the JSON island, the library and the page script
    assert [t for t, _ in tags.tags].count("script") == 3
    assert not any(t == "img" for t, _ in tags.tags)
    assert EVIL not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "onerror=alert(2)&gt;" in page  # the response, as text


def test_the_json_island_cannot_break_out(project, embedder):
    page = render_html(collect_report(project, embedder=embedder))
    island = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert island is not None
    body = island.group(1)
    assert "<" not in body and ">" not in body and "&" not in body
    labels = [n["full"] for n in json.loads(body)["nodes"]]
    assert f"money {EVIL}" in labels  # the text survives, as data
    assert json_island({"a": "</script><!--&"}) == '{"a": "\\u003c/script\\u003e\\u003c!--\\u0026"}'


def test_no_network_reference_and_a_strict_csp(project, embedder):
    laid_out(project, embedder)
    page = render_html(collect_report(project, embedder=embedder))
    tags = parsed(page)
    for tag, attrs in tags.tags:
        for name in ("src", "href", "action", "data", "poster"):
            assert not (attrs.get(name) or "").strip(), (tag, name, attrs)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)
    assert "@import" not in page
    policy = next(a["content"] for t, a in tags.tags if t == "meta" and a.get("http-equiv"))
    assert policy.startswith("default-src 'none';")
    assert "unsafe-eval" not in policy and "script-src 'unsafe-inline'" not in policy
    executed = [s for t, s in zip([t for t, _ in tags.tags if t == "script"], tags.scripts, strict=True) if s]
    assert csp(executed[1:]) == policy  # the two executed scripts, by hash


def test_pages_render_without_scores_map_or_samples(tmp_path):
    with Project.create(tmp_path / "empty", task=f"Task {EVIL}") as empty:
        page = render_html(collect_report(empty))
    assert "No samples yet." in page and EVIL not in page and 'id="graph"' in page


# -- the card's markdown and the charts -----------------------------------------------------------


def test_card_markdown_becomes_safe_html_without_backslashes():
    value = "a|b <b>x</b> [x](javascript:1) ![i](http://evil/p.png) 3.5 *"
    card = (
        "---\ntags: [x]\n---\n\n# "
        + escape_markdown(value)
        + "\n\nText with `code <y>` here.\n\n| leaf | path |\n|---|---|\n| "
        + escape_markdown(value)
        + " | 2 |\n\n- Level 1: "
        + escape_markdown("a_b")
        + "\n\n```\nraw <z>\n```\n"
    )
    html = markdown.to_html(card)
    assert "tags:" not in html and "\\" not in html
    assert "<h1>a|b &lt;b&gt;x&lt;/b&gt; [x](javascript:1) ![i](http://evil/p.png) 3.5 *</h1>" in html
    assert "<code>code &lt;y&gt;</code>" in html
    assert "<td>a|b &lt;b&gt;x&lt;/b&gt;" in html and "<td>2</td>" in html  # an escaped pipe is no cell
    assert "<li>Level 1: a_b</li>" in html
    assert "<pre><code>raw &lt;z&gt;</code></pre>" in html
    assert "<a " not in html and "<img" not in html


def test_curve_and_map_svg_escape_and_scale():
    curve = svg.curve_svg({"tree": [CurvePoint(2, 1.9), CurvePoint(20, 8.0)], "baseline": [CurvePoint(2, 1.8)]})
    assert curve.startswith("<svg") and curve.count("<polyline") == 2 and "flat baseline" in curve
    assert svg.curve_svg({"tree": [CurvePoint(2, None)]}) == ""
    dots = [maps_dot(0, 0, "a"), maps_dot(1, 1, "b <i>")]
    drawn = svg.map_svg(dots)
    assert drawn.count("<circle") == 2 and "<i>" not in drawn and "b &lt;i&gt;" in drawn
    assert svg.map_svg([]) == ""


def maps_dot(x, y, text):
    from treesynth_core.report.model import MapDot

    return MapDot(x=x, y=y, group=text, text=text)


# -- the command ----------------------------------------------------------------------------------


@pytest.fixture
def cli_embedder(monkeypatch, embedder):
    monkeypatch.setattr(cli_report, "load_embedder", lambda project, spec: embedder)
    return embedder


def test_cli_writes_the_report_and_json(project, cli_embedder, tmp_path, monkeypatch):
    project.close()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["report", str(project.path), "--samples-per-leaf", "1"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "p-report.html"
    assert written.exists() and "Wrote the report of p" in result.output
    page = written.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Diversity against the flat baseline" in page
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(project.path), "--out", str(out), "--no-scores", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["out"] == str(out.resolve()) and summary["scores"] is False
    assert (summary["nodes"], summary["leaves"], summary["samples"]) == (4, 3, 8)
    assert summary["sample_sets"] == ["imported"] and summary["bytes"] == len(out.read_bytes())


def test_cli_errors_are_one_line_and_non_zero(project, tmp_path, cli_embedder):
    project.close()
    result = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code != 0 and "no project" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["report", str(project.path), "--out", str(tmp_path / "nope" / "r.html")])
    assert result.exit_code != 0 and "does not exist" in result.output
    result = runner.invoke(app, ["report", str(project.path), "--out", str(tmp_path)])
    assert result.exit_code != 0 and "is a folder" in result.output
    result = runner.invoke(app, ["report", "--help"])
    assert result.exit_code == 0 and "self-contained HTML" in result.output and "--samples-per-leaf" in result.output
