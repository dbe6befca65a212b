import warnings

import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

import conceptvec as cv
from conceptvec.core.kmeans import kmeans_step
from conceptvec.core.steps import n_clusters_at, remove_outliers, ward_linkage
from conceptvec import AUTHORS_REMOVED, authors_procedure
from conftest import planted


def blobs(seed):
    """Five blobs (two rare) with 10 % noisy examples: at the paper's 15/15 some examples are outliers and
    some clusters fall under 5 members, so every branch of steps 2-4 runs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, size=(5, 32))
    which = rng.choice(5, size=600, p=[0.3, 0.3, 0.3, 0.07, 0.03])
    noise = rng.normal(0, 0.45, size=(600, 32)) * np.where(rng.random(600) < 0.1, 2.2, 1.0)[:, None]
    return np.abs(centres[which] + noise)


def test_matches_the_authors_procedure_exactly():
    outliers = removed_small = multi = 0
    for seed in (0, 1, 2):
        acts = blobs(seed)
        for neuron in (0, 5, 17):
            theirs = authors_procedure(acts, neuron)
            rm = theirs["labels"]
            cs = cv.disentangle(acts, neuron=neuron)
            np.testing.assert_array_equal(cs.top_indices, theirs["top_ims"])
            assert cs.n_agglomerative == theirs["C"]
            expected_labels = np.full(100, -1)
            for j, cluster in enumerate(k for k in np.unique(rm) if k != AUTHORS_REMOVED):
                expected_labels[rm == cluster] = j
            np.testing.assert_array_equal(cs.labels, expected_labels)
            np.testing.assert_array_equal(cs.concept_vectors, theirs["concept_vectors"])
            s = cs.summary()
            outliers += s["n_outliers"] > 0
            removed_small += s["n_in_removed_small_clusters"] > 0
            multi += s["n_concepts"] > 1
    assert outliers >= 5 and removed_small >= 2 and multi >= 4  # the comparison covered every branch


def test_n_clusters_agrees_with_sklearn_agglomerative():
    rng = np.random.default_rng(3)
    for trial in range(20):
        x = rng.normal(0, 1 + trial % 4, size=(100, 16))
        z = ward_linkage(x)
        for t in (2.0, 5.0, 15.0, 40.0):
            expected = AgglomerativeClustering(n_clusters=None, distance_threshold=t, linkage="ward").fit(x).n_clusters_
            assert n_clusters_at(z, t) == expected


def test_planted_facets_give_exactly_those_clusters(planted_acts):
    acts, groups = planted_acts
    cs = cv.disentangle(acts, neuron=3, params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0))
    assert set(cs.top_indices) == set(range(60))
    assert cs.n_agglomerative == 2 and cs.n_concepts == 2
    assert (cs.labels >= 0).all()
    # each concept is exactly one planted facet, ordered by k-means label
    found = sorted(tuple(sorted(cs.members(j))) for j in range(2))
    assert found == [tuple(range(0, 30)), tuple(range(30, 60))]
    for j in range(2):
        facet = groups[cs.members(j)[0]]
        lo, hi = ((0, 8), (12, 20))[facet]
        # the concept weighs its facet's units and the neuron, nothing else
        expected = set(range(lo, hi)) | {3}
        assert set(np.argsort(cs.concept_vectors[j])[-len(expected):].tolist()) == expected
        np.testing.assert_allclose(np.linalg.norm(cs.concept_vectors[j]), 1.0)
        mean = acts[cs.members(j)].mean(0)
        np.testing.assert_allclose(cs.concept_vectors[j], mean / np.linalg.norm(mean))


def test_single_facet_neuron_gives_one_concept():
    acts, _ = planted(facets=((0, 8),), per_facet=60)
    cs = cv.disentangle(acts, neuron=3, params=cv.Params(top=50, distance_threshold=10.0, outlier_threshold=30.0))
    assert cs.n_agglomerative == 1 and cs.n_concepts == 1
    assert cs.labels.tolist() == [0] * 50


def test_all_outliers_gives_zero_concepts(planted_acts):
    acts, _ = planted_acts
    cs = cv.disentangle(acts, neuron=3, params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=1e-9))
    assert cs.n_concepts == 0
    assert cs.concept_vectors.shape == (0, acts.shape[1])
    assert (cs.labels == -1).all() and cs.outliers.all()


def test_outlier_boundary_is_inclusive():
    kmeans_labels = np.array([0, 0, 0, 1, 1, 1])
    sq = np.array([1.0, 2.0, 3.0, 2.9999, 3.0, 0.5])
    labels, ids = remove_outliers(kmeans_labels, sq, outlier_threshold=3.0, min_cluster_size=1)
    assert labels.tolist() == [0, 0, -1, 1, -1, 1]
    assert ids.tolist() == [0, 1]


def test_small_clusters_removed_after_outliers_and_concepts_renumbered():
    kmeans_labels = np.array([0] * 6 + [1] * 5 + [2] * 7)
    sq = np.zeros(18)
    sq[6] = 99.0  # one outlier leaves cluster 1 with 4 members
    labels, ids = remove_outliers(kmeans_labels, sq, outlier_threshold=10.0, min_cluster_size=5)
    assert ids.tolist() == [0, 2]
    assert labels.tolist() == [0] * 6 + [-1] * 5 + [1] * 7


def test_kmeans_step_squared_distances_match_transform():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    params = cv.Params(top=40)
    labels, sq = kmeans_step(x, 3, params)
    km = KMeans(n_clusters=3, n_init=5, max_iter=1000, random_state=0).fit(x)
    np.testing.assert_array_equal(labels, km.labels_)
    np.testing.assert_array_equal(sq, (km.transform(x) ** 2)[np.arange(40), km.labels_])


def _sklearn_kmeans_step(x, k, params):
    """What the authors ran: the KMeans estimator, then squared transform() distances."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate points: fewer distinct clusters than k
        km = KMeans(n_clusters=k, n_init=params.n_init, max_iter=params.max_iter, random_state=params.seed).fit(x)
    return km.labels_, (km.transform(x) ** 2)[np.arange(len(x)), km.labels_]


def _kmeans_cases():
    """Random, blob and planted data of many shapes; every k, seeds, n_init, and max_iter small enough to stop on the
    iteration limit or on the tolerance rather than strict convergence; duplicate rows; float32, integer and
    non-contiguous input."""
    rng = np.random.default_rng(11)
    for trial in range(60):
        n, d = int(rng.integers(12, 130)), int(rng.choice([2, 3, 8, 40, 300, 2048]))
        kind = trial % 4
        if kind == 0:
            x = rng.normal(size=(n, d))
        elif kind == 1:
            centres = rng.normal(0, 3, size=(6, d))
            x = centres[rng.integers(0, 6, n)] + rng.normal(0, 0.5 + rng.random(), size=(n, d))
        elif kind == 2:
            x = np.maximum(rng.standard_normal((n, d)) * 0.05 + 3.0 * (rng.random((n, 1)) < 0.4) * (rng.random(d) < 0.01), 0)
        else:
            x = rng.normal(size=(n // 3 + 2, d))[rng.integers(0, n // 3 + 2, n)]  # many duplicate rows
        k = int(rng.integers(1, min(9, n) + 1))
        params = cv.Params(top=n, n_init=int(rng.integers(1, 6)), max_iter=int(rng.choice([1, 2, 3, 1000])),
                           seed=int(rng.integers(0, 4)))
        yield x, k, params
    planted_x, _ = planted(n_units=64, per_facet=35)
    for k in range(1, 7):
        yield planted_x[:100], k, cv.Params()
    x = blobs(4)[:100]
    yield x.astype(np.float32), 4, cv.Params()
    yield np.asfortranarray(x), 4, cv.Params()
    yield x[:, ::2], 3, cv.Params()
    yield np.round(x * 10).astype(np.int64), 5, cv.Params()


def test_kmeans_step_equals_sklearn_kmeans_bit_for_bit():
    # kmeans_step runs KMeans.fit's own steps with scikit-learn's kernels, not the estimator: same draws, same bits.
    # One OpenMP/BLAS thread, as in the scan's workers (two threads on 100 rows are 20x slower on a busy machine);
    # test_kmeans_step_squared_distances_match_transform and the authors' comparison run with the default threads.
    n = 0
    with threadpool_limits(1):
        for x, k, params in _kmeans_cases():
            labels, sq = kmeans_step(x, k, params)
            expected_labels, expected_sq = _sklearn_kmeans_step(x, k, params)
            np.testing.assert_array_equal(labels, expected_labels)
            np.testing.assert_array_equal(sq, expected_sq)
            assert labels.dtype == np.int64
            n += 1
    assert n == 70


def test_kmeans_step_on_the_scan_benchmark_data_equals_sklearn():
    # Top-100 examples of generated neurons as bench_scan.py plants them (ReLU'd noise plus 1-4 firing classes).
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        for trial in range(12):
            m = trial % 4 + 1
            classes = rng.integers(0, m, 100)
            proto = np.zeros((m, 2048))
            for c in range(m):
                proto[c, rng.choice(2048, 8, replace=False)] = 3.0
            x = np.maximum(rng.standard_normal((100, 2048)) * 0.05 + rng.uniform(0.8, 1.2, (100, 1)) * proto[classes], 0)
            k = n_clusters_at(ward_linkage(x), 15.0)
            labels, sq = kmeans_step(x, k, cv.Params())
            expected_labels, expected_sq = _sklearn_kmeans_step(x, k, cv.Params())
            np.testing.assert_array_equal(labels, expected_labels)
            np.testing.assert_array_equal(sq, expected_sq)


def test_same_seed_same_result_and_seed_is_used():
    rng = np.random.default_rng(5)
    acts = np.abs(rng.normal(0, 2, size=(300, 20)))
    p = cv.Params(top=80, distance_threshold=6.0, outlier_threshold=20.0)
    a, b = cv.disentangle(acts, neuron=2, params=p), cv.disentangle(acts, neuron=2, params=p)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.concept_vectors, b.concept_vectors)
    assert a.params.seed == 0 and a.provenance["n_examples"] == 300
    # The seed reaches k-means: scikit-learn's KMeans with another random_state gives other centroids here, and so must we.
    changed = [s for s in range(1, 6) if not np.array_equal(cv.disentangle(acts, neuron=2, params=p.replace(seed=s)).concept_vectors,
                                                             a.concept_vectors)]
    assert changed, "no seed in 1-5 changed the concept vectors: params.seed is not used"


def test_ties_keep_example_order():
    acts = np.zeros((10, 3))
    acts[:, 0] = [1, 5, 5, 2, 5, 0, 0, 3, 0, 0]
    acts[:, 1] = np.arange(10)
    cs = cv.disentangle(acts, neuron=0, params=cv.Params(top=5, distance_threshold=100.0, outlier_threshold=1e6, min_cluster_size=1))
    assert cs.top_indices.tolist() == [1, 2, 4, 7, 3]
    np.testing.assert_array_equal(cs.top_scores, [5, 5, 5, 3, 2])


def test_direction_ranks_by_projection():
    acts, _ = planted()
    v = np.zeros(acts.shape[1])
    v[12:20] = 2.0  # the second facet's units
    cs = cv.disentangle(acts, direction=v, params=cv.Params(top=30, distance_threshold=10.0, outlier_threshold=30.0))
    assert set(cs.top_indices) == set(range(30, 60))
    np.testing.assert_allclose(np.linalg.norm(cs.direction), 1.0)
    np.testing.assert_allclose(cs.top_scores, (acts @ (v / np.linalg.norm(v)))[cs.top_indices])
    neuron_cs = cv.disentangle(acts, direction=np.eye(acts.shape[1])[3], params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0))
    same = cv.disentangle(acts, neuron=3, params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0))
    np.testing.assert_array_equal(neuron_cs.labels, same.labels)


def test_store_input_equals_array_input(tmp_path, planted_acts):
    acts, _ = planted_acts
    store = cv.ActivationStore.create(tmp_path / "s", acts, metadata={"model": {"name": "m"}, "layer": "l"})
    p = cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0)
    a, b = cv.disentangle(store, neuron=3, params=p), cv.disentangle(acts.astype(np.float32), neuron=3, params=p)
    np.testing.assert_array_equal(a.concept_vectors, b.concept_vectors)
    assert a.provenance["activations"]["layer"] == "l"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(neuron=24), r"neuron 24 is out of range.*0 to 23"),
        (dict(neuron=-1), r"out of range"),
        (dict(neuron=2.0), r"whole number"),
        (dict(), r"exactly one of neuron"),
        (dict(neuron=1, direction=np.ones(24)), r"exactly one of neuron"),
        (dict(direction=np.ones(5)), r"length 24"),
        (dict(direction=np.zeros(24)), r"zero or non-finite norm"),
        (dict(direction=np.full(24, np.nan)), r"NaN or inf"),
        (dict(direction=np.ones(24, dtype=bool)), r"real numbers, got dtype bool"),
        (dict(direction=np.ones(24) * 1j), r"real numbers, got dtype complex128"),
        (dict(direction=np.ones((2, 24))), r"vector of length 24"),
        (dict(neuron=1, params=cv.Params(top=401)), r"top=401 is larger than the number of examples \(400\)"),
        (dict(neuron=1, params={"top": 5}), r"conceptvec.Params"),
    ],
)
def test_bad_arguments(planted_acts, kwargs, match):
    acts, _ = planted_acts
    with pytest.raises(cv.ConceptvecError, match=match):
        cv.disentangle(acts, **kwargs)


def test_nan_activations_are_reported_with_examples(planted_acts):
    acts, _ = planted_acts
    acts = acts.copy()
    acts[[7, 42], 3] = np.nan
    with pytest.raises(cv.ConceptvecError, match=r"2 NaN or inf value\(s\), in 2 example\(s\): 7, 42"):
        cv.disentangle(acts, neuron=3)
    acts[[7, 42], 3] = 1.0
    acts[5, 0] = np.inf  # in a top example's row, other unit
    with pytest.raises(cv.ConceptvecError, match=r"top examples' activations contain 1 NaN or inf.*: 5\b"):
        cv.disentangle(acts, neuron=3, params=cv.Params(top=60))


@pytest.mark.parametrize("acts, match", [
    (np.ones(10), r"2-D array.*got 1-D"),
    (np.ones((0, 4)), r"empty"),
    (np.ones((3, 4, 5)), r"got 3-D"),
    (np.array([["a", "b"]]), r"numbers"),
])
def test_bad_activation_arrays(acts, match):
    with pytest.raises(cv.ConceptvecError, match=match):
        cv.disentangle(acts, neuron=0)


def test_kmeans_step_falls_back_to_the_estimator_when_the_kernels_misbehave(monkeypatch):
    """Private scikit-learn kernels that fail or differ in the self-check are not used; results stay the estimator's."""
    import conceptvec.core.kmeans as m
    from sklearn.cluster import KMeans

    assert m._kernels() is not None  # the installed scikit-learn passes the self-check: the fast path is what is tested

    def broken():
        from types import SimpleNamespace

        return SimpleNamespace(tolerance=lambda *a: 1e-4, kmeans_plusplus=None)  # kmeans_plusplus is not callable

    monkeypatch.setattr(m, "_load_kernels", broken)
    monkeypatch.setattr(m, "_KERNELS_CHECKED", False)
    monkeypatch.setattr(m, "_KERNELS", None)
    x = np.random.default_rng(1).normal(size=(40, 6))
    params = cv.Params(top=40, seed=2)
    labels, sq = m.kmeans_step(x, 3, params)
    assert m._kernels() is None
    km = KMeans(n_clusters=3, n_init=params.n_init, max_iter=params.max_iter, random_state=params.seed).fit(x)
    assert np.array_equal(labels, km.labels_) and np.array_equal(sq, (km.transform(x) ** 2)[np.arange(40), km.labels_])
