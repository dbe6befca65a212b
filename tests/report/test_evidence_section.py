"""Evidence badges on the report's neuron pages: the verdict per concept, its numbers, and the count in words that
follow it, on a planted layer whose answers are known."""

import warnings
from pathlib import Path

import numpy as np
import pytest

import conceptvec as cv
from conceptvec.core.planted import planted_layer
from conceptvec.report.html import write_report

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Neuron 1 has three planted facets (auto finds them: split and labels support each); neuron 0 has one, which a
    small fixed threshold cuts into groups no check supports (each group's label is the neuron's single facet)."""
    from conceptvec.sources.digits import load_digits_images

    root = tmp_path_factory.mktemp("evidence-run")
    layer = planted_layer(64, n_neurons=8, n_background=900, seed=0)
    assert list(layer.n_facets[:2]) == [1, 3]
    labels = np.where(layer.owner >= 0, layer.owner * 10 + layer.facet, -1)
    n = len(layer.acts)
    images, _ = load_digits_images()  # pictures to show; the labels are the planted facets
    assert n <= len(images)
    store = cv.ActivationStore.create(root / "store", layer.acts, examples={
        "id": [f"e{i}" for i in range(n)], "label": labels.tolist(), "label_name": [str(v) for v in labels],
        "source": [f"sklearn-digits:{i}" for i in range(n)]},
        metadata={"model": {"name": "planted"}, "layer": "l", "data": {"kind": "sklearn-digits"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        three = cv.disentangle(store, neuron=1, params=cv.Params(distance_threshold="auto"))
        over = cv.disentangle(store, neuron=0, params=cv.Params(distance_threshold=1.0, outlier_threshold=40.0))
    three.save(root / "neuron_1")
    over.save(root / "neuron_0")  # saved without evidence: the report computes it
    index = write_report(root, umap=False)
    return root, index, three, over


@pytest.mark.slow
def test_pages_call_concepts_only_what_a_check_supports(run):
    root, index, three, over = run
    assert three.n_concepts == 3 and over.n_concepts >= 2
    page = (index.parent / "neuron_1.html").read_text()
    assert "<b class=verdict>3 concepts</b>" in page
    assert page.count('class="ev-badge supported"') == 3 and "2 of 2 checks" in page
    assert "supported by 2 of 2 checks (split, labels)" in page
    # every number behind the verdict is on the page: the split's p-value, label purity and its permutation p
    assert "split_p" in page and "label_purity_p" in page and "label_enrichment_p" in page
    # and the split check's level (Params.evidence_fdr), in the section's words and beside the numbers
    assert "a discovery at false discovery rate 0.05 over the layer" in " ".join(page.split()) and "split_level" in page
    split = next(t for t in three.split_tests if t["split"])
    assert f"{split['p_value']:.3g}" in page
    over_page = (index.parent / "neuron_0.html").read_text()
    assert f"<b class=verdict>unsupported split into {over.n_concepts} groups</b>" in over_page
    assert "concepts</b>" not in over_page and over_page.count('class="ev-badge unsupported"') == over.n_concepts
    home = index.read_text()
    assert f"unsupported split into {over.n_concepts} groups" in home and "3 concepts" in home


@pytest.mark.slow
def test_a_saved_verdict_is_shown_as_saved(run, tmp_path):
    root, _, three, _ = run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        rows = cv.concept_evidence(three, labels=None)  # the split alone: the page must not redo it with the labels
    three.save(tmp_path / "run" / "neuron_1")
    (tmp_path / "run" / "store").symlink_to(root / "store")
    page = (write_report(tmp_path / "run", umap=False).parent / "neuron_1.html").read_text()
    assert rows[0]["verdict"] == "supported by 1 of 1 checks (split)" and rows[0]["verdict"] in page
    assert "label_purity" not in page and "Computed for this page" not in page


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Debian's chromium is not installed at {CHROMIUM}")
def test_badges_show_their_numbers_on_hover_and_open(run):
    from playwright.sync_api import sync_playwright

    _, index, three, _ = run
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto((index.parent / "neuron_1.html").as_uri())
        badge = page.locator(".ev-badge").first
        assert "split_p" in badge.get_attribute("title") and "label_purity" in badge.get_attribute("title")
        numbers = page.locator("details.ev").first.locator("table.ev-numbers")
        assert not numbers.is_visible()
        badge.click()  # a badge is its details' summary: a click opens the numbers
        assert numbers.is_visible() and "check split" in numbers.inner_text()
        # green for supported: the badge's colour comes from the stylesheet
        assert page.evaluate("getComputedStyle(document.querySelector('.ev-badge')).backgroundColor") == "rgb(42, 125, 59)"
        page.locator("#evidence").scroll_into_view_if_needed()
        page.screenshot(path=str(index.parent / "evidence.png"))
        browser.close()
