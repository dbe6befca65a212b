"""Params(null="layer"): auto's first split against random directions of the same layer (core.layernull)."""

import numpy as np
import pytest

import conceptvec as cv
from conceptvec.core.layernull import first_split_share, layer_sd
from conceptvec.core.steps import cluster_top

LAYER = cv.Params(distance_threshold="auto", null="layer")


def two_moods(seed: int = 0, n: int = 1200, d: int = 24) -> np.ndarray:
    """Every example is one of two global patterns (its 'mood') times a strength, plus noise: the top examples of
    any direction hold both moods, so every direction is bimodal in the layer's space."""
    rng = np.random.default_rng(seed)
    moods = np.abs(rng.standard_normal((2, d))) * 2 + 0.2
    moods[:, :4] = 1.5  # units 0-3 fire alike in both moods: their tops hold both
    which = rng.integers(0, 2, n)
    strength = rng.uniform(0.5, 2.0, n)[:, None]
    return strength * moods[which] + 0.05 * rng.standard_normal((n, d))


def isotropic_with_a_two_concept_neuron(seed: int = 0, n: int = 1500, d: int = 24) -> np.ndarray:
    """Gaussian examples (every random direction's top is one blob) and 120 examples that fire unit 0 for two
    reasons: half with unit 1 high, half with unit 2 high."""
    rng = np.random.default_rng(seed)
    acts = rng.standard_normal((n, d))
    planted = rng.standard_normal((120, d)) * 0.3
    planted[:, 0] += 6.0
    planted[:60, 1] += 6.0
    planted[60:, 2] += 6.0
    acts[:120] = planted
    return acts


def test_a_layer_where_every_direction_is_bimodal_splits_with_the_gaussian_null_and_not_with_the_layers():
    acts = two_moods()
    null = cv.layer_null(acts, params=LAYER)
    gaussian = LAYER.replace(null="gaussian")
    for j in range(4):
        assert cv.disentangle(acts, neuron=j, params=gaussian).n_concepts == 2
        cs = cv.disentangle(acts, neuron=j, params=LAYER, layer_null=null)
        assert cs.n_concepts == 1, cs.split_tests
        assert cs.split_tests[0]["draws"] == len(null.shares)  # the first test used the layer's shares
        assert cs.provenance["layer_null"]["draws"] == len(null.shares)


def test_a_neuron_with_two_reasons_splits_and_random_directions_split_at_about_the_level():
    acts = isotropic_with_a_two_concept_neuron()
    null = cv.layer_null(acts, params=LAYER)
    cs = cv.disentangle(acts, neuron=0, params=LAYER, layer_null=null)
    assert cs.n_concepts == 2
    truth = (np.asarray(cs.top_indices) < 60).astype(int)
    kept = cs.labels >= 0
    assert min(np.mean(cs.labels[kept] == truth[kept]), np.mean(cs.labels[kept] != truth[kept])) == 0
    rng = np.random.default_rng(7)
    sd = layer_sd(acts)
    split = [cv.disentangle(acts, direction=rng.standard_normal(acts.shape[1]) / sd, params=LAYER,
                            layer_null=null).n_concepts > 1 for _ in range(30)]
    assert sum(split) <= 3  # at 0.01 about 0.3 of 30; a null drawn from other directions leaves some slack


def test_the_null_is_drawn_in_disentangle_when_left_out_and_is_seeded():
    acts = isotropic_with_a_two_concept_neuron(n=600)
    a = cv.layer_null(acts, params=LAYER, draws=20)
    b = cv.layer_null(acts, params=LAYER, draws=20)
    np.testing.assert_array_equal(a.shares, b.shares)
    assert not np.array_equal(a.shares, cv.layer_null(acts, params=LAYER.replace(seed=1), draws=20).shares)
    drawn = cv.disentangle(acts, neuron=0, params=LAYER)
    assert drawn.provenance["layer_null"]["draws"] == 100


def test_first_split_share_is_autos_first_test():
    acts = isotropic_with_a_two_concept_neuron()
    cs = cv.disentangle(acts, neuron=0, params=LAYER.replace(null="gaussian"))
    assert first_split_share(cs.top_activations, min_cluster_size=5) == pytest.approx(cs.split_tests[0]["share"])


def test_bad_combinations_are_refused_in_one_line():
    acts = two_moods(n=300)
    with pytest.raises(cv.ConceptvecError, match="null='layer' needs distance_threshold='auto'"):
        cv.Params(null="layer")
    with pytest.raises(cv.ConceptvecError, match="null must be one of"):
        cv.Params(distance_threshold="auto", null="uniform")
    null = cv.layer_null(acts, params=LAYER, draws=10)
    with pytest.raises(cv.ConceptvecError, match="drawn with top=100"):
        cv.disentangle(acts, neuron=0, params=LAYER.replace(top=50), layer_null=null)
    with pytest.raises(cv.ConceptvecError, match="params.null is not 'layer'"):
        cv.disentangle(acts, neuron=0, params=LAYER.replace(null="gaussian"), layer_null=null)
    with pytest.raises(cv.ConceptvecError, match="go together"):
        cluster_top(acts[:100], LAYER)
    with pytest.raises(cv.ConceptvecError, match="draws must be at least 3"):
        cv.layer_null(acts, params=LAYER, draws=2)


def test_the_papers_params_are_unchanged():
    assert cv.Params().null == "gaussian"
    assert "null" not in cv.Params().describe()


def test_a_scan_draws_the_null_once_and_agrees_with_disentangle():
    acts = isotropic_with_a_two_concept_neuron(n=800, d=12)
    result = cv.scan_layer(acts, params=LAYER, workers=1, progress=False, projecting=False)
    null = cv.layer_null(acts, params=LAYER)
    assert result.provenance["layer_null"] == null.describe()
    for j in range(12):
        assert result.n_concepts[j] == cv.disentangle(acts, neuron=j, params=LAYER, layer_null=null).n_concepts
    assert result.n_concepts[0] == 2
