"""What a distance threshold means on a layer (core.sweep): known answers on planted data."""

import numpy as np
import pytest
from conftest import planted

import conceptvec as cv
from conceptvec.core.kmeans import kmeans_step
from conceptvec.core.steps import remove_outliers, ward_linkage
from conceptvec.core.sweep import quantile_of, threshold_grid, threshold_sweep
from conceptvec import layer_thresholds

PARAMS = cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0)


@pytest.fixture(scope="module")
def acts():
    a, _ = planted()
    a[:, 23] = 0.0  # a dead unit
    a[:2, 23] = 1.0
    return a


@pytest.fixture(scope="module")
def sweep(acts):
    return threshold_sweep(acts, params=PARAMS, n_grid=12)


def test_two_planted_facets_give_two_concepts_between_the_last_two_merges(acts, sweep):
    i = int(np.flatnonzero(sweep.units == 3)[0])
    h = np.sort(sweep.heights[i])
    assert np.array_equal(sweep.heights[i], ward_linkage(acts[np.argsort(-acts[:, 3], kind="stable")[:60]])[:, 2])
    # The two facets are 24 apart (6 on 8 units each): the last merge joins them, far above every other.
    assert h[-1] > 20 > 5 > h[-2]
    stated = np.linspace(h[-2] * 1.01, h[-1], 7)
    within = threshold_sweep(acts, params=PARAMS, neurons=[3], thresholds=stated)
    assert [within.at(t) for t in stated] == [(np.array([2]), np.array([2]))] * 7
    above = threshold_sweep(acts, params=PARAMS, neurons=[3], thresholds=[h[-1] * 1.01, h[-1] * 5])
    # One cluster of both facets: every member is ~12 from the joint centroid (144 >= 30), an outlier.
    assert above.at(h[-1] * 1.01) == (np.array([1]), np.array([0]))


def test_the_given_threshold_and_the_rule_are_what_the_method_and_layer_thresholds_give(acts, sweep):
    assert sweep.not_live.tolist() == [23] and 23 not in sweep.units
    c, k = sweep.at(PARAMS.distance_threshold)
    for u, cu, ku in zip(sweep.units, c, k):
        cs = cv.disentangle(acts, neuron=int(u), params=PARAMS)
        assert (cs.n_agglomerative, cs.n_concepts) == (cu, ku)
    rule_params, record = layer_thresholds(acts, params=PARAMS)
    assert sweep.rule["distance_threshold"] == rule_params.distance_threshold
    assert sweep.rule["outlier_threshold"] == rule_params.outlier_threshold
    _, rule_k = sweep.at(rule_params.distance_threshold)
    expected = [cv.disentangle(acts, neuron=int(u), params=rule_params).n_concepts for u in sweep.units[:5]]
    assert sweep.rule["n_concepts"][:5].tolist() == expected
    d = sweep.to_dict()
    assert d["layer_rule"]["n_live_units"] == record["n_live_units"] == 23
    assert d["given"]["quantile"] == pytest.approx(np.mean(sweep.heights < PARAMS.distance_threshold))
    assert d["given"]["concepts_per_neuron"] == {str(i): int(v) for i, v in enumerate(np.bincount(k))}
    shares = d["curve"]["share_of_neurons_with_concepts"]
    assert np.allclose(np.sum([shares[key] for key in shares], axis=0), 1.0)


def test_every_threshold_of_the_grid_is_what_the_method_gives_there(acts, sweep):
    # The sweep runs each distinct C once per neuron (with core.kmeans' own k-means++): at every grid threshold, its
    # C and concepts are cv.disentangle's at that threshold, for neurons with 1, 2 and several clusters along the grid.
    for i in (0, 3, 7):
        u = int(sweep.units[i])
        for g in range(0, len(sweep.grid), 3):
            cs = cv.disentangle(acts, neuron=u, params=PARAMS.replace(distance_threshold=float(sweep.grid[g])))
            assert (cs.n_agglomerative, cs.n_concepts) == (sweep.n_clusters[i, g], sweep.n_concepts[i, g])
    assert len(np.unique(sweep.n_clusters[[0, 3, 7]])) >= 4


def test_scaling_the_activations_scales_every_merge_height_and_keeps_the_quantile(acts, sweep):
    ten = threshold_sweep(acts * 10, params=PARAMS.replace(distance_threshold=100.0, outlier_threshold=3000.0), n_grid=12)
    assert np.allclose(ten.heights, 10 * sweep.heights)
    assert ten.to_dict()["given"]["quantile"] == sweep.to_dict()["given"]["quantile"]
    assert np.array_equal(ten.at(100.0)[1], sweep.at(10.0)[1])
    assert ten.rule["distance_threshold"] == pytest.approx(10 * sweep.rule["distance_threshold"])


def test_grid_spans_the_merge_heights_and_holds_the_marked_thresholds():
    heights = np.array([[1.0, 2.0, 4.0, 8.0]])
    grid = threshold_grid(heights, (15.0,), n=5)
    assert 15.0 in grid and grid[0] == pytest.approx(3.0) and grid[-1] == pytest.approx(16.5)
    assert quantile_of(heights, 4.0) == 0.5 and quantile_of(heights, 100) == 1.0


@pytest.mark.parametrize("kwargs, says", [
    (dict(neurons=[23]), "none of the 1 selected neuron(s) is live"),
    (dict(neurons="0-99"), "out of bounds"),
    (dict(n_grid=1), "n_grid must be a whole number >= 2"),
    (dict(thresholds=[-1.0]), "thresholds must be finite numbers > 0"),
    (dict(distance_percentile=0), "distance_percentile must be in"),
    (dict(params=cv.Params(top=1000)), "top=1000 is larger than the number of examples"),
])
def test_bad_input_is_named(acts, kwargs, says):
    with pytest.raises(cv.ConceptvecError, match=says.replace("(", r"\(").replace(")", r"\)")):
        threshold_sweep(acts, **{"params": PARAMS, **kwargs})


def test_an_outlier_radius_no_group_fits_skips_every_k_means_but_the_rules_and_still_gives_the_methods_counts(acts, monkeypatch):
    import conceptvec.core.sweep as sweep_module

    asked = []
    real = sweep_module.kmeans_steps
    monkeypatch.setattr(sweep_module, "kmeans_steps", lambda x, counts, params: asked.append(len(counts)) or real(x, counts, params))
    tight = PARAMS.replace(outlier_threshold=0.05)  # a radius of 0.22: the planted examples are ~1.3 apart at the closest
    swept = threshold_sweep(acts, params=tight, neurons=[0, 3, 7], n_grid=8)
    assert asked == [1, 1, 1] and not swept.n_concepts.any()
    for i, u in enumerate(swept.units):
        for g in range(0, len(swept.grid), 3):
            cs = cv.disentangle(acts, neuron=int(u), params=tight.replace(distance_threshold=float(swept.grid[g])))
            assert (cs.n_agglomerative, cs.n_concepts) == (swept.n_clusters[i, g], 0)
    asked.clear()
    threshold_sweep(acts, params=PARAMS, neurons=[3], n_grid=8)  # the planted facets fit the paper-like radius: k-means at every C
    assert asked[0] > 1


def test_no_concept_possible_is_a_proof_never_a_guess():
    from conceptvec.core.sweep import no_concept_possible

    params = cv.Params(top=10, outlier_threshold=1.0)  # radius 1: members of a kept concept are pairwise closer than 2
    simplex = np.eye(5) * (2.001 / np.sqrt(2))  # 5 examples pairwise 2.001 apart: no concept can hold them
    assert no_concept_possible(simplex, params)
    assert not no_concept_possible(np.eye(5) * (1.9 / np.sqrt(2)), params)  # 1.9 apart: the bound cannot exclude one
    assert not no_concept_possible(simplex, params.replace(min_cluster_size=1))  # one member suffices: no proof
    assert not no_concept_possible(simplex, cv.Params(top=10, distance_threshold="auto"))  # relative fences: no proof
    # whenever it says none, steps 3-4 keep none at any C
    proven = 0
    for trial in range(12):
        x = rng_normal(trial)
        p = cv.Params(top=40, outlier_threshold=float(np.random.default_rng(trial).uniform(0.5, 6.0)), seed=trial)
        if no_concept_possible(x, p):
            proven += 1
            for c in (1, 2, 5, 12):
                assert len(remove_outliers(*kmeans_step(x, c, p), p.outlier_rule, p.min_cluster_size)[1]) == 0
    assert proven >= 3


def rng_normal(trial):
    rng = np.random.default_rng(100 + trial)
    return rng.normal(size=(40, 6)) * rng.uniform(0.5, 3.0)


def test_concepts_are_counted_as_remove_outliers_numbers_them():
    from conceptvec.core.sweep import _n_concepts

    rng = np.random.default_rng(2)
    for trial in range(200):
        c, n = int(rng.integers(1, 9)), int(rng.integers(1, 40))
        labels, sq = rng.integers(0, c, n), rng.exponential(10.0, n)
        for params in (cv.Params(top=40, outlier_threshold=float(rng.uniform(1, 20)), min_cluster_size=int(rng.integers(1, 6))),
                       cv.Params(top=40, outlier_threshold="auto")):
            assert _n_concepts(labels, sq, params) == len(remove_outliers(labels, sq, params.outlier_rule, params.min_cluster_size)[1])


def test_a_representation_that_needs_the_model_is_refused_in_python_too(acts):
    # the CLI refused it (scan.sweep.sweep_layer), but cv.threshold_sweep swept the activations without a word
    from conceptvec.errors import ConceptvecError

    for name in ("attribution", "excitation"):
        with pytest.raises(ConceptvecError, match="needs the model for every neuron"):
            threshold_sweep(acts, params=cv.Params(representation=name))
