import warnings

import numpy as np
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.cli import app
from conftest import planted

runner = CliRunner()


def test_scan_fdr_reports_the_rule_and_bad_uses_exit_2(tmp_path):
    acts, groups = planted()
    cv.ActivationStore.create(tmp_path / "store", acts, examples={"label": groups.tolist()},
                              metadata={"model": {"name": "m"}, "layer": "l"})
    result = runner.invoke(app, ["scan", str(tmp_path / "store"), "--neurons", "0-5", "--top", "60", "--distance-threshold",
                                 "auto", "--fdr", "0.05", "--workers", "1", "--out", str(tmp_path / "scan")])
    assert result.exit_code == 0, result.output
    assert "rule: auto, Benjamini-Hochberg FDR 0.05 over 6 first splits" in result.output
    assert cv.ScanResult.load(tmp_path / "scan").params.fdr == 0.05
    bad = runner.invoke(app, ["scan", str(tmp_path / "store"), "--fdr", "0.05", "--out", str(tmp_path / "s2")])
    assert bad.exit_code == 2 and "needs distance_threshold='auto'" in bad.output
    model = runner.invoke(app, ["disentangle", str(tmp_path / "store"), "--neuron", "3", "--top", "60",
                                "--distance-threshold", "auto", "--representation", "attribution", "--out", str(tmp_path / "cs")])
    assert model.exit_code == 2 and "needs the model" in model.output
    # the command line's answer names what a command-line user can do: Python, or a store-only representation
    assert "command line does not compute" in model.output and "contributions" in model.output
    # the store's class labels are what concept_evidence checks by default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        cs = cv.disentangle(cv.ActivationStore.open(tmp_path / "store"), neuron=3,
                            params=cv.Params(top=60, distance_threshold="auto"))
    rows = cv.concept_evidence(cs)
    assert cs.n_concepts == 2 and all(r["checks"]["labels"] and r["checks"]["split"] for r in rows)
    assert sorted(r["label_label"] for r in rows) == [0, 1] and np.isfinite(rows[0]["label_purity_p"])
