"""`conceptvec dictionary`, `scan --directions dictionary:DIR` and `compare-dictionary` on a planted layer's store."""

import json

import numpy as np
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.cli import app
from conceptvec.core.planted import planted_layer

runner = CliRunner()


def test_fit_scan_atoms_and_compare(tmp_path):
    layer = planted_layer(32, n_neurons=4, n_background=200, seed=2)
    store = cv.ActivationStore.create(tmp_path / "store", layer.acts, examples=None, metadata={"model": {"name": "m"}, "layer": "l"})
    dic_dir = tmp_path / "dic"
    r = runner.invoke(app, ["dictionary", str(store.path), "--out", str(dic_dir), "--n-atoms", "12", "--k", "2", "--epochs", "2",
                            "--batch-size", "128"])
    assert r.exit_code == 0, r.output
    assert "explained variance" in r.output and (dic_dir / "dictionary.safetensors").is_file()
    meta = json.loads((dic_dir / "dictionary.json").read_text())
    assert meta["config"]["n_atoms"] == 12 and meta["provenance"]["store"]["layer"] == "l"
    # the same command again: reused; other options without --overwrite: refused, nothing touched
    same = runner.invoke(app, ["dictionary", str(store.path), "--out", str(dic_dir), "--n-atoms", "12", "--k", "2", "--epochs", "2",
                               "--batch-size", "128"], env={"COLUMNS": "250"})
    assert same.exit_code == 0 and "reusing it" in same.output
    again = runner.invoke(app, ["dictionary", str(store.path), "--out", str(dic_dir), "--n-atoms", "12"], env={"COLUMNS": "250"})
    assert again.exit_code == 2 and "already exists" in again.output

    # the atoms as directions, recorded as such
    r = runner.invoke(app, ["scan", str(store.path), "--directions", f"dictionary:{dic_dir}", "--neurons", "0-3", "--workers", "1",
                            "--distance-threshold", "auto", "--no-projecting", "--out", str(tmp_path / "atoms")])
    assert r.exit_code == 0, r.output
    scan = cv.ScanResult.load(tmp_path / "atoms")
    assert scan.kind == f"dictionary:{dic_dir.resolve()}"
    dic = cv.Dictionary.load(dic_dir)
    np.testing.assert_allclose(scan.directions, dic.atoms()[:4], atol=1e-6)
    # cv.disentangle on an atom takes the examples that project most on it
    cs = cv.disentangle(store, direction=dic.atoms()[2], params=cv.Params(distance_threshold="auto"))
    np.testing.assert_array_equal(cs.top_indices, scan[2].top_indices)

    # a neuron scan beside the dictionary, with the random baseline
    r = runner.invoke(app, ["scan", str(store.path), "--neurons", "0-3", "--workers", "1", "--distance-threshold", "auto",
                            "--no-projecting", "--out", str(tmp_path / "scan")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["compare-dictionary", str(tmp_path / "scan"), str(dic_dir), "--baseline", "random", "--out", str(tmp_path / "cmp")], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert "split neurons whose concepts each match an atom" in r.output and (tmp_path / "cmp" / "comparison.parquet").is_file()


def test_bad_dictionary_inputs(tmp_path):
    store = cv.ActivationStore.create(tmp_path / "store", np.abs(np.random.default_rng(0).normal(size=(300, 10))).astype(np.float32),
                                      examples=None, metadata={"model": {"name": "m"}})
    r = runner.invoke(app, ["scan", str(store.path), "--directions", f"dictionary:{tmp_path / 'none'}", "--out", str(tmp_path / "s")], env={"COLUMNS": "250"})
    assert r.exit_code == 2 and "conceptvec dictionary" in r.output
    r = runner.invoke(app, ["dictionary", str(store.path), "--out", str(tmp_path / "d"), "--method", "pca"], env={"COLUMNS": "250"})
    assert r.exit_code == 2 and "method must be one of" in r.output
    r = runner.invoke(app, ["compare-dictionary", str(tmp_path), str(tmp_path / "none"), "--out", str(tmp_path / "c")], env={"COLUMNS": "250"})
    assert r.exit_code == 2 and "neither a scan" in r.output
