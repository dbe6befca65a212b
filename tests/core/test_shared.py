"""Shared concepts on arrays: a planted layer whose neurons share facets by construction, and random directions."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import conceptvec as cv
from conceptvec.core.planted import planted_shared_layer
from conceptvec.core.shared import shared_groups

AUTO = cv.Params(distance_threshold="auto", outlier_threshold="auto")


def planted_truth(scan, layer):
    """Each concept's planted facet when two or more neurons fire for it, else a label of its own."""
    truth = []
    for i in range(len(scan.neurons)):
        for j in range(int(scan.n_concepts[i])):
            facets = layer.facet[scan.top_indices[i][scan.labels[i] == j]]
            f = int(np.bincount(facets[facets >= 0]).argmax())
            truth.append(f if f in layer.shared else -1 - len(truth))
    return np.asarray(truth)


@pytest.fixture(scope="module")
def scanned():
    """Planted layers of two seeds and their scans."""
    out = {}
    for seed in (0, 1):
        layer = planted_shared_layer(96, seed=seed)
        out[seed] = layer, cv.scan_layer(layer.acts, params=AUTO, neurons=list(range(24)), workers=1, progress=False)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_groups_recover_planted_sharing(scanned, seed):
    layer, scan = scanned[seed]
    owner = np.repeat(scan.neurons, scan.n_concepts)
    found = shared_groups(scan.concept_vectors, owner, null_draws=0, seed=seed)
    truth = planted_truth(scan, layer)
    predicted = np.where(found.group >= 0, found.group, -1 - np.arange(len(owner)))
    assert adjusted_rand_score(truth, predicted) >= 0.9
    assert found.n_groups >= len(layer.shared) - 1
    # every link is between different neurons, and a concept's nearest neighbour of its group is another neuron's
    for g in range(found.n_groups):
        assert len(set(owner[found.group == g])) >= 2
    assert np.all(owner[found.neighbours[:, 0]] != owner)


def test_random_directions_of_the_layer_rarely_group():
    layer = planted_shared_layer(96, seed=0)
    acts = layer.acts.astype(np.float64)
    mean, cov = acts.mean(axis=0), np.cov(acts.T)
    factor = np.linalg.cholesky(cov + 1e-9 * np.eye(len(cov)))
    owner = np.repeat(np.arange(24), 3)
    rng = np.random.default_rng(0)
    runs = 40
    with_group = sum(shared_groups(mean + rng.normal(size=(len(owner), len(mean))) @ factor.T, owner, null_draws=0, seed=r).n_groups > 0
                     for r in range(runs))
    assert with_group <= 0.05 * runs
    # and the baseline the function reports draws such directions itself
    found = shared_groups(mean + rng.normal(size=(len(owner), len(mean))) @ factor.T, owner, null_draws=20, layer=(mean, cov))
    assert np.sum(found.baseline_groups > 0) <= 2


def test_level_means_the_same_at_every_scale(scanned):
    layer, scan = scanned[0]
    owner = np.repeat(scan.neurons, scan.n_concepts)
    a = shared_groups(scan.concept_vectors, owner, null_draws=0)
    b = shared_groups(scan.concept_vectors * 7.0, owner, null_draws=0)
    assert np.array_equal(a.group, b.group) and a.level == pytest.approx(b.level, rel=1e-5)


def test_bad_arguments():
    v = np.eye(4)
    with pytest.raises(ValueError, match="significance"):
        shared_groups(v, np.arange(4), significance=1.5)
    with pytest.raises(ValueError, match="one owner each"):
        shared_groups(v, np.arange(3))
    with pytest.raises(ValueError, match="null_draws"):
        shared_groups(v, np.arange(4), null_draws=-1)
