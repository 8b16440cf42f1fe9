"""The gap-filling report's pure parts: the cluster-size histogram, the random-acceptance baseline,
the Vendi-vs-n curve (incremental, checked against the score of every row at once) and the JSON
form the project keeps."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from treesynth_core.coverage.diversity import vendi_score
from treesynth_core.data.card_notes import GenerationNotes, generation_section
from treesynth_core.generate.agreement import LeafAgreement
from treesynth_core.generate.gap_curves import GrowingVendi, cluster_size_histogram, random_acceptance, vendi_curve
from treesynth_core.generate.gap_report import (
    CurvePoint,
    GapReport,
    GapRound,
    last_report,
    report_data,
    report_from_json,
    report_json,
)
from treesynth_core.store.samples import Sample


def test_histogram_counts_clusters_by_size_as_brute_force():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 9, size=200)
    k = 12  # three clusters stay empty
    brute = Counter(Counter({c: 0 for c in range(k)} | Counter(labels.tolist())).values())
    assert cluster_size_histogram(labels, k) == sorted(brute.items())
    assert cluster_size_histogram(labels, k)[0] == (0, 3)
    assert sum(size * n for size, n in cluster_size_histogram(labels, k)) == 200
    assert cluster_size_histogram(np.repeat([0, 1, 2], [2, 2, 5]), 3) == [(2, 2), (5, 1)]


def test_random_acceptance_draws_distinct_rows_under_a_seed():
    rows = random_acceptance(50, 12, seed=4)
    assert len(rows) == len(set(rows.tolist())) == 12 and rows.min() >= 0 and rows.max() < 50
    assert np.array_equal(rows, random_acceptance(50, 12, seed=4))
    assert not np.array_equal(rows, random_acceptance(50, 12, seed=5))
    assert random_acceptance(5, 0, seed=0).tolist() == [] and random_acceptance(3, 3, seed=0).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="cannot keep 4 of 3"):
        random_acceptance(3, 4, seed=0)


@pytest.mark.parametrize(("n", "d"), [(40, 8), (6, 30)])  # more rows than columns, and fewer
def test_growing_vendi_equals_the_score_of_all_rows(n, d):
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, d)) * rng.uniform(0.1, 5, size=(n, 1))  # any scale: rows are normalized
    grown = GrowingVendi(X[: n // 2])
    assert grown.score() == pytest.approx(vendi_score(X[: n // 2]), rel=1e-9)
    grown.add(X[n // 2 :])
    assert grown.n == n and grown.score() == pytest.approx(vendi_score(X), rel=1e-9)
    assert GrowingVendi(np.zeros((0, d))).score() == 0.0


def test_vendi_curve_follows_both_pools_round_by_round():
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((20, 6))
    kept = [rng.standard_normal((3, 6)), np.zeros((0, 6)), rng.standard_normal((2, 6))]
    same = pool[:1]  # the baseline "kept" copies of one pool row: its diversity must fall behind
    randomly = [np.repeat(same, len(k), axis=0) for k in kept]
    curve = vendi_curve(pool, kept, randomly)
    assert [n for n, _, _ in curve] == [20, 23, 23, 25]
    for r, (_, ours, theirs) in enumerate(curve):
        assert ours == pytest.approx(vendi_score(np.concatenate([pool, *kept[:r]])), rel=1e-9)
        assert theirs == pytest.approx(vendi_score(np.concatenate([pool, *randomly[:r]])), rel=1e-9)
    assert curve[0][1] == curve[0][2] and curve[-1][1] > curve[-1][2]
    with pytest.raises(ValueError, match="must match"):
        vendi_curve(pool, kept[:1], [np.zeros((1, 6))])


def sample_report() -> GapReport:
    rounds = [
        GapRound(3, 4, 2, 2, 1, {"a": 2}, {"b": 2}, 5, 2, [(1, 2), (4, 3)]),
        GapRound(4, 4, 3, 1, 2, {"a": 1, "b": 2}, {"a": 1}, 5, 2, [(1, 1), (3, 2), (5, 2)]),
    ]
    curve = [CurvePoint(2, 20, 3.5, 3.5), CurvePoint(3, 21, 3.9, 3.6), CurvePoint(4, 23, 4.2, 3.7)]
    return GapReport(
        2, 8, 3, 0.375, 3.5, 4.0, 20, "fake", 5, 3, {"no majority": 3}, rounds, curve=curve, verify=3, answer="boxed"
    )


def test_report_json_round_trips_and_sums_the_vote_per_leaf():
    report = sample_report()
    again = report_from_json(report_json(report))
    assert again == report
    assert again.rejected_by_leaf() == {"b": 2, "a": 1} and again.verified_by_leaf() == {"a": 3, "b": 2}
    data = report_data(report)
    assert [r["acceptance_rate"] for r in data["per_round"]] == [0.25, 0.5]
    assert data["per_round"][0]["cluster_sizes"] == [[1, 2], [4, 3]]
    assert data["curve"][1] == {"round": 3, "n": 21, "kept": 3.9, "random": 3.6}


def test_an_older_or_newer_stored_report_still_reads():
    old = '{"rounds": 1, "candidates": 2, "accepted": 1, "acceptance_rate": 0.5, "before": 1.0, "after": 1.2,'
    old += ' "n": 4, "space": "x", "per_round": [{"round": 0, "candidates": 2, "verified": 0, "rejected": 0,'
    old += ' "kept": 1, "future": 1}], "future_field": true}'
    report = report_from_json(old)
    assert report.per_round[0].cluster_sizes == [] and report.curve == [] and report.verify == 0

    class Blobs:
        def __init__(self, data):
            self.data = data

        def get_blob(self, key):
            return self.data

    assert last_report(Blobs(None)) is None and last_report(Blobs(b"{not json")) is None
    assert last_report(Blobs(report_json(sample_report()).encode())) == sample_report()


def test_the_card_section_appears_only_when_verification_or_gap_filling_was_used():
    plain = [Sample("leaf", "k", "What is 2 + 2?", [], response="4", id=1)]
    assert generation_section(plain, GenerationNotes(LeafAgreement(3, 1), sample_report())) == []
    voted = Sample("leaf", "v", "What is 3 + 3?", [], response="6", extra={"verified": "2/3"}, id=2)
    lines = generation_section([*plain, voted], GenerationNotes(LeafAgreement(3, 1)))
    assert lines[0] == "## Verification and gap filling"
    assert "1 samples were kept only because a strict majority of 3 independent answers" in lines[2]
    assert "3 of 4 questions agreed (75%) and 1 were rejected" in lines[3] and len(lines) == 5
