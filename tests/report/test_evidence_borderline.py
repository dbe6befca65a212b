"""The report's neuron page says when a count is borderline: in the count's words and on each concept's badge."""

import warnings

import conceptvec as cv
from conceptvec.report.html import write_report

from conftest import borderline_layer as layer  # the constructed top sets; their p checked in tests/core/test_borderline.py

AUTO = cv.Params(distance_threshold="auto")


def test_a_borderline_count_is_said_on_its_page(tmp_path):
    acts = layer()
    n = len(acts)
    store = cv.ActivationStore.create(tmp_path / "store", acts, examples={
        "id": [f"e{i}" for i in range(n)], "source": [f"sklearn-digits:{i}" for i in range(n)]},
        metadata={"model": {"name": "constructed"}, "layer": "l", "data": {"kind": "sklearn-digits"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        near = cv.disentangle(store, neuron=0, params=AUTO)  # first p 0.0065: borderline
        far = cv.disentangle(store, neuron=2, params=AUTO)  # first p < 1e-4: not
    near.save(tmp_path / "neuron_0")
    far.save(tmp_path / "neuron_2")  # saved without evidence: the page computes it
    write_report(tmp_path, umap=False)
    page = (tmp_path / "report" / "neuron_0.html").read_text()
    assert "2 concepts; borderline (first split&#x27;s p 0.0065, level 0.01)" in page
    assert page.count(", borderline count</span>") == 2
    assert "borderline" not in (tmp_path / "report" / "neuron_2.html").read_text().split("Evidence per concept")[1].split("</div>")[0]
