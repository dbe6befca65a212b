"""Bad inputs and faults, as a new user meets them: one line naming the problem and the fix, exit status 2,
no traceback, and nothing the command did not write is lost. One test per kind of fault."""

import json
import os
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.cli import app
from conceptvec.storage.atomic import writer_lock
from conftest import one_line_error, planted
from conftest import run_cli as run

runner = CliRunner()
PARAMS = ["--top", "60", "--distance-threshold", "10", "--outlier-threshold", "30"]




@pytest.fixture
def store(tmp_path):
    acts, _ = planted()
    return cv.ActivationStore.create(tmp_path / "store", acts.astype(np.float32), metadata={"model": {"name": "m"}, "layer": "l"})


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- data loss -------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["disentangle", "scan", "thresholds"])
def test_output_equal_to_or_holding_the_input_is_refused(store, tmp_path, command):
    before = snapshot(store.path)
    extra = ["--neuron", "3"] if command == "disentangle" else ["--neurons", "0-3"]
    for out in (store.path, tmp_path):
        one_line_error(*run(command, store.path, *extra, *PARAMS, "--out", out, "--overwrite"), "this command's input")
    assert snapshot(store.path) == before


@pytest.mark.slow
@pytest.mark.parametrize("command", ["disentangle", "scan", "thresholds"])
def test_overwrite_replaces_only_an_earlier_output_of_the_command(store, tmp_path, command):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    extra = ["--neuron", "3"] if command == "disentangle" else ["--neurons", "0-3"]
    one_line_error(*run(command, store.path, *extra, *PARAMS, "--out", mine, "--overwrite"), "replaces only an earlier")
    assert (mine / "thesis.tex").read_text() == "years of work"
    out = tmp_path / "out"
    assert run(command, store.path, *extra, *PARAMS, "--out", out)[0] == 0
    assert run(command, store.path, *extra, *PARAMS, "--top", "50", "--out", out, "--overwrite")[0] == 0


def test_extract_into_its_own_data_is_refused(tmp_path):
    from PIL import Image

    data = tmp_path / "images"
    data.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (i * 80, 0, 0)).save(data / f"{i}.png")
    before = snapshot(data)
    code, output = run("extract", "--model", "torchvision:resnet18", "--weights", "none", "--layer", "layer1",
                       "--data", data, "--out", data, "--overwrite")
    one_line_error(code, output, "this command's input")
    assert snapshot(data) == before


# -- damaged files ---------------------------------------------------------------------------------
def damage_store(path, kind):
    acts = path / "activations.npy"
    meta = path / "metadata.json"
    if kind == "truncated activations":
        acts.write_bytes(acts.read_bytes()[:200])
    elif kind == "empty activations":
        acts.write_bytes(b"")
    elif kind == "bad metadata":
        meta.write_text("{not json")
    elif kind == "partial metadata":
        m = json.loads(meta.read_text())
        del m["n_units"]
        meta.write_text(json.dumps(m))
    elif kind == "corrupt index":
        (path / "examples.parquet").write_bytes(b"PAR1 garbage")
    elif kind == "short index":
        import pyarrow.parquet as pq

        pq.write_table(pq.read_table(path / "examples.parquet").slice(0, 10), path / "examples.parquet")
    elif kind == "float64 activations":
        np.save(acts, np.load(acts).astype(np.float64))
    elif kind == "int activations":
        np.save(acts, np.load(acts).astype(np.int32))


@pytest.mark.parametrize("kind, says", [
    ("truncated activations", "activations.npy is damaged"),
    ("empty activations", "activations.npy is damaged"),
    ("bad metadata", "metadata.json is damaged: it is not valid JSON"),
    ("partial metadata", "metadata.json is damaged: it lacks n_units"),
    ("corrupt index", "examples.parquet is damaged"),
    ("short index", "examples.parquet lists 10 examples for 400 rows"),
    ("float64 activations", "holds float64 values but the store's metadata says float32"),
    ("int activations", "holds int32 values"),
])
def test_damaged_store_is_named_with_the_fix(store, tmp_path, kind, says):
    damage_store(store.path, kind)
    code, output = run("disentangle", store.path, "--neuron", "3", *PARAMS, "--out", tmp_path / "cs")
    one_line_error(code, output, says)
    assert "again" in output  # the fix: extract it again


@pytest.mark.parametrize("kind, says", [
    ("bad json", "conceptset.json is damaged: it is not valid JSON"),
    ("missing arrays", "arrays.safetensors is missing or damaged"),
    ("truncated arrays", "arrays.safetensors is missing or damaged"),
])
def test_damaged_conceptset_is_named(store, tmp_path, kind, says):
    cs_dir = tmp_path / "neuron_3"
    cv.disentangle(store, neuron=3, params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0)).save(cs_dir)
    if kind == "bad json":
        (cs_dir / "conceptset.json").write_text("{")
    elif kind == "missing arrays":
        (cs_dir / "arrays.safetensors").unlink()
    else:
        data = (cs_dir / "arrays.safetensors").read_bytes()
        (cs_dir / "arrays.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(cv.StoreError, match=says):
        cv.ConceptSet.load(cs_dir)
    if kind != "bad json":  # a scan from a set's directions reads only its arrays
        one_line_error(*run("scan", store.path, "--directions", cs_dir, "--out", tmp_path / "s"), "arrays.safetensors")


def test_damaged_scan_partial_says_to_delete_it(store, tmp_path):
    out = tmp_path / "scan"
    partial = tmp_path / "scan.partial"
    partial.mkdir()
    (partial / "state.json").write_text("garbage")
    one_line_error(*run("scan", store.path, "--neurons", "0-3", *PARAMS, "--out", out), "state.json is damaged",
                   f"delete {partial}")


def test_a_foreign_folder_named_like_a_partial_is_kept(store, tmp_path):
    partial = tmp_path / "scan.partial"
    partial.mkdir()
    (partial / "mine.txt").write_text("keep")
    one_line_error(*run("scan", store.path, "--neurons", "0-3", *PARAMS, "--out", tmp_path / "scan"), "not the progress of a scan")
    assert (partial / "mine.txt").read_text() == "keep"


def test_a_scan_partial_of_other_parameters_is_discarded_and_said(store, tmp_path):
    acts = store.activations
    out = tmp_path / "scan"
    from conceptvec.scan import layer

    calls = {"n": 0}
    real = layer.ScanPartial.save_part

    def dies(self, b, res):
        calls["n"] += 1
        raise KeyboardInterrupt

    layer.ScanPartial.save_part = dies
    try:
        with pytest.raises(KeyboardInterrupt):
            cv.scan_layer(acts, params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0), neurons="0-3",
                          workers=1, out=out, progress=False)
    finally:
        layer.ScanPartial.save_part = real
    assert (tmp_path / "scan.partial" / "state.json").exists()
    code, output = run("scan", store.path, "--neurons", "0-3", "--top", "50", "--distance-threshold", "10",
                       "--outlier-threshold", "30", "--out", out)
    assert code == 0, output
    assert "warning: discarding" in output and "another scan" in output


# -- two writers -----------------------------------------------------------------------------------
def test_a_second_writer_of_the_same_output_is_refused(store, tmp_path):
    out = tmp_path / "scan"
    with writer_lock(out):  # another process is writing it
        one_line_error(*run("scan", store.path, "--neurons", "0-3", *PARAMS, "--out", out), "another conceptvec process is writing")
    assert run("scan", store.path, "--neurons", "0-3", *PARAMS, "--out", out)[0] == 0
    assert not (tmp_path / ".scan.lock").exists()


# -- bad values --------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, says", [
    (["--distance-threshold", "0"], "distance_threshold must be a finite number > 0"),
    (["--min-cluster-size", "200"], "min_cluster_size (200) is larger than top (100)"),
    (["--top", "1000"], "top=1000 is larger than the number of examples (400)"),
])
def test_bad_parameters(store, tmp_path, args, says):
    one_line_error(*run("disentangle", store.path, "--neuron", "3", *args, "--out", tmp_path / "cs"), says)


@pytest.mark.parametrize("args, says", [
    (["--neurons", "0-99"], "out of bounds"),
    (["--neurons", "7-3"], "is backwards"),
    (["--top", "1000"], "--top"),
    (["--grid", "1"], "n_grid must be a whole number >= 2"),
    (["--outlier-threshold", "-1"], "outlier_threshold must be a finite number > 0"),
])
def test_bad_thresholds_input(store, tmp_path, args, says):
    one_line_error(*run("thresholds", store.path, *args, "--out", tmp_path / "thr"), says)
    assert not (tmp_path / "thr").exists()


def test_top_message_names_the_option(store, tmp_path):
    code, output = run("disentangle", store.path, "--neuron", "3", "--top", "1000", "--out", tmp_path / "cs")
    one_line_error(code, output, "--top")


@pytest.mark.parametrize("make, says", [
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.write_bytes(os.urandom(64)), "is not a .npy file"),
    (lambda p: np.save(p, np.array([{"x": 1}], dtype=object)), "holds Python objects"),
    (lambda p: np.save(p, np.ones(24) * 1j), "real numbers"),
    (lambda p: np.save(p, np.ones(24, dtype=bool)), "real numbers"),
])
def test_bad_direction_file(store, tmp_path, make, says):
    path = tmp_path / "v.npy"
    make(path)
    one_line_error(*run("disentangle", store.path, "--direction", path, *PARAMS, "--out", tmp_path / "cs"), says)


@pytest.mark.parametrize("option, value, says", [
    ("--std", "0,0,0", "std must be > 0"),
    ("--size", "0", "size must be >= 1"),
    ("--batch-size", "0", "batch_size must be >= 1"),
])
def test_bad_extraction_options(tmp_path, option, value, says):
    from PIL import Image

    data = tmp_path / "images"
    data.mkdir()
    Image.new("RGB", (32, 32)).save(data / "a.png")
    code, output = run("extract", "--model", "torchvision:resnet18", "--weights", "none", "--layer", "layer1",
                       "--data", data, "--out", tmp_path / "s", option, value)
    one_line_error(code, output, says)


def test_binary_file_as_data(tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 4)
    code, output = run("extract", "--model", "torchvision:resnet18", "--weights", "none", "--layer", "layer1",
                       "--data", data, "--out", tmp_path / "s")
    one_line_error(code, output, "is not a text file")


def test_python_api_errors_name_the_problem(store):
    with pytest.raises(cv.ConceptvecError, match="flat list of ints"):
        cv.scan_layer(store, neurons=[[1, 2], [3]], progress=False)
    with pytest.raises(cv.ConceptvecError, match="must be a number or 'auto', got '15'"):
        cv.Params(distance_threshold="15")


# -- the disk ----------------------------------------------------------------------------------------
def test_read_only_output_folder(store, tmp_path, monkeypatch):
    import errno

    # As root nothing is read-only, so the refusal of the operating system is played here.
    def denied(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(dir))

    monkeypatch.setattr("conceptvec.storage.atomic.tempfile.mkdtemp", denied)
    code, output = run("disentangle", store.path, "--neuron", "3", *PARAMS, "--out", tmp_path / "locked" / "cs")
    one_line_error(code, output, "Permission denied", "choose a folder you may write to")


def test_full_disk_is_one_line(store, tmp_path, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cs"))

    monkeypatch.setattr("conceptvec.storage.conceptset.save_file", full)
    code, output = run("disentangle", store.path, "--neuron", "3", *PARAMS, "--out", tmp_path / "cs")
    one_line_error(code, output, "No space left on device", "free some space")
    assert not (tmp_path / "cs").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".cs")]


def test_an_unexpected_error_is_one_line_and_says_it_is_a_bug(store, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("conceptvec.scan.disentangle.cluster_top", broken)
    code, output = run("disentangle", store.path, "--neuron", "3", *PARAMS, "--out", tmp_path / "cs")
    assert code == 1 and "This is a bug of conceptvec" in output and "Traceback" not in output
    monkeypatch.setenv("CONCEPTVEC_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        runner.invoke(app, ["disentangle", str(store.path), "--neuron", "3", "--out", str(tmp_path / "cs")],
                      catch_exceptions=False)


def test_ctrl_c_is_said_and_exits_130(store, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("conceptvec.scan.disentangle.cluster_top", interrupted)
    code, output = run("disentangle", store.path, "--neuron", "3", *PARAMS, "--out", tmp_path / "cs")
    assert code == 130 and "interrupted" in output and not (tmp_path / "cs").exists()


def test_threshold_off_scale_is_a_warning_line(store, tmp_path):
    code, output = run("disentangle", store.path, "--neuron", "3", "--top", "60", "--distance-threshold", "0.001",
                       "--out", tmp_path / "cs")
    assert code == 0 and "warning: no concept was kept for neuron 3" in output and "median" in output
    shutil.rmtree(tmp_path / "cs")


# -- the report --------------------------------------------------------------------------------------
@pytest.fixture
def run_dir(tmp_path):
    acts, _ = planted()
    run = tmp_path / "run"
    examples = {"source": [f"sklearn-digits:{i}" for i in range(len(acts))]}  # images the report can show
    store = cv.ActivationStore.create(run / "store", acts, examples=examples, metadata={"model": {"name": "m"}, "layer": "l"})
    cv.disentangle(store, neuron=3, params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0)).save(run / "neuron_3")
    return run


@pytest.mark.slow
def test_report_never_replaces_other_folders_or_its_run(run_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("my website")
    one_line_error(*run("report", run_dir, "--no-umap", "--out", mine), "not a report", "replaces only an earlier report")
    assert (mine / "index.html").read_text() == "my website"
    before = snapshot(run_dir)
    for out in (run_dir, tmp_path):
        one_line_error(*run("report", run_dir, "--no-umap", "--out", out), "this command's input")
    assert snapshot(run_dir) == before
    for _ in range(2):  # an earlier report is replaced
        code, output = run("report", run_dir, "--no-umap")
        assert code == 0, output
    assert (run_dir / "report" / "report.json").exists()


def test_report_refuses_a_set_of_another_store_of_the_same_shape(run_dir, tmp_path):
    acts = cv.ActivationStore.open(run_dir / "store").activations
    other = cv.ActivationStore.create(tmp_path / "other", np.asarray(acts) * 2, examples={"source": [f"sklearn-digits:{i}" for i in range(len(acts))]},
                                      metadata={"model": {"name": "m"}, "layer": "other"})
    cv.disentangle(other, neuron=5, params=cv.Params(top=60, distance_threshold=20.0, outlier_threshold=120.0)).save(run_dir / "neuron_5")
    one_line_error(*run("report", run_dir, "--no-umap"), "computed from another activation store")


@pytest.mark.slow
def test_report_leaves_out_a_damaged_set_and_says_which(run_dir):
    cv.disentangle(cv.ActivationStore.open(run_dir / "store"), neuron=4,
                   params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0)).save(run_dir / "neuron_4")
    (run_dir / "neuron_4" / "arrays.safetensors").write_bytes(b"broken")
    code, output = run("report", run_dir, "--no-umap")
    assert code == 0, output
    assert "warning: left out of the report" in output and "neuron_4/arrays.safetensors is missing or damaged" in output
    assert (run_dir / "report" / "neuron_3.html").exists() and not (run_dir / "report" / "neuron_4.html").exists()


def test_out_none_is_named(store):
    cs = cv.disentangle(store, neuron=3, params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0))
    for bad in (None, "", 3):
        with pytest.raises(cv.ConceptvecError, match="needs a folder to be written to"):
            cs.save(bad)
    with pytest.raises(cv.ConceptvecError, match="activation store needs a folder"):
        cv.extract("digits", layer="block3", data="digits", out=None, progress=False)


def test_ctrl_c_during_a_report_is_not_swallowed(run_dir, monkeypatch):
    from conceptvec.report import html

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(html, "neuron_page", interrupted)
    with pytest.raises(KeyboardInterrupt):
        html.write_report(run_dir, umap=False)
    assert not (run_dir / "report").exists() and not [p for p in run_dir.iterdir() if p.name.startswith(".report")]
