"""The layer scan: equal to per-neuron disentangle, SVD directions, files, resuming, errors."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import save_file

import conceptvec as cv
from conceptvec import ConceptvecError
from conceptvec.core import streaming
from conceptvec.scan import engine, layer
from conceptvec import maximally_projecting as reference_projecting
from conceptvec import top_k_desc
from conceptvec.core.selection import parse_neurons
from conceptvec.scan.directions import load_directions, svd_directions
from conceptvec.core.streaming import top_examples

FIELDS = ("top_indices", "top_scores", "top_activations", "linkage", "n_agglomerative", "kmeans_labels",
          "centroid_sq_distances", "labels", "kmeans_cluster_ids", "concept_vectors", "neuron")
PARAMS = cv.Params(top=30, distance_threshold=10.0, outlier_threshold=2.0, min_cluster_size=4)


def planted_layer(n_units=16, n_classes=10, per_class=40, seed=0):
    """Examples of n_classes classes; neuron j fires for m_j in {1, 2, 3} of them, so it has m_j planted concepts."""
    rng = np.random.default_rng(seed)
    m = rng.integers(1, 4, size=n_units)
    prototypes = np.zeros((n_classes, n_units))
    for j in range(n_units):
        prototypes[rng.choice(n_classes, m[j], replace=False), j] = 3.0
    classes = np.repeat(np.arange(n_classes), per_class)
    scale = rng.uniform(0.9, 1.1, size=(len(classes), 1))
    acts = np.maximum(scale * prototypes[classes] + 0.05 * rng.standard_normal((len(classes), n_units)), 0)
    return acts.astype(np.float32), m


@pytest.fixture(scope="module")
def planted():
    return planted_layer()


def assert_same_conceptset(a: cv.ConceptSet, b: cv.ConceptSet) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert np.array_equal(x, y), name


def test_scan_equals_disentangle_neuron_by_neuron(planted):
    acts, m = planted
    scan = cv.scan_layer(acts, params=PARAMS, workers=1, progress=False)
    assert np.array_equal(scan.neurons, np.arange(acts.shape[1]))
    for j in range(acts.shape[1]):
        cs = cv.disentangle(acts, neuron=j, params=PARAMS)
        assert_same_conceptset(scan[j], cs)
        assert scan.n_agglomerative[j] == cs.n_agglomerative and scan.n_concepts[j] == cs.n_concepts
        assert np.array_equal(scan.concepts_of(j), cs.concept_vectors)
    # the planted concepts are found
    assert np.array_equal(scan.n_concepts, m)


def test_parallel_workers_and_subset_match(planted):
    acts, _ = planted
    serial = cv.scan_layer(acts, params=PARAMS, neurons="2-5,9", workers=1, progress=False, projecting=False)
    parallel = cv.scan_layer(acts, params=PARAMS, neurons=[9, 2, 3, 4, 5], workers=2, progress=False, projecting=False)
    assert serial.neurons.tolist() == [2, 3, 4, 5, 9]
    for j in serial.neurons:
        assert_same_conceptset(serial[j], parallel[j])
    with pytest.raises(KeyError, match="neuron 0 was not scanned"):
        serial[0]


@pytest.fixture
def slot_files(monkeypatch):
    """The paths of the shared-row files the scan makes (recorded as they are made)."""
    made = []
    real = engine.RowSlots

    class Recorded(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.path)

    monkeypatch.setattr(engine, "RowSlots", Recorded)
    return made


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_parallel_rows_through_shared_slots_equal_disentangle(planted, monkeypatch, dtype, slot_files):
    # Batches of 2 neurons: 8 batches through the 4 shared slots of 2 workers, so slots are reused.
    monkeypatch.setattr(layer, "BATCH", 2)
    made = slot_files
    acts = planted[0].astype(dtype)
    scan = cv.scan_layer(acts, params=PARAMS, workers=2, progress=False, projecting=False)
    assert len(made) == 1 and not os.path.exists(made[0])  # the shared file is removed when the scan ends
    for j in range(acts.shape[1]):
        assert_same_conceptset(scan[j], cv.disentangle(acts, neuron=j, params=PARAMS))


def test_interrupted_parallel_scan_removes_its_shared_rows(planted, monkeypatch, slot_files):
    made = slot_files

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(layer, "BATCH", 4)  # 4 batches: run in 2 workers
    monkeypatch.setattr(engine.LocalEngine, "_run_pool", staticmethod(interrupted))
    with pytest.raises(KeyboardInterrupt):
        cv.scan_layer(planted[0], params=PARAMS, workers=2, progress=False, projecting=False)
    assert len(made) == 1 and not os.path.exists(made[0])


def test_zero_workers_runs_in_this_process(planted, monkeypatch):
    # The glossary's count: 0 or 1 worker means this process alone, no pool.
    def no_pool(*args, **kwargs):
        raise AssertionError("a process pool was started")

    monkeypatch.setattr(engine.LocalEngine, "_run_pool", staticmethod(no_pool))
    zero = cv.scan_layer(planted[0], params=PARAMS, neurons="0-5", workers=0, progress=False, projecting=False)
    one = cv.scan_layer(planted[0], params=PARAMS, neurons="0-5", workers=1, progress=False, projecting=False)
    assert np.array_equal(zero.concept_vectors, one.concept_vectors)


def test_small_scan_by_default_runs_in_this_process(planted, monkeypatch):
    class PoolStarted(Exception):
        pass

    def pool(*args, **kwargs):
        raise PoolStarted

    monkeypatch.setattr(engine.LocalEngine, "_run_pool", staticmethod(pool))
    monkeypatch.setattr(layer, "BATCH", 4)  # 6 batches, so a pool would have work for 2 workers
    cv.scan_layer(planted[0], params=PARAMS, progress=False, projecting=False)  # 24 neurons x 30 top x 24 units: small
    monkeypatch.setattr(engine, "SMALL_SCAN_CELLS", 0)  # every scan counts as large: the pool is used
    with pytest.raises(PoolStarted):
        cv.scan_layer(planted[0], params=PARAMS, progress=False, projecting=False)
    # an explicit count is obeyed whatever the size
    monkeypatch.setattr(engine, "SMALL_SCAN_CELLS", 10**12)
    with pytest.raises(PoolStarted):
        cv.scan_layer(planted[0], params=PARAMS, workers=2, progress=False, projecting=False)


def test_in_process_scan_leaves_the_callers_thread_settings(planted):
    from threadpoolctl import threadpool_info

    before = [m["num_threads"] for m in threadpool_info()]
    cv.scan_layer(planted[0], params=PARAMS, neurons="0-3", workers=1, progress=False, projecting=False)
    assert [m["num_threads"] for m in threadpool_info()] == before
    assert not engine._WORKER_READY  # worker set-up (one thread, malloc thresholds) ran in no caller


@pytest.mark.parametrize("block_bytes", [None, 4096])
def test_top_examples_match_top_k_desc_with_ties(monkeypatch, block_bytes):
    if block_bytes:  # many blocks of 256 rows: ties and candidates cross block boundaries
        monkeypatch.setattr(streaming, "BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(1)
    acts = rng.random((5000, 7)).astype(np.float32)
    acts[::3, 2] = 0.999  # many ties around the cut, kept in ascending example order
    acts[:, 4] = 1.0  # a constant column
    acts[:, 5] = np.round(acts[:, 5] * 20)  # 21 values, ties everywhere
    acts[4000:, 6] += 1.0  # the best rows arrive last
    for a in (acts, acts.astype(np.float16), -acts):
        idx, scores = top_examples(a, 50)
        for j in range(acts.shape[1]):
            expected = top_k_desc(a[:, j].astype(np.float64), 50)
            assert np.array_equal(idx[j], expected)
            assert np.array_equal(scores[j], a[expected, j].astype(np.float64))
    idx, _ = top_examples(acts, 5000)  # k = all examples
    assert all(np.array_equal(idx[j], top_k_desc(acts[:, j].astype(np.float64), 5000)) for j in range(7))


def test_store_input_workers_read_memory_map(tmp_path, planted):
    acts, _ = planted
    store = cv.ActivationStore.create(tmp_path / "store", acts)
    scan = cv.scan_layer(store, params=PARAMS, neurons="0-5", workers=2, progress=False, projecting=False)
    for j in range(6):
        assert_same_conceptset(scan[j], cv.disentangle(store, neuron=j, params=PARAMS))
    assert scan.provenance["activations"]["store"] == str((tmp_path / "store").resolve())


def test_save_load_table_and_summary(tmp_path, planted):
    acts, m = planted
    store = cv.ActivationStore.create(tmp_path / "store", acts)
    scan = cv.scan_layer(store, params=PARAMS, workers=1, progress=False)
    scan.save(tmp_path / "scan")
    loaded = cv.ScanResult.load(tmp_path / "scan")  # finds the store from the recorded provenance
    assert np.array_equal(loaded.n_concepts, scan.n_concepts)
    assert np.array_equal(loaded.concept_vectors, scan.concept_vectors)
    assert loaded.params == PARAMS
    assert_same_conceptset(loaded[3], scan[3])
    table = pq.read_table(tmp_path / "scan" / "neurons.parquet")
    assert table.column_names[:5] == ["neuron", "C", "concepts", "cluster_sizes", "outliers_removed"]
    assert table.column("concepts").to_pylist() == m.tolist()
    assert [sum(s) for s in table.column("cluster_sizes").to_pylist()] == [int((scan.labels[i] >= 0).sum()) for i in range(len(m))]
    # The promise: pandas reads the table.
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "scan" / "neurons.parquet")
    assert frame["concepts"].tolist() == m.tolist() and frame["neuron"].tolist() == list(range(len(m)))
    assert [list(x) for x in frame["cluster_sizes"]] == table.column("cluster_sizes").to_pylist()
    s = scan.summary()
    assert s["share_with_2_or_more_concepts"] == pytest.approx(np.mean(m >= 2))
    assert sum(s["concepts_per_neuron"].values()) == len(m)
    assert (tmp_path / "scan" / "summary.png").stat().st_size > 0
    meta = cv.ScanResult.load(tmp_path / "scan").provenance
    assert "versions" in meta and meta["activations"]["store"]
    with pytest.raises(ConceptvecError, match="already exists"):
        scan.save(tmp_path / "scan")
    with pytest.raises(ConceptvecError, match="no scan at"):
        cv.ScanResult.load(tmp_path / "store")


def test_concept_table_has_each_concepts_baselines(tmp_path, planted):
    from conceptvec import layer_mean, member_cosines

    acts, m = planted
    store = cv.ActivationStore.create(tmp_path / "store", acts)
    scan = cv.scan_layer(store, params=PARAMS, workers=1, progress=False, projecting=False)
    scan.save(tmp_path / "scan")
    table = pq.read_table(tmp_path / "scan" / "concepts.parquet").to_pydict()
    assert len(table["neuron"]) == int(scan.n_concepts.sum()) == len(scan.concept_vectors)
    assert table["neuron"] == np.repeat(scan.neurons, scan.n_concepts).tolist()
    mean = layer_mean(acts)
    for n in np.flatnonzero(scan.n_concepts):
        cs = scan[int(n)]
        rows = [r for r, neuron in enumerate(table["neuron"]) if neuron == n]
        plain = member_cosines(cs.top_activations, cs.labels, cs.concept_vectors)
        centred = member_cosines(cs.top_activations, cs.labels, cs.concept_vectors, centre=mean)
        assert [table["members"][r] for r in rows] == plain["members"].tolist()
        np.testing.assert_allclose([table["cos_concept"][r] for r in rows], plain["concept"])
        np.testing.assert_allclose([table["cos_unsplit"][r] for r in rows], plain["unsplit"])
        np.testing.assert_allclose([table["cos_nearest_other"][r] for r in rows], plain["nearest_other"])  # NaN when alone
        np.testing.assert_allclose([table["cos_concept_centred"][r] for r in rows], centred["concept"])
    # A neuron planted with two classes: each concept's members are far closer to it than to the other one.
    two = int(np.flatnonzero(m == 2)[0])
    rows = [r for r, neuron in enumerate(table["neuron"]) if neuron == two]
    assert len(rows) == 2 and all(table["cos_concept"][r] > table["cos_nearest_other"][r] + 0.3 for r in rows)
    assert "concept_table" in __import__("json").loads((tmp_path / "scan" / "scan.json").read_text())["files"]
    # A scan of an array whose activations are no longer at hand is saved without it.
    loaded = cv.ScanResult.load(tmp_path / "scan")
    loaded.provenance = {}
    loaded.activations = None
    loaded.save(tmp_path / "again")
    assert not (tmp_path / "again" / "concepts.parquet").exists() and (tmp_path / "again" / "neurons.parquet").exists()


def test_maximally_projecting_of_every_concept(planted):
    acts, _ = planted
    scan = cv.scan_layer(acts, params=PARAMS, workers=1, progress=False)
    p = scan.projecting
    assert p["indices"].shape == (len(scan.concept_vectors), PARAMS.top)
    idx, proj = reference_projecting(acts, scan.concept_vectors, top=PARAMS.top)
    assert np.array_equal(p["indices"], idx)
    np.testing.assert_allclose(p["projections"], proj, rtol=1e-12)
    a = acts[p["indices"][0]].astype(np.float64)
    np.testing.assert_allclose(p["cosine"][0], a @ scan.concept_vectors[0] / np.linalg.norm(a, axis=1), rtol=1e-12)


def test_resumed_scan_equals_uninterrupted(tmp_path, planted, monkeypatch):
    acts, _ = planted
    monkeypatch.setattr(layer, "BATCH", 4)
    full = cv.scan_layer(acts, params=PARAMS, workers=1, progress=False)

    calls = {"n": 0}
    real = engine.cluster_batch

    def dies_on_third_batch(task):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(engine, "cluster_batch", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        cv.scan_layer(acts, params=PARAMS, workers=1, progress=False, out=tmp_path / "scan")
    assert not (tmp_path / "scan").exists() and (tmp_path / "scan.partial").exists()

    calls["n"] = 100  # no more interruptions
    resumed = cv.scan_layer(acts, params=PARAMS, workers=1, progress=False, out=tmp_path / "scan")
    assert resumed.resumed == 8  # two batches of 4 were kept
    assert calls["n"] == 100 + 2  # only the remaining two batches ran
    assert not (tmp_path / "scan.partial").exists()
    for name in ("top_indices", "n_agglomerative", "labels", "concept_vectors", "concept_offsets", "linkage"):
        assert np.array_equal(getattr(resumed, name), getattr(full, name)), name
    again = cv.scan_layer(acts, params=PARAMS, workers=1, progress=False, out=tmp_path / "scan")
    assert again.reused and np.array_equal(again.concept_vectors, full.concept_vectors)
    with pytest.raises(ConceptvecError, match="holds a different scan"):
        cv.scan_layer(acts, params=PARAMS.replace(top=20), workers=1, progress=False, out=tmp_path / "scan")


def test_svd_directions_match_numpy(planted):
    acts, _ = planted
    v = svd_directions(acts, 4, top=30)
    _, s, vh = np.linalg.svd(acts.astype(np.float64), full_matrices=False)
    assert np.all(np.diff(s[:5]) < 0)
    np.testing.assert_allclose(np.abs(np.sum(v * vh[:4], axis=1)), 1.0, atol=1e-9)
    proj = acts.astype(np.float64) @ v.T
    # the sign puts the top examples on the positive side
    assert np.all(np.sort(proj, axis=0)[-30:].sum(axis=0) >= np.sort(-proj, axis=0)[-30:].sum(axis=0))


def test_scan_of_directions_equals_disentangle_direction(tmp_path, planted):
    acts, _ = planted
    scan = cv.scan_layer(acts, params=PARAMS, directions="svd:3", workers=1, progress=False)
    assert scan.kind == "svd:3" and scan.neurons.tolist() == [0, 1, 2]
    for i in range(3):
        cs = cv.disentangle(acts, direction=scan.directions[i], params=PARAMS)
        got = scan[i]
        assert got.neuron is None and np.array_equal(got.top_indices, cs.top_indices)
        assert got.n_agglomerative == cs.n_agglomerative and np.array_equal(got.labels, cs.labels)
        # one matrix product for all directions rounds like one per direction to the last bit or so
        np.testing.assert_allclose(got.top_scores, cs.top_scores, rtol=1e-12)
        np.testing.assert_allclose(got.concept_vectors, cs.concept_vectors, rtol=0, atol=1e-12)
    # directions from a file: another scan's concept vectors, as .npy and safetensors
    neurons = cv.scan_layer(acts, params=PARAMS, workers=1, progress=False, out=tmp_path / "neurons")
    np.save(tmp_path / "v.npy", neurons.concept_vectors[:5])
    from_npy = cv.scan_layer(acts, params=PARAMS, directions=tmp_path / "v.npy", workers=1, progress=False, projecting=False)
    from_dir = cv.scan_layer(acts, params=PARAMS, directions=str(tmp_path / "neurons"), neurons="0-4", workers=1,
                             progress=False, projecting=False)
    assert from_npy.kind.startswith("file:") and len(from_npy) == 5
    assert np.array_equal(from_npy.top_indices, from_dir.top_indices)


def test_bad_neuron_ranges(planted, tmp_path):
    acts, _ = planted
    with pytest.raises(ConceptvecError, match=r"out of bounds: neurons must be within 0-15 \(this layer has 16\)"):
        cv.scan_layer(acts, params=PARAMS, neurons="0-99", progress=False)
    with pytest.raises(ConceptvecError, match="out of bounds: neurons must be within 0-15"):
        cv.scan_layer(acts, params=PARAMS, neurons=[3, 16], progress=False)
    with pytest.raises(ConceptvecError, match="backwards"):
        parse_neurons("9-2", 16)
    with pytest.raises(ConceptvecError, match="write it like '0-99'"):
        parse_neurons("zero to nine", 16)
    with pytest.raises(ConceptvecError, match="no neurons selected"):
        parse_neurons([], 16)
    with pytest.raises(ConceptvecError, match="workers must be"):
        cv.scan_layer(acts, params=PARAMS, workers=-1, progress=False)
    with pytest.raises(ConceptvecError, match="real numbers, got dtype complex128"):
        cv.scan_layer(acts, params=PARAMS, directions=np.ones((2, acts.shape[1])) * 1j, progress=False)
    np.save(tmp_path / "bool.npy", np.ones((2, acts.shape[1]), dtype=bool))
    with pytest.raises(ConceptvecError, match="holds bool values; expected real numbers"):
        cv.scan_layer(acts, params=PARAMS, directions=tmp_path / "bool.npy", progress=False)
    with pytest.raises(ConceptvecError, match="unknown engine 'spark'; choose one of local"):
        cv.scan_layer(acts, params=PARAMS, engine="spark", progress=False)
    with pytest.raises(ConceptvecError, match="top=1000 is larger than the number of examples"):
        cv.scan_layer(acts, params=PARAMS.replace(top=1000), progress=False)
    bad = acts.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ConceptvecError, match="NaN or inf values in example"):
        cv.scan_layer(bad, params=PARAMS, progress=False)


def test_bad_direction_files(tmp_path, planted):
    acts, _ = planted
    np.save(tmp_path / "wrong.npy", np.ones((3, 5)))
    with pytest.raises(ConceptvecError, match=r"has shape \(3, 5\); expected shape \(k, 16\)"):
        cv.scan_layer(acts, params=PARAMS, directions=tmp_path / "wrong.npy", progress=False)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ConceptvecError, match="holds Python objects, not numbers; conceptvec never unpickles"):
        load_directions(tmp_path / "objects.npy", 16)
    (tmp_path / "random.npy").write_bytes(np.random.default_rng(0).bytes(200))  # not a .npy, nor pickled data
    with pytest.raises(ConceptvecError, match="random.npy is not a .npy file"):
        cv.scan_layer(acts, params=PARAMS, directions=tmp_path / "random.npy", progress=False)
    zero = np.ones((2, 16))
    zero[1] = 0
    np.save(tmp_path / "zero.npy", zero)
    with pytest.raises(ConceptvecError, match=r"row\(s\) \[1\] are zero or not finite"):
        load_directions(tmp_path / "zero.npy", 16)
    save_file({"a": np.ones((2, 16)), "b": np.ones((2, 16))}, str(tmp_path / "two.safetensors"))
    with pytest.raises(ConceptvecError, match="name the directions 'directions'"):
        load_directions(tmp_path / "two.safetensors", 16)
    (tmp_path / "v.txt").write_text("1 2 3")
    with pytest.raises(ConceptvecError, match=r"must end in \.npy or \.safetensors"):
        load_directions(tmp_path / "v.txt", 16)
    with pytest.raises(ConceptvecError, match="is not 'neurons', 'svd:K', 'dictionary:DIR', or an existing"):
        cv.scan_layer(acts, params=PARAMS, directions="missing.npy", progress=False)
    with pytest.raises(ConceptvecError, match="svd:K needs 1 <= K <= 16"):
        cv.scan_layer(acts, params=PARAMS, directions="svd:99", progress=False)
    with pytest.raises(ConceptvecError, match="write svd:K"):
        cv.scan_layer(acts, params=PARAMS, directions="svd:all", progress=False)


def test_summary_figure(planted):
    from matplotlib.figure import Figure

    acts, _ = planted
    scan = cv.scan_layer(acts, params=PARAMS, workers=1, progress=False, projecting=False)
    assert isinstance(scan.plot_summary(), Figure)


def test_cli_scan(tmp_path, planted):
    from typer.testing import CliRunner

    from conceptvec.cli import app

    acts, m = planted
    cv.ActivationStore.create(tmp_path / "store", acts)
    args = ["scan", str(tmp_path / "store"), "--out", str(tmp_path / "scan"), "--top", "30", "--distance-threshold", "10",
            "--outlier-threshold", "2", "--min-cluster-size", "4", "--workers", "1", "--no-projecting"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"16 neurons, 16 live: {m.sum()} concepts" in result.output
    assert np.array_equal(cv.ScanResult.load(tmp_path / "scan").n_concepts, m)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "reusing it" in again.output
    bad = CliRunner().invoke(app, ["scan", str(tmp_path / "store"), "--out", str(tmp_path / "x"), "--neurons", "0-99"])
    assert bad.exit_code == 2 and "neurons must be within 0-15" in bad.output


def test_changed_direction_file_is_not_reused(tmp_path, planted):
    acts, _ = planted
    v = np.eye(acts.shape[1])[:3]
    np.save(tmp_path / "v.npy", v)
    first = cv.scan_layer(acts, params=PARAMS, directions=tmp_path / "v.npy", workers=1, progress=False,
                          projecting=False, out=tmp_path / "scan")
    again = cv.scan_layer(acts, params=PARAMS, directions=tmp_path / "v.npy", workers=1, progress=False,
                          projecting=False, out=tmp_path / "scan")
    assert getattr(again, "reused", False) and np.array_equal(again.top_indices, first.top_indices)
    np.save(tmp_path / "v.npy", np.eye(acts.shape[1])[3:6])  # same path, other vectors
    with pytest.raises(ConceptvecError, match="holds a different scan"):
        cv.scan_layer(acts, params=PARAMS, directions=tmp_path / "v.npy", workers=1, progress=False,
                      projecting=False, out=tmp_path / "scan")


def test_not_live_neurons_are_flagged_and_left_out_of_the_share(planted):
    acts, m = planted
    acts = acts.copy()
    acts[:, 4] = 0.0  # a dead unit
    scan = cv.scan_layer(acts, params=PARAMS, workers=1, progress=False, projecting=False)
    assert scan.live.tolist() == [j != 4 for j in range(acts.shape[1])]
    s = scan.summary()
    keep = np.arange(acts.shape[1]) != 4
    assert s["n_live"] == acts.shape[1] - 1 and s["not_live"] == [4]
    assert s["share_with_2_or_more_concepts"] == pytest.approx(np.mean(scan.n_concepts[keep] >= 2))
    assert sum(s["concepts_per_neuron"].values()) == s["n_live"]
    assert scan.table().column("live").to_pylist()[4] is False
    assert scan[4].is_live is False
    assert "not live, left out" in scan.plot_summary()._suptitle.get_text()


@pytest.mark.slow
def test_auto_scan_equals_disentangle_and_stability_is_recorded(tmp_path):
    from conceptvec.core.planted import planted_layer as facets_layer

    layer = facets_layer(64, n_neurons=6, n_background=150, seed=2)
    auto = cv.Params(distance_threshold="auto")
    scan = cv.scan_layer(layer.acts, params=auto, neurons="0-5", workers=1, progress=False, projecting=False,
                         stability=3, out=tmp_path / "scan")
    assert scan.n_concepts.tolist() == layer.n_facets.tolist()
    for j in range(6):
        cs = cv.disentangle(layer.acts, neuron=j, params=auto, stability=3)
        assert_same_conceptset(scan[j], cs)
        a, b = scan.concept_offsets[j], scan.concept_offsets[j + 1]
        np.testing.assert_array_equal(scan.stability["concept_reappearance"][a:b], cs.stability["reappearance"])
        assert scan.stability["count_agreement"][j] == cs.stability["count_agreement"]
        assert scan[j].stability["reappearance"] == cs.stability["reappearance"]  # the report's neuron pages show it
    assert scan.stability["resampling"] == "subsample 0.8"
    # on disk: the flag per concept and the count agreement per neuron, and the same numbers back
    concepts = pq.read_table(tmp_path / "scan" / "concepts.parquet").to_pydict()
    assert concepts["unstable"] == [r < 0.5 for r in concepts["reappearance"]]
    neurons = pq.read_table(tmp_path / "scan" / "neurons.parquet").to_pydict()
    assert neurons["count_agreement"] == scan.stability["count_agreement"].tolist()
    again = cv.ScanResult.load(tmp_path / "scan")
    np.testing.assert_array_equal(again.stability["concept_reappearance"], scan.stability["concept_reappearance"])
    # a scan without stability has none, and its call is unchanged (finished scans are still reused)
    plain = cv.scan_layer(layer.acts, params=auto, neurons="0-1", workers=1, progress=False, projecting=False)
    assert plain.stability is None and "count_agreement" not in plain.table().column_names
    with pytest.raises(ConceptvecError, match="stability must be >= 0"):
        cv.scan_layer(layer.acts, params=auto, stability=-1, progress=False)
