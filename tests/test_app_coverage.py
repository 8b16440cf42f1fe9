"""The Coverage page with AppTest: features, maps, the baseline and gap filling run as real
background jobs on a fake featurizer (hashed words, no model), a fake UMAP layout and the scripted
fake LLM."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading

import numpy as np
import pytest

from studio.widgets import PAGE_TREE as TREE
from tests.apptest import new_app, open_example, run, run_fragments, synthesize, texts, tree_of, wait_for_job
from tests.fakes import GatedLLM, ScriptedLLM
from treesynth_core.coverage import maps as M
from treesynth_core.coverage.features.embeddings import sample_text
from treesynth_core.coverage.map_points import MapPoint, MapPoints
from treesynth_core.jobs import background as jobs
from treesynth_core.store import Project

COVERAGE = "app_pages/coverage.py"


class HashFeaturizer:
    """Deterministic bag-of-hashed-words vectors, unit length."""

    def __init__(self, name: str, dim: int = 32) -> None:
        self.name, self._dim = name, dim

    @property
    def dim(self) -> int:
        return self._dim

    def features(self, samples, *, batch_size: int = 64, progress=None) -> np.ndarray:
        out = np.zeros((len(samples), self._dim), dtype=np.float32)
        for row, sample in enumerate(samples):
            for word in sample_text(sample).lower().split():
                out[row, int(hashlib.blake2b(word.encode(), digest_size=2).hexdigest(), 16) % self._dim] += 1.0
        out += 1e-3
        if progress:
            progress(len(samples), len(samples))
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class GapWriter(ScriptedLLM):
    """Answers gap-filling prompts with variations of the prompt's first example (so they land in
    the sparse cluster it came from)."""

    def _gaps(self, request):
        n = self._count(self._prompt(request))
        first = re.search(r"^1\. (.*)$", self._prompt(request), re.MULTILINE).group(1)
        return json.dumps({"samples": [f"{first} Then {i + 2} more arrive on day {request.seed}." for i in range(n)]})


@pytest.fixture
def fakes(projects, monkeypatch):
    jobs.set_featurizer_factory(lambda space: HashFeaturizer(f"fake-{space}"))
    jobs.set_llm_factory(lambda settings: GapWriter())

    def layout(X, *, seed=0, **_):
        rng = np.random.default_rng(seed)
        return np.asarray(X, dtype=np.float64) @ rng.standard_normal((np.asarray(X).shape[1], 2))

    monkeypatch.setattr(M, "umap_2d", layout)
    yield projects
    jobs.set_featurizer_factory(None)


def coverage(at):
    at.switch_page(COVERAGE)
    return run(at)


def map_traces(at) -> dict[str, int]:
    """The map's traces: name -> number of points (numpy columns arrive as plotly's typed arrays)."""
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return {t.get("name"): _length(t.get("x", [])) for t in spec["data"]}


def _length(values) -> int:
    if isinstance(values, dict):  # {"dtype": "f8", "bdata": base64}
        return len(base64.b64decode(values["bdata"])) // np.dtype(values["dtype"]).itemsize
    return len(values)


def show(at, section):
    """Open a section of the page (the keyed control that replaced the tabs)."""
    at.button_group(key="coverage.section.control").set_value(section)
    return run(at)


def click_and_wait(at, key, folder):
    at.button(key=key).click()
    run(at)
    job = wait_for_job(folder)
    assert job.status == "done", (job.error, job.message)
    return run(at), job


def test_empty_state_says_synthesize_first(fakes):
    at = coverage(open_example(new_app()))
    assert "no samples yet: synthesize first" in texts(at)
    assert "coverage.features" not in [b.key for b in at.button]


def test_features_scores_map_baseline_and_gaps(fakes):
    folder = fakes / "example-gsm8k_math"
    at = synthesize(open_example(new_app()), folder, per_leaf=2)
    at = coverage(at)
    assert "No features yet" in texts(at)
    assert not at.get("plotly_chart")

    at, job = click_and_wait(at, "coverage.features", folder)
    assert job.kind == "features" and "fake-embeddings" in job.message
    metrics = {m.label: m.value for m in at.metric}
    assert {"Vendi", "G-Vendi", "Mean cosine", "n"} <= set(metrics)
    assert metrics["n"] == "112" and float(metrics["Vendi"]) > 1.0 and metrics["G-Vendi"] == "\u2013"
    assert "Scored on all 112 of the tree's samples." in texts(at)
    assert len(at.get("plotly_chart")) == 1  # the map, the section open first
    assert [b.proto.label for b in at.get("download_button")] == ["Download the map as HTML", "Download the map as PNG"]
    assert "coverage.show_baseline" not in [c.key for c in at.checkbox]  # no baseline yet
    at = show(at, "leaves")
    leaves = at.dataframe[0].value
    assert len(leaves) == 56 and {"path", "Vendi", "flags"} <= set(leaves.columns)
    at = show(at, "baseline")
    assert "No flat baseline yet" in texts(at)
    assert "treesynth baseline" not in texts(at)  # no command-line hint beside the button that does it
    assert "About 12 LLM calls" in texts(at) and "a guess" in texts(at)  # 112 samples, 10 a call; fake calls only
    at = show(at, "map")
    assert at.selectbox(key="coverage.leaf").value == "(none)"
    leaf = tree_of(folder).leaves(approved_only=True)[3].id
    at.selectbox(key="coverage.leaf").set_value(leaf)
    at = run(at)
    assert at.session_state["treesynth"].selected == leaf  # the Tree page opens on the chosen leaf

    # gradient space: optional, then a second map space and G-Vendi
    at, _ = click_and_wait(at, "coverage.gradients", folder)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["G-Vendi"] != "\u2013"
    at.radio(key="coverage.space").set_value("gradients")
    at = run(at)
    assert len(at.get("plotly_chart")) == 1
    at.selectbox(key="coverage.color").set_value("sample_set")
    run(at)

    # the flat baseline at the tree's n, then its features: comparison and diversity-vs-n curve
    at = show(at, "baseline")
    at, job = click_and_wait(at, "coverage.baseline", folder)
    assert at.button_group(key="coverage.section.control").value == "baseline"  # still open after the job
    with Project.open(folder) as project:
        assert sum(project.sample_counts(sample_set="baseline").values()) > 0
    # the baseline has no features yet: the tree's scores stay, with a note, until they are computed
    assert "No features yet" not in texts(at) and "flat baseline has samples without features" in texts(at)
    assert {m.label: m.value for m in at.metric}["n"] == "112"
    at, _ = click_and_wait(at, "coverage.features", folder)
    assert "flat baseline has samples without features" not in texts(at)
    assert "Gradient features are out of date" in texts(at)
    # still on gradient space, whose last map predates the baseline: it shows, saying what it lacks
    at = show(at, "map")
    assert "112 newer samples are" in texts(at) and map_traces(at)["tree"] == 112
    at.radio(key="coverage.space").set_value("embeddings")
    at.selectbox(key="coverage.color").set_value("leaf")
    at.selectbox(key="coverage.leaf").set_value("(none)")
    at = run(at)
    assert len(at.get("plotly_chart")) == 1  # the map
    both = map_traces(at)  # coloured by leaf: the baseline is one grey group
    flat = both.pop(M.BASELINE_LABEL)
    assert flat == 112 and sum(both.values()) == 112 and at.checkbox(key="coverage.show_baseline").value
    at.checkbox(key="coverage.show_baseline").uncheck()
    at = run(at)
    assert map_traces(at) == both
    at.selectbox(key="coverage.color").set_value("sample_set")
    at.checkbox(key="coverage.show_baseline").check()
    at = run(at)
    assert map_traces(at) == {"tree": 112, "baseline": 112}
    at = show(at, "baseline")
    assert len(at.get("plotly_chart")) == 1  # the diversity-vs-n curve
    assert "Tree and flat baseline both scored at n = 112." in texts(at)
    compare = [df.value for df in at.dataframe if "baseline" in df.value.columns]
    assert compare and list(compare[0]["score"])[:3] == ["Vendi", "G-Vendi", "mean cosine"]

    # one gap-filling round
    with Project.open(folder) as project:
        before = len(project.samples())
    at = show(at, "gaps")
    at.number_input(key="coverage.per_round").set_value(20)
    assert "About 4 LLM calls" in texts(run(at))  # 20 candidates, 5 a call, one round
    at, job = click_and_wait(at, "coverage.fill", folder)
    assert job.kind == "fill-gaps" and "candidates kept" in job.message
    with Project.open(folder) as project:
        assert len(project.samples()) > before, job.message  # some were kept...
    assert "No features yet" not in texts(at)  # ...and have features: scores and map stay
    with Project.open(folder) as project:
        grown = len(project.samples())
    # at equal n with the baseline, and the cards say so
    assert {m.label: m.value for m in at.metric}["n"] == f"112 of {grown}"
    assert f"a seeded subsample of 112 of the tree's {grown} samples against the flat baseline's 112" in texts(at)
    assert at.button_group(key="coverage.section.control").value == "gaps"  # still open after the job


def test_coverage_job_kinds_validate_params(fakes):
    from treesynth_core.errors import TreeSynthError

    with pytest.raises(TreeSynthError, match="unknown feature space 'pixels'"):
        jobs.start_job(fakes / "x", "features", {"space": "pixels"})
    with pytest.raises(TreeSynthError, match="the flat baseline needs n >= 1 samples"):
        jobs.start_job(fakes / "x", "baseline", {"n": 0})


def test_selection_maps_customdata_to_points():
    from types import SimpleNamespace

    from studio import coverage_panel as C

    pts = MapPoints.from_points(
        [MapPoint(i, float(i), 0.0, f"leaf{i % 2}", f"L{i % 2}", f"path {i}", text=f"s{i}") for i in range(4)]
    )
    event = SimpleNamespace(
        selection=SimpleNamespace(
            points=[
                {"customdata": [3, "leaf1"]},
                {"customdata": [1, "x"]},
                {"customdata": [7, "y"]},
                {"point_index": 0},
            ]
        )
    )
    chosen = C.selected(event, pts)
    assert [p.sample_id for p in chosen.records()] == [3, 1] and chosen.text() == ["s3", "s1"]
    assert len(C.selected(None, pts)) == 0
    fig = C.scatter(pts, "leaf", {"leaf0"}, "t")
    assert fig.data[-1].name == "chosen leaf" and len(fig.data[-1].x) == 2


def test_map_selection_highlights_its_leaves_on_the_tree_page(fakes, monkeypatch):
    from studio import coverage_panel as C

    folder = fakes / "example-gsm8k_math"
    at = synthesize(open_example(new_app()), folder, per_leaf=2)
    at, _ = click_and_wait(coverage(at), "coverage.features", folder)
    assert "Box- or lasso-select points" in texts(at) and not at.session_state["treesynth"].highlight

    # AppTest cannot send a plotly box/lasso selection event (the chart's selection state is not
    # writable from Python), so the panel's event decoder is patched to pick every point of two
    # leaves; everything after it (listing, state, Tree page) is the real code.
    picked: list[str] = []

    def select(event, pts):
        picked[:] = list(C.tree_leaves(pts))[:2]
        return pts.take(pts.where(lambda origin: origin.leaf_id in picked))

    monkeypatch.setattr(C, "selected", select)
    at = run(at)
    state = at.session_state["treesynth"]
    assert len(picked) == 2 and state.highlight == frozenset(picked)
    assert "**4 samples selected** in 2 leaves:" in texts(at)
    assert sum(":gray-badge[2 samples]" in m.value for m in at.markdown) == 2  # each leaf, its count
    tree = at.session_state["treesynth"].tree()
    assert {tree.nodes[leaf].parent_id for leaf in picked} <= state.view.expanded  # the paths open

    at.switch_page(TREE)
    at = run(at)
    assert "2 leaves highlighted from the Coverage map selection" in texts(at)
    at.button(key="tree.clear_highlight").click()
    at = run(at)
    assert not at.session_state["treesynth"].highlight
    assert "highlighted from the Coverage map" not in texts(at)
    assert "tree.clear_highlight" not in [b.key for b in at.button]


def test_selected_leaves_count_tree_points_only():
    from studio import coverage_panel as C

    rows = [MapPoint(i, 0.0, 0.0, f"leaf{i % 2}", f"L{i % 2}", f"p{i % 3}") for i in range(5)]
    rows.append(MapPoint(9, 0.0, 0.0, "root", M.BASELINE_LABEL, "", sample_set="baseline"))
    pts = MapPoints.from_points(rows)
    assert C.selected_leaves(pts) == {"leaf0": 3, "leaf1": 2}  # leaf0 over two paths (origins)
    assert C.has_baseline(pts) and not C.has_baseline(pts.take(np.arange(5)))
    assert C.shown_points(pts, show_baseline=False).records() == rows[:5]
    assert C.shown_points(pts, show_baseline=True).records() == rows
    assert C.tree_leaves(pts) == {"leaf0": "L0", "leaf1": "L1"}


def plain(text: str) -> str:
    """Text with markdown escapes removed."""
    return re.sub(r"\\(.)", r"\1", text)


@pytest.fixture
def real_paths(fakes, monkeypatch):
    """The jobs' own featurizer choice (the project's gradient settings, timed), over hashed-word
    features instead of models: gradient features named as the settings' proxy would name them."""
    from treesynth_core.coverage.features import embeddings, proxy

    jobs.set_featurizer_factory(None)
    loaded = []

    def load(settings):
        loaded.append(settings)
        return HashFeaturizer(proxy.gradient_kind(settings))

    monkeypatch.setattr(embeddings, "make_embedder", lambda spec=None, settings=None: HashFeaturizer("fake-embeddings"))
    monkeypatch.setattr(proxy, "load_gradients", load)
    return loaded


def test_gradient_proxy_settings_estimates_and_gap_space(fakes, real_paths, tmp_path):
    from treesynth_core.coverage.features.proxy import gradient_settings, timings

    folder = fakes / "example-gsm8k_math"
    at = synthesize(open_example(new_app()), folder, per_leaf=2)
    at, _ = click_and_wait(coverage(at), "coverage.features", folder)
    with Project.open(folder) as project:
        assert gradient_settings(project).proxy is None
    # the gradient button says what it computes and how long it takes (a reference figure: no run yet)
    help_text = plain(at.button(key="coverage.gradients").proto.help)
    assert "SmolLM2-135M-Instruct (embedded), cut at 512 tokens" in help_text
    assert "for 112 samples" in help_text and "reference figure" in help_text

    # a bad proxy: one clear error, nothing saved
    at.text_input(key="coverage.proxy").set_value(str(tmp_path / "no-such-model"))
    at.button(key="coverage.grad_save").click()
    at = run(at)
    assert len(at.error) == 1 and "does not exist" in plain(at.error[0].value)
    with Project.open(folder) as project:
        assert gradient_settings(project).proxy is None
    # a checkpoint folder and a cut: saved in the project, where the CLI reads them
    ckpt = tmp_path / "my-proxy"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    at.text_input(key="coverage.proxy").set_value(str(ckpt))
    at.number_input(key="coverage.grad_max_tokens").set_value(256)
    at.button(key="coverage.grad_save").click()
    at = run(at)
    assert not at.error and "Saved: gradient proxy" in plain(texts(at))
    with Project.open(folder) as project:
        saved = gradient_settings(project)
    assert (saved.proxy, saved.max_tokens) == (str(ckpt), 256)
    assert "time unknown for this proxy" in plain(at.button(key="coverage.gradients").proto.help)

    # the gradient job uses the saved proxy and records its time: estimates now come from this project
    at, job = click_and_wait(at, "coverage.gradients", folder)
    kind = job.message.split("(")[1].split(")")[0]
    assert real_paths[-1] == saved and kind.startswith("grad:my-proxy@") and kind.endswith(":t256")
    with Project.open(folder) as project:
        assert timings(project, kind)[-1]["n"] == 112
    assert "G-Vendi and the gradient map show" not in plain(texts(at))  # made with the saved settings

    # Fill gaps: gradient space by default, with the estimate for the candidates; embeddings: none
    at = show(at, "gaps")
    assert at.radio(key="coverage.gap_space").value == "gradients"
    assert at.radio(key="coverage.gap_space").options[1] == "Embedding space (fast)"
    note = next(c.value for c in at.caption if plain(c.value).startswith("Gradient features: about"))
    assert "for 20 samples" in plain(note) and "measured on 112 samples of this project" in plain(note)
    at.radio(key="coverage.gap_space").set_value("embeddings")
    at = run(at)
    assert not any(plain(c.value).startswith("Gradient features:") for c in at.caption)

    # other settings than the stored features': the page says so
    at.number_input(key="coverage.grad_max_tokens").set_value(128)
    at.button(key="coverage.grad_save").click()
    at = run(at)
    assert "G-Vendi and the gradient map show" in plain(texts(at)) and "compute gradient features" in plain(texts(at))


class VerifyingGapWriter(GapWriter):
    """:class:`GapWriter` that also answers verification draws: the three draws of about half the
    questions (by a hash of the question) agree on 12; the others give 3 different answers."""

    def _verify(self, request):
        prompt = self._prompt(request)
        agree = hashlib.blake2b(prompt.encode(), digest_size=1).digest()[0] % 2 == 0
        draw = int(request.meta["draw"])
        return "So the answer is 12." if agree else f"So the answer is {10 + draw}."


def test_fill_gaps_with_verification_shows_rounds_clusters_curve_and_agreement(fakes):
    from studio import gaps_panel as G
    from treesynth_core.generate.agreement import leaf_agreement
    from treesynth_core.generate.gap_report import last_report

    jobs.set_llm_factory(lambda settings: VerifyingGapWriter())
    folder = fakes / "example-gsm8k_math"
    at = synthesize(open_example(new_app()), folder, per_leaf=2)
    at, _ = click_and_wait(coverage(at), "coverage.features", folder)
    at = show(at, "gaps")
    assert "coverage.gap_rounds" not in [df.key for df in at.dataframe]  # no run yet: no report
    assert at.selectbox(key="coverage.answer").disabled  # no verification chosen yet
    assert at.selectbox(key="coverage.shots_from").options == [G.SHOTS_LABELS[s] for s in G.SHOTS_LABELS]

    at.radio(key="coverage.gap_space").set_value("embeddings")
    at.selectbox(key="coverage.shots_from").set_value("smallest")
    at.selectbox(key="coverage.verify").set_value(3)
    at.number_input(key="coverage.rounds").set_value(2)
    at.number_input(key="coverage.per_round").set_value(10)
    at = run(at)
    at.selectbox(key="coverage.answer").set_value("last-number")
    at, job = click_and_wait(run(at), "coverage.fill", folder)
    assert job.params["shots_from"] == "smallest" and job.params["verify"] == 3
    with Project.open(folder) as project:
        report = last_report(project)
        agreement = leaf_agreement(project)
    assert report is not None and report.verify == 3 and report.shots_from == "smallest"
    assert report.verified > 0 and report.rejected > 0 and len(report.per_round) == 2

    rounds = next(df.value for df in at.dataframe if "Vendi, random acceptance" in df.value.columns)
    assert list(rounds["generated"]) == [10, 10]
    assert list(rounds["verified"] + rounds["rejected"]) == [10, 10]
    assert list(rounds["kept"]) == [r.kept for r in report.per_round]
    rejections = next(df.value for df in at.dataframe if "rejected" in df.value.columns and "leaf" in df.value.columns)
    assert rejections["rejected"].sum() == report.rejected
    charts = {
        json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec) for c in at.get("plotly_chart")
    }
    histogram = charts["Cluster sizes of the pool"]
    assert [t["name"] for t in histogram["data"]] == [f"round {r.round}" for r in report.per_round]
    curve = charts["Vendi against n (fake-embeddings)"]
    assert [t["name"] for t in curve["data"]] == ["kept (sparse)", "random acceptance"]
    assert curve["data"][0]["x"] == [p.n for p in report.curve]
    bars = charts["Share of questions whose draws agreed"]["data"][0]
    assert len(bars["y"]) == len(agreement) and sorted(bars["x"]) == sorted(a.rate for a in agreement.values())
    assert "Verification agreement per leaf" in [h.value for h in at.subheader]
    total = sum(a.votes for a in agreement.values())
    assert f"of {total} questions agreed" in texts(at)
    assert "few-shot examples from the smallest 10% of clusters" in plain(texts(at))


def test_progress_line_counts_what_the_job_makes():
    from studio import coverage_panel as C

    assert C.progress_line("baseline", 0, 0, "", {"n": 15}) == ("Making the flat baseline: 0/15 samples", "")
    assert C.progress_line("baseline", 3, 15, "samples (12 calls)", {"n": 15}) == (
        "Making the flat baseline: 3/15 samples",
        "12 calls",
    )
    assert C.progress_line("features", 0, 0, "", {}) == ("Computing features and the map: starting", "")
    label, note = C.progress_line("features", 40, 224, "samples; embeddings: embedding", {})
    assert label == "Computing features and the map: 40/224 samples" and note == "embeddings: embedding"
    assert C.progress_line("fill-gaps", 2, 8, "round 1 of 2", {}) == ("Filling gaps: 2/8", "round 1 of 2")


def test_the_pickers_keep_none_and_the_section_through_a_job_and_its_polls(fakes):
    """Issue 13: "(none)" stays "(none)" (a None option showed as "Choose an option" after a rerun),
    and the section chosen stays open while a job polls (the fragment's own runs) and after it ends."""
    folder = fakes / "example-gsm8k_math"
    at = coverage(synthesize(open_example(new_app()), folder, per_leaf=2))
    at, _ = click_and_wait(at, "coverage.features", folder)
    picker = at.selectbox(key="coverage.leaf")
    assert (picker.value, picker.index, picker.options[0]) == ("(none)", 0, "(none)")
    picker.set_value(tree_of(folder).leaves(approved_only=True)[2].id)
    run(at)
    at.selectbox(key="coverage.leaf").set_value("(none)")
    run(run(at))
    picker = at.selectbox(key="coverage.leaf")
    assert (picker.value, picker.index) == ("(none)", 0)  # shown, not the placeholder

    gate = threading.Event()
    jobs.set_llm_factory(lambda settings: GatedLLM(gate))
    at = show(at, "baseline")
    at.button(key="coverage.baseline").click()
    run(at)
    for _ in range(3):  # the page polls while the job runs
        run_fragments(at)
        assert at.button_group(key="coverage.section.control").value == "baseline"
    bar = next(str(p.proto.text) for p in at.get("progress") if "flat baseline" in str(p.proto.text))
    assert " left" in bar and "reply pending" in bar, bar  # walking the app: 5 min with no time said
    gate.set()
    assert wait_for_job(folder).status == "done"
    run_fragments(at)  # the poll that sees the job end reruns the page
    run(at)
    assert at.button_group(key="coverage.section.control").value == "baseline"
    at = show(at, "map")
    assert at.selectbox(key="coverage.leaf").value == "(none)"
