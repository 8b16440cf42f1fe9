"""Prismatic gap filling with the scripted fake and a hashing featurizer; spherical k-means on
synthetic data."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import threading

import numpy as np
import pytest

from tests.fakes import ScriptedLLM
from treesynth_core.coverage.diversity import subsample_indices, vendi_score
from treesynth_core.errors import Cancelled, TreeSynthError
from treesynth_core.generate.gap_options import GapOptions
from treesynth_core.generate.gaps import GapReport, fill_gaps, gap_prompt, sparse_clusters, spherical_kmeans
from treesynth_core.seeding import stable_seed
from treesynth_core.store import Project
from treesynth_core.store.samples import NewSample
from treesynth_core.tree import model as T

LLM_PROVENANCE = T.Provenance("llm", model="m")
DIM = 64

# -- spherical k-means ----------------------------------------------------------------------------


def blobs(seed: int = 0, per: int = 30, d: int = 16, noise: float = 0.05):
    """Three tight groups around orthogonal directions, shuffled; (X, true group of each row)."""
    rng = np.random.default_rng(seed)
    centers = np.eye(d)[:3]
    truth = np.repeat(np.arange(3), per)
    X = centers[truth] + noise * rng.standard_normal((3 * per, d))
    order = rng.permutation(len(X))
    return X[order], truth[order]


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_kmeans_recovers_separable_clusters(init):
    X, truth = blobs()
    centroids, labels = spherical_kmeans(X, 3, seed=1, init=init)
    assert centroids.shape == (3, 16) and labels.shape == (90,)
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    for group in range(3):  # each true group is exactly one cluster
        assert len(set(labels[truth == group])) == 1
    assert len(set(labels)) == 3
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    assert np.array_equal((unit @ centroids.T).argmax(1), labels)


def test_kmeans_is_deterministic_under_a_seed():
    X = np.random.default_rng(5).standard_normal((200, 8))
    first = spherical_kmeans(X, 20, seed=7)
    again = spherical_kmeans(X, 20, seed=7)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    random_init = [spherical_kmeans(X, 20, seed=7, init="random")[1] for _ in range(2)]
    assert np.array_equal(*random_init)


def test_kmeans_reseeds_empty_clusters():
    X, _ = blobs(per=10)
    init = np.stack([np.eye(16)[0], np.eye(16)[0], np.eye(16)[1]])  # two identical centroids: one starts empty
    centroids, labels = spherical_kmeans(X, 3, init=init)
    assert np.all(np.bincount(labels, minlength=3) > 0)
    assert np.all(np.isfinite(centroids))


def test_kmeans_checks_k():
    with pytest.raises(ValueError, match=r"k must be between 1 and the number of rows \(3\), not 4"):
        spherical_kmeans(np.ones((3, 2)), 4)


def test_sparse_clusters_follow_the_prismatic_rule():
    labels = np.repeat(np.arange(5), [5, 1, 3, 1, 10])
    # sorted sizes 1 1 3 5 10, index floor(5 * 0.5) = 2 -> size 3: clusters smaller than 3 are sparse
    assert sparse_clusters(labels, 5, 0.5).tolist() == [False, True, False, True, False]
    assert sparse_clusters(np.repeat(np.arange(4), 3), 4, 0.5).all()  # none smaller: all count


def test_gap_prompt_shows_path_examples_and_count():
    prompt = gap_prompt("Math problems", "short", [("Operation", "division")], ["a" * 700, "Split 6 apples"], 3)
    assert '"value": "division"' in prompt and "1. " + "a" * 100 in prompt and "2. Split 6 apples" in prompt
    assert "a" * 650 not in prompt  # long examples are cut
    assert prompt.endswith("with exactly 3 strings.")


# -- the loop -------------------------------------------------------------------------------------


#: Words that set a text's direction; every other word adds a little hashed noise.
TOPICS = {"apples": 0, "violin": 1}


def word_vector(text: str) -> np.ndarray:
    """A deterministic bag of words: texts about apples point one way, texts about violins another."""
    v = np.zeros(DIM, dtype=np.float32)
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in TOPICS:
            v[TOPICS[word]] += 4.0
        else:
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
            v[len(TOPICS) + h % (DIM - len(TOPICS))] += 0.5
    return v


class Featurize:
    """The fake featurizer: records what it was given."""

    name = "fake:words"

    def __init__(self) -> None:
        self.calls: list[list] = []

    def __call__(self, samples):
        self.calls.append(list(samples))
        return np.stack([word_vector(s.instruction) for s in samples])


DENSE = [
    f"count the apples in basket number {n} on the farm"
    for n in [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
    ]
]
SPARSE = [
    "divide the violin strings among zebra quartets",
    "share the violin bows between zebra orchestras",
    "split violin lattice crystals across telescopes",
    "distribute violin crystals among observatories evenly",
]


SCIENCE_WORDS = [
    "zebra",
    "quantum",
    "crystals",
    "telescopes",
    "observatories",
    "orchestras",
    "lattice",
    "bows",
    "strings",
    "quartets",
    "among",
    "across",
]


class GapLLM(ScriptedLLM):
    """Answers gap prompts with the reply scripted for (round, call), found by the request's seed;
    other calls get texts made of the sparse group's words, varied by the seed."""

    def __init__(self, replies: dict[tuple[int, int], list[str]] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.replies = replies or {}

    def _gaps(self, request):
        n = self._count(self._prompt(request))
        for (r, c), texts in self.replies.items():
            if request.seed == stable_seed(0, "gaps", r, c):
                return json.dumps({"samples": texts[:n]})
        rng = random.Random(request.seed)
        return json.dumps({"samples": ["violin " + " ".join(rng.sample(SCIENCE_WORDS, 6)) for _ in range(n)]})


def make_project(folder, *, responses: bool = False) -> Project:
    """Two leaves: 16 near-identical farm samples (a dense cluster) and 4 varied science ones."""
    p = Project.create(folder, task="Word problems", style="short")

    def build(tree: T.Tree) -> T.Tree:
        tree = T.attach_split(
            tree, tree.root_id, criterion="Topic", values=["farm", "science"], provenance=LLM_PROVENANCE
        )
        return T.approve(tree, [k.id for k in tree.children(tree.root_id)])

    p.apply("grow", build, actor="llm")
    farm, science = (leaf.id for leaf in p.tree().leaves())
    response = "ok" if responses else None
    rows = [
        NewSample(farm, f"0:{i}", text, [{"criterion": "Topic", "value": "farm"}], response=response)
        for i, text in enumerate(DENSE)
    ]
    rows += [
        NewSample(science, f"0:{i}", text, [{"criterion": "Topic", "value": "science"}], response=response)
        for i, text in enumerate(SPARSE)
    ]
    p.add_samples(rows)
    return p


@pytest.fixture
def project(tmp_path):
    with make_project(tmp_path / "p") as p:
        yield p


def run(project, llm, featurize, progress=None, cancel=None, **options) -> GapReport:
    return asyncio.run(fill_gaps(project, llm, featurize, GapOptions(**options), progress=progress, cancel=cancel))


def scripted() -> GapLLM:
    farm = "count the apples in basket number {} on the farm"
    return GapLLM(
        {
            (0, 0): ["divide the violin cases among zebra bands", farm.format("twenty")],
            (0, 1): ["split violin crystals across telescopes twice", farm.format("thirty")],
        }
    )


def test_keeps_candidates_that_land_in_sparse_clusters(project):
    llm, featurize = scripted(), Featurize()
    report = run(project, llm, featurize, per_round=4, per_call=2)
    assert (report.rounds, report.candidates, report.accepted, report.n) == (1, 4, 2, 20)
    assert report.acceptance_rate == 0.5 and report.space == "fake:words"
    science = project.tree().leaves()[1].id
    kept = [s for s in project.samples() if s.extra.get("origin") == "fill-gaps"]
    assert sorted(s.instruction for s in kept) == [
        "divide the violin cases among zebra bands",
        "split violin crystals across telescopes twice",
    ]
    assert {s.leaf_id for s in kept} == {science} and {s.key for s in kept} == {"gap:0:0:0", "gap:0:1:0"}
    assert all(s.extra == {"origin": "fill-gaps", "round": 0} and s.path[0]["value"] == "science" for s in kept)
    # every prompt shows the sparse cluster's leaf path and its examples, never the dense ones
    prompts = [r.messages[0][1] for r in llm.history if r.purpose() == "gaps"]
    assert len(prompts) == 2
    assert all('"value": "science"' in p and "apples" not in p for p in prompts)
    assert all(sum(text in p for text in SPARSE) >= 2 for p in prompts)
    # the pool has ids; candidates are not stored yet (id 0)
    assert all(s.id > 0 for s in featurize.calls[0]) and all(s.id == 0 for s in featurize.calls[1])


def test_diversity_is_compared_at_equal_n(project):
    report = run(project, scripted(), Featurize(), per_round=4, per_call=2)
    pool = project.samples()
    X = np.stack([word_vector(s.instruction) for s in pool])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    assert report.before == pytest.approx(vendi_score(X[:20]), rel=1e-5)
    picked = subsample_indices(22, 20, seed=stable_seed(0, "gaps-vendi"))
    assert report.after == pytest.approx(vendi_score(X[picked]), rel=1e-5)


def test_rounds_continue_after_the_stored_ones(project):
    first = scripted()
    run(project, first, Featurize(), per_round=4, per_call=2)
    second = scripted()
    report = run(project, second, Featurize(), rounds=2, per_round=4, per_call=2)
    keys = {s.key for s in project.samples() if s.extra.get("origin") == "fill-gaps"}
    assert {k.split(":")[1] for k in keys} >= {"0", "1"}  # round numbers continue after the stored ones
    assert report.rounds == 2 and all(r.seed != q.seed for r in second.history for q in first.history)


def test_the_same_project_state_asks_the_same_questions(tmp_path):
    asked = []
    for name in ("a", "b"):
        with make_project(tmp_path / name) as p:
            llm = scripted()
            run(p, llm, Featurize(), rounds=2, per_round=6, per_call=3)
            asked.append([(r.messages, r.seed, r.temperature, r.max_tokens) for r in llm.history])
    assert asked[0] == asked[1] and len(asked[0]) == 4


def test_responses_are_made_when_the_pool_has_them(tmp_path):
    with make_project(tmp_path / "p", responses=True) as project:
        llm = scripted()
        report = run(project, llm, Featurize(), per_round=4, per_call=2)
        kept = [s for s in project.samples() if s.extra.get("origin") == "fill-gaps"]
    assert report.accepted == len(kept) > 0
    assert all(s.response and s.response.startswith("Answer:") for s in kept)
    assert llm.calls("response") == report.candidates


def test_duplicates_of_the_leaf_are_dropped(project):
    llm = GapLLM({(0, 0): [SPARSE[0], SPARSE[1]], (0, 1): [SPARSE[2], "brand new zebra violin story"]})
    report = run(project, llm, Featurize(), per_round=4, per_call=2)
    assert report.duplicates >= 2 and report.accepted <= 2


def test_failed_calls_are_counted(project):
    llm = scripted()
    llm.enqueue("gaps", ["not json", "still not json"])
    report = run(project, llm, Featurize(), per_round=4, per_call=2)
    assert report.failed_calls == 1 and report.candidates == 2


def test_cancel_stops_before_the_next_call(project):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled, match="gap filling stopped; rounds finished so far are saved"):
        run(project, scripted(), Featurize(), cancel=cancel)


def test_a_tiny_pool_is_refused(tmp_path):
    with Project.create(tmp_path / "p", task="t") as p, pytest.raises(TreeSynthError, match="at least"):
        run(p, scripted(), Featurize())


def test_progress_reports_calls(project):
    seen = []
    run(project, scripted(), Featurize(), rounds=2, per_round=4, per_call=2, progress=lambda *a: seen.append(a))
    assert seen[-1][:2] == (4, 4) and "round 2/2" in seen[-1][2]


def test_a_featurizer_that_caches_candidates_by_id_is_caught(project):
    def by_id(samples):  # caches by sample id, so every unsaved candidate (id 0) gets one vector
        cache = {}
        return np.stack([cache.setdefault(s.id, word_vector(s.instruction)) for s in samples])

    with pytest.raises(TreeSynthError, match="id 0"):
        run(project, scripted(), by_id, per_round=4, per_call=2)


def test_fills_gaps_in_gradient_space_of_a_tiny_model(project):
    pytest.importorskip("transformers")
    from tests.tiny_models import tiny_llama, tiny_tokenizer
    from treesynth_core.coverage.features.gradients import GradientFeaturizer

    tokenizer = tiny_tokenizer()
    featurizer = GradientFeaturizer.from_model(tiny_llama(len(tokenizer)), tokenizer, label="tiny", dim=64)
    report = run(project, scripted(), featurizer.features, per_round=4, per_call=2)
    assert report.space == "grad:tiny:64:0:t512" and report.candidates == 4
    assert 1.0 <= report.before <= 20 and 1.0 <= report.after <= 20 and report.n == 20
    kept = [s for s in project.samples() if s.extra.get("origin") == "fill-gaps"]
    assert len(kept) == report.accepted
