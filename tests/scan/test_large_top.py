"""A scan at top 1,000 (issue 23, item 5) on a planted layer: it runs, keeps each neuron's own examples, and its
concepts never mix facets; auto over-splits there (docs/thresholds.md, "auto's false splits grow with top")."""

import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest

import conceptvec as cv
from conceptvec.core.planted import planted_layer


@pytest.mark.slow
def test_a_scan_at_top_1000_keeps_every_facet_apart(tmp_path):
    layer = planted_layer(96, n_neurons=4, top=1000, n_background=1000, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        scan = cv.scan_layer(layer.acts, params=cv.Params(distance_threshold="auto", top=1000), neurons=[0, 1, 2, 3],
                             workers=1, out=tmp_path / "scan", progress=False)
    assert scan.top_indices.shape == (4, 1000)
    for i, j in enumerate(scan.neurons):
        assert np.all(layer.owner[scan.top_indices[i]] == j)  # the neuron's own 1,000 examples, none of the background
        facets = layer.facet[scan.top_indices[i]]
        majorities = set()
        for c in range(scan.n_concepts[i]):
            members = facets[scan.labels[i] == c]
            values, counts = np.unique(members, return_counts=True)
            assert counts.max() >= 0.95 * len(members)  # a concept is (part of) one facet
            majorities.add(int(values[np.argmax(counts)]))
        assert majorities == set(range(layer.n_facets[j]))  # every facet is some concept's
    # today auto splits facets further at this size (1 -> 2, 2 -> 4, 3 -> 5 here): the count is not yet exact
    assert np.all(scan.n_concepts >= layer.n_facets)
    table = pq.read_table(tmp_path / "scan" / "neurons.parquet")
    assert {"evidence", "supported_concepts", "first_split_p"} <= set(table.column_names)
