"""Maps: exact neighbours against brute force, UMAP quality by trustworthiness and determinism under
a seed (not exact coordinates), cached layouts, figures and offline HTML."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers_png import png_size
from tests.trees import split_root
from treesynth_core.coverage import map_layout as L
from treesynth_core.coverage import maps as M
from treesynth_core.coverage.map_layout import MapOptions
from treesynth_core.coverage.map_points import MapPoint, MapPoints, Origin
from treesynth_core.errors import TreeSynthError
from treesynth_core.store.samples import BASELINE_SET, TREE_SET, NewSample

SEED = 7


def blobs(n: int = 300, d: int = 24, k: int = 5, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = 3.0 * rng.normal(size=(k, d))
    labels = rng.integers(0, k, n)
    return centers[labels] + rng.normal(size=(n, d)), labels


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_knn_matches_brute_force(metric):
    X, _ = blobs(90, 6)
    X[5] = X[4]  # a duplicate: each row must still come first in its own list
    idx, dist = L.exact_knn(X, 7, metric, block=16)
    if metric == "cosine":
        U = X / np.linalg.norm(X, axis=1, keepdims=True)
        full = 1.0 - U @ U.T
    else:
        full = np.linalg.norm(X[:, None, :] - X[None, :, :], axis=2)
    np.fill_diagonal(full, 0.0)
    assert (idx[:, 0] == np.arange(90)).all() and np.allclose(dist[:, 0], 0.0)
    expected = np.sort(full, axis=1)[:, :7]
    assert np.allclose(dist, np.maximum(expected, 0), atol=1e-5)
    assert np.allclose(np.take_along_axis(full, idx, 1), dist, atol=1e-5)


def test_tiny_inputs_fall_back_without_umap():
    assert M.umap_2d(np.zeros((0, 5))).shape == (0, 2)
    assert np.array_equal(M.umap_2d(np.ones((1, 5))), np.zeros((1, 2)))
    three = M.umap_2d(np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]))
    assert three.shape == (3, 2) and np.isfinite(three).all()
    assert np.array_equal(three, M.umap_2d(np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])))
    with pytest.raises(ValueError, match="features contain NaN or infinite values"):
        M.umap_2d(np.array([[np.nan, 1.0]] * 5))


@pytest.fixture(scope="module")
def layout():
    X, labels = blobs()
    return X, labels, M.umap_2d(X, seed=SEED)


@pytest.mark.slow  # numba compiles UMAP on first use (~10 s)
def test_umap_keeps_neighbourhoods(layout):
    from sklearn.manifold import trustworthiness

    X, labels, coords = layout
    assert coords.shape == (300, 2) and np.isfinite(coords).all()
    assert trustworthiness(X, coords, n_neighbors=10, metric="cosine") >= 0.9
    centroids = np.stack([coords[labels == c].mean(axis=0) for c in range(5)])
    spread = np.mean([np.linalg.norm(coords[labels == c] - centroids[c], axis=1).mean() for c in range(5)])
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(centroids) for b in centroids[i + 1 :]]
    assert min(gaps) > spread  # clusters stay apart


@pytest.mark.slow
def test_umap_is_deterministic_under_a_seed(layout):
    X, _, coords = layout
    assert np.array_equal(M.umap_2d(X, seed=SEED), coords)
    assert not np.allclose(M.umap_2d(X, seed=SEED + 1), coords)
    small = M.umap_2d(X[:6], seed=0, n_neighbors=15)  # n_neighbors clipped to n - 1
    assert small.shape == (6, 2) and np.isfinite(small).all()


# -- points, cache, figures -----------------------------------------------------------------------


@pytest.fixture
def project(project):
    """The shared project split on "Operation", four samples in each leaf and one baseline sample."""
    tree = split_root(project, "Operation", ["addition", "division"])
    add, div = (k.id for k in tree.children(tree.root_id))
    rows = [
        NewSample(
            leaf_id=leaf,
            key=f"0:{i}",
            instruction=f"<b>{op}</b> problem {i} & more",
            path=[{"criterion": "Operation", "value": op}],
        )
        for leaf, op in ((add, "addition"), (div, "division"))
        for i in range(4)
    ]
    rows.append(NewSample(leaf_id=tree.root_id, key="0:0", instruction="flat one", path=[], sample_set="baseline"))
    project.add_samples(rows)
    return project


@pytest.fixture
def fake_layout(monkeypatch):
    calls: list[int] = []

    def layout(X, *, seed=0, n_neighbors=15, min_dist=0.1, metric="cosine", max_fit=None):
        calls.append(len(X))
        return np.column_stack([np.arange(len(X), dtype=float), np.full(len(X), float(seed))])

    monkeypatch.setattr(M, "umap_2d", layout)
    return calls


def samples_and_features(project):
    samples = project.samples() + project.samples(sample_set="baseline")
    X = np.random.default_rng(0).normal(size=(len(samples), 8)).astype(np.float32)
    return samples, X


def test_map_points_carry_leaf_path_criteria_and_are_cached(project, fake_layout):
    samples, X = samples_and_features(project)
    points = M.map_points(project, samples, X, "emb:fake", MapOptions(seed=3))
    assert isinstance(points, MapPoints) and len(points) == 9 and fake_layout == [9]
    first, *_, last = points.records()
    assert first.sample_id == samples[0].id and first.leaf_id == samples[0].leaf_id
    assert first.path == "addition" and first.leaf_label == "addition"
    assert first.criteria == {"Operation": "addition"} and first.sample_set == "tree"
    assert first.text.startswith("<b>addition</b>") and (first.x, first.y) == (0.0, 3.0)
    assert last.sample_set == "baseline" and last.leaf_label == M.BASELINE_LABEL
    assert len(points.origins) == 3  # one per (leaf, path, set): the columns hold codes, not objects
    assert points.sample_id.tolist() == [s.id for s in samples] and points.x.tolist() == list(range(9))
    again = M.map_points(project, samples, X, "emb:fake", MapOptions(seed=3))
    assert fake_layout == [9] and again.records() == points.records()  # served from the cache
    M.map_points(project, samples, X, "emb:fake", MapOptions(seed=4))
    M.map_points(project, samples, X + 1, "emb:fake", MapOptions(seed=3))
    M.map_points(project, samples[:-1], X[:-1], "emb:fake", MapOptions(seed=3))
    assert fake_layout == [9, 9, 9, 8]


def test_the_last_map_stays_usable_after_samples_come_and_go(project, fake_layout):
    samples, X = samples_and_features(project)
    assert M.latest_map_points(project, "emb:fake") is None  # nothing laid out yet
    laid_out = M.map_points(project, samples, X, "emb:fake")
    new = NewSample(leaf_id=samples[0].leaf_id, key="9:9", instruction="a newer sample", path=samples[0].path)
    project.add_samples([new])
    project.delete_samples([samples[1].id])
    older = M.latest_map_points(project, "emb:fake")
    assert older.sample_id.tolist() == [s.id for s in samples if s.id != samples[1].id]  # no new, no deleted
    before = {p.sample_id: (p.x, p.y) for p in laid_out.records()}
    assert {p.sample_id: (p.x, p.y) for p in older.records()}.items() <= before.items()
    assert M.latest_map_points(project, "emb:other") is None and fake_layout == [9]
    assert len(M.latest_map_points(project, "emb:fake", sample_sets=["tree"])) == 7  # the baseline left out


def read_by_group_by(project, kind, sample_sets=(TREE_SET, BASELINE_SET)):
    """The latest map read the way maps written before their origins were kept are read: its
    coordinates with every sample's columns (one GROUP BY): the reference for the kept origins."""
    import json

    latest = json.loads(project.get_blob(M._latest_key(kind, 0)))
    ids = np.frombuffer(project.get_blob(f"{latest['key']}:ids"), dtype=np.int64)
    coords = np.frombuffer(project.get_blob(latest["key"]), dtype=np.float64).reshape(-1, 2)
    return M._points(project, project.sample_columns(sample_sets), ids, coords)


def test_a_map_read_after_samples_are_deleted_moved_and_restored_answers_as_the_samples_say(
    project, fake_layout, monkeypatch
):
    samples, X = samples_and_features(project)
    M.map_points(project, samples, X, "emb:fake")
    div = samples[4].leaf_id
    deletion = project.trash_samples([samples[1].id, samples[4].id])  # 4: division's "0:0", which 0 takes
    project.assign_leaves({samples[0].id: (div, [{"criterion": "Operation", "value": "division"}])})
    project.assign_leaves({samples[2].id: (samples[2].leaf_id, [{"criterion": "Operation", "value": "sum"}])})
    project.import_samples([NewSample(leaf_id=div, key="i", instruction="imported", path=[])], sample_set="other")
    expected = {sets: read_by_group_by(project, "emb:fake", sets) for sets in ((TREE_SET, BASELINE_SET), (TREE_SET,))}
    reads = []
    monkeypatch.setattr(type(project), "sample_columns", lambda *a, **k: reads.append(a) or pytest.fail("GROUP BY"))
    for sets, reference in expected.items():
        points = M.latest_map_points(project, "emb:fake", sample_sets=sets)
        assert points.records() == reference.records()  # every point's id, place, leaf, path, set and text
        assert [o.path for o in points.present()] == [o.path for o in reference.present()]
    moved = {p.sample_id: p for p in points.records()}
    assert samples[1].id not in moved and moved[samples[0].id].path == "division"
    assert moved[samples[2].id].criteria == {"Operation": "sum"}  # a new path in the same leaf
    monkeypatch.undo()
    project.restore_samples(deletion.batch)
    back = M.latest_map_points(project, "emb:fake")
    assert back.records() == read_by_group_by(project, "emb:fake").records()
    assert len(back) == 8  # 1 is back; 4 stays deleted (0 holds its key now)


def test_writing_a_map_forgets_the_sample_moves_every_latest_map_has_read_past(project, fake_layout):
    samples, X = samples_and_features(project)
    M.map_points(project, samples, X, "emb:fake")
    M.map_points(project, samples, X, "emb:other")
    project.delete_samples([samples[3].id])
    assert project.sample_moves(0) == [samples[3].id]
    rest = [s for s in samples if s.id != samples[3].id]
    keep = np.array([s.id != samples[3].id for s in samples])
    M.map_points(project, rest, X[keep], "emb:fake")
    assert project.sample_moves(0) == [samples[3].id]  # emb:other was written before: it still needs it
    M.map_points(project, rest, X[keep], "emb:other")
    assert project.sample_moves(0) == [] and project.sample_moves_seq() == 1
    assert len(M.latest_map_points(project, "emb:other")) == 8


def test_an_import_leaves_the_sample_journal_alone(project):
    before = project.sample_moves_seq()
    project.import_samples(
        [NewSample(leaf_id="x", key=str(i), instruction="q", path=[]) for i in range(3)], sample_set="d"
    )
    assert project.sample_moves_seq() == before
    project.delete_sample_set("d")
    assert project.sample_moves_seq() == before + 3


def test_the_latest_map_is_the_one_served_last(project, fake_layout):
    """A map served from the cache becomes the latest again (the page shows what the job last made)."""
    samples, X = samples_and_features(project)
    M.map_points(project, samples, X, "emb:fake")
    M.map_points(project, samples[:-1], X[:-1], "emb:fake")
    assert len(M.latest_map_points(project, "emb:fake")) == 8
    M.map_points(project, samples, X, "emb:fake")
    assert len(M.latest_map_points(project, "emb:fake")) == 9 and fake_layout == [9, 8]


def test_a_latest_map_written_before_the_ids_blob_still_reads(project, fake_layout):
    import json

    samples, X = samples_and_features(project)
    M.map_points(project, samples, X, "emb:fake")
    latest = json.loads(project.get_blob(M._latest_key("emb:fake", 0)))
    old = {"key": latest["key"], "ids": [s.id for s in samples]}  # the format of map-v1 before this one
    project.put_blob(M._latest_key("emb:fake", 0), json.dumps(old).encode())
    assert M.latest_map_points(project, "emb:fake").sample_id.tolist() == old["ids"]


def test_figure_groups_escapes_hover_and_refuses_unknown_colours(project, fake_layout):
    samples, X = samples_and_features(project)
    points = M.map_points(project, samples, X, "emb:fake")
    fig = M.figure(points, color_by="leaf", title="t")
    assert [t.name for t in fig.data] == ["addition", "division", M.BASELINE_LABEL]
    assert fig.data[2].marker.symbol == "x"
    hover = fig.data[0].text[0]
    assert "&lt;b&gt;addition&lt;/b&gt; problem 0 &amp; more" in hover and "<b>addition</b><br>" in hover
    by_set = M.figure(points, color_by="sample_set")
    assert sorted(t.name for t in by_set.data) == ["baseline", "tree"]
    by_criterion = M.figure(points, color_by="Operation")
    assert [len(t.x) for t in by_criterion.data] == [4, 4, 1]
    assert M.color_options(points) == ["leaf", "subtree", "sample_set", "Operation"]
    with pytest.raises(TreeSynthError, match="choose one of"):
        M.figure(points, color_by="Colour")


def test_write_map_html_is_self_contained(project, fake_layout, tmp_path):
    samples, X = samples_and_features(project)
    points = M.map_points(project, samples, X, "emb:fake")
    fig = M.figure(points)
    out = M.write_map(fig, tmp_path / "maps" / "m.html")
    text = out.read_text(encoding="utf-8")
    assert out.stat().st_size > 1_000_000  # plotly.js inline
    assert 'src="https://cdn.plot.ly' not in text and "&lt;b&gt;addition" in text
    from_points = M.write_map(points, tmp_path / "p.htm", color_by="Operation").read_text(encoding="utf-8")
    assert 'src="https://cdn.plot.ly' not in from_points and '"Operation"' in from_points
    with pytest.raises(TreeSynthError, match=".html or .png"):
        M.write_map(fig, tmp_path / "m.svg")
    assert not (tmp_path / "m.svg").exists()


def test_write_map_png_without_a_browser(project, fake_layout, tmp_path):
    samples, X = samples_and_features(project)
    points = M.map_points(project, samples, X, "emb:fake")
    out = M.write_map(points, tmp_path / "maps" / "m.PNG", color_by="Operation", title="Math $5 & <b>more</b>")
    width, height = png_size(out.read_bytes())
    assert width >= 800 and height >= 600 and out.stat().st_size > 10_000
    assert M.map_bytes(points, "png") == M.map_bytes(points, "png")  # deterministic
    assert png_size(M.map_bytes(MapPoints.from_points([]), "png"))[0] >= 800  # an empty map still draws
    with pytest.raises(TreeSynthError, match="choose one of"):
        M.map_bytes(points, "png", color_by="Colour")
    with pytest.raises(TreeSynthError, match="points"):
        M.write_map(M.figure(points), tmp_path / "m.png")
    with pytest.raises(TreeSynthError, match="html or png"):
        M.map_bytes(points, "svg")


def test_png_groups_colours_and_legend(project, fake_layout, monkeypatch):
    """The PNG draws the groups of the HTML figure, in plotly's colours, the baseline as grey crosses,
    and names at most PNG_LEGEND_MAX groups in its legend."""
    from matplotlib.figure import Figure

    samples, X = samples_and_features(project)
    points = M.map_points(project, samples, X, "emb:fake")
    drawn: list[Figure] = []
    savefig = Figure.savefig

    def keep(self, *args, **kwargs):
        drawn.append(self)
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    M.png(points, color_by="leaf", title="t")
    ax = drawn[-1].axes[0]
    assert [c.get_label() for c in ax.collections] == ["addition", "division", M.BASELINE_LABEL]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["addition", "division", M.BASELINE_LABEL]
    assert ax.get_xlabel() == "UMAP 1" and ax.get_ylabel() == "UMAP 2" and ax.get_title(loc="left") == "t"
    colours = [tuple(round(v, 3) for v in c.get_facecolor()[0][:3]) for c in ax.collections]
    rgb = [tuple(round(int(h[i : i + 2], 16) / 255, 3) for i in (1, 3, 5)) for h in (*M.COLORWAY[:2], M.BASELINE_COLOR)]
    assert colours == rgb

    many = MapPoints.from_points(
        [MapPoint(i, float(i), float(i % 7), f"l{i}", f"_leaf {i} $x$", f"leaf {i}") for i in range(30)]
    )
    M.png(many)
    ax = drawn[-1].axes[0]
    assert ax.get_legend() is None and len(ax.collections) == 30
    assert ax.collections[0].get_label() == " _leaf 0 \\$x\\$"  # no mathtext, not hidden from a legend
    M.png(many.take(np.arange(20)))
    assert len(drawn[-1].axes[0].get_legend().get_texts()) == 20


def test_matplotlib_is_imported_only_for_a_png():
    import subprocess
    import sys

    code = "import sys, treesynth_core.coverage.maps, treesynth_core.cli.coverage; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == (
        "False"
    )


def test_leaf_labels_name_sampled_nodes(project):
    labels = M.leaf_labels(project.tree())
    assert sorted(labels.values()) == ["addition", "division", "root"]


def test_the_cache_key_is_the_one_maps_were_cached_under():
    """Maps cached before the features were hashed in place stay cached (the key is pinned)."""
    X = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    assert M.map_cache_key("emb:x", [3, 1, 2], X, {"seed": 0}) == "map-v1:5d968f504a8d0e2d945e15f897ccbf79e940b417"


def test_hover_lines_wrap_as_textwrap_does_for_ordinary_text():
    import random
    import textwrap

    rng = random.Random(0)
    for _ in range(300):
        words = [
            "".join(rng.choice("abcdefg") for _ in range(rng.choice([1, 3, 8, 20]))) for _ in range(rng.randint(0, 60))
        ]
        text = " ".join(words).replace(" ", "\n", rng.randint(0, 2))
        assert M.wrap(text, 80) == (textwrap.wrap(text, 80) or [""])
    long = M.wrap("a " + "x" * 170 + " b", 80)
    assert long == ["a", "x" * 80, "x" * 80, "x" * 10 + " b"] and M.wrap("", 80) == [""]


def test_a_map_of_many_leaves_keeps_a_short_legend_and_every_point(monkeypatch):
    """Past LEGEND_GROUPS groups the largest keep a trace (legend entry) of their own, the flat
    baseline always (showing it changes no other entry), and the rest share one trace coloured point
    by point: every point is drawn once, each group in the colour the PNG gives it."""
    monkeypatch.setattr(M, "LEGEND_GROUPS", 4)
    sizes = [1, 5, 2, 6, 3, 4]  # leaves l0..l5, then 2 baseline points
    leaf = np.repeat(np.arange(6), sizes)
    origin = np.concatenate([leaf, [6, 6]])
    origins = tuple(Origin(f"l{i}", f"leaf {i}", "", {}, TREE_SET) for i in range(6))
    origins += (Origin("", M.BASELINE_LABEL, "", {}, BASELINE_SET),)
    n = origin.size
    points = MapPoints(
        np.arange(n), np.arange(n, dtype=float), np.zeros(n), origin, origins, lambda ids: [""] * len(ids)
    )
    fig = M.figure(points)
    names = [t.name for t in fig.data]
    assert names == ["leaf 1", "leaf 3", "leaf 5", M.BASELINE_LABEL, "3 more leaves"]  # the 3 largest, the rest
    assert sorted(x for t in fig.data for x in t.x) == list(range(n))  # each point once
    palette = {f"leaf {i}": M.COLORWAY[i] for i in range(6)}
    assert [t.marker.color for t in fig.data[:3]] == [palette["leaf 1"], palette["leaf 3"], palette["leaf 5"]]
    assert fig.data[3].marker.color == M.BASELINE_COLOR and fig.data[3].marker.symbol == "x"
    shared = fig.data[4]
    by_x = dict(zip(shared.x, shared.marker.color, strict=True))
    assert by_x[0.0] == palette["leaf 0"] and by_x[float(n - 8)] == palette["leaf 4"]
    without = M.figure(points.take(np.flatnonzero(origin < 6)))
    assert [t.name for t in without.data] == ["leaf 1", "leaf 3", "leaf 5", "3 more leaves"]  # the same leaves
    assert M.legend_groups({"a": np.arange(2), "b": np.arange(1)}, limit=2) == (["a", "b"], [])
