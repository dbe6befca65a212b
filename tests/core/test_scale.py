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


def test_a_scan_where_most_neurons_get_no_concept_warns_with_the_quantile(tmp_path):
    acts, _ = planted()
    params = cv.Params(top=60, distance_threshold=0.95, outlier_threshold=1e6, min_cluster_size=5)
    with pytest.warns(ThresholdScaleWarning) as record:
        result = cv.scan_layer(acts, params=params, progress=False, workers=1, projecting=False, out=tmp_path / "scan")
    none = int(np.sum(result.n_concepts == 0))
    assert 12 < none < 24  # over half, not all: the case the all-or-one checks missed
    q = np.mean(result.linkage[:, :, 2] < 0.95)
    messages = [str(w.message) for w in record if w.category is ThresholdScaleWarning]
    assert len(messages) == 1
    assert messages[0].startswith(f"{none} of the 24 live neurons scanned ({none / 24:.0%}, over 50%) get 0 concepts at "
                                  f"distance_threshold 0.95, which falls at quantile {q:.2f} of their ward merge heights")
    assert "--distance-threshold auto" in messages[0] and "conceptvec thresholds" in messages[0]
    assert result.summary()["scale_warnings"] == [messages[0].split(" The paper's")[0]]
    import json

    assert json.loads((tmp_path / "scan" / "summary.json").read_text())["scale_warnings"] == result.summary()["scale_warnings"]
    # on the layer's scale (or with auto) the scan is quiet
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThresholdScaleWarning)
        assert cv.scan_layer(acts, params=params.replace(distance_threshold=3.0), progress=False, workers=1,
                             projecting=False).summary()["scale_warnings"] == []


def test_only_singleton_clusters_are_counted_and_named():
    # three neurons of 4 examples; merges at 1, 2, 3: a threshold of 0.5 leaves every example alone in two of them
    z = np.array([[0, 1, 1.0, 2], [2, 3, 2.0, 2], [4, 5, 3.0, 4]])
    linkage = np.stack([z, z, z * 0.1])
    labels = np.array([[-1] * 4, [-1] * 4, [0] * 4])
    problems = scale_problems(linkage, np.zeros((3, 4)), labels, cv.Params(top=4, min_cluster_size=2, distance_threshold=0.5,
                                                                           outlier_threshold=1e6))
    assert problems == [
        "2 of these neurons (67%, over 50%) get 0 concepts (2 of them only singleton clusters) at distance_threshold 0.5, which "
        "falls at quantile 0.33 of their ward merge heights; the ward merge heights of the top 4 examples of these neurons "
        "have median 1 and 97th percentile 3."
    ]
