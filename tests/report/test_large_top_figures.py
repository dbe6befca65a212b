"""The report's example grids at a large top: the first MAX_PANELS examples drawn (the page's slider has them all)."""

import warnings

import pytest

import conceptvec as cv
from conceptvec.core.planted import planted_layer
from conceptvec.report import figures as F
from conceptvec.report.examples import ImageExamples
from conceptvec.report.figures.grids import MAX_PANELS
from conceptvec.report.figures.panels import headings, shown_examples


def example_ids(fig):
    return [i for i, _ in shown_examples(fig)]


@pytest.mark.slow
def test_grids_of_a_top_800_show_their_first_examples(tmp_path):
    layer = planted_layer(96, n_neurons=2, top=800, n_background=190, seed=0)  # 1,790 rows: one digit image each
    n = len(layer.acts)
    store = cv.ActivationStore.create(tmp_path / "store", layer.acts, examples={
        "id": [f"e{i}" for i in range(n)], "label": layer.facet.tolist(), "label_name": [str(v) for v in layer.facet],
        "source": [f"sklearn-digits:{i}" for i in range(n)]}, metadata={"data": {"kind": "sklearn-digits"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        cs = cv.disentangle(store, neuron=1, params=cv.Params(distance_threshold="auto", top=800))
    examples = ImageExamples.from_store(store)
    top = F.top_activating_grid(cs, examples)
    assert example_ids(top) == cs.top_indices[:MAX_PANELS].tolist()
    assert "Top 100 activating examples of neuron 1 (the first of 800)" in top.get_suptitle()
    assert F.top_activating_data(cs)["index"] == cs.top_indices.tolist()  # the numbers keep every example
    grouped = F.concept_groups_grid(cs, examples)
    shown = example_ids(grouped)
    assert MAX_PANELS <= len(shown) <= MAX_PANELS + 10 * (cs.n_concepts + 1)
    for j in range(cs.n_concepts):  # each concept's first members, in activation order
        members = [int(i) for i in cs.members(j)]
        firsts = [i for i in shown if i in set(members)]
        assert firsts == members[: len(firsts)] and len(firsts) >= 10
    titles = headings(grouped)
    assert all("shown)" in t for t in titles) and any(f"{len(cs.members(0))} members" in t for t in titles)
