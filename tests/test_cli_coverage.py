"""``treesynth score | map | baseline | fill-gaps`` with the scripted LLM and a fake embedder, and the
coverage report behind ``score``; one slow end-to-end run on the embedded MiniLM and real UMAP."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.fakes import HashEmbedder, ScriptedLLM
from tests.helpers_png import png_size
from tests.trees import split_root
from treesynth_core.cli import common as cli_common
from treesynth_core.cli import coverage as cli_coverage
from treesynth_core.cli.app import app
from treesynth_core.coverage import maps
from treesynth_core.coverage.report import coverage_report, subtree_table
from treesynth_core.jobs import runs
from treesynth_core.store import Project
from treesynth_core.store.samples import NewSample

cli_coverage.register(app)
runner = CliRunner()


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def fake_embedder(monkeypatch):
    embedder = HashEmbedder(dim=32)
    monkeypatch.setattr(cli_common, "load_embedder", lambda project, spec: embedder)
    return embedder


@pytest.fixture
def fake_layout(monkeypatch):
    def layout(X, *, seed=0, n_neighbors=15, min_dist=0.1, metric="cosine", max_fit=None):
        return np.column_stack([np.arange(len(X), dtype=float), np.zeros(len(X))])

    monkeypatch.setattr(maps, "umap_2d", layout)


def invoke(*args, ok: bool = True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def said(result) -> str:
    """The output with Rich's line wrapping undone."""
    return " ".join(result.output.split())


def synthesized(tmp_path) -> object:
    proj = tmp_path / "proj"
    invoke("new", proj, "--task", "Math word problems", "--style", "GSM8K-style")
    invoke("grow", proj, "--depth", "2", "--pivots", "4", "--auto-approve", "-q")
    invoke("synth", proj, "--per-leaf", "4", "--per-call", "2", "-q")
    return proj


def test_register_is_idempotent_and_every_command_has_help():
    before = len(app.registered_commands)
    cli_coverage.register(app)
    assert len(app.registered_commands) == before
    for name in ("score", "map", "baseline", "fill-gaps"):
        result = invoke(name, "--help")
        assert "Usage" in result.output and len(result.output) > 200


def test_baseline_score_map_end_to_end(tmp_path, fake, fake_embedder, fake_layout):
    proj = synthesized(tmp_path)
    tree_count = sum(json.loads(invoke("show", proj, "--json").stdout)["sample_counts"].values())
    made = json.loads(invoke("baseline", proj, "--json").stdout)
    assert made["total"] == tree_count and made["short"] == 0 and made["llm"]["calls"] > 0
    again = json.loads(invoke("baseline", proj, "--json").stdout)
    assert again["added"] == 0 and again["llm"]["calls"] == 0

    report = json.loads(invoke("score", proj, "--json").stdout)
    assert report["n"] == tree_count and set(report["sets"]) == {"tree", "baseline"}
    tree, flat = report["sets"]["tree"], report["sets"]["baseline"]
    assert tree["n"] == flat["n"] == tree_count and tree["total"] == tree_count
    assert set(tree["vendi_q"]) == {"0.5", "1", "2", "inf"} and tree["vendi"] == tree["vendi_q"]["1"]
    assert report["gain"]["vendi"] == pytest.approx(tree["vendi"] - flat["vendi"])
    assert report["embedder"] == "emb:fake" and report["gradients"] is None
    assert len(report["leaves"]["rows"]) >= 4 and report["subtrees"]["rows"]
    assert report["curve"]["tree"][-1]["n"] == tree_count
    assert any("equal n" in note for note in report["notes"])
    embedded = len(fake_embedder.seen)
    text = invoke("score", proj, "-q").stdout
    assert "Diversity at equal n" in text and "tree - base" in text and len(fake_embedder.seen) == embedded

    out = tmp_path / "map.html"
    data = json.loads(invoke("map", proj, "--out", out, "--json").stdout)
    assert data["points"] == 2 * tree_count and out.stat().st_size > 1_000_000
    invoke("map", proj, "--out", tmp_path / "op.html", "--color-by", "Operation", "--no-baseline", "-q")
    bad = invoke("map", proj, "--out", tmp_path / "x.html", "--color-by", "Nope", ok=False)
    assert bad.exit_code == 1 and "choose one of" in said(bad)


def test_score_without_baseline_and_required_baseline(tmp_path, fake, fake_embedder):
    proj = synthesized(tmp_path)
    report = json.loads(invoke("score", proj, "--json").stdout)
    assert set(report["sets"]) == {"tree"} and report["gain"] is None
    assert any("treesynth baseline" in note for note in report["notes"])
    missing = invoke("score", proj, "--baseline", ok=False)
    assert missing.exit_code == 1 and "no flat baseline" in said(missing)
    empty = tmp_path / "empty"
    invoke("new", empty, "--task", "Anything")
    result = invoke("score", empty, ok=False)
    assert result.exit_code == 1 and "no samples" in said(result)


def test_map_png_needs_no_browser(tmp_path, fake, fake_embedder, fake_layout, monkeypatch):
    proj = synthesized(tmp_path)

    def no_engine(self, *args, **kwargs):
        raise AssertionError("a PNG map is drawn with matplotlib, not kaleido")

    monkeypatch.setattr("plotly.graph_objects.Figure.write_image", no_engine)
    out = tmp_path / "x.png"
    data = json.loads(invoke("map", proj, "--out", out, "--color-by", "Operation", "--json").stdout)
    assert data["out"] == str(out) and data["color_by"] == "Operation"
    width, _ = png_size(out.read_bytes())
    assert width >= 800
    result = invoke("map", proj, "--out", tmp_path / "m.svg", ok=False)
    assert result.exit_code == 1 and ".html or .png" in said(result) and "Traceback" not in result.output


class FakeGradients:
    name, dim = "grad:fake:8:0", 8

    def __init__(self, name: str | None = None) -> None:
        self.seen = 0
        self.name = name or self.name

    def features(self, samples, *, batch_size=8, progress=None):
        self.seen += len(samples)
        rng = np.random.default_rng([s.id for s in samples])
        return rng.normal(size=(len(samples), 8)).astype(np.float32)


def test_score_with_gradients(tmp_path, fake, fake_embedder, monkeypatch):
    proj = synthesized(tmp_path)
    invoke("baseline", proj, "--n", "5", "-q")
    grads = FakeGradients()
    monkeypatch.setattr(cli_common, "load_gradient_featurizer", lambda project, proxy=None, max_tokens=None: grads)
    report = json.loads(invoke("score", proj, "--gradients", "--json").stdout)
    assert report["n"] == 5 and report["gradients"] == "grad:fake:8:0"
    assert report["sets"]["tree"]["g_vendi"] > 1 and "g_vendi" in report["gain"]
    assert grads.seen == 10  # only the equal-n subsamples get gradient features


def test_fill_gaps_runs_one_logged_round(tmp_path, fake, fake_embedder, monkeypatch):
    proj = synthesized(tmp_path)
    before = len(json.loads(invoke("show", proj, "--json").stdout)["sample_counts"])
    monkeypatch.setattr(runs, "default_factory", lambda settings: GapWriter())
    data = json.loads(invoke("fill-gaps", proj, "--embeddings", "--rounds", "1", "--per-round", "6", "--json").stdout)
    assert data["rounds"] == 1 and "gradient_estimate" not in data and data["candidates"] >= data["accepted"] >= 0
    assert data["space"].startswith("emb:") and data["llm"]["calls"] > 0 and data["failed_calls"] == 0
    assert len(json.loads(invoke("show", proj, "--json").stdout)["sample_counts"]) >= before
    stats = json.loads(invoke("stats", proj, "--json").stdout)
    assert any(run["command"] == "fill-gaps" and run["status"] == "ok" for run in stats["runs"])


class GapWriter(ScriptedLLM):
    """Also answers gap-filling prompts: variations of the prompt's first example."""

    def _gaps(self, request):
        prompt = self._prompt(request)
        first = re.search(r"^1\. (.*)$", prompt, re.MULTILINE).group(1)
        n = int(request.schema["properties"]["samples"]["maxItems"])
        return json.dumps({"samples": [f"{first} Then {i + 2} more arrive on day {request.seed}." for i in range(n)]})


@pytest.fixture
def fake_proxy(monkeypatch):
    """Gradient features of any proxy setting without a model: the settings each load asked for."""
    from treesynth_core.coverage.features import proxy

    loaded: list[tuple[object, FakeGradients]] = []

    def load(settings):
        loaded.append((settings, FakeGradients(proxy.gradient_kind(settings))))
        return loaded[-1][1]

    monkeypatch.setattr(proxy, "load_gradients", load)
    return loaded


def test_fill_gaps_defaults_to_gradient_space_and_says_how_long_first(
    tmp_path, fake, fake_embedder, fake_proxy, monkeypatch
):
    proj = synthesized(tmp_path)
    monkeypatch.setattr(runs, "default_factory", lambda settings: GapWriter())
    result = invoke("fill-gaps", proj, "--per-round", "6")
    text = said(result)
    assert "Measuring gradient features (grad:SmolLM2-135M-Instruct:1024:0:t512) on a few samples" in text
    assert "Gradient features: about" in text and "measured on 8 samples of this project" in text
    assert "Gap filling (grad:SmolLM2-135M-Instruct:1024:0:t512)" in text
    kind = "grad:SmolLM2-135M-Instruct:1024:0:t512"
    with Project.open(proj) as project:
        samples = project.samples()
        assert len(project.get_features(kind, [s.id for s in samples])) == len(samples)  # kept ones stored too
    grads = fake_proxy[-1][1]
    assert grads.seen == len(samples) - sum(s.extra.get("origin") == "fill-gaps" for s in samples) + 6

    again = json.loads(invoke("fill-gaps", proj, "--per-round", "4", "--seed", "1", "--json").stdout)
    estimate = again["gradient_estimate"]
    assert estimate["samples"] == 4 and estimate["seconds"] is not None  # only the candidates are missing
    assert again["space"] == kind


def test_proxy_and_cut_come_from_the_project_or_the_command(tmp_path, fake, fake_embedder, fake_proxy, fake_layout):
    proj = synthesized(tmp_path)
    ckpt = tmp_path / "my-proxy"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    shown = json.loads(invoke("settings", proj, "--json").stdout)["gradients"]
    assert shown == {"proxy": None, "max_tokens": 512}
    assert "G-Vendi: gradient proxy SmolLM2-135M-Instruct (embedded), cut at 512 tokens" in said(
        invoke("settings", proj)
    )
    invoke("settings", proj, "--proxy", ckpt, "--grad-max-tokens", "256")
    assert json.loads(invoke("settings", proj, "--json").stdout)["gradients"] == {"proxy": str(ckpt), "max_tokens": 256}

    report = json.loads(invoke("score", proj, "--gradients", "--json").stdout)
    settings, grads = fake_proxy[-1]
    assert (settings.proxy, settings.max_tokens) == (str(ckpt), 256)
    assert (
        report["gradients"] == grads.name and grads.name.startswith("grad:my-proxy@") and grads.name.endswith(":t256")
    )
    invoke("score", proj, "--gradients", "--grad-max-tokens", "128", "--proxy", "", "-q")
    assert (fake_proxy[-1][0].proxy, fake_proxy[-1][0].max_tokens) == (None, 128)  # this run only
    assert json.loads(invoke("settings", proj, "--json").stdout)["gradients"]["max_tokens"] == 256
    invoke("map", proj, "--gradients", "--out", tmp_path / "g.png", "-q")
    assert fake_proxy[-1][0].proxy == str(ckpt)

    invoke("settings", proj, "--proxy", "")
    assert json.loads(invoke("settings", proj, "--json").stdout)["gradients"]["proxy"] is None


def test_bad_gradient_options_are_one_clear_line(tmp_path, fake, fake_embedder):
    proj = synthesized(tmp_path)
    cases = [
        (["score", proj, "--proxy", "x"], "add --gradients"),
        (["map", proj, "--grad-max-tokens", "64"], "add --gradients"),
        (["fill-gaps", proj, "--embeddings", "--proxy", "x"], "add --gradients"),
        (["score", proj, "--gradients", "--proxy", tmp_path / "no" / "such"], "does not exist"),
        (["fill-gaps", proj, "--proxy", tmp_path / "nope.gguf"], "does not exist"),
        (["settings", proj, "--proxy", tmp_path], "no config.json"),
        (["settings", proj, "--grad-max-tokens", "1"], "at least 2"),
    ]
    for args, reason in cases:
        result = invoke(*args, ok=False)
        assert result.exit_code == 1 and reason in said(result) and "Traceback" not in result.output, args
        assert len([line for line in result.output.splitlines() if line.startswith("error:")]) == 1
    assert json.loads(invoke("settings", proj, "--json").stdout)["gradients"]["max_tokens"] == 512


def test_a_tiny_local_checkpoint_as_the_proxy(tmp_path, fake, fake_embedder, monkeypatch):
    """A real checkpoint folder made here (2-layer Llama, hidden 32, a byte-level tokenizer built
    offline): score, then fill gaps in gradient space (the default) with it."""
    pytest.importorskip("transformers")
    from tests.tiny_models import tiny_llama, tiny_tokenizer

    folder = tmp_path / "tiny-llama"
    tokenizer = tiny_tokenizer()
    tiny_llama(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    proj = synthesized(tmp_path)
    report = json.loads(
        invoke("score", proj, "--gradients", "--proxy", folder, "--grad-max-tokens", "256", "--json").stdout
    )
    assert report["gradients"].startswith("grad:tiny-llama@") and report["gradients"].endswith(":1024:0:t256")
    assert report["sets"]["tree"]["g_vendi"] > 1
    monkeypatch.setattr(runs, "default_factory", lambda settings: GapWriter())
    data = json.loads(
        invoke("fill-gaps", proj, "--per-round", "4", "--proxy", folder, "--grad-max-tokens", "256", "--json").stdout
    )
    assert data["space"] == report["gradients"] and data["candidates"] == 4 and data["gradient_estimate"]["seconds"]


# -- the report itself ------------------------------------------------------------------------------


@pytest.fixture
def project(project):
    """The shared project split on "Operation" into three leaves (the last empty): ten varied samples,
    six copies of one sample, and a flat baseline of seven."""
    tree = split_root(project, "Operation", ["addition", "division", "fractions"])
    add, div, frac = (k.id for k in tree.children(tree.root_id))
    words = "apples pears trains coins boats lamps chairs books cakes shirts".split()
    rows = [
        NewSample(leaf_id=add, key=f"0:{i}", instruction=f"add {words[i]} and {words[(i * 3) % 10]} now", path=[])
        for i in range(10)
    ]
    rows += [NewSample(leaf_id=div, key=f"0:{i}", instruction="divide the same cake", path=[]) for i in range(6)]
    rows[-1] = NewSample(leaf_id=div, key="0:9", instruction="divide the same cake", path=[])
    rows += [
        NewSample(
            leaf_id=tree.root_id,
            key=f"0:{i}",
            instruction=f"flat {words[i % 3]} question",
            path=[],
            sample_set="baseline",
        )
        for i in range(7)
    ]
    project.add_samples(rows)
    return project


def test_report_compares_at_equal_n_and_flags_leaves(project):
    report = coverage_report(project, embedder=HashEmbedder(dim=32), seed=3)
    assert report["n"] == 7 and report["sets"]["tree"]["total"] == 16 and report["sets"]["baseline"]["total"] == 7
    assert report["sets"]["tree"]["n"] == report["sets"]["baseline"]["n"] == 7
    json.dumps(report, allow_nan=False)  # strictly JSON-serializable
    rows = {row["path"]: row for row in report["leaves"]["rows"]}
    assert rows["fractions"]["flags"] == ["empty"] and rows["fractions"]["vendi"] is None
    assert "collapsed" in rows["division"]["flags"] and rows["division"]["mean_cosine"] == pytest.approx(1.0)
    assert rows["addition"]["flags"] == [] and rows["addition"]["n"] == report["leaves"]["n"]
    assert [r["n"] for r in report["subtrees"]["rows"]] == [report["subtrees"]["n"]] * 2
    assert subtree_table(project.tree(), project.samples(), np.ones((16, 3)), depth=2)["rows"] == []
    assert [p["n"] for p in report["curve"]["tree"]] == [2, 5, 10, 16]
    assert report == coverage_report(project, embedder=HashEmbedder(dim=32), seed=3)  # deterministic
    smaller = coverage_report(project, embedder=HashEmbedder(dim=32), n=4, include_baseline=False)
    assert smaller["n"] == 4 and set(smaller["sets"]) == {"tree"}


@pytest.mark.slow
def test_embedded_defaults_end_to_end(tmp_path, fake):
    """The real MiniLM embedder (offline, from site-packages) and real UMAP, scripted LLM."""
    proj = synthesized(tmp_path)
    invoke("baseline", proj, "-q")
    report = json.loads(invoke("score", proj, "--json", "-q").stdout)
    assert report["embedder"] == "emb:all-MiniLM-L6-v2"
    assert report["sets"]["tree"]["vendi"] > 1 and report["sets"]["baseline"]["vendi"] > 1
    out = tmp_path / "emb.html"
    invoke("map", proj, "--out", out, "-q")
    assert "plotly" in out.read_text(encoding="utf-8")[:5000].lower() or out.stat().st_size > 1_000_000
