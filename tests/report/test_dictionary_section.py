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


@pytest.mark.slow
def test_token_store_works_the_same_with_snippets(tmp_path, tiny_gpt2):
    """Item 4: a dictionary of a language model's token store, the comparison, and the section shows token snippets."""
    import torch

    from conftest import SENTENCES

    torch.set_num_threads(1)
    (tmp_path / "c.txt").write_text("\n".join(SENTENCES * 3) + "\n", encoding="utf-8")
    run = tmp_path / "run"
    store = cv.extract(model=f"hf:{tiny_gpt2}", layer="transformer.h.1.mlp.act", data=tmp_path / "c.txt", out=run / "store",
                       examples="tokens", progress=False)
    dic = cv.fit_dictionary(store, n_atoms=2 * store.n_units, k=4, epochs=3, batch_size=64, progress=False, out=run / "dictionary")
    assert dic.quality["n_examples"] == store.n_examples and dic.quality["mean_l0"] <= 4
    cs = cv.disentangle(store, neuron=3, params=cv.Params(top=30, min_cluster_size=3, distance_threshold="auto"))
    cs.save(run / "neuron_3")
    comp = cv.compare_with_dictionary(cs, dic, baseline="random")
    assert len(comp.matched_atom) == cs.n_concepts and all(-1 <= c <= 1 for c in comp.cosine)
    index = write_report(run, umap=False)
    page = (index.parent / "neuron_3.html").read_text()
    assert "Beside a sparse dictionary" in page and "<mark>" in page
