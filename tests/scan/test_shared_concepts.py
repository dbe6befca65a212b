"""cv.shared_concepts on a scan with its store: groups name their neurons and labels, and survive save and load."""

import numpy as np
import pytest

import conceptvec as cv
from conceptvec.core.planted import planted_shared_layer
from conceptvec.scan.shared import GROUPS_FILE, SharedConcepts


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    layer = planted_shared_layer(96, seed=0)
    names = [f"facet{f}" if f >= 0 else "" for f in layer.facet]
    store = cv.ActivationStore.create(root / "store", layer.acts, examples={
        "id": [f"e{i}" for i in range(len(names))], "label": [max(int(f), 0) for f in layer.facet], "label_name": names})
    scan = cv.scan_layer(store, params=cv.Params(distance_threshold="auto", outlier_threshold="auto"),
                         neurons=list(range(24)), workers=1, progress=False, out=root / "scan")
    return root, layer, scan


def test_groups_name_neurons_labels_and_baseline(scanned):
    root, layer, scan = scanned
    shared = cv.shared_concepts(scan, null_draws=5, progress=False)
    assert len(shared) >= len(layer.shared) - 1
    planted = [g for g in shared.groups if int(g["labels"][0].removeprefix("facet")) in layer.shared]
    assert len(planted) >= len(shared.groups) - 1  # two private facets' random patterns may be alike by chance
    for g in planted:
        # the group's neurons are among those planted with its facet
        facet = int(g["labels"][0].removeprefix("facet"))
        assert set(g["neurons"]) <= {j for j, fs in enumerate(layer.facets_of) if facet in fs}
    for g in shared.groups:  # each member names its neuron's concept
        for n, c, k in zip(g["neurons"], g["concept_of_neuron"], g["concepts"]):
            assert np.allclose(scan.concepts_of(n)[c], scan.concept_vectors[k])
        assert g["min_cosine"] > shared.level and g["overlap"] == 0.0  # each neuron fires for its own examples of the facet
    assert shared.params["baseline"].startswith("layer") and len(shared.baseline_groups) == 5
    assert np.sum(shared.baseline_groups > 0) <= 1

    shared.save(root / "scan")
    assert (root / "scan" / GROUPS_FILE).is_file()
    again = SharedConcepts.load(root / "scan")
    assert again.groups == shared.groups and np.array_equal(again.group, shared.group) and again.level == shared.level
    assert cv.ScanResult.load(root / "scan").n_concepts.sum() == len(shared.group)  # the scan still opens


def test_load_without_shared_concepts_says_how(tmp_path):
    with pytest.raises(cv.StoreError, match="cv.shared_concepts"):
        SharedConcepts.load(tmp_path)
