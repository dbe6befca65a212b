"""Baselines a component shared by the whole layer cannot fool: the unsplit direction, the nearest other
concept, and rankings centred on the layer's mean activation (core.metrics)."""

import numpy as np
import pytest
from conftest import planted

import conceptvec as cv
from conceptvec.errors import ThresholdScaleWarning
from conceptvec.core.metrics import (cosine_similarity, layer_mean, maximally_projecting, member_cosines, most_similar,
                                     unsplit_direction)

PARAMS = cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0)


@pytest.fixture(scope="module")
def shared():
    """The planted layer with a component of 10 shared by every example on every unit (an all-positive layer)."""
    acts, _ = planted()
    acts = acts + 10.0
    return acts, cv.disentangle(acts, neuron=3, params=PARAMS), layer_mean(acts)


def test_unsplit_direction_is_the_normalised_mean_of_the_kept_examples():
    acts, _ = planted()
    with pytest.warns(ThresholdScaleWarning):
        cs = cv.disentangle(acts, neuron=3, params=PARAMS.replace(min_cluster_size=31))  # both facets too small: none kept
    with pytest.raises(cv.ConceptvecError, match="no top example was kept"):
        unsplit_direction(cs.top_activations, cs.labels)
    with pytest.raises(cv.ConceptvecError, match="no unsplit direction"):
        cs.unsplit_direction
    cs = cv.disentangle(acts, neuron=3, params=PARAMS)
    kept = cs.top_activations[cs.labels >= 0].mean(axis=0)
    assert np.allclose(cs.unsplit_direction, kept / np.linalg.norm(kept))
    assert np.array_equal(cs.unsplit_direction, unsplit_direction(cs.top_activations, cs.labels))
    # What C = 1 would give, when no example is removed.
    one = cv.disentangle(acts, neuron=3, params=PARAMS.replace(distance_threshold=1e6, outlier_threshold=1e6))
    assert one.n_concepts == 1 and np.allclose(one.concept_vectors[0], one.unsplit_direction)


def test_two_far_facets_each_beat_the_other_concept_and_the_unsplit_direction():
    acts, _ = planted()
    cs = cv.disentangle(acts, neuron=3, params=PARAMS)
    c = member_cosines(cs.top_activations, cs.labels, cs.concept_vectors)
    assert c["members"].tolist() == [30, 30] and c["nearest_other_index"].tolist() == [1, 0]
    assert np.all(c["concept"] > 0.99) and np.all(c["nearest_other"] < 0.3) and np.all(c["unsplit"] < 0.85)
    x = cs.top_activations[cs.labels == 0]
    assert c["nearest_other"][0] == pytest.approx(cosine_similarity(x, cs.concept_vectors[1]).mean())
    alone = member_cosines(cs.top_activations, np.where(cs.labels == 0, 0, -1), cs.concept_vectors[:1])
    assert np.isnan(alone["nearest_other"][0]) and alone["nearest_other_index"][0] == -1


def test_a_shared_component_fools_the_uncentred_comparison_and_not_the_centred_one(shared):
    acts, cs, mean = shared
    plain = member_cosines(cs.top_activations, cs.labels, cs.concept_vectors)
    centred = member_cosines(cs.top_activations, cs.labels, cs.concept_vectors, centre=mean)
    # Uncentred, the other facet's concept is nearly as "similar" as the members' own one ...
    assert np.all(plain["concept"] - plain["nearest_other"] < 0.1)
    assert np.all(plain["nearest_other"] > 0.9)
    # ... and so is the layer's mean direction, which knows nothing of either facet.
    x = cs.top_activations[cs.kept]
    assert cosine_similarity(x, mean).mean() > 0.95
    # Centred, the own concept wins by far, and the mean direction is no longer close.
    margin = centred["concept"] - centred["nearest_other"]
    assert np.all(margin > 0.2) and np.all(margin > 3 * (plain["concept"] - plain["nearest_other"]))
    assert cosine_similarity(x - mean, mean).mean() < 0.6 < centred["concept"].min()


def test_centred_rankings(shared):
    acts, cs, mean = shared
    v = cs.concept_vectors
    idx, val = most_similar(acts, v, top=20, centre=mean)
    ref = cosine_similarity(acts - mean, v)
    assert np.allclose(val, np.take_along_axis(ref.T, idx, axis=1))
    assert np.all(np.sort(ref, axis=0)[::-1][:20].T == pytest.approx(val))
    # Projection on a fixed vector shifts by a constant when centred: the same examples, other values.
    p_idx, p_val = maximally_projecting(acts, v, top=20)
    c_idx, c_val = maximally_projecting(acts, v, top=20, centre=mean)
    assert np.array_equal(p_idx, c_idx) and np.allclose(p_val - c_val, (v @ mean)[:, None])
    # Uncentred cosine ranks the layer's most average examples first for the mean direction; centred, not near 1.
    assert most_similar(acts, mean, top=1)[1][0, 0] > 0.99 and most_similar(acts, mean, top=1, centre=mean)[1][0, 0] < 0.7
    with pytest.raises(cv.ConceptvecError, match="centre must be a finite vector of length 24"):
        most_similar(acts, v, centre=mean[:3])
    assert np.allclose(layer_mean(acts), acts.mean(axis=0)) and np.allclose(layer_mean(acts, chunk_rows=7), acts.mean(axis=0))
