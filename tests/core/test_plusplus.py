"""core.plusplus' batched k-means++ against core.kmeans' one chain at a time (itself scikit-learn's, test_kmeans.py),
and kmeans_steps against kmeans_step: the same centres and the same k-means, bit for bit."""

import numpy as np
import pytest

from conceptvec import Params
from conceptvec.core import plusplus
from conceptvec.core.kmeans import _plusplus, kmeans_step, kmeans_steps


def _arrays():
    rng = np.random.default_rng(11)
    for trial in range(12):
        n, d = int(rng.integers(6, 110)), [2, 7, 64, 192, 300, 1536][trial % 6]
        if trial % 3 == 0:
            x = rng.normal(size=(n, d))
        elif trial % 3 == 1:  # rectified and sparse, as a ReLU layer's top examples
            x = np.maximum(rng.normal(size=(n, d)) - 1.0, 0.0)
        else:  # duplicate rows: zero distances and ties
            x = rng.normal(size=(n // 3 + 1, d))[rng.integers(0, n // 3 + 1, n)]
        counts = sorted({1, n, *rng.integers(1, n + 1, size=8).tolist()})
        yield np.ascontiguousarray(x - x.mean(axis=0)), counts, int(rng.integers(0, 4))


CASES = list(_arrays())


def _one_at_a_time(x, counts, seed, n_init=5):
    norms = np.einsum("ij,ij->i", x, x)
    out = {}
    for c in counts:
        rng = np.random.RandomState(seed)
        out[c] = [_plusplus(x, c, norms, rng) for _ in range(n_init)]
    return out


@pytest.mark.parametrize("layout", [None, False])  # as checked for the shape; forced to one BLAS call per candidate row
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].shape[0]}x{c[0].shape[1]}-seed{c[2]}")
def test_batched_chains_give_the_centres_of_one_chain_at_a_time(case, layout, monkeypatch):
    x, counts, seed = case
    if layout is not None:
        monkeypatch.setattr(plusplus, "_layout", lambda n, d, trials: layout)
    got = plusplus.plusplus_chains(x, np.einsum("ij,ij->i", x, x), counts, n_init=5, seed=seed)
    assert got is not None or layout is None
    if got is None:  # this BLAS does not serve rows by position on this shape: the caller runs the chains one by one
        pytest.skip(f"no batched layout for {x.shape} with this BLAS")
    expected = _one_at_a_time(x, counts, seed)
    for c in counts:
        for restart in range(5):
            np.testing.assert_array_equal(got[c][restart], expected[c][restart])


def test_the_common_shape_is_batched():
    # the sweep's common case, 100 top examples of a 192-wide layer (efficientnet-lite0 blocks.5): not the fallback
    x = np.random.default_rng(0).normal(size=(100, 192))
    x -= x.mean(axis=0)
    assert plusplus.plusplus_chains(x, np.einsum("ij,ij->i", x, x), [1, 2, 7, 30, 55], n_init=2, seed=0) is not None


@pytest.mark.parametrize("batched", [True, False])  # False: the self-check found no layout, one chain at a time
@pytest.mark.parametrize("case", CASES[:6], ids=lambda c: f"{c[0].shape[0]}x{c[0].shape[1]}")
def test_kmeans_steps_is_kmeans_step_at_every_count(case, batched, monkeypatch):
    x, counts, seed = case
    if not batched:
        monkeypatch.setattr(plusplus, "_layout", lambda n, d, trials: None)
    params = Params(seed=seed, n_init=3, max_iter=300, top=len(x))
    x = x + 1.5  # uncentred, as top examples are
    got = kmeans_steps(x, counts + counts[:2], params)
    assert sorted(got) == counts
    for c in counts:
        labels, sq = kmeans_step(x, c, params)
        np.testing.assert_array_equal(got[c][0], labels)
        np.testing.assert_array_equal(got[c][1], sq)


def test_kmeans_steps_refuses_more_clusters_than_examples_as_kmeans_step():
    x = np.random.default_rng(1).normal(size=(6, 3))
    with pytest.raises(ValueError, match="n_samples=6 should be >= n_clusters=7"):
        kmeans_steps(x, [2, 7], Params(top=6))
