import numpy as np
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.cli import app
from conftest import planted

runner = CliRunner()


def test_scan_with_the_layer_null_and_disentangle_by_contributions_from_the_command_line(tmp_path):
    acts, _ = planted()
    cv.ActivationStore.create(tmp_path / "store", acts, metadata={"model": {"name": "m"}, "layer": "l"})
    result = runner.invoke(app, ["scan", str(tmp_path / "store"), "--neurons", "0-3", "--top", "60", "--distance-threshold",
                                 "auto", "--null", "layer", "--workers", "1", "--out", str(tmp_path / "scan")])
    assert result.exit_code == 0, result.output
    assert "first splits against 100 random directions of the layer" in " ".join(result.output.split())
    scan = cv.ScanResult.load(tmp_path / "scan")
    assert scan.params.null == "layer" and scan.provenance["layer_null"]["draws"] == 100
    direction = np.zeros(acts.shape[1])
    direction[:3] = 1.0
    np.save(tmp_path / "d.npy", direction)
    out = runner.invoke(app, ["disentangle", str(tmp_path / "store"), "--direction", str(tmp_path / "d.npy"), "--top", "60",
                              "--distance-threshold", "auto", "--representation", "contributions", "--out", str(tmp_path / "cs")])
    assert out.exit_code == 0, out.output
    assert cv.ConceptSet.load(tmp_path / "cs").provenance["representation"]["clustered"] == "contributions"
    bad = runner.invoke(app, ["scan", str(tmp_path / "store"), "--null", "layer", "--out", str(tmp_path / "s2")])
    assert bad.exit_code == 2 and "needs distance_threshold='auto'" in bad.output
