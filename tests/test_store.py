import json
import os
import subprocess
import sys

import numpy as np
import pytest

import conceptvec as cv
from conceptvec.store import StoreWriter, partial_path


def _make(tmp_path, dtype="float32"):
    acts = np.arange(40, dtype=np.float32).reshape(10, 4)
    examples = {"id": [f"e{i}" for i in range(10)], "label": list(range(10)), "label_name": [f"c{i}" for i in range(10)],
                "source": [f"img/{i}.png" for i in range(10)]}
    meta = {"model": {"name": "m", "weights": "w"}, "layer": "l", "pooling": "avg", "data": {"kind": "test"}}
    return acts, cv.ActivationStore.create(tmp_path / "s", acts, examples, meta, dtype=dtype)


def test_roundtrip_memory_mapped(tmp_path):
    acts, store = _make(tmp_path)
    assert isinstance(store.activations, np.memmap) and not store.activations.flags.writeable
    np.testing.assert_array_equal(store.activations, acts)
    assert store.ids.tolist()[:2] == ["e0", "e1"] and store.labels.tolist()[3] == 3
    assert store.label_names[2] == "c2" and store.sources[9] == "img/9.png"
    assert store.shape == (10, 4) and store.metadata["layer"] == "l"
    assert "numpy" in store.metadata["versions"] and store.metadata["format"] == "conceptvec.ActivationStore/1"
    assert store.provenance()["model"] == {"name": "m", "weights": "w"}
    assert not partial_path(tmp_path / "s").exists()


def test_float16(tmp_path):
    acts, store = _make(tmp_path, dtype="float16")
    assert store.activations.dtype == np.float16
    np.testing.assert_allclose(store.activations, acts, rtol=1e-3)


def test_partial_store_says_how_to_resume(tmp_path):
    writer = StoreWriter(tmp_path / "s", 10, 4)
    writer.write(0, np.ones((3, 4)))
    del writer  # never finished, as after a crash
    with pytest.raises(cv.StoreError, match=r"incomplete.*Run the same `conceptvec extract"):
        cv.ActivationStore.open(tmp_path / "s")


def test_killed_writer_leaves_no_final_directory(tmp_path):
    code = (
        "import numpy as np, os, signal\n"
        "from conceptvec.store import StoreWriter\n"
        f"w = StoreWriter({str(tmp_path / 's')!r}, 100, 8)\n"
        "w.write(0, np.ones((50, 8)))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", code])
    assert not (tmp_path / "s").exists() and partial_path(tmp_path / "s").exists()
    with pytest.raises(cv.StoreError, match="incomplete"):
        cv.ActivationStore.open(tmp_path / "s")


@pytest.mark.parametrize("setup, match", [
    (lambda p: None, r"no activation store at .*conceptvec extract"),
    (lambda p: p.mkdir(), r"not an activation store \(it has no metadata.json\)"),
    (lambda p: p.write_text("x"), r"is a file"),
    (lambda p: (p.mkdir(), (p / "conceptset.json").write_text("{}")), r"is a ConceptSet"),
    (lambda p: (p.mkdir(), (p / "metadata.json").write_text(json.dumps({"format": "other"}))), r"format 'other'"),
])
def test_foreign_paths(tmp_path, setup, match):
    path = tmp_path / "s"
    setup(path)
    with pytest.raises(cv.StoreError, match=match):
        cv.ActivationStore.open(path)


def test_damaged_store(tmp_path):
    _, store = _make(tmp_path)
    os.remove(store.path / "examples.parquet")
    with pytest.raises(cv.StoreError, match="examples.parquet is missing"):
        cv.ActivationStore.open(store.path)


def test_refuses_existing_without_overwrite(tmp_path):
    acts, store = _make(tmp_path)
    with pytest.raises(cv.StoreError, match="already exists"):
        cv.ActivationStore.create(store.path, acts)
    again = cv.ActivationStore.create(store.path, acts * 2, overwrite=True)
    np.testing.assert_array_equal(again.activations, acts * 2)


def test_bad_inputs(tmp_path):
    with pytest.raises(cv.StoreError, match="non-empty 2-D"):
        cv.ActivationStore.create(tmp_path / "a", np.ones(4))
    with pytest.raises(cv.StoreError, match="dtype must be one of"):
        cv.ActivationStore.create(tmp_path / "b", np.ones((2, 2)), dtype="int8")
    with pytest.raises(cv.StoreError, match="unique"):
        cv.ActivationStore.create(tmp_path / "c", np.ones((2, 2)), {"id": ["a", "a"]})
    with pytest.raises(cv.StoreError, match=r"examples\['label'\] has 1 entries"):
        cv.ActivationStore.create(tmp_path / "d", np.ones((2, 2)), {"label": [1]})


def test_shrink_keeps_first_rows(tmp_path):
    with StoreWriter(tmp_path / "s", 6, 2) as w:
        w.write(0, np.arange(8).reshape(4, 2))
        w.finish({"id": ["a", "b", "c", "d"]}, {}, n_rows=4)
    store = cv.ActivationStore.open(tmp_path / "s")
    np.testing.assert_array_equal(store.activations, np.arange(8).reshape(4, 2))
    assert store.n_examples == 4
