import numpy as np
import pytest

import conceptvec as cv
from conceptvec.storage.rundir import RunDir, recorded_store


def test_layout_paths(tmp_path):
    run = cv.RunDir(tmp_path / "run")
    assert run.store == tmp_path / "run" / "store"
    assert run.scan == tmp_path / "run" / "scan"
    assert run.report == tmp_path / "run" / "report"
    assert run.neuron(35) == tmp_path / "run" / "neuron_35"
    assert run.featureviz(35) == tmp_path / "run" / "neuron_35" / "featureviz"
    assert run.featureviz("set_a") == tmp_path / "run" / "set_a" / "featureviz"
    assert not (tmp_path / "run").exists()  # nothing is made until a stage writes
    assert run.conceptsets() == {}


def test_conceptsets_and_store(tmp_path):
    acts = np.abs(np.random.default_rng(0).normal(size=(120, 6)))
    run = RunDir(tmp_path)
    store = cv.ActivationStore.create(run.store, acts)
    params = cv.Params(top=30, distance_threshold=3.0)
    cv.disentangle(store, neuron=2, params=params).save(run.neuron(2))
    cv.disentangle(store, direction=np.ones(6), params=params).save(tmp_path / "along_ones")
    (tmp_path / "notes").mkdir()  # not a ConceptSet
    assert list(run.conceptsets()) == ["along_ones", "neuron_2"]
    assert run.open_store().path == store.path


def test_store_found_through_what_a_set_recorded(tmp_path):
    acts = np.abs(np.random.default_rng(1).normal(size=(80, 4)))
    store = cv.ActivationStore.create(tmp_path / "elsewhere", acts)
    cs = cv.disentangle(store, neuron=0, params=cv.Params(top=20, distance_threshold=2.0))
    assert recorded_store(cs) == str(store.path.resolve())
    run = RunDir(tmp_path / "run")
    assert run.open_store([None, "missing", cs]).path.resolve() == store.path.resolve()
    with pytest.raises(cv.StoreError, match="no activation store for .*conceptvec extract"):
        run.open_store(["missing"])
