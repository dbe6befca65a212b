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


# -- floors other than 0 (issue 24 item 2): each unit's own floor, found on the layer --------------------------------

from conceptvec.core.live import FloorTracker, column_floors  # noqa: E402

TOP = 20


def _pre(seed=1, n=400, m=4):
    """Pre-activations: unit 0 fires on about half the examples, unit 1 on 7 only, units 2-3 on about a quarter."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.0, 1.0, size=(n, m))
    z[:, 0] += 1.0
    z[:, 1] = -3.0 - rng.random(n)  # far below 0 ...
    z[:7, 1] = np.arange(1.0, 8.0)  # ... but on 7 examples
    return z


def _expectations(acts, floors, dead):
    """The scan, disentangle, live_columns and the summary agree on the layer's live units, and name the floors."""
    params = cv.Params(top=TOP, distance_threshold="auto")
    result = cv.scan_layer(acts, params=params, progress=False, workers=1, projecting=False)
    expected = [j not in dead for j in range(acts.shape[1])]
    np.testing.assert_allclose(result.floors, floors)
    assert result.live.tolist() == expected
    sets = [cv.disentangle(acts, neuron=j, params=params) for j in range(acts.shape[1])]
    assert [cs.is_live for cs in sets] == expected
    assert [cs.floor for cs in sets] == pytest.approx(list(floors), nan_ok=True)
    assert live_columns(acts, TOP).tolist() == [j for j in range(acts.shape[1]) if j not in dead]
    return result, sets


def test_relu_then_batch_norm_each_unit_rests_at_its_own_constant_and_says_which():
    relu = np.maximum(_pre(), 0.0)
    gamma, beta = np.array([1.5, 0.8, 2.0, 0.5]), np.array([0.3, -0.2, 1.0, -2.0])
    mu, sd = relu.mean(axis=0), relu.std(axis=0)
    acts = (relu - mu) / sd * gamma + beta  # batch norm after the ReLU: 0 becomes each unit's own constant
    floors = (0 - mu) / sd * gamma + beta
    assert len(np.unique(np.round(floors, 6))) == 4 and (floors != 0).all()
    assert np.sum(acts[:, 1] > floors[1] + 1e-9) == 7
    result, sets = _expectations(acts, floors, dead={1})
    assert sets[1].dead_reason == (f"it is above {floors[1]:.4g} on only 7 examples: the other 13 of its top 20 sit at "
                                   f"{floors[1]:.4g}, its floor (where it rests), and are arbitrary examples it does not "
                                   f"respond to")
    summary = dead_summary(result.top_scores, result.neurons, floors=result.floors)
    assert f"(the rest of the top ties at their floor {floors[1]:.4g})" in summary and summary.endswith(": 1")
    # the rule before floors (0 for every unit) kept this unit, whose top ends at its floor, not at 0
    assert live_mask(result.top_scores[1]).tolist() == [True]


def test_a_shifted_relu6_rests_at_minus_3_and_a_saturated_unit_is_constant():
    acts = np.clip(_pre() * 2, 0.0, 6.0) - 3.0  # ReLU6, shifted: rests at -3, saturates at 3
    acts[:, 3] = -3.0
    acts[:30, 3] = 3.0  # saturated on 30 examples: its top 20 all tie at 3
    result, sets = _expectations(acts, np.full(4, -3.0), dead={1, 3})
    assert sets[1].dead_reason.startswith("it is above -3 on only 7 examples: the other 13 of its top 20 sit at -3, its floor")
    assert sets[3].dead_reason.startswith("all 20 of its top examples have the same activation (3)")


def test_hardswish_rests_at_0_not_at_its_minimum():
    z = _pre() * 2
    z[7:150, 1] = np.linspace(-2.9, -0.1, 143)  # the unit that fires on 7 examples sits in the dip on 143 others
    acts = z * np.clip(z + 3, 0, 6) / 6  # hardswish: 0 below -3, a dip to -0.375 at -1.5, then rising
    assert acts[:, 1].min() == pytest.approx(-0.375, abs=0.01) and np.sum(acts[:, 1] == 0) == 250
    assert np.sum(acts[:, 1] == acts[:, 1].min()) == 1  # its minimum is no floor: 0 is
    result, sets = _expectations(acts, np.zeros(4), dead={1})
    assert sets[1].dead_reason.startswith("it is above 0 on only 7 examples: the other 13 of its top 20 sit at 0, its floor")


def test_a_floor_needs_a_tie_and_blocks_find_the_floor_of_the_whole():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(1000, 5))
    a[:, 1] = np.maximum(a[:, 1], 0)
    a[:, 2] = np.maximum(a[:, 2], -0.5)  # clipped: the minimum is shared
    a[:, 3] = np.round(a[:, 3])  # integers: one example at the minimum (-4), hundreds at 0
    a[[10, 900], 4] = a[:, 4].min() - 1  # two rows share the minimum, one in each block
    whole = column_floors(a)
    assert np.sum(a[:, 3] == -4) == 1 and np.sum(a[:, 3] == 0) > 300
    assert np.isnan(whole[0]) and whole[1:].tolist() == [0.0, -0.5, 0.0, a[:, 4].min()]
    tracker = FloorTracker(5)
    for start in range(0, 1000, 256):
        tracker.update(a[start:start + 256].astype(np.float32))
    np.testing.assert_array_equal(tracker.floors(), column_floors(a.astype(np.float32)))
    single = a[:, 0].copy()
    single[5] = single.min() - 1  # the minimum of one example is no floor
    assert np.isnan(column_floors(single)[0])


def test_the_floor_is_saved_with_a_conceptset_and_a_scan(tmp_path):
    relu = np.maximum(_pre(), 0.0)
    acts = (relu - relu.mean(axis=0)) / relu.std(axis=0)
    params = cv.Params(top=TOP, distance_threshold="auto")
    cs = cv.disentangle(acts, neuron=1, params=params)
    assert not cs.is_live
    again = cv.ConceptSet.load(cs.save(tmp_path / "cs"))
    assert again.floor == cs.floor and not again.is_live and again.dead_reason == cs.dead_reason
    signed = cv.disentangle(signed_layer(), neuron=0, params=params)
    assert np.isnan(signed.floor) and np.isnan(cv.ConceptSet.load(signed.save(tmp_path / "signed")).floor)
    result = cv.scan_layer(acts, params=params, progress=False, workers=1, projecting=False, out=tmp_path / "scan")
    loaded = cv.ScanResult.load(tmp_path / "scan", acts=acts)
    np.testing.assert_array_equal(loaded.floors, result.floors)
    assert loaded.live.tolist() == result.live.tolist() == [True, False, True, True]
    assert loaded[1].floor == result.floors[1] and not loaded[1].is_live
