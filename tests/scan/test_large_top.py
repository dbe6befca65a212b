"""auto at a large top and on low-dimensional rows (issue 23, item 5): a planted single concept stays one at top 500,
two planted concepts are split there, two tight clusters in 2 of 64 columns are 2 concepts, and a scan at top 1,000
on a planted layer finds every facet exactly (docs/thresholds.md, "Large tops")."""

import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest

import conceptvec as cv
from conceptvec.core.planted import planted_layer

AUTO = cv.Params(distance_threshold="auto")


def one_concept(n: int, seed: int, separation: float = 0.0) -> np.ndarray:
    """n examples of one direction with isotropic noise and a leading axis of variation three times as wide (64 units);
    with ``separation`` > 0, two halves that far apart along that axis (in units of the rows' RMS spread)."""
    rng = np.random.default_rng(seed)
    base = np.abs(np.random.default_rng(0).normal(size=64))
    axis = np.random.default_rng(1).normal(size=64)
    axis -= axis @ base / (base @ base) * base
    x = base / np.linalg.norm(base) + rng.normal(scale=0.05, size=(n, 64))
    x += rng.normal(scale=0.15, size=(n, 1)) * axis / np.linalg.norm(axis)
    # 0.39: the RMS spread of these rows after scaling to unit length
    x[: n // 2] += separation * 0.39 / 2 * axis / np.linalg.norm(axis)
    x[n // 2 :] -= separation * 0.39 / 2 * axis / np.linalg.norm(axis)
    return x


def two_tight_clusters(n: int, seed: int) -> np.ndarray:
    """Two tight clusters of n / 2 examples in columns 0 and 1 of 64 (the others zero)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 64))
    x[: n // 2, :2] = [1.0, 0.1] + rng.normal(scale=0.05, size=(n // 2, 2))
    x[n // 2 :, :2] = [0.1, 1.0] + rng.normal(scale=0.05, size=(n - n // 2, 2))
    return x


def concepts(x: np.ndarray) -> cv.ConceptSet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        return cv.disentangle(x, neuron=0, params=AUTO.replace(top=len(x)))


def test_a_single_concept_is_one_at_top_500():
    # before the radius weights counted the chi-square spread once, 6 of 10 such samples were split at top 500
    assert [concepts(one_concept(500, seed)).n_concepts for seed in range(5)] == [1] * 5


def test_two_concepts_are_split_at_top_500():
    for seed in range(3):
        cs = concepts(one_concept(500, seed, separation=1.5))
        assert cs.n_concepts == 2
        half = cs.top_indices < 250
        for c in range(2):  # each concept is (nearly all) one half
            members = half[(cs.labels == c) & cs.kept]
            assert max(members.mean(), 1 - members.mean()) > 0.9


@pytest.mark.parametrize("n", [100, 500])
def test_two_tight_clusters_in_two_of_64_columns_are_two_concepts(n):
    # the radius of a point in one dimension is its coordinate: before, it was taken for a scale and split 10-28 ways
    for seed in range(3):
        cs = concepts(two_tight_clusters(n, seed))
        assert cs.n_concepts == 2
        first = cs.kept & (cs.top_indices < n // 2)
        assert len(set(cs.labels[first])) == 1 and len(set(cs.labels[cs.kept & ~first])) == 1


@pytest.mark.slow
def test_a_scan_at_top_1000_finds_every_facet_exactly(tmp_path):
    layer = planted_layer(96, n_neurons=4, top=1000, n_background=1000, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        scan = cv.scan_layer(layer.acts, params=AUTO.replace(top=1000), neurons=[0, 1, 2, 3],
                             workers=1, out=tmp_path / "scan")
    assert scan.top_indices.shape == (4, 1000)
    for i, j in enumerate(scan.neurons):
        assert np.all(layer.owner[scan.top_indices[i]] == j)  # the neuron's own 1,000 examples, none of the background
        facets = layer.facet[scan.top_indices[i]]
        majorities = set()
        for c in range(scan.n_concepts[i]):
            members = facets[scan.labels[i] == c]
            values, counts = np.unique(members, return_counts=True)
            assert counts.max() >= 0.95 * len(members)  # a concept is one facet
            majorities.add(int(values[np.argmax(counts)]))
        assert majorities == set(range(layer.n_facets[j]))  # every facet is some concept's
    np.testing.assert_array_equal(scan.n_concepts, layer.n_facets[:4])  # before the minimum effect size: 2, 4, 4, 5
    # a facet's own halves explain under MIN_EXCESS of its sum of squares: no null is drawn for them
    tests = concepts(layer.acts[layer.owner == 1]).split_tests
    assert tests[0]["split"] and tests[0]["draws"] >= 10
    assert any(t["draws"] == 0 and t["p_value"] is None and not t["split"] for t in tests[1:])
    table = pq.read_table(tmp_path / "scan" / "neurons.parquet")
    assert {"evidence", "supported_concepts", "first_split_p"} <= set(table.column_names)
