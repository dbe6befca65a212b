"""core.kmeans' own k-means++ against scikit-learn's, draw for draw (the whole k-means is compared with the estimator
in test_method.py)."""

import numpy as np
import pytest
from sklearn.cluster._kmeans import _kmeans_plusplus

from conceptvec.core.kmeans import _plusplus


def _cases():
    rng = np.random.default_rng(3)
    for trial in range(40):
        n, d = int(rng.integers(5, 120)), int(rng.choice([1, 2, 7, 64, 300]))
        kind = trial % 3
        if kind == 0:
            x = rng.normal(size=(n, d))
        elif kind == 1:  # rectified and sparse, as a ReLU layer's top examples
            x = np.maximum(rng.normal(size=(n, d)) - 1.0, 0.0)
        else:  # duplicate rows: k-means++ meets zero distances and ties
            x = rng.normal(size=(n // 3 + 1, d))[rng.integers(0, n // 3 + 1, n)]
        yield np.ascontiguousarray(x - x.mean(axis=0)), int(rng.integers(1, min(n, 60) + 1)), int(rng.integers(0, 5))


@pytest.mark.parametrize("case", list(_cases()), ids=lambda c: f"n{len(c[0])}-k{c[1]}-seed{c[2]}")
def test_plusplus_gives_scikit_learns_centres_and_leaves_the_generator_where_it_does(case):
    x, k, seed = case
    norms = np.einsum("ij,ij->i", x, x)
    weight = np.ones(len(x))
    ours_rng, theirs_rng = np.random.RandomState(seed), np.random.RandomState(seed)
    ours = _plusplus(x, k, norms, ours_rng)
    theirs, _ = _kmeans_plusplus(x, k, x_squared_norms=norms, sample_weight=weight, random_state=theirs_rng)
    np.testing.assert_array_equal(ours, theirs)
    assert ours_rng.uniform() == theirs_rng.uniform()  # the next restart draws what scikit-learn's would
