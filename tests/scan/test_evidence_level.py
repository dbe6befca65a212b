"""The evidence's split check at its level ``Params.evidence_fdr``: a split is supported when its first-split p-value,
adjusted over the scan (Benjamini-Hochberg), is below the level; known answers on a planted layer."""

import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.cli import app
from conceptvec.core.planted import planted_layer

LENIENT = cv.Params(distance_threshold="auto", significance=0.4)


def bh_adjusted_by_hand(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values: min over k >= rank of p_(k) m / k, written out."""
    m = len(p)
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    out = np.empty(m)
    out[order] = np.minimum(1, np.minimum.accumulate(ranked[::-1])[::-1])
    return out


@pytest.fixture(scope="module")
def noisy():
    # facets blurred into each other (noise 1.5) and a lenient per-split level: the splits' adjusted p-values fall
    # between 0.01 and 0.1, so the number of supported splits changes with the level
    acts = planted_layer(48, n_neurons=12, noise=1.5, seed=1).acts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        scans = {level: cv.scan_layer(acts, params=LENIENT.replace(evidence_fdr=level), neurons="0-11", workers=1,
                                      progress=False, projecting=False) for level in (0.01, 0.05, 0.1)}
    return acts, scans


def supported_splits(scan: cv.ScanResult) -> set[int]:
    return {int(n) for n, c, rows in zip(scan.neurons, scan.n_concepts, scan.evidence()) if c >= 2 and rows[0]["checks"]["split"]}


def test_the_number_of_supported_splits_follows_the_level(noisy):
    acts, scans = noisy
    base = scans[0.05]
    assert all(np.array_equal(s.n_concepts, base.n_concepts) for s in scans.values())  # the level withdraws nothing
    split = {int(n) for n, c in zip(base.neurons, base.n_concepts) if c >= 2}
    q = bh_adjusted_by_hand(base.first_p)
    found = {level: supported_splits(scan) for level, scan in scans.items()}
    for level, supported in found.items():
        assert supported == {n for n in split if q[n] < level}, level
    assert len(found[0.01]) < len(found[0.05]) < len(found[0.1])  # the case exercises every level
    # the table's count follows the same check; scan[n] and cv.concept_evidence give the scan's verdict
    table = base.table().to_pydict()
    assert sum(c >= 2 and s == c for c, s in zip(table["concepts"], table["supported_concepts"])) == len(found[0.05])
    n = min(found[0.05] - found[0.01])
    rows = cv.concept_evidence(base.with_activations(acts)[n], labels=None)
    assert rows[0]["checks"]["split"] and rows[0]["split_q"] == pytest.approx(q[n]) and rows[0]["split_level"] == 0.05
    strict = cv.concept_evidence(scans[0.01].with_activations(acts)[n], labels=None)
    assert not strict[0]["checks"]["split"] and strict[0]["verdict"].startswith("not supported")


def test_the_default_level_and_its_refusals():
    assert cv.Params().evidence_fdr == 0.05
    with pytest.warns(cv.ConceptvecWarning, match="evidence_fdr 0.01 is not used with a fixed distance_threshold"):
        cv.Params(evidence_fdr=0.01)
    for bad in (0, 1, 1.5, "0.05", True):
        with pytest.raises(cv.ConceptvecError, match="evidence_fdr must be a number between 0 and 1.*the default is 0.05"):
            cv.Params(evidence_fdr=bad)


def test_the_scan_command_takes_the_level_and_says_it(noisy, tmp_path):
    acts, scans = noisy
    cv.ActivationStore.create(tmp_path / "store", acts, metadata={"model": {"name": "m"}, "layer": "l"})
    split = int(np.sum(scans[0.05].n_concepts >= 2))
    for level in (0.01, 0.05):
        done = CliRunner().invoke(app, ["scan", str(tmp_path / "store"), "--neurons", "0-11", "--distance-threshold", "auto",
                                        "--significance", "0.4", "--evidence-fdr", str(level), "--workers", "1",
                                        "--out", str(tmp_path / f"scan{level}")], env={"COLUMNS": "300"})
        assert done.exit_code == 0, done.output
        k = len(supported_splits(scans[level]))
        assert (f"evidence (the first split a discovery at FDR {level:g} over the scan (Benjamini-Hochberg, --evidence-fdr)): "
                f"checks support 2 or more concepts in {k} of the {split}; {split - k} are unsupported splits") in " ".join(done.output.split())


def test_a_bad_level_on_the_command_line_is_one_line(noisy, tmp_path):
    from conftest import one_line_error, run_cli

    acts, _ = noisy
    cv.ActivationStore.create(tmp_path / "store", acts, metadata={"model": {"name": "m"}, "layer": "l"})
    for bad in ("0", "1.5"):
        code, output = run_cli("scan", tmp_path / "store", "--distance-threshold", "auto", "--evidence-fdr", bad,
                               "--out", tmp_path / "scan")
        one_line_error(code, output, "evidence_fdr must be a number between 0 and 1", "the default is 0.05")
    assert not (tmp_path / "scan").exists()
