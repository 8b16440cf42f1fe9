"""Features on Ray (``treesynth_core.coverage.distributed``) against the single-process path: one local
Ray (2 CPUs) for the module; embeddings (the embedded MiniLM) and gradient features (a tiny Llama) of 40
samples equal within 1e-5; Vendi from the shards' Gram partials equal to Vendi of the full matrix, over
any union of leaves; ``treesynth score --engine ray`` end to end. Ray is the optional extra: outside CI
the module skips without it; with CI set it fails (CI installs the extra). Marked slow: real Ray worker
processes (each Ray Data run starts its actors) and the embedded MiniLM; ``make test`` runs it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

if not os.environ.get("CI"):
    pytest.importorskip("ray")
pytest.importorskip("transformers")

import ray  # noqa: E402

from tests import tiny_models  # noqa: E402
from treesynth_core.coverage import distributed as R  # noqa: E402
from treesynth_core.coverage.diversity import vendi_score  # noqa: E402
from treesynth_core.coverage.features.embeddings import SentenceTransformerEmbedder  # noqa: E402
from treesynth_core.coverage.features.gradients import GradientFeaturizer  # noqa: E402
from treesynth_core.store.samples import Sample  # noqa: E402

pytestmark = pytest.mark.slow

LEAVES = ["add", "div", "frac", "geo"]
WORDS = "apples pears trains coins boats lamps chairs books cakes shirts".split()


def tiny_gradients() -> GradientFeaturizer:
    """The test proxy, built the same in every process (seeded weights): the Ray workers' recipe."""
    tokenizer = tiny_models.tiny_tokenizer()
    model = tiny_models.tiny_llama(len(tokenizer))
    return GradientFeaturizer.from_model(model, tokenizer, label="tiny", dim=64, seed=1, max_tokens=40)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    ray.cloudpickle.register_pickle_by_value(tiny_models)  # the workers need not import tests/
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def samples(n: int = 40) -> list[Sample]:
    return [
        Sample(
            leaf_id=LEAVES[i % len(LEAVES)],
            key=str(i),
            instruction=f"How many {WORDS[i % 10]} and {WORDS[(i * 7) % 10]} make {i} in total?",
            path=[],
            response=None if i % 5 == 0 else f"{i} {WORDS[(i * 3) % 10]}.",
            id=i + 1,
        )
        for i in range(n)
    ]


def by_id(ids: np.ndarray, vectors: np.ndarray) -> dict[int, np.ndarray]:
    return {int(i): v for i, v in zip(ids, vectors, strict=True)}


class Sink:
    def __init__(self) -> None:
        self.vectors: dict[int, np.ndarray] = {}

    def put_features(self, kind, vectors):
        self.vectors.update({i: np.frombuffer(b, dtype=np.float32) for i, b in vectors.items()})


@pytest.fixture(scope="module")
def gradient_run(tmp_path_factory):
    rows = samples()
    kind = tiny_gradients().name
    folder = tmp_path_factory.mktemp("grads") / "shards"
    sink = Sink()
    options = R.RayOptions(batch_size=8, shard_rows=16, workers=2)
    result = R.featurize_on_ray(rows, tiny_gradients, kind, folder, options=options, store=sink)
    return rows, result, sink


def test_gradient_features_on_ray_equal_the_single_process_path(gradient_run):
    rows, result, sink = gradient_run
    expected = tiny_gradients().features(rows, batch_size=8)
    assert result.rows == result.added == 40 and result.dim == 64 and len(result.shards) == 3
    assert sorted(sink.vectors) == [s.id for s in rows]
    got = np.stack([sink.vectors[s.id] for s in rows])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    ids, half = R.read_shards(result.folder)  # the Parquet shards hold float16
    shard = by_id(ids, half)
    np.testing.assert_allclose(np.stack([shard[s.id] for s in rows]), expected, atol=2e-3)
    manifest = json.loads((result.folder / R.MANIFEST).read_text())
    assert manifest == {"kind": result.kind, "dim": 64, "rows": 40}


def test_vendi_from_partials_equals_the_full_matrix_over_any_union_of_leaves(gradient_run):
    rows, result, sink = gradient_run
    X = {s.id: sink.vectors[s.id] for s in rows}
    assert R.vendi_of_leaves(result.folder) == pytest.approx(vendi_score(np.stack(list(X.values()))), abs=1e-5)
    for union in (["add"], ["add", "frac"], ["div", "frac", "geo"]):
        members = [X[s.id] for s in rows if s.leaf_id in union]
        for q in (1.0, 2.0):
            assert R.vendi_of_leaves(result.folder, union, q) == pytest.approx(
                vendi_score(np.stack(members), q), abs=1e-5
            )
    assert R.vendi_of_leaves(result.folder, ["nowhere"]) == 0.0


def test_a_rerun_featurizes_only_new_samples_prunes_deleted_ones_and_refuses_another_kind(gradient_run, tmp_path):
    rows, result, _ = gradient_run
    more = samples(44)
    sink = Sink()
    again = R.featurize_on_ray(more, tiny_gradients, result.kind, result.folder, store=sink)
    assert again.added == 4 and again.rows == 44 and sorted(sink.vectors) == [41, 42, 43, 44]
    with pytest.raises(R.TreeSynthError, match="holds features of"):
        R.featurize_on_ray(more, tiny_gradients, "grad:other", result.folder)
    fewer = R.featurize_on_ray(more[:6], tiny_gradients, result.kind, tmp_path / "copy", prune=True)
    assert fewer.rows == fewer.added == 6  # a fresh folder: nothing to prune
    rebuilt = R.featurize_on_ray(more[:4], tiny_gradients, result.kind, fewer.folder, prune=True)
    assert rebuilt.rows == rebuilt.added == 4 and sorted(R.read_shards(fewer.folder)[0]) == [1, 2, 3, 4]


def test_embeddings_on_ray_equal_the_single_process_path(tmp_path):
    rows = samples()
    embedder = SentenceTransformerEmbedder(device="cpu")
    sink = Sink()
    result = R.featurize_on_ray(
        rows, R.EmbedderRecipe(None), embedder.name, tmp_path / "emb", options=R.RayOptions(batch_size=16), store=sink
    )
    expected = embedder.features(rows, batch_size=16)
    np.testing.assert_allclose(np.stack([sink.vectors[s.id] for s in rows]), expected, atol=1e-5)
    assert result.dim == expected.shape[1] == 384


def test_cli_score_on_ray_end_to_end(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tests.trees import split_root
    from treesynth_core.cli import coverage as cli_coverage
    from treesynth_core.cli.app import app
    from treesynth_core.store import Project
    from treesynth_core.store.samples import NewSample

    cli_coverage.register(app)
    folder = tmp_path / "tiny-llama"
    tokenizer = tiny_models.tiny_tokenizer()
    tiny_models.tiny_llama(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    proj = tmp_path / "p"
    with Project.create(proj, task="Math word problems", style="short") as project:
        tree = split_root(project, "Operation", ["addition", "division"])
        leaves = [k.id for k in tree.children(tree.root_id)]
        project.add_samples(
            [
                NewSample(leaf_id=leaves[i % 2], key=str(i), instruction=s.instruction, path=[], response=s.response)
                for i, s in enumerate(samples(12))
            ]
        )
    args = ["score", str(proj), "--gradients", "--proxy", str(folder), "--grad-max-tokens", "48"]
    result = CliRunner().invoke(app, [*args, "--engine", "ray", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    kinds = {run["kind"]: run for run in report["ray"]}
    assert set(kinds) == {report["embedder"], report["gradients"]}
    for run in kinds.values():
        assert run["rows"] == run["added"] == 12 and Path(run["folder"], R.MANIFEST).is_file()
    local = CliRunner().invoke(app, [*args, "--json"])  # every feature now stored: the same report
    assert json.loads(local.stdout)["sets"] == report["sets"]
    bad = CliRunner().invoke(app, ["score", str(proj), "--engine", "spark"])
    assert bad.exit_code == 1 and "--engine" in bad.output
    local_only = CliRunner().invoke(app, ["score", str(proj), "--gpus-per-worker", "1"])
    assert local_only.exit_code == 1 and "need --engine ray" in " ".join(local_only.output.split())
