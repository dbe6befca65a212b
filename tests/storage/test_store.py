import json
import os
import subprocess
import sys

import numpy as np
import pytest

import conceptvec as cv
from conceptvec.storage.store import StoreWriter, partial_path


def _make(tmp_path, dtype="float32"):
    acts = np.arange(40, dtype=np.float32).reshape(10, 4)
    examples = {"id": [f"e{i}" for i in range(10)], "label": list(range(10)), "label_name": [f"c{i}" for i in range(10)],
                "source": [f"img/{i}.png" for i in range(10)]}
    meta = {"model": {"name": "m", "weights": "w"}, "layer": "l", "pooling": "avg", "data": {"kind": "test"}}
    return acts, cv.ActivationStore.create(tmp_path / "s", acts, examples=examples, metadata=meta, dtype=dtype)


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
    writer = StoreWriter(tmp_path / "s")
    writer.write(0, np.ones((3, 4)))
    del writer  # never finished, as after a crash
    with pytest.raises(cv.StoreError, match=r"incomplete.*Run the same `conceptvec extract"):
        cv.ActivationStore.open(tmp_path / "s")


@pytest.mark.slow
def test_killed_writer_leaves_no_final_directory(tmp_path):
    code = (
        "import numpy as np, os, signal\n"
        "from conceptvec.storage.store import StoreWriter\n"
        f"w = StoreWriter({str(tmp_path / 's')!r})\n"
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
        cv.ActivationStore.create(tmp_path / "c", np.ones((2, 2)), examples={"id": ["a", "a"]})
    with pytest.raises(cv.StoreError, match=r"examples\['label'\] has 1 entries"):
        cv.ActivationStore.create(tmp_path / "d", np.ones((2, 2)), examples={"label": [1]})


def test_skipped_examples_are_left_out(tmp_path):
    with StoreWriter(tmp_path / "s") as w:
        w.write_chunk(0, 0, 3, np.arange(4).reshape(2, 2), skipped=[1])
        w.write_chunk(1, 3, 6, np.arange(4, 10).reshape(3, 2))
        assert w.skipped() == [1]
        w.finish({"id": list("abcdef"), "label": [0, 1, 2, 3, 4, 5]}, {})
    store = cv.ActivationStore.open(tmp_path / "s")
    np.testing.assert_array_equal(store.activations, np.arange(10).reshape(5, 2))
    assert store.ids.tolist() == list("acdef") and store.labels.tolist() == [0, 2, 3, 4, 5]
    assert not (store.path / "chunks").exists() and not (store.path / "progress.json").exists()


def _chunked(path, chunks, fingerprint, kill_after=None):
    """Write ``chunks`` (a list of row blocks) through StoreWriter; stop after ``kill_after`` chunks."""
    w = StoreWriter(path, fingerprint=fingerprint, dtype="float16")
    done = w.completed()
    start = 0
    for k, rows in enumerate(chunks):
        if k == kill_after:
            return w
        if k not in done:
            w.write_chunk(k, start, start + len(rows), rows)
        start += len(rows)
    w.finish({"id": [f"e{i}" for i in range(start)]}, {"layer": "l"})
    return w


def test_resumed_store_is_byte_identical(tmp_path):
    rng = np.random.default_rng(0)
    chunks = [rng.normal(size=(n, 5)) for n in (4, 4, 3)]
    _chunked(tmp_path / "a", chunks, {"layer": "l"})
    _chunked(tmp_path / "b", chunks, {"layer": "l"}, kill_after=2)
    assert len(StoreWriter(tmp_path / "b", fingerprint={"layer": "l"}, dtype="float16").completed()) == 2
    _chunked(tmp_path / "b", [np.full((4, 5), 99.0)] * 2 + chunks[2:], {"layer": "l"})  # done chunks are not rewritten
    for name in ("activations.npy", "examples.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_resume_with_other_fingerprint_is_refused(tmp_path):
    _chunked(tmp_path / "s", [np.ones((2, 3))] * 2, {"layer": "l", "model": "m"}, kill_after=1)
    with pytest.raises(cv.StoreError, match=r"different extraction \(layer: partial has 'l', asked 'k'\).*--overwrite"):
        StoreWriter(tmp_path / "s", fingerprint={"layer": "k", "model": "m"}, dtype="float16")
    fresh = StoreWriter(tmp_path / "s", fingerprint={"layer": "k", "model": "m"}, dtype="float16", overwrite=True)
    assert fresh.completed() == {}


def test_gap_in_chunks_is_an_error(tmp_path):
    w = StoreWriter(tmp_path / "s")
    w.write_chunk(1, 2, 4, np.ones((2, 2)))
    with pytest.raises(cv.StoreError, match=r"examples 0:2 were never written"):
        w.finish(None, {})


def test_results_know_which_store_they_came_from(tmp_path):
    acts = np.abs(np.random.default_rng(0).normal(size=(50, 4)))
    a = cv.ActivationStore.create(tmp_path / "a", acts, metadata={"model": {"name": "m"}, "layer": "x"})
    b = cv.ActivationStore.create(tmp_path / "b", acts, metadata={"model": {"name": "m"}, "layer": "y"})  # same shape
    cs = cv.disentangle(a, neuron=0, params=cv.Params(top=10, distance_threshold=5.0))
    assert cs.provenance["activations"]["store_id"] == a.store_id != b.store_id
    a.check_made_from(cs.provenance, what="the set")
    with pytest.raises(cv.StoreError, match="computed from another activation store"):
        b.check_made_from(cs.provenance, what="the set")
    b.check_made_from({"activations": "array"}, what="a set made from an array")  # nothing recorded: nothing to refuse
