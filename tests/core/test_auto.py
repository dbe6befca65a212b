"""distance_threshold="auto": known facet counts, the same answer at every scale, and the test step by step."""

import warnings

import numpy as np
import pytest
from scipy.cluster.hierarchy import linkage

import conceptvec as cv
from conceptvec.core.auto import MIN_EXCESS, auto_clusters, null_shares, split_share, unit_rows
from conceptvec.core.outliers import outlier_fences
from conceptvec.core.planted import planted_layer

AUTO = cv.Params(distance_threshold="auto")


@pytest.fixture(scope="module")
def layer():
    return planted_layer(96, n_neurons=12, n_background=300, seed=3)


def test_planted_facet_counts_are_recovered_with_their_members(layer):
    from sklearn.metrics import adjusted_rand_score

    for j in range(12):
        cs = cv.disentangle(layer.acts, neuron=j, params=AUTO)
        assert cs.n_concepts == layer.n_facets[j], (j, cs.split_tests)
        truth = layer.facet[cs.top_indices]
        assert adjusted_rand_score(truth[cs.kept], cs.labels[cs.kept]) > 0.95
        assert cs.kept.sum() >= 90  # outliers relative to each cluster's spread: few


def test_single_facet_with_continuous_strength_is_one_concept_where_a_fixed_cut_splits_it():
    layer = planted_layer(64, n_neurons=8, n_background=200, strength=(0.2, 2.0), seed=5)
    singles = np.flatnonzero(layer.n_facets == 1)
    for j in singles:
        assert cv.disentangle(layer.acts, neuron=j, params=AUTO).n_concepts == 1
    # the same neurons under a fixed threshold cut at a height inside their strength range split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed = [cv.disentangle(layer.acts, neuron=j, params=cv.Params(distance_threshold=2.0, outlier_threshold=100.0))
                 for j in singles]
    assert all(cs.n_agglomerative >= 2 for cs in fixed)


@pytest.mark.parametrize("factor", [0.2, 5.0, 1000 / 7])
def test_identical_when_every_activation_is_multiplied_by_a_constant(layer, factor):
    for j in (1, 2, 4):
        a = cv.disentangle(layer.acts, neuron=j, params=AUTO)
        b = cv.disentangle(layer.acts * np.float32(factor), neuron=j, params=AUTO)
        assert a.n_agglomerative == b.n_agglomerative
        np.testing.assert_array_equal(a.top_indices, b.top_indices)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.concept_vectors, b.concept_vectors, atol=1e-12)
        assert [t["split"] for t in a.split_tests] == [t["split"] for t in b.split_tests]


def test_a_single_gaussian_blob_is_one_concept_at_most_seeds():
    rng = np.random.default_rng(0)
    ones = 0
    for seed in range(10):
        x = rng.normal(size=(100, 40)) + 5.0
        u = unit_rows(x)
        c, tests = auto_clusters(u, linkage(u, "ward"), significance=0.01, min_cluster_size=5, seed=seed)
        ones += c == 1
        assert tests and 0 <= tests[0]["p_value"] <= 1
    assert ones >= 9


def test_split_tests_step_by_step(layer):
    cs = cv.disentangle(layer.acts, neuron=1, params=AUTO)
    x = cs.top_activations
    u = unit_rows(x)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0)
    z = linkage(u, "ward")
    np.testing.assert_array_equal(cs.linkage, z)  # the tree of the unit rows
    c, tests = auto_clusters(u, z, significance=0.01, min_cluster_size=5, seed=0)
    assert c == cs.n_agglomerative and tests == cs.split_tests
    # the root's statistic is the share of the sum of squares that ward's last merge explains
    ss = np.sum((u - u.mean(0)) ** 2)
    assert tests[0]["size"] == 100 and tests[0]["share"] == pytest.approx(z[-1, 2] ** 2 / 2 / ss)
    # C = leaves of the kept splits: each kept split adds one cluster (tiny sides followed, not counted)
    assert c == 1 + sum(t["split"] for t in tests)
    # kept splits are clear (small p), the others are not
    assert all((t["p_value"] < 0.01 and t["share"] - t["null_mean"] >= MIN_EXCESS) == t["split"]
               for t in tests if t["draws"])
    # a split below the root that explains less than MIN_EXCESS is not tested against a null
    assert all(t["share"] < MIN_EXCESS and not t["split"] and t["p_value"] is None for t in tests[1:] if not t["draws"])


def test_null_is_seeded_and_scale_free():
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(30, 12))
    a = null_shares(pts, np.random.default_rng(7), draws=5)
    b = null_shares(pts * 3.0, np.random.default_rng(7), draws=5)
    np.testing.assert_allclose(a, b, rtol=1e-10)
    assert np.all((a > 0) & (a < 1))
    # two separated points sets: share near 1, the null's far below
    two = np.vstack([np.zeros((10, 3)), np.ones((10, 3)) * 10]) + rng.normal(scale=0.01, size=(20, 3))
    assert split_share(two, linkage(two, "ward")[-1, 2]) > 0.99


def test_outlier_fences_per_cluster():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    sq = np.array([1.0, 1.0, 2.0, 2.0, 10.0, 10.0, 20.0, 20.0])
    fences = outlier_fences(labels, sq)
    # cluster 0: Q1 1, Q3 2 -> 2 + 3; cluster 1: Q1 10, Q3 20 -> 20 + 30
    np.testing.assert_allclose(fences, [5, 5, 5, 5, 50, 50, 50, 50])


def test_fixed_params_record_no_split_tests_and_auto_saves_them(layer, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cv.disentangle(layer.acts, neuron=1).split_tests is None
    cs = cv.disentangle(layer.acts, neuron=1, params=AUTO)
    again = cv.ConceptSet.load(cs.save(tmp_path / "cs"))
    assert again.split_tests == cs.split_tests and again.params == AUTO
    np.testing.assert_array_equal(again.outliers, cs.outliers)


def test_radius_weights_count_the_gaussians_own_radius_spread_once():
    from conceptvec.core.auto import radius_weights

    rng = np.random.default_rng(4)
    # one dimension: the radius is the coordinate; a Gaussian has no scale mixture to find
    line = rng.normal(size=(500, 1)) * [[1.0]]
    assert np.std(radius_weights(line - line.mean(0))) < 0.15
    # two tight columns of 64 (the rest 0): still no mixture
    flat = np.zeros((400, 64))
    flat[:, :2] = rng.normal(size=(400, 2))
    assert np.std(radius_weights(flat - flat.mean(0))) < 0.15
    # a true scale mixture in 200 dimensions: the weights follow the scales (the chi-square spread there is small)
    scales = rng.uniform(0.2, 2.0, size=300)
    mixture = rng.normal(size=(300, 200)) * scales[:, None]
    weight = radius_weights(mixture - mixture.mean(0))
    assert np.corrcoef(weight, scales)[0, 1] > 0.98
    np.testing.assert_allclose(np.mean(weight**2), 1.0)


def test_the_null_samples_ward_root_from_the_gram_matrix_is_scipys():
    from conceptvec.core.auto import GRAM_FROM, _ward_root_height

    y = np.random.default_rng(5).normal(size=(GRAM_FROM, 120)) * np.linspace(2.0, 0.5, 120)
    assert _ward_root_height(y) == pytest.approx(linkage(y, "ward")[-1, 2], rel=1e-12)
