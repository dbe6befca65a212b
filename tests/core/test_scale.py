"""Thresholds off the layer's scale are said, in numbers of the layer; thresholds on its scale are not."""

import warnings

import numpy as np
import pytest

import conceptvec as cv
from conceptvec.core.scale import scale_problems
from conceptvec.errors import ThresholdScaleWarning
from conftest import planted


def test_tiny_distance_threshold_warns_with_the_layers_scale(planted_acts):
    acts, _ = planted_acts
    with pytest.warns(ThresholdScaleWarning, match=r"no concept was kept for neuron 3: distance_threshold 0.001 cuts 60 or more clusters from 60 examples.*median"):
        cs = cv.disentangle(acts, neuron=3, params=cv.Params(top=60, distance_threshold=0.001))
    assert cs.n_concepts == 0  # what the warning explains


def test_tiny_outlier_threshold_warns(planted_acts):
    acts, _ = planted_acts
    with pytest.warns(ThresholdScaleWarning, match=r"outlier_threshold 1e-06 makes most of the top examples of neuron 3 outliers"):
        cv.disentangle(acts, neuron=3, params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=1e-6))


def test_thresholds_on_the_layers_scale_are_quiet(planted_acts):
    acts, groups = planted_acts
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThresholdScaleWarning)
        cs = cv.disentangle(acts, neuron=3, params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0))
    assert cs.n_concepts == 2  # the two planted facets


def test_scaled_activations_keep_their_answer_only_with_scaled_thresholds(planted_acts):
    # Multiplying a layer by 10 multiplies its distances by 10: the paper's fixed numbers are then off scale.
    acts, _ = planted_acts
    params = cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0)
    with pytest.warns(ThresholdScaleWarning, match="no concept was kept"):
        assert cv.disentangle(acts * 10, neuron=3, params=params).n_concepts == 0
    scaled = cv.disentangle(acts * 10, neuron=3, params=params.replace(distance_threshold=100.0, outlier_threshold=3000.0))
    assert scaled.n_concepts == 2


def test_a_scan_whose_threshold_is_above_every_merge_warns_once():
    acts, _ = planted(n_units=12, neuron=3)
    with pytest.warns(ThresholdScaleWarning) as record:
        cv.scan_layer(acts, params=cv.Params(top=40, distance_threshold=500.0, outlier_threshold=1e6), progress=False)
    messages = [str(w.message) for w in record if w.category is ThresholdScaleWarning]
    assert len(messages) == 1 and "more than 2x every merge height of the 12 live neurons scanned" in messages[0]


def test_one_cluster_for_one_neuron_is_not_a_scale_problem():
    z = np.array([[0, 1, 0.5, 2], [2, 3, 0.7, 3]])  # one neuron, 3 examples, merges at 0.5 and 0.7
    assert scale_problems(z, np.zeros(3), np.zeros(3, int), cv.Params(top=3, min_cluster_size=1, distance_threshold=15.0)) == []


def test_constant_and_dead_units_are_not_live():
    rng = np.random.default_rng(0)
    acts = np.abs(rng.normal(size=(200, 4)))
    acts[:, 1] = 2.5  # constant: every example ties
    acts[:, 2] = 0.0
    acts[:3, 2] = 1.0  # rarely active: zeros among its top 20
    params = cv.Params(top=20, distance_threshold=3.0, outlier_threshold=5.0)
    live = [cv.disentangle(acts, neuron=j, params=params).is_live for j in range(4)]
    assert live == [True, False, False, True]
    assert cv.scan_layer(acts, params=params, progress=False).live.tolist() == live
    from conceptvec import live_units

    assert live_units(acts, 20).tolist() == [0, 3]
