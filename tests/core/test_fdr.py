import numpy as np
import pytest

import conceptvec as cv
from conceptvec.core.fdr import bh_discoveries, first_split_p, layer_error


def test_bh_discoveries_are_the_benjamini_hochberg_step_up_set():
    # m = 6, q = 0.1: sorted p .001 .04 .045 .06 .09 .5 against the cuts k q / m = .0167 .033 .05 .067 .083 .1; the
    # largest k with p_(k) under its cut is 4, so the four smallest are discoveries (.04 is over its own cut: step-up).
    p = np.array([0.06, 0.001, 0.5, 0.045, 0.09, 0.04])
    assert bh_discoveries(p, 0.1).tolist() == [True, True, False, True, False, True]
    assert not bh_discoveries(p, 0.0001).any()
    # NaN (no test made) is not counted among the m tests
    assert bh_discoveries(np.array([0.04, np.nan]), 0.05).tolist() == [True, False]
    assert bh_discoveries(np.array([0.04, 1.0]), 0.05).tolist() == [False, False]


def test_layer_error_reports_the_rule_and_the_expected_false_splits():
    p = np.array([0.001, 0.2, 0.003, np.nan])
    plain = layer_error(p, np.array([True, False, True, False]), significance=0.01, fdr=None)
    assert plain["tested"] == 3 and plain["splits"] == 2 and plain["expected_false_splits"] == pytest.approx(0.03)
    controlled = layer_error(p, np.array([True, False, True, False]), significance=0.01, fdr=0.05)
    assert controlled["expected_false_splits"] == pytest.approx(0.1) and "Benjamini-Hochberg" in controlled["rule"]
    assert np.isnan(first_split_p(None)) and first_split_p([]) == 1.0 and first_split_p([{"p_value": 0.2}]) == 0.2


def test_fdr_needs_auto_and_a_level():
    with pytest.raises(cv.ConceptvecError, match="needs distance_threshold='auto'"):
        cv.Params(fdr=0.05)
    with pytest.raises(cv.ConceptvecError, match="fdr must be a number between 0 and 1"):
        cv.Params(distance_threshold="auto", fdr=1.5)
    assert cv.Params().fdr is None and "FDR 0.05" in cv.Params(distance_threshold="auto", fdr=0.05).describe()


def test_excitation_keeps_the_positive_part_on_its_leading_components():
    from conceptvec.core.represent import excitation

    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 30))
    e = excitation(a, components=4)
    positive = np.maximum(a, 0)
    # the rows' coordinates on the k leading right singular vectors: lengths are the top-k singular values
    s = np.linalg.svd(positive, compute_uv=False)
    assert e.shape == (50, 4) and np.allclose(np.linalg.norm(e, axis=0), s[:4])
    # negative attributions do not move it; with k = all, the rows' lengths and angles are the positive part's
    assert np.allclose(excitation(positive, components=4), e)
    full = excitation(a, components=30)
    assert np.allclose(full @ full.T, positive @ positive.T)


def test_detectable_separation_is_what_auto_then_finds():
    import warnings

    from conceptvec.core.auto import unit_rows
    from conceptvec.core.power import detectable_separation

    rng = np.random.default_rng(0)
    base = np.abs(rng.normal(size=64))
    base /= np.linalg.norm(base)
    x = base + rng.normal(scale=0.05, size=(100, 64))
    delta = detectable_separation(x)
    assert 0 < delta < np.inf
    u = unit_rows(x)
    rms = np.sqrt(np.mean(np.sum((u - u.mean(axis=0)) ** 2, axis=1)))
    split = {}
    for mult in (0.3, 2.0):  # two concepts well below and well above the reported separation
        found = 0
        for s in range(6):
            r = np.random.default_rng(s + 10)
            v = r.normal(size=64)
            v -= v @ base * base
            v /= np.linalg.norm(v)
            y = base + r.normal(scale=0.05, size=(100, 64))
            y[:50] += v * mult * delta * rms / 2
            y[50:] -= v * mult * delta * rms / 2
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", cv.ConceptvecWarning)
                found += cv.disentangle(y, neuron=0, params=cv.Params(distance_threshold="auto")).n_agglomerative >= 2
        split[mult] = found
    assert split == {0.3: 0, 2.0: 6}


def test_adjusted_p_is_benjamini_hochberg_and_the_split_check_uses_it():
    from conceptvec.core.evidence import layer_verdicts
    from conceptvec.core.fdr import adjusted_p

    p = np.array([0.001, 0.008, 0.009, np.nan, 0.5])
    # by hand over the 4 tested: sorted 0.001, 0.008, 0.009, 0.5 -> 0.004, 0.012, 0.012 (step-up min), 0.5
    assert np.allclose(adjusted_p(p), [0.004, 0.012, 0.012, np.nan, 0.5], equal_nan=True)
    # five neurons of 2 concepts each: every raw p but the last is below 0.01, only the first survives the layer
    offsets = np.arange(0, 12, 2)
    rows = layer_verdicts(offsets, np.zeros((5, 4), np.int64), np.zeros((5, 4), np.int64), first_p=p, level=0.01,
                          reappearance=None, example_labels=None)
    assert [r[0]["checks"].get("split") for r in rows] == [True, False, False, None, False]
    assert rows[1][0]["split_p"] == 0.008 and np.isclose(rows[1][0]["split_q"], 0.012)
    assert rows[1][0]["verdict"] == "not supported (0 of 1 checks)"
