import numpy as np
import pytest
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.cli import app
from conceptvec.models.digits import TrainConfig, cached_digits_cnn
from conftest import planted

runner = CliRunner()


def _store(tmp_path):
    acts, _ = planted()
    names = {"label_name": [f"group {i % 3}" for i in range(len(acts))]}
    return cv.ActivationStore.create(tmp_path / "store", acts, examples=names, metadata={"model": {"name": "m"}, "layer": "l"})


def test_help_lists_each_command():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for command in ("demo", "extract", "disentangle"):
        lines = [ln for ln in result.output.splitlines() if f" {command} " in ln]
        assert len(lines) == 1, command


def test_disentangle_writes_conceptset(tmp_path):
    _store(tmp_path)
    result = runner.invoke(app, ["disentangle", str(tmp_path / "store"), "--neuron", "3", "--top", "60",
                                 "--distance-threshold", "10", "--outlier-threshold", "30", "--out", str(tmp_path / "cs")])
    assert result.exit_code == 0, result.output
    assert "C = 2 clusters: 2 concepts (the method keeps 2)" in result.output and "group" in result.output
    cs = cv.ConceptSet.load(tmp_path / "cs")
    assert cs.n_concepts == 2 and cs.params.distance_threshold == 10.0
    assert cs.provenance["activations"]["layer"] == "l"


def test_disentangle_of_a_store_without_classes_has_no_labels_column(tmp_path):
    # a flat folder or a list of icon paths has no class names: the table printed ": 100" for every concept
    acts, _ = planted()
    cv.ActivationStore.create(tmp_path / "store", acts, metadata={"model": {"name": "m"}, "layer": "l"})
    result = runner.invoke(app, ["disentangle", str(tmp_path / "store"), "--neuron", "3", "--top", "60", "--stability", "0",
                                 "--distance-threshold", "10", "--outlier-threshold", "30", "--out", str(tmp_path / "cs")],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "labels of members" not in result.output and ": 30" not in result.output
    assert "cos with concept" in result.output


def test_disentangle_direction_file(tmp_path):
    _store(tmp_path)
    v = np.zeros(24)
    v[12:20] = 1
    np.save(tmp_path / "v.npy", v)
    result = runner.invoke(app, ["disentangle", str(tmp_path / "store"), "--direction", str(tmp_path / "v.npy"),
                                 "--top", "30", "--distance-threshold", "10", "--outlier-threshold", "30", "--out", str(tmp_path / "cs")])
    assert result.exit_code == 0, result.output
    assert set(cv.ConceptSet.load(tmp_path / "cs").top_indices) == set(range(30, 60))


@pytest.mark.parametrize("args, message", [
    (["--neuron", "99"], "neuron 99 is out of range"),
    (["--neuron", "1", "--top", "1000"], "top=1000 is larger than the number of examples (400)"),
    (["--neuron", "1", "--distance-threshold", "-2"], "distance_threshold must be a finite number > 0"),
    ([], "give exactly one of neuron"),
    (["--direction", "missing.npy"], "direction file missing.npy does not exist"),
])
def test_disentangle_errors_are_one_clear_line(tmp_path, args, message):
    _store(tmp_path)
    result = runner.invoke(app, ["disentangle", str(tmp_path / "store"), "--out", str(tmp_path / "cs"), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_missing_store(tmp_path):
    result = runner.invoke(app, ["disentangle", str(tmp_path / "nope"), "--neuron", "1", "--out", str(tmp_path / "cs")])
    assert result.exit_code == 2 and "no activation store at" in result.output


def test_extract_list_and_run(tmp_path):
    _, directory, _ = cached_digits_cnn(tmp_path / "m", TrainConfig(epochs=1))
    listing = runner.invoke(app, ["extract", "--model", "digits", "--weights", str(directory), "--layer", "list"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and "block3" in listing.output and "64x8x8" in listing.output
    run = runner.invoke(app, ["extract", "--model", "digits", "--weights", str(directory), "--layer", "block3",
                              "--data", "digits", "--out", str(tmp_path / "s")])
    assert run.exit_code == 0, run.output
    assert cv.ActivationStore.open(tmp_path / "s").shape == (1797, 64)
    wrong = runner.invoke(app, ["extract", "--model", "digits", "--weights", str(directory), "--layer", "blok3",
                                "--data", "digits", "--out", str(tmp_path / "t")])
    assert wrong.exit_code == 2 and "Nearest layers: block3" in wrong.output
    missing = runner.invoke(app, ["extract", "--model", "digits", "--layer", "block3"])
    assert missing.exit_code == 2 and "needs --data and --out" in missing.output


def test_disentangle_warns_on_a_neuron_that_is_not_live(tmp_path):
    acts, _ = planted()
    acts[:, 7] = 0.0
    acts[:20, 7] = 1.0
    cv.ActivationStore.create(tmp_path / "store", acts, metadata={"model": {"name": "m"}, "layer": "l"})
    result = runner.invoke(app, ["disentangle", str(tmp_path / "store"), "--neuron", "7", "--out", str(tmp_path / "cs")],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert ("neuron 7 is not live: it is above 0 on only 20 examples: the other 80 of its top 100 sit at 0, its floor (where it rests)"
            in " ".join(result.output.split()))


def test_thresholds_reports_the_quantile_and_writes_json_and_figure(tmp_path):
    import json

    _store(tmp_path)
    out = tmp_path / "thr"
    result = runner.invoke(app, ["thresholds", str(tmp_path / "store"), "--top", "60", "--distance-threshold", "10",
                                 "--outlier-threshold", "30", "--grid", "8", "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    d = json.loads((out / "thresholds.json").read_text())
    assert (out / "thresholds.png").stat().st_size > 1000 and sorted(p.name for p in out.iterdir()) == [".conceptvec-manifest.json", "thresholds.json", "thresholds.png"]
    assert f"distance_threshold 10 falls at quantile {d['given']['quantile']:.3f}" in result.output
    assert d["params"]["distance_threshold"] == 10.0 and d["n_live"] == 24 and d["store"]["store"] == str((tmp_path / "store").resolve())
    assert "numpy" in d["versions"] and len(d["curve"]["threshold"]) >= 8
    from conceptvec import layer_thresholds

    assert d["layer_rule"]["distance_threshold"] == pytest.approx(layer_thresholds(
        cv.ActivationStore.open(tmp_path / "store").activations, params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0)
    )[0].distance_threshold)


def test_auto_thresholds_from_the_command_line(tmp_path):
    _store(tmp_path)
    result = runner.invoke(app, ["disentangle", str(tmp_path / "store"), "--neuron", "3", "--top", "60", "--stability", "0",
                                 "--distance-threshold", "auto", "--out", str(tmp_path / "cs")])
    assert result.exit_code == 0, result.output
    cs = cv.ConceptSet.load(tmp_path / "cs")
    assert cs.params.distance_threshold == "auto" and cs.params.outlier_threshold == "auto" and cs.split_tests
    assert cs.n_concepts == 2  # the planted two facets of neuron 3
    bad = runner.invoke(app, ["disentangle", str(tmp_path / "store"), "--neuron", "3", "--distance-threshold", "otto",
                              "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--distance-threshold must be a number or 'auto', got 'otto'" in bad.output
    mixed = runner.invoke(app, ["disentangle", str(tmp_path / "store"), "--neuron", "3", "--distance-threshold", "auto",
                                "--outlier-threshold", "15", "--out", str(tmp_path / "y")])
    assert mixed.exit_code == 2 and "use outlier_threshold='auto'" in " ".join(mixed.output.split())
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_scan_repeats_the_warning_of_a_store_with_repeated_rows(tmp_path):
    acts, _ = planted()
    acts[300:340] = acts[299]
    cv.ActivationStore.create(tmp_path / "store", acts, metadata={"model": {"name": "m"}, "layer": "l"})
    assert cv.ActivationStore.open(tmp_path / "store").metadata["duplicates"]["n_duplicate_rows"] == 40
    result = runner.invoke(app, ["scan", str(tmp_path / "store"), "--neurons", "0-1", "--top", "60", "--workers", "1",
                                 "--no-projecting", "--out", str(tmp_path / "scan")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "warning: 40 of 400 rows (10.0%) repeat another row exactly: only 360 distinct rows. 41 share one row (299, 300, 301, 302 ...)" in " ".join(result.output.split())
