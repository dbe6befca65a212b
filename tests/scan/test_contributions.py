"""Params(representation="contributions"): each unit's term x_k * d_k of a direction's projection (store-only)."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import conceptvec as cv
from conceptvec.core.represent import contributions

AUTO = cv.Params(distance_threshold="auto")


def two_sources_under_a_mood(seed: int = 0, n: int = 1500, d: int = 32):
    """Units 0-3 and units 4-7 fire on two disjoint groups of 60 examples; every example also carries one of two strong
    global patterns ("moods") on the other units, unrelated to the groups: the activations split by mood as much as by source."""
    rng = np.random.default_rng(seed)
    moods = np.zeros((2, d))
    moods[0, 8:20] = 8.0
    moods[1, 20:] = 8.0
    acts = moods[rng.integers(0, 2, n)] + 0.3 * rng.standard_normal((n, d))
    acts[:60, :4] += rng.uniform(3.0, 4.0, (60, 1))
    acts[60:120, 4:8] += rng.uniform(3.0, 4.0, (60, 1))
    return acts


def test_contributions_sum_to_the_projection():
    rng = np.random.default_rng(0)
    x, d = rng.standard_normal((7, 5)), rng.standard_normal(5)
    np.testing.assert_allclose(contributions(x, d).sum(axis=1), x @ d)


def test_a_superposed_direction_comes_apart_by_source_where_the_activations_follow_the_mood():
    acts = two_sources_under_a_mood()
    direction = np.zeros(acts.shape[1])
    direction[:8] = 1.0
    truth = lambda cs: (np.asarray(cs.top_indices) >= 60).astype(int)  # noqa: E731
    by_acts = cv.disentangle(acts, direction=direction, params=AUTO)
    by_contrib = cv.disentangle(acts, direction=direction, params=AUTO.replace(representation="contributions"))
    assert by_contrib.n_concepts == 2
    kept = by_contrib.kept
    assert adjusted_rand_score(truth(by_contrib)[kept], by_contrib.labels[kept]) > 0.95
    # the activations see mood x source, four groups: not the direction's two sources
    assert by_acts.n_concepts == 4
    assert adjusted_rand_score(truth(by_acts)[by_acts.kept], by_acts.labels[by_acts.kept]) < 0.6
    assert by_contrib.provenance["representation"] == {"name": "contributions", "clustered": "contributions"}
    # concept vectors stay the members' mean activations of the layer
    assert by_contrib.concept_vectors.shape == (2, acts.shape[1])


def test_a_neuron_falls_back_to_its_activations_and_says_so():
    acts = two_sources_under_a_mood(n=600)
    plain = cv.disentangle(acts, neuron=0, params=AUTO)
    fallback = cv.disentangle(acts, neuron=0, params=AUTO.replace(representation="contributions"))
    np.testing.assert_array_equal(plain.labels, fallback.labels)
    assert fallback.provenance["representation"]["clustered"] == "activations"


def test_contributions_are_store_only_and_refused_by_a_scan():
    acts = two_sources_under_a_mood(n=300)
    params = AUTO.replace(representation="contributions")
    with pytest.raises(cv.ConceptvecError, match="needs only the store"):
        cv.disentangle(acts, neuron=0, params=params, attribution=lambda idx, d: acts[idx])
    with pytest.raises(cv.ConceptvecError, match="no contributions of their own"):
        cv.scan_layer(acts, params=params, progress=False)
