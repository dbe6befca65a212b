"""compare_with_dictionary: a planted layer's concepts meet their facets' atoms; chance does not; a whole scan."""

import numpy as np
import pytest

import conceptvec as cv
from conceptvec.core.planted import planted_layer
from conceptvec.dictionary.compare import DictionaryComparison, compare_scan_with_dictionary, compare_with_dictionary
from conceptvec.dictionary.model import Dictionary
from conceptvec.errors import ConceptvecError

AUTO = cv.Params(distance_threshold="auto")


@pytest.fixture(scope="module")
def layer():
    return planted_layer(64, n_neurons=6, n_background=300, seed=3)


def truth_dictionary(layer, extra=10, seed=0):
    """The planted facets as atoms (their members' mean direction), plus some non-negative decoys: the true answer."""
    rows, owner = [], []
    for j in range(len(layer.n_facets)):
        for f in range(layer.n_facets[j]):
            rows.append(layer.acts[(layer.owner == j) & (layer.facet == f)].mean(0))
            owner.append((j, f))
    decoys = np.abs(np.random.default_rng(seed).normal(size=(extra, layer.acts.shape[1])))
    d = np.vstack(rows + [decoys])
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return Dictionary(decoder=d.astype(np.float32), bias=np.zeros(d.shape[1], np.float32), method="checkpoint", config={"k": 1}), owner


def test_concepts_of_a_multi_facet_neuron_meet_their_facet_atoms(layer):
    dic, owner = truth_dictionary(layer)
    for j in np.flatnonzero(layer.n_facets >= 2)[:3]:
        cs = cv.disentangle(layer.acts, neuron=int(j), params=AUTO)
        assert cs.n_concepts == layer.n_facets[j]
        comp = compare_with_dictionary(cs, dic, baseline="random")
        assert comp.agrees().all(), comp.cosine
        # the matched atom is the facet of the concept's members
        for c in range(cs.n_concepts):
            facets = layer.facet[cs.members(c)]
            majority = np.bincount(facets).argmax()
            assert owner[comp.matched_atom[c]] == (j, majority)
            assert comp.member_share[c] >= 0.9
        assert set(comp.matched_atom) <= set(comp.atoms)
        assert comp.code_share[0] == max(comp.code_share) and sum(comp.code_share) <= 1 + 1e-9
        # random directions of the same count do not agree
        assert max(comp.baseline["cosine"]) < 0.9
        assert np.nanmean(comp.baseline["member_share"]) < np.mean(comp.member_share)


def test_a_wrong_dictionary_disagrees_and_bad_input_is_refused(layer, tmp_path):
    dic, owner = truth_dictionary(layer)
    j = int(np.flatnonzero(layer.n_facets >= 2)[0])
    cs = cv.disentangle(layer.acts, neuron=j, params=AUTO)
    # without the neuron's own facets: its concepts find no atom of theirs
    others = [i for i in range(dic.n_atoms) if i >= len(owner) or owner[i][0] != j]
    wrong = Dictionary(decoder=dic.decoder[others], bias=dic.bias, method="checkpoint", config={"k": 1})
    comp = compare_with_dictionary(cs, wrong)
    assert not comp.agrees().any()
    comp.save(tmp_path / "c")
    assert (tmp_path / "c" / "comparison.json").is_file()
    small = Dictionary(decoder=np.eye(3, dtype=np.float32), bias=np.zeros(3, np.float32), method="checkpoint", config={"k": 1})
    with pytest.raises(ConceptvecError, match="units"):
        compare_with_dictionary(cs, small)
    with pytest.raises(ConceptvecError, match="baseline"):
        compare_with_dictionary(cs, dic, baseline="shuffled")


def test_whole_scan_table_and_summary(layer, tmp_path):
    dic, _ = truth_dictionary(layer)
    scan = cv.scan_layer(layer.acts, params=AUTO, neurons="0-5", workers=1, progress=False)
    result = compare_scan_with_dictionary(scan, dic, baseline="random")
    split = int((scan.n_concepts >= 2).sum())
    assert result.summary["split_neurons"] == split >= 3
    assert result.summary["split_all_concepts_match"] == 1.0
    assert result.summary["baseline_split_all_concepts_match"] == 0.0
    assert result.table.num_rows == int(scan.n_concepts.sum())
    assert isinstance(result.comparisons[1], DictionaryComparison)
    result.save(tmp_path / "s")
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "s" / "comparison.parquet").num_rows == result.table.num_rows
    neurons = pq.read_table(tmp_path / "s" / "comparison_neurons.parquet").to_pydict()
    assert neurons["neuron"] == [int(n) for n in scan.neurons if scan.n_concepts[scan.position(n)] > 0]
    split = [m for m, c in zip(neurons["all_concepts_match_an_atom"], neurons["concepts"]) if c >= 2]
    assert all(split) and not any(b for b, c in zip(neurons["baseline_all_match"], neurons["concepts"]) if c >= 2)


def test_centred_comparison_subtracts_the_dictionary_bias(layer):
    # Atoms of the centred layer (as dictionary learning's): facet means minus the layer mean, bias = the mean.
    mean = layer.acts.mean(0)
    rows = [layer.acts[(layer.owner == j) & (layer.facet == f)].mean(0) - mean
            for j in range(len(layer.n_facets)) for f in range(layer.n_facets[j])]
    d = np.array(rows) / np.linalg.norm(rows, axis=1, keepdims=True)
    dic = Dictionary(decoder=d.astype(np.float32), bias=mean.astype(np.float32), method="checkpoint", config={"k": 1})
    j = int(np.flatnonzero(layer.n_facets >= 2)[0])
    cs = cv.disentangle(layer.acts, neuron=j, params=AUTO)
    raw = compare_with_dictionary(cs, dic)
    centred = compare_with_dictionary(cs, dic, centre=True)
    assert centred.centred and not raw.centred
    assert centred.agrees().all() and np.all(np.asarray(centred.cosine) > np.asarray(raw.cosine))
    # a zero bias changes nothing
    flat = Dictionary(decoder=dic.decoder, bias=np.zeros_like(dic.bias), method="checkpoint", config={"k": 1})
    np.testing.assert_allclose(compare_with_dictionary(cs, flat, centre=True).cosine, compare_with_dictionary(cs, flat).cosine)
