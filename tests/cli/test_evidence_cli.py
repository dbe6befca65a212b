"""`conceptvec disentangle` prints each concept's evidence and calls a group a concept only where a check supports it."""

import numpy as np
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.cli import app
from conceptvec.core.planted import planted_layer

runner = CliRunner()


def test_disentangle_prints_the_verdict_and_saves_the_evidence(tmp_path):
    layer = planted_layer(64, n_neurons=8, n_background=500, seed=0)  # neuron 0: one facet; neuron 1: three
    labels = np.where(layer.owner >= 0, layer.owner * 10 + layer.facet, -1)
    cv.ActivationStore.create(tmp_path / "store", layer.acts, examples={"label": labels.tolist()},
                              metadata={"model": {"name": "m"}, "layer": "l"})
    found = runner.invoke(app, ["disentangle", str(tmp_path / "store"), "--neuron", "1", "--distance-threshold", "auto",
                                "--stability", "0", "--out", str(tmp_path / "three")], env={"COLUMNS": "200"})
    assert found.exit_code == 0, found.output
    assert "C = 3 clusters: 3 concepts (the method keeps 3)" in found.output
    assert found.output.count("split, labels (2 of 2)") == 3
    assert [r["supported_by"] for r in cv.ConceptSet.load(tmp_path / "three").evidence] == [["split", "labels"]] * 3
    # a single facet cut by a small fixed threshold: every group has the same label, no purer than random halves
    over = runner.invoke(app, ["disentangle", str(tmp_path / "store"), "--neuron", "0", "--distance-threshold", "1.0",
                               "--outlier-threshold", "40", "--stability", "0", "--out", str(tmp_path / "over")],
                         env={"COLUMNS": "200"})
    assert over.exit_code == 0, over.output
    n = cv.ConceptSet.load(tmp_path / "over").n_concepts
    assert n >= 2 and f"unsupported split into {n} groups (the method keeps {n})" in over.output
    assert over.output.count("none (0 of 1)") == n and f"{n} concepts" not in over.output


def test_scan_names_its_checks_and_counts_the_splits_they_support(tmp_path):
    # planted facets without labels: the only check is the first split, adjusted over the scan; every planted split
    # is far beyond the level, so every split neuron is supported and the line says by what
    layer = planted_layer(64, n_neurons=8, n_background=500, seed=0)
    cv.ActivationStore.create(tmp_path / "store", layer.acts, metadata={"model": {"name": "m"}, "layer": "l"})
    done = runner.invoke(app, ["scan", str(tmp_path / "store"), "--neurons", "0-7", "--distance-threshold", "auto", "--workers", "1",
                               "--out", str(tmp_path / "scan")], env={"COLUMNS": "300"})
    assert done.exit_code == 0, done.output
    k = int(np.sum(layer.n_facets >= 2))
    assert (f"evidence (the first split a discovery at FDR 0.05 over the scan (Benjamini-Hochberg, --evidence-fdr)): checks "
            f"support 2 or more concepts in {k} of the {k}; 0 are unsupported splits") in " ".join(done.output.split())
