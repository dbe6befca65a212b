"""The report's "Beside a sparse dictionary" section: a run with dictionary/ shows each concept beside its atom."""

import numpy as np
import pytest
from conftest import planted

import conceptvec as cv
from conceptvec.report.html import write_report
from conceptvec.storage.atomic import read_json

PARAMS = cv.Params(top=60, distance_threshold=10.0, outlier_threshold=40.0)
META = {"model": {"name": "m"}, "layer": "l", "data": {"kind": "sklearn-digits"}}


def digits_store(path, acts, groups):
    n = len(acts)
    examples = {"id": [f"d{i}" for i in range(n)], "label_name": [f"group {g}" for g in groups],
                "source": [f"sklearn-digits:{i}" for i in range(n)]}
    return cv.ActivationStore.create(path, acts, examples=examples, metadata=META)


@pytest.mark.slow
def test_concepts_beside_their_atoms(tmp_path):
    acts, groups = planted()
    store = digits_store(tmp_path / "store", acts, groups)
    cs = cv.disentangle(store, neuron=3, params=PARAMS)
    assert cs.n_concepts == 2
    cs.save(tmp_path / "neuron_3")
    # the two planted facets as atoms 4 and 7 among non-negative decoys: the known answer
    rng = np.random.default_rng(0)
    decoder = np.abs(rng.normal(size=(10, acts.shape[1])))
    for atom, g in ((4, 0), (7, 1)):
        decoder[atom] = acts[groups == g].mean(0)
    decoder /= np.linalg.norm(decoder, axis=1, keepdims=True)
    cv.Dictionary(decoder=decoder.astype(np.float32), bias=np.zeros(acts.shape[1], np.float32), method="checkpoint",
                  config={"k": 1}).save(tmp_path / "dictionary")
    index = write_report(tmp_path, umap=False)
    page = (index.parent / "neuron_3.html").read_text()
    assert "Beside a sparse dictionary" in page and "assets/neuron_3/dictionary.png" in page
    data = read_json(index.parent / "assets" / "neuron_3" / "dictionary.json")
    facet_of_concept = [int(np.bincount(groups[cs.members(c)]).argmax()) for c in range(2)]
    assert data["matched_atom"] == [{0: 4, 1: 7}[g] for g in facet_of_concept]
    assert min(data["cosine"]) >= 0.9 and min(data["member_share"]) >= 0.9
    # the atoms' top examples are their facets' examples
    for atom, g in ((4, 0), (7, 1)):
        assert all(groups[i] == g for i in data["atom_top_examples"][str(atom)])
    assert (index.parent / "assets" / "neuron_3" / "dictionary.png").stat().st_size > 5000


def test_no_dictionary_no_section(tmp_path):
    from conceptvec.report.dictionary_section import dictionary_section, run_dictionary
    from conceptvec.storage.rundir import RunDir

    assert run_dictionary(RunDir(tmp_path)) is None
    assert dictionary_section(None, None, None, None, tmp_path, "neuron_3", "assets") is None
