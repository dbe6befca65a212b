import numpy as np
import pytest

import conceptvec as cv
from conceptvec.core.live import dead_reason, dead_summary, live_columns, live_mask


def signed_layer(seed=0, n=400, m=6):
    """A block output (batch norm, no activation): about half the values negative, no ties."""
    rng = np.random.default_rng(seed)
    acts = rng.normal(-0.5, 2.0, size=(n, m))
    acts[:, 0] -= 4.0  # a unit whose top 20 run from about 2 down to below zero
    return acts


def test_a_signed_layers_units_are_live_whatever_their_sign():
    acts = signed_layer()
    top = np.sort(acts[:, 0])[::-1][:20]
    assert top[-1] < 0 < top[0]  # the case: a max above zero, an N-th value below it
    assert live_mask(top).tolist() == [True] and dead_reason(top) is None
    everything_negative = -np.linspace(1, 3, 20)
    assert live_mask(everything_negative).tolist() == [True]
    assert live_columns(acts, 20).tolist() == list(range(6)) == cv.live_units(acts, 20).tolist()
    params = cv.Params(top=20, distance_threshold="auto")
    result = cv.scan_layer(acts, params=params, progress=False, workers=1, projecting=False)
    assert result.live.all() and result.summary()["not_live"] == []
    assert all(cv.disentangle(acts, neuron=j, params=params).is_live for j in range(6))


def test_a_rectified_layers_unit_with_too_few_active_examples_is_not_live_and_says_why():
    acts = np.maximum(signed_layer(), 0.0)  # the same units after a ReLU
    acts[:, 3] = 0.0
    acts[:7, 3] = np.arange(1.0, 8.0)  # above the floor on 7 examples only
    acts[:, 4] = 1.5  # constant
    kth = np.sort(acts, axis=0)[-20]
    expected = [j for j in range(6) if kth[j] > 0 and acts[:, j].max() > kth[j]]
    assert live_columns(acts, 20).tolist() == expected and 3 not in expected and 4 not in expected
    top3 = np.sort(acts[:, 3])[::-1][:20]
    assert dead_reason(top3) == ("it is above 0 on only 7 examples: the other 13 of its top 20 sit at 0, the layer's floor, "
                                 "and are arbitrary examples it does not respond to")
    assert dead_reason(np.full(20, 1.5)).startswith("all 20 of its top examples have the same activation (1.5)")
    params = cv.Params(top=20, distance_threshold="auto")
    result = cv.scan_layer(acts, params=params, progress=False, workers=1, projecting=False)
    assert result.live.tolist() == [j in expected for j in range(6)]
    assert [cv.disentangle(acts, neuron=j, params=params).is_live for j in range(6)] == result.live.tolist()
    summary = dead_summary(result.top_scores, result.neurons)
    assert summary.startswith(f"{6 - len(expected)} neuron(s) not live, left out of the counts:")
    assert "1 with all top examples tied" in summary and summary.endswith(", ".join(str(j) for j in range(6) if j not in expected))
    assert dead_summary(result.top_scores[result.live], result.neurons[result.live]) is None


def test_the_thresholds_rule_counts_signed_units(tmp_path):
    acts = signed_layer(m=4)
    _, record = cv.layer_thresholds(acts, params=cv.Params(top=20))
    assert record["n_live_units"] == 4
    with pytest.raises(cv.ConceptvecError, match=r"no live unit in this layer: every unit's top 20 examples all tie"):
        cv.layer_thresholds(np.zeros((50, 3)), params=cv.Params(top=20))
