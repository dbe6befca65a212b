"""core.represent.atom_contributions: each atom's term of a direction's projection in a dictionary's basis."""

import numpy as np
import pytest

from conceptvec.core.represent import atom_contributions


def test_atom_terms_sum_to_the_projection_of_the_reconstruction():
    rng = np.random.default_rng(0)
    decoder, codes, direction = rng.standard_normal((12, 5)), np.maximum(rng.standard_normal((7, 12)), 0), rng.standard_normal(5)
    terms = atom_contributions(codes, decoder, direction)
    assert terms.shape == (7, 12)
    np.testing.assert_allclose(terms.sum(axis=1), (codes @ decoder) @ direction)
    # an atom orthogonal to the direction contributes nothing, however strongly it is coded
    orthogonal = decoder[3] - (decoder[3] @ direction) / (direction @ direction) * direction
    decoder[3] = orthogonal
    assert np.allclose(atom_contributions(codes, decoder, direction)[:, 3], 0.0)


def test_focus_pool_weights_positions_by_where_the_direction_fires():
    from conceptvec.core.represent import focus_pool

    a = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0]])
    # relu weights (2, 0, 1)/3: the position with a negative score counts for nothing
    np.testing.assert_allclose(focus_pool(a, scores=np.array([2.0, -1.0, 1.0])), [5 / 3, 1.0])
    np.testing.assert_allclose(focus_pool(a, scores=np.array([2.0, -1.0, 1.0]), weighting="top", top=1), [1.0, 0.0])
    np.testing.assert_allclose(focus_pool(a, scores=np.array([0.0, 5.0, 1.0]), weighting="top", top=2), [1.5, 2.0])
    # fires nowhere: the paper's plain mean over positions
    np.testing.assert_allclose(focus_pool(a, scores=-np.ones(3)), a.mean(axis=0))
    # softmax at temperature sd(s): weights proportional to exp(s / sd(s))
    s = np.array([0.0, 1.0, 2.0])
    w = np.exp(s / s.std())
    np.testing.assert_allclose(focus_pool(a, scores=s, weighting="softmax"), (w / w.sum()) @ a)
    with pytest.raises(ValueError, match="weighting"):
        focus_pool(a, scores=s, weighting="max")
    with pytest.raises(ValueError, match="scores"):
        focus_pool(a, scores=s[:2])


def test_focus_pool_separates_two_local_sources_that_pooling_mixes_with_the_global_look():
    """Planted per-position layer: the direction (unit 0) fires at one position per example, with unit 1 beside it
    for source 0 and unit 2 for source 1; the other positions (the background) carry one of two strong global looks
    (units 3-5), independent of the source. Pooled over positions the looks dominate; pooled where unit 0 fires, the
    sources. (A look present at the firing position too would stay in the focus row: it removes what lies elsewhere.)"""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from conceptvec.core.represent import focus_pool

    rng = np.random.default_rng(0)
    n, positions, width = 60, 16, 6
    source, look = np.arange(n) % 2, rng.permutation(np.arange(n) % 2)
    looks = np.array([[4.0, 0.0, 4.0], [0.0, 4.0, 4.0]])
    direction = np.eye(width)[0]
    focus, pooled = [], []
    for i in range(n):
        a = 0.1 * rng.standard_normal((positions, width))
        p = rng.integers(positions)
        a[np.arange(positions) != p, 3:] += looks[look[i]]
        a[p, 0] += 3.0 + rng.random()
        a[p, 1 + source[i]] += 3.0
        focus.append(focus_pool(a, scores=a @ direction))
        pooled.append(a.mean(axis=0))

    def ari(rows: list[np.ndarray], truth: np.ndarray) -> float:
        x = np.array(rows)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return adjusted_rand_score(truth, KMeans(2, n_init=5, random_state=0).fit_predict(x))

    assert ari(focus, source) == 1.0
    assert ari(pooled, look) == 1.0 and abs(ari(pooled, source)) < 0.1
