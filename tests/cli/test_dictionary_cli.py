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
    compare = ["compare-dictionary", str(tmp_path / "scan"), str(dic_dir), "--baseline", "random", "--out", str(tmp_path / "cmp")]
    written = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cmp").iterdir()}
    # the same inputs and options again: reused, the same summary said, nothing rewritten
    same = runner.invoke(app, compare, env={"COLUMNS": "250"})
    assert same.exit_code == 0 and "already holds this comparison of these inputs and options; reusing it" in same.output
    assert same.output.splitlines()[-2:] == r.output.splitlines()[-2:]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cmp").iterdir()} == written
    # another option: refused before the work, naming --overwrite; with it, replaced, and that one is reused next
    other = runner.invoke(app, [*compare, "--centre"], env={"COLUMNS": "250"})
    assert other.exit_code == 2 and "already exists" in other.output and "--overwrite" in other.output
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cmp").iterdir()} == written
    assert runner.invoke(app, [*compare, "--centre", "--overwrite"]).exit_code == 0
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["summary"]["centred"] is True
    assert "reusing it" in runner.invoke(app, [*compare, "--centre"], env={"COLUMNS": "250"}).output
    # a ConceptSet's comparison likewise; changed inputs (another neuron's set in the same folder) are refused
    scan_set = tmp_path / "set"
    cv.ScanResult.load(tmp_path / "scan")[1].save(scan_set)
    one = ["compare-dictionary", str(scan_set), str(dic_dir), "--out", str(tmp_path / "cmp1")]
    first = runner.invoke(app, one, env={"COLUMNS": "250"})
    again = runner.invoke(app, one, env={"COLUMNS": "250"})
    assert first.exit_code == 0 and again.exit_code == 0 and "reusing it" in again.output
    assert "concepts beside atoms" in again.output and again.output.splitlines()[-2:] == first.output.splitlines()[-2:]
    cv.ScanResult.load(tmp_path / "scan")[2].save(scan_set, overwrite=True)
    changed = runner.invoke(app, one, env={"COLUMNS": "250"})
    assert changed.exit_code == 2 and "--overwrite" in changed.output


def test_bad_dictionary_inputs(tmp_path):
    store = cv.ActivationStore.create(tmp_path / "store", np.abs(np.random.default_rng(0).normal(size=(300, 10))).astype(np.float32),
                                      examples=None, metadata={"model": {"name": "m"}})
    r = runner.invoke(app, ["scan", str(store.path), "--directions", f"dictionary:{tmp_path / 'none'}", "--out", str(tmp_path / "s")], env={"COLUMNS": "250"})
    assert r.exit_code == 2 and "conceptvec dictionary" in r.output
    r = runner.invoke(app, ["dictionary", str(store.path), "--out", str(tmp_path / "d"), "--method", "pca"], env={"COLUMNS": "250"})
    assert r.exit_code == 2 and "method must be one of" in r.output
    r = runner.invoke(app, ["compare-dictionary", str(tmp_path), str(tmp_path / "none"), "--out", str(tmp_path / "c")], env={"COLUMNS": "250"})
    assert r.exit_code == 2 and "neither a scan" in r.output
