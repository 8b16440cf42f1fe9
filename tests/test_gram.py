import numpy as np
import pytest

from treesynth_core.coverage.diversity import vendi_score
from treesynth_core.coverage.gram import GramPartial, gram_partial, sum_partials, vendi_from_gram


def _features(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def test_vendi_from_partials_matches_vendi_score() -> None:
    X = _features(300, 16)
    shards = [X[:70], X[70:200], X[200:]]
    total = sum_partials(gram_partial(s, block=32) for s in shards)
    assert total is not None and total.n == 300
    for q in (0.5, 1.0, 2.0, float("inf")):
        assert vendi_from_gram(total, q=q) == pytest.approx(vendi_score(X, q), rel=1e-5)


def test_partial_is_scale_free_and_matches_normalized_gram() -> None:
    X = _features(50, 8, seed=1)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    part = gram_partial(X * 7.0)
    np.testing.assert_allclose(part.gram, unit.T @ unit, rtol=1e-5, atol=1e-5)


def test_union_of_leaves_equals_their_rows_together() -> None:
    X = _features(120, 12, seed=2)
    a, b = gram_partial(X[:40]), gram_partial(X[40:])
    assert vendi_from_gram(a + b) == pytest.approx(vendi_from_gram(gram_partial(X)), rel=1e-6)
    assert vendi_from_gram((a + b).gram, 120) == pytest.approx(vendi_score(X), rel=1e-5)


def test_identical_and_orthogonal_rows() -> None:
    assert vendi_from_gram(gram_partial(np.ones((10, 4)))) == pytest.approx(1.0)
    assert vendi_from_gram(gram_partial(np.eye(4))) == pytest.approx(4.0)


def test_empty_and_bad_input() -> None:
    assert sum_partials([]) is None
    assert vendi_from_gram(GramPartial(np.zeros((3, 3)), 0)) == 0.0
    with pytest.raises(ValueError, match="zero norm"):
        gram_partial(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="NaN"):
        gram_partial(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="needs n"):
        vendi_from_gram(np.eye(2))
    with pytest.raises(ValueError, match="square"):
        vendi_from_gram(np.ones((2, 3)), 2)
