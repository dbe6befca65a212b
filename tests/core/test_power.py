"""The recommended top (core.power.recommended_top): at that N auto splits two concepts of the stated separation,
at the neuron's own N it mostly does not; checked by running auto itself on planted pairs."""

import warnings

import numpy as np
import pytest

import conceptvec as cv
from conceptvec.core.auto import unit_rows
from conceptvec.core.power import detection_power, recommended_top

BASE = np.abs(np.random.default_rng(0).normal(size=64))
BASE /= np.linalg.norm(BASE)
AXIS = np.random.default_rng(1).normal(size=64)
AXIS -= AXIS @ BASE * BASE
AXIS /= np.linalg.norm(AXIS)


def one_concept(n: int, seed: int) -> np.ndarray:
    """A neuron's top examples: one direction, isotropic noise, and a leading axis of variation (AXIS) three times
    as wide, along which the simulation (and this test) puts a second concept."""
    rng = np.random.default_rng(seed)
    return BASE + rng.normal(scale=0.05, size=(n, 64)) + rng.normal(scale=0.15, size=(n, 1)) * AXIS


def test_the_null_on_the_samples_rank_is_the_null_on_n_minus_1_axes():
    # auto draws its null on the points' rank: the same shares as on n - 1 axes, the rest of variance 0
    from scipy.cluster.hierarchy import linkage

    from conceptvec.core.auto import null_model, null_shares, split_share

    pts = np.random.default_rng(3).normal(size=(120, 12)) * np.linspace(1.0, 0.1, 12)
    axes, weight = null_model(pts)
    assert len(axes) == 12
    rng = np.random.default_rng(2)
    padded = []
    for _ in range(200):
        y = np.zeros((120, 119))
        y[:, :12] = rng.standard_normal((120, 12)) * axes * weight[:, None]
        padded.append(split_share(y, linkage(y, "ward")[-1, 2]))
    rank = null_shares(pts, np.random.default_rng(2), 200)
    full = np.asarray(padded)
    assert abs(full.mean() - rank.mean()) < 0.25 * full.std() and 0.8 < rank.std() / full.std() < 1.25


def test_power_grows_with_n_and_separation():
    x = one_concept(100, 0)
    assert detection_power(x, 1.25, n=50, reps=10) < 0.5 < detection_power(x, 1.25, n=300, reps=10)
    assert detection_power(x, 2.0, n=100, reps=10) == 1.0
    # drawn from auto's own null model, one concept is split about at the level at the neuron's N
    assert detection_power(x, 0.0, n=100, reps=20) <= 0.1
    assert recommended_top(x, separation=4.0) == 50 and recommended_top(x, separation=0.01, tops=(50, 100)) == np.inf


@pytest.mark.slow
def test_at_the_recommended_top_auto_splits_what_it_misses_at_a_small_top():
    # 1.25 RMS apart along the leading axis is about 3.4 of its sds: two overlapping modes, found only at a larger N
    x = one_concept(100, 0)
    u = unit_rows(x)
    rms = np.sqrt(np.mean(np.sum((u - u.mean(axis=0)) ** 2, axis=1)))
    separation = 1.25
    n_rec = int(recommended_top(x, separation=separation))
    assert 100 <= n_rec <= 500
    found = {}
    for n in (50, n_rec):
        hits = 0
        for s in range(6):
            y = one_concept(n, 100 + s)
            y[: n // 2] += AXIS * separation * rms / 2
            y[n // 2 :] -= AXIS * separation * rms / 2
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", cv.ConceptvecWarning)
                cs = cv.disentangle(y, neuron=0, params=cv.Params(distance_threshold="auto", top=n))
            hits += cs.n_agglomerative >= 2
        found[n] = hits
    assert found[n_rec] >= 4 and found[50] <= 1, found
