"""The demo's causal check: every split merged-pair unit measured, the verdicts follow from the numbers."""

import json

import pytest

import conceptvec as cv
from conceptvec.demo.causal import merged_pair_causal
from conceptvec.demo.demo import run_demo


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    run_demo(out, progress=False, report=False)
    return out


@pytest.mark.slow
def test_merged_pair_causal_on_the_demo(demo_dir):
    demo = json.loads((demo_dir / "demo.json").read_text())
    result = merged_pair_causal(demo_dir, mode="ablate")
    assert result["n_split_units"] == demo["n_split"] == len(result["units"])
    assert [u["neuron"] for u in result["units"]] == [u["neuron"] for u in demo["merged_pair_units"] if u["split"]]
    checks = [d for u in result["units"] for d in u["digits"]]
    assert result["n_digit_checks"] == len(checks) > 0
    for d in checks:
        assert d["more_than_other"] == (d["drop_on_digit"] > d["drop_on_other"])
        assert d["more_than_random"] == (d["drop_on_digit"] > d["largest_random_drop_on_digit"])
        assert d["holds"] == (d["more_than_other"] and d["more_than_random"])
    held = sum(len(u["digits"]) == 2 and all(d["holds"] for d in u["digits"]) for u in result["units"])
    assert result["n_units_where_it_holds"] == held
    assert result["share_of_units"] == pytest.approx(held / len(result["units"]))


def test_merged_pair_causal_needs_a_demo_run(tmp_path):
    with pytest.raises(cv.ConceptvecError, match="not a demo run.*conceptvec demo --out"):
        merged_pair_causal(tmp_path)


@pytest.mark.slow
def test_causal_demo_command_prints_and_writes_the_result(demo_dir, tmp_path):
    from typer.testing import CliRunner

    from conceptvec.cli import app

    result = CliRunner().invoke(app, ["causal-demo", str(demo_dir), "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "r.json").read_text())
    expected = merged_pair_causal(demo_dir, mode="ablate")
    assert written["n_units_where_it_holds"] == expected["n_units_where_it_holds"]
    assert f"selectivity holds for both digits in {expected['n_units_where_it_holds']} of {expected['n_split_units']}" in \
        " ".join(result.output.split())
    bad = CliRunner().invoke(app, ["causal-demo", str(tmp_path)])
    assert bad.exit_code == 2 and "not a demo run" in bad.output
