import warnings

import numpy as np
import pytest

import conceptvec as cv
from conceptvec.core.planted import planted_layer


def bh_by_hand(p: np.ndarray, q: float) -> np.ndarray:
    order = np.argsort(p)
    under = np.flatnonzero(p[order] <= q * np.arange(1, len(p) + 1) / len(p))
    found = np.zeros(len(p), dtype=bool)
    if under.size:
        found[order[: under[-1] + 1]] = True
    return found


@pytest.fixture(scope="module")
def noisy():
    # Facets blurred into each other (noise 1.5): first-split p-values spread over 0.001-0.3, so a lenient per-split
    # level splits neurons that Benjamini-Hochberg at 0.05 does not call discoveries.
    return planted_layer(48, n_neurons=12, noise=1.5, seed=1).acts


LENIENT = cv.Params(distance_threshold="auto", significance=0.4)


@pytest.fixture(scope="module")
def plain(noisy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        return cv.scan_layer(noisy, params=LENIENT, neurons="0-11", workers=1, progress=False, projecting=False)


@pytest.mark.slow
def test_fdr_withdraws_exactly_the_first_splits_that_are_no_bh_discovery(noisy, plain, tmp_path):
    lenient = LENIENT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        ctrl = cv.scan_layer(noisy, params=lenient.replace(fdr=0.05), neurons="0-11", workers=1, progress=False,
                             projecting=False, out=tmp_path / "scan")
    assert np.array_equal(plain.first_p, ctrl.first_p) and plain.live.all()
    found = bh_by_hand(plain.first_p, 0.05)
    withdrawn = (plain.n_agglomerative > 1) & ~found
    assert 0 < withdrawn.sum() < (plain.n_agglomerative > 1).sum()  # the case exercises both outcomes
    assert (ctrl.n_agglomerative[withdrawn] == 1).all() and (ctrl.n_concepts[withdrawn] == 1).all()
    kept = ~withdrawn
    assert np.array_equal(ctrl.n_agglomerative[kept], plain.n_agglomerative[kept])
    assert np.array_equal(ctrl.labels[kept], plain.labels[kept])
    e = ctrl.layer_error
    assert e["withdrawn"] == int(withdrawn.sum()) and e["splits"] == int((ctrl.n_agglomerative > 1).sum())
    assert e["expected_false_splits"] == pytest.approx(0.05 * e["splits"])
    assert plain.layer_error["expected_false_splits"] == pytest.approx(0.4 * 12)
    # the concept index stays consistent: a withdrawn neuron's one concept is its kept examples' mean
    i = int(np.flatnonzero(withdrawn)[0])
    members = noisy[ctrl.top_indices[i][ctrl.labels[i] == 0]].astype(np.float64).mean(axis=0)
    assert np.allclose(ctrl.concepts_of(int(ctrl.neurons[i])), members / np.linalg.norm(members))
    # saved and read back, with the rule in the table and the figure's title
    back = cv.ScanResult.load(tmp_path / "scan")
    assert np.array_equal(back.first_p, ctrl.first_p) and back.layer_error == ctrl.layer_error
    assert "Benjamini-Hochberg FDR 0.05" in back.rule_text() and f"{e['withdrawn']} withdrawn" in back.rule_text()
    assert "first_split_p" in back.table().column_names


def test_disentangle_is_a_layer_of_one_under_fdr(noisy, plain):
    j = int(np.flatnonzero((plain.n_agglomerative > 1) & (plain.first_p > 0.01))[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        cs = cv.disentangle(noisy, neuron=j, params=LENIENT)
        one = cv.disentangle(noisy, neuron=j, params=LENIENT.replace(fdr=0.01))
    assert cs.n_agglomerative > 1 and cs.split_tests[0]["p_value"] == plain.first_p[j]
    assert one.n_agglomerative == 1 and one.n_concepts == 1 and one.split_tests[0]["withdrawn_by_fdr"]
