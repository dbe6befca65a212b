"""The neuron page's "Causal effect" section: shown when `conceptvec causal` wrote its folder, absent otherwise."""

import numpy as np
import pytest
from conftest import planted
from test_report import broken_images, browser, needs_chromium, open_page

import conceptvec as cv
from conceptvec.report.figures.causal import selectivity_data, steering_data
from conceptvec.report.html import write_report
from conceptvec.storage.causal_effects import CausalEffects

PARAMS = cv.Params(top=60, distance_threshold=8.0, outlier_threshold=50.0)


def effects(neuron):
    rows = []
    for i, name in enumerate(["concept 0", "concept 1", "neuron", "random 0"]):
        kind = name.split()[0]
        for g, group in enumerate(["concept 0", "concept 1", "random"]):
            d = -2.0 if name == f"concept {g}" else -0.1 * (i + g)
            rows.append({"intervention": name, "kind": kind, "group": group, "n_examples": 30, "d_logit": d, "d_prob": d / 10,
                         "kl": abs(d) / 5, "flip": 0.1, "d_loss": float("nan"), "cos_change": float("nan")})
    steering = [{"concept": f"concept {j}", "alpha": a, "projection": 1 + a, "neuron_activation": 0.5 + a / 2, "target_logit": 3 * a}
                for j in range(2) for a in (-1.0, 0.0, 1.0)]
    return CausalEffects(rows, steering, {"mode": "ablate", "seed": 0, "n_random": 1, "random_examples": 50,
                                          "targets": "the unedited model's prediction", "task": "classify"}, {}, neuron)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    acts, _ = planted()
    run = cv.RunDir(tmp_path_factory.mktemp("causal") / "run")
    n = len(acts)
    examples = {"id": [f"d{i}" for i in range(n)], "label": [0] * n, "label_name": ["0"] * n, "source": [f"sklearn-digits:{i}" for i in range(n)]}
    store = cv.ActivationStore.create(run.store, acts.astype(np.float32), examples=examples,
                                      metadata={"model": {"name": "m"}, "layer": "l", "data": {"kind": "sklearn-digits"}})
    cs = cv.disentangle(store, neuron=3, params=PARAMS)
    cs.save(run.neuron(3))
    cv.disentangle(store, neuron=5, params=PARAMS).save(run.neuron(5))
    eff = effects(3)
    eff.save(run.causal(3))
    write_report(run.path, umap=False)
    return run, eff


@pytest.mark.slow
def test_causal_section_on_the_neuron_page(report):
    run, eff = report
    page = (run.report / "neuron_3.html").read_text()
    assert "Causal effect" in page and "causal_selectivity.png" in page and "causal_steering.png" in page
    assert "drop on its members" in page and "beats random directions" in page
    for name in ("causal_selectivity.png", "causal_steering.png", "causal.json"):
        assert (run.report / "assets" / "neuron_3" / name).stat().st_size > 0
    assert "Causal effect" not in (run.report / "neuron_5.html").read_text()
    # the figures' numbers are the saved effects
    d = selectivity_data(eff)
    assert d["rows"] == ["concept 0", "concept 1", "neuron", "random (mean)"] and d["groups"] == ["concept 0", "concept 1", "random"]
    assert np.diag(np.asarray(d["values"])[:2, :2]).tolist() == [-2.0, -2.0]
    assert steering_data(eff)["concept 1"]["target_logit"] == [-3.0, 0.0, 3.0]
    sel = eff.selectivity()
    assert all(r["more_than_other_concepts"] and r["more_than_random_directions"] for r in sel)


@pytest.mark.browser
@pytest.mark.slow
@needs_chromium
def test_causal_section_in_the_browser(report):
    run, _ = report
    with browser() as b:
        pg, problems = open_page(b, run.report / "neuron_3.html")
        assert problems == [] and broken_images(pg) == []
        assert pg.locator("#causal").is_visible()
        assert pg.locator("img[alt='selectivity heatmap']").evaluate("i => i.naturalWidth") > 200
