"""A count is "borderline" when its first split's p-value lies in ``core.evidence.borderline_band`` of the level that
decided it (level / 100 to 3 x level): known answers on constructed top sets whose first p is near or far from the level (checked first)."""

import warnings

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.cli import app
from conceptvec.core.evidence import badge, borderline_band, count_words, is_borderline
from conceptvec.core.fdr import adjusted_p
from conftest import BORDERLINE_CASES as CASES  # (separation, seed) -> the first split's p near or far from the level
from conftest import borderline_layer as layer

AUTO = cv.Params(distance_threshold="auto")


def test_the_band_is_wider_below_the_level_than_above():
    lo, hi = borderline_band(0.01)
    assert lo == pytest.approx(1e-4) and hi == pytest.approx(0.03)
    assert is_borderline(0.01, 0.01) and is_borderline(1e-4, 0.01) and is_borderline(0.03, 0.01)
    assert not is_borderline(0.99e-4, 0.01) and not is_borderline(0.031, 0.01)
    assert not is_borderline(float("nan"), 0.01) and not is_borderline(None, 0.01)


def test_disentangle_flags_counts_near_the_level_and_no_others():
    acts = layer()
    found = {}
    for k, name in enumerate(CASES):
        cs = cv.disentangle(acts, neuron=k, params=AUTO)
        rows = cv.concept_evidence(cs, labels=None, recommend_for=None)
        found[name] = (cs.n_concepts, rows[0]["decision_p"], rows[0]["borderline"])
        assert all(r["borderline"] == rows[0]["borderline"] for r in rows)  # every concept of the neuron carries it
    # the constructed p-values first: near cases in the band 1e-4-0.03 on either side of 0.01, far ones beyond it
    assert 1e-4 <= found["near, split"][1] < 0.01 < found["near, one"][1] <= 0.03, found
    assert found["far, split"][1] < 1e-4 and found["far, one"][1] > 0.5, found
    assert {name: (n, flag) for name, (n, _, flag) in found.items()} == {
        "near, split": (2, True), "near, one": (1, True), "far, split": (2, False), "far, one": (1, False)}


def test_words_and_badge_say_it_and_the_paper_threshold_has_no_flag():
    acts = layer()
    cs = cv.disentangle(acts, neuron=0, params=AUTO)
    rows = cv.concept_evidence(cs, labels=None, recommend_for=None)
    p = rows[0]["decision_p"]
    assert count_words(2, rows).endswith(f"; borderline (first split's p {p:.2g}, level 0.01)")
    assert badge(rows[0]) == f"{len(rows[0]['supported_by'])} of 1 checks, borderline count"
    far = cv.concept_evidence(cv.disentangle(acts, neuron=2, params=AUTO), labels=None, recommend_for=None)
    assert "borderline" not in count_words(2, far) and "borderline" not in badge(far[0])
    fixed = cv.concept_evidence(cv.disentangle(acts, neuron=0, params=cv.Params()), labels=None)
    assert all("borderline" not in r and "decision_p" not in r for r in fixed)  # paper's fixed 15: no p, no flag


def test_a_scan_at_fdr_judges_the_adjusted_p_against_fdr():
    acts = layer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        scan = cv.scan_layer(acts, params=AUTO.replace(fdr=0.05), neurons="0-3", workers=1, progress=False, projecting=False)
    q = adjusted_p(scan.first_p)
    flags = [rows[0]["borderline"] for rows in scan.evidence()]
    assert flags == [bool(0.0005 <= v <= 0.15) for v in q] == [True, True, False, False]
    assert all(rows[0]["decision_level"] == 0.05 and rows[0]["decision_p"] == pytest.approx(v) for rows, v in zip(scan.evidence(), q))
    # one neuron of the scan (scan[n]) judged as the scan judged it: its adjusted p against fdr
    one = cv.concept_evidence(scan.with_activations(acts)[1], labels=None, recommend_for=None)
    assert one[0]["borderline"] and one[0]["decision_p"] == pytest.approx(q[1]) and one[0]["decision_level"] == 0.05
    # the words say which p: the adjusted one (h4b's walkthrough met a raw split p beside an unlabelled adjusted one)
    assert "borderline (first split's adjusted p" in count_words(scan.n_concepts[1], scan.evidence()[1])
    assert "borderline (first split's adjusted p" in count_words(len(one), one)
    plain = cv.concept_evidence(cv.disentangle(acts, neuron=0, params=AUTO), labels=None, recommend_for=None)
    assert "borderline (first split's p" in count_words(len(plain), plain)


def test_scan_prints_how_many_counts_are_borderline(tmp_path):
    cv.ActivationStore.create(tmp_path / "store", layer(), metadata={"model": {"name": "m"}, "layer": "l"})
    done = CliRunner().invoke(app, ["scan", str(tmp_path / "store"), "--neurons", "0-3", "--distance-threshold", "auto",
                                    "--workers", "1", "--no-projecting", "--out", str(tmp_path / "scan")], env={"COLUMNS": "400"})
    assert done.exit_code == 0, done.output
    text = " ".join(done.output.split())
    assert ("borderline 2 of 4 counts are borderline: their first split's p is in 0.0001-0.03, near the level 0.01; "
            "such counts flipped for 22 % of neurons under a 10 % perturbation of the direction, others for 4 %") in text
    table = pq.read_table(tmp_path / "scan" / "neurons.parquet").to_pydict()
    assert table["borderline"] == [True, True, False, False]
    assert [e.endswith("level 0.01)") for e in table["evidence"]] == [True, True, False, False]
