"""One public namespace: every public name is ``cv.<name>``, visible to dir() with its real signature."""

import inspect
import subprocess
import sys

import pytest

import conceptvec as cv

# The names shared/design.md fixes (the public API notebooks and scripts rely on).
DESIGN = ["Params", "disentangle", "ConceptSet", "extract", "ActivationStore", "scan_layer", "ScanResult",
          "feature_visualisation", "FeatureVisualisation", "intervene", "causal_effects", "make_study", "score_study",
          "StudyConfig", "StudyScores", "maximally_projecting", "layer_thresholds", "authors_procedure"]


def test_every_public_name_resolves_and_dir_lists_it():
    names = set(dir(cv))
    for name in cv.__all__:
        assert name in names, name
        assert getattr(cv, name) is not None, name
    assert set(DESIGN) <= set(cv.__all__)
    assert {"CausalEffects", "ThresholdScaleWarning", "write_report", "register_engine", "ENGINES"} <= set(cv.__all__)


def test_names_loaded_on_first_use_are_the_defining_modules_objects():
    from conceptvec.causal.effects import causal_effects
    from conceptvec.featureviz.render import feature_visualisation
    from conceptvec.report.html import write_report

    assert cv.write_report is write_report and cv.causal_effects is causal_effects
    assert cv.feature_visualisation is feature_visualisation


def test_public_functions_show_their_real_signatures():
    for name in cv.__all__:
        value = getattr(cv, name)
        if inspect.isfunction(value):
            kinds = {p.kind for p in inspect.signature(value).parameters.values()}
            assert kinds != {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}, f"cv.{name} hides its signature"
    assert "neurons" in inspect.signature(cv.write_report).parameters


@pytest.mark.slow
def test_old_module_names_warn_once_and_name_the_new_import():
    old = ["metrics", "thresholds", "reference", "humaneval"]
    code = ("import warnings; warnings.simplefilter('always')\n"
            "for name in " + repr(old) + ":\n"
            "    with warnings.catch_warnings(record=True) as w:\n"
            "        __import__('conceptvec.' + name); __import__('conceptvec.' + name)\n"
            "    future = [str(x.message) for x in w if issubclass(x.category, FutureWarning)]\n"
            "    print(len(future), future[0] if future else '')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == len(old)
    for name, line in zip(old, out):
        assert line.startswith(f"1 conceptvec.{name} is an old name: import the names from conceptvec itself"), line
