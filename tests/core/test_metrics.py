import numpy as np
import pytest

from conceptvec import ConceptvecError
from conceptvec.core import metrics


def test_project_chunked_equals_matmul():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1000, 7)).astype(np.float16)
    v = rng.normal(size=(3, 7))
    got = metrics.project(a, v, chunk_rows=64)
    expected = a.astype(np.float64) @ (v / np.linalg.norm(v, axis=1, keepdims=True)).T
    np.testing.assert_allclose(got, expected)


def test_cosine_hand_values():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(metrics.cosine_similarity(a, np.array([[2.0, 0.0]])), [[1.0], [np.sqrt(0.5)], [0.0]])


def test_top_k_desc_ties_and_order():
    s = np.array([3, 1, 3, 2, 3, 0])
    assert metrics.top_k_desc(s, 2).tolist() == [0, 2]
    assert metrics.top_k_desc(s, 4).tolist() == [0, 2, 4, 3]
    assert metrics.top_k_desc(s, 10).tolist() == [0, 2, 4, 3, 1, 5]


def test_maximally_projecting():
    a = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 0.0], [0.0, 1.0]])
    idx, proj = metrics.maximally_projecting(a, np.eye(2), top=2)
    assert idx.tolist() == [[2, 0], [1, 3]]
    np.testing.assert_allclose(proj, [[2.0, 1.0], [3.0, 1.0]])


def test_distances_hand_values():
    a = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0], [3.0, 5.0]])
    d = metrics.distance_matrix(a)
    assert d[0, 1] == 5.0 and d[0, 2] == 1.0
    intra, inter = metrics.intra_inter_distances(a, np.array([0, 1, 0, 1]))
    assert intra == pytest.approx(1.0)
    assert inter == pytest.approx(np.mean([5.0, np.hypot(3, 5), np.hypot(3, 3), 5.0]))


def test_zero_vectors_rejected():
    with pytest.raises(ConceptvecError, match=r"\[1\] have zero"):
        metrics.unit_vectors(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ConceptvecError, match="3 components but the activations have 2"):
        metrics.project(np.ones((2, 2)), np.ones(3))


def test_most_similar_ignores_norm():
    a = np.array([[10.0, 1.0], [1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    idx, cos = metrics.most_similar(a, np.array([[1.0, 0.0]]), top=3, chunk_rows=2)
    assert idx.tolist() == [[1, 0, 2]]  # the unit vector beats the large one; rows 2 and 3 tie at cosine 0
    np.testing.assert_allclose(cos, [[1.0, 10 / np.hypot(10, 1), 0.0]])
    p_idx, _ = metrics.maximally_projecting(a, np.array([[1.0, 0.0]]), top=1)
    assert p_idx.tolist() == [[0]]


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 10_000])
def test_streamed_rankings_equal_full_sort_with_ties(chunk_rows):
    """Streaming over chunks gives what sorting the whole column gives: score descending, ties by lower index."""
    rng = np.random.default_rng(0)
    a = np.round(rng.normal(size=(300, 5)), 1)  # rounded: many tied projections
    a[17] = 0.0  # an all-zero example: cosine 0
    v = np.vstack([np.eye(5)[:3], rng.normal(size=(2, 5))])
    proj = a @ metrics.unit_vectors(v).T
    norms = np.linalg.norm(a, axis=1)[:, None]
    cos = np.where(norms > 0, proj / np.where(norms > 0, norms, 1), 0.0)
    for rank, full in ((metrics.maximally_projecting, proj), (metrics.most_similar, cos)):
        idx, vals = rank(a, v, top=40, chunk_rows=chunk_rows)
        for j in range(len(v)):
            expected = metrics.top_k_desc(full[:, j], 40)
            assert idx[j].tolist() == expected.tolist()
            np.testing.assert_allclose(vals[j], full[expected, j], rtol=0, atol=1e-12)
    idx, _ = metrics.maximally_projecting(a[:10], v, top=100, chunk_rows=chunk_rows)
    assert idx.shape == (5, 10)  # top clamps to the number of examples


def test_rankings_reject_non_finite_activations():
    a = np.ones((20, 3))
    a[12, 1] = np.nan
    with pytest.raises(ConceptvecError, match=r"NaN or inf values in example\(s\) 12"):
        metrics.maximally_projecting(a, np.eye(3), top=5, chunk_rows=8)
