"""Finishing a store from its chunks: the example index joined chunk by chunk, the activations assembled with
each chunk's file deleted as it goes, and a finish stopped half-way continued to the same bytes."""

import numpy as np
import pyarrow as pa
import pytest

import conceptvec as cv
from conceptvec.errors import StoreError
from conceptvec.storage import chunks as chunk_files
from conceptvec.storage.store import StoreWriter, partial_path

ROWS = np.arange(60, dtype=np.float32).reshape(15, 4)
BOUNDS = [(0, 0, 4), (1, 4, 9), (2, 9, 15)]


def _index(start, stop):
    return pa.table({"id": [f"doc{i // 3}#{i % 3}" for i in range(start, stop)], "label": list(range(start, stop)),
                     "label_name": ["x"] * (stop - start), "source": [f"doc{i // 3}" for i in range(start, stop)],
                     "position": pa.array(np.arange(start, stop) % 3)})


def _write(path, *, skipped=(), index=_index):
    writer = StoreWriter(path, fingerprint={"what": "test"}, dtype="float16")
    for k, start, stop in BOUNDS:
        skip = [i for i in skipped if start <= i < stop]
        keep = [i for i in range(start, stop) if i not in skip]
        writer.write_chunk(k, start, stop, ROWS[keep], skip, examples=index(start, stop))
    return writer


def test_index_parts_are_joined_in_order_less_skipped_rows(tmp_path):
    writer = _write(tmp_path / "s", skipped=[5, 6])
    with writer:
        writer.finish(None, {"layer": "l"})
    store = cv.ActivationStore.open(tmp_path / "s")
    kept = [i for i in range(15) if i not in (5, 6)]
    assert store.labels.tolist() == kept
    assert store.ids.tolist() == [f"doc{i // 3}#{i % 3}" for i in kept]
    assert store.examples.column("position").to_pylist() == [i % 3 for i in kept]
    np.testing.assert_array_equal(store.activations, ROWS[kept].astype(np.float16))
    assert sorted(p.name for p in store.path.iterdir()) == [".conceptvec-manifest.json", "activations.npy", "examples.parquet", "metadata.json"]


def test_finish_stopped_half_way_continues_to_the_same_bytes(tmp_path, monkeypatch):
    with _write(tmp_path / "whole") as writer:
        writer.finish(None, {"layer": "l"})
    calls = {"n": 0}
    real = chunk_files.write_json

    def crash_after_second_chunk(path, obj):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C between two chunks of the assembly
        real(path, obj)

    writer = _write(tmp_path / "s")
    monkeypatch.setattr(chunk_files, "write_json", crash_after_second_chunk)
    with pytest.raises(KeyboardInterrupt), writer:
        writer.finish(None, {"layer": "l"})
    partial = partial_path(tmp_path / "s")
    # The two assembled chunks' files are gone (the disk holds the store once), the third is still there.
    assert sorted(p.name for p in (partial / "chunks").glob("*.npy")) == ["000002.npy"]
    monkeypatch.setattr(chunk_files, "write_json", real)
    with StoreWriter(tmp_path / "s", fingerprint={"what": "test"}, dtype="float16") as again:
        assert sorted(again.completed()) == [0, 1, 2]  # an extraction run again does not redo the assembled chunks
        again.finish(None, {"layer": "l"})
    for name in ("activations.npy", "examples.parquet"):
        assert (tmp_path / "s" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert not partial.exists()


def test_assembly_torn_after_its_record_is_rewritten_from_the_record(tmp_path, monkeypatch):
    # A crash can leave bytes in the assembled file beyond what the record says; they are written again.
    with _write(tmp_path / "whole") as writer:
        writer.finish(None, {"layer": "l"})
    writer = _write(tmp_path / "s")
    real = chunk_files.write_json
    monkeypatch.setattr(chunk_files, "write_json", lambda path, obj: (_ for _ in ()).throw(KeyboardInterrupt)
                        if obj.get("assembled") == [0, 1] else real(path, obj))
    with pytest.raises(KeyboardInterrupt), writer:
        writer.finish(None, {"layer": "l"})
    tmp = partial_path(tmp_path / "s") / ".activations.npy.tmp"
    with open(tmp, "ab") as f:
        f.write(b"torn" * 4096)  # longer than the rows still to come
    monkeypatch.setattr(chunk_files, "write_json", real)
    with StoreWriter(tmp_path / "s", fingerprint={"what": "test"}, dtype="float16") as again:
        again.finish(None, {"layer": "l"})
    assert (tmp_path / "s" / "activations.npy").read_bytes() == (tmp_path / "whole" / "activations.npy").read_bytes()


def test_duplicate_ids_across_chunks_are_refused(tmp_path):
    writer = _write(tmp_path / "s", index=lambda start, stop: _index(start, stop).set_column(
        0, "id", pa.array([f"e{i % 5}" for i in range(start, stop)])))
    with writer, pytest.raises(StoreError, match="example ids must be unique"):
        writer.finish(None, {})


def test_equal_hashes_of_different_ids_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.setattr(chunk_files, "id_hashes", lambda ids: np.zeros(len(ids), np.int64))
    with _write(tmp_path / "s") as writer:
        writer.finish(None, {})
    assert len(cv.ActivationStore.open(tmp_path / "s").ids) == 15


def test_index_parts_must_fit_their_chunks(tmp_path):
    writer = StoreWriter(tmp_path / "s")
    with writer, pytest.raises(StoreError, match="got an index of 3 rows; it needs one per example"):
        writer.write_chunk(0, 0, 4, ROWS[:4], examples=_index(0, 3))
    with StoreWriter(tmp_path / "t") as writer:
        writer.write_chunk(0, 0, 4, ROWS[:4], examples=_index(0, 4))
        writer.write_chunk(1, 4, 9, ROWS[4:9])
        with pytest.raises(StoreError, match="000001.parquet is missing.*run the extraction again"):
            writer.finish(None, {})
    with StoreWriter(tmp_path / "u") as writer:
        writer.write_chunk(0, 0, 4, ROWS[:4], examples=_index(0, 4))
        writer.write_chunk(1, 4, 9, ROWS[4:9], examples=_index(4, 9).drop_columns(["position"]))
        with pytest.raises(StoreError, match="has the columns"):
            writer.finish(None, {})


def test_a_lost_half_assembled_file_sends_its_chunks_back_to_extraction(tmp_path, monkeypatch):
    writer = _write(tmp_path / "s")
    real = chunk_files.write_json
    monkeypatch.setattr(chunk_files, "write_json", lambda path, obj: (_ for _ in ()).throw(KeyboardInterrupt)
                        if obj.get("assembled") == [0, 1] else real(path, obj))
    with pytest.raises(KeyboardInterrupt), writer:
        writer.finish(None, {})
    monkeypatch.setattr(chunk_files, "write_json", real)
    (partial_path(tmp_path / "s") / ".activations.npy.tmp").unlink()
    with StoreWriter(tmp_path / "s", fingerprint={"what": "test"}, dtype="float16") as again:
        with pytest.raises(StoreError, match="is missing; run the extraction again"):
            again.finish(None, {})
        assert sorted(again.completed()) == [1, 2]  # chunk 0 was deleted when assembled: it is to be extracted again
