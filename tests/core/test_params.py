import numpy as np
import pytest

import conceptvec as cv


def test_paper_defaults():
    p = cv.Params()
    assert p.to_dict() == dict(top=100, distance_threshold=15.0, outlier_threshold=15.0, min_cluster_size=5,
                               n_init=5, max_iter=1000, seed=0, significance=0.01, fdr=None, evidence_fdr=0.05,
                               representation="activations", null="gaussian")


def test_auto_thresholds_and_their_refusals():
    auto = cv.Params(distance_threshold="auto")
    assert auto.outlier_threshold == "auto" and auto.auto_distance and auto.auto_outliers
    assert cv.Params.from_dict(auto.to_dict()) == auto
    fixed_with_auto_outliers = cv.Params(outlier_threshold="auto")
    assert fixed_with_auto_outliers.distance_threshold == 15.0 and fixed_with_auto_outliers.auto_outliers
    with pytest.raises(cv.ConceptvecError, match="use outlier_threshold='auto'"):
        cv.Params(distance_threshold="auto", outlier_threshold=15)
    with pytest.raises(cv.ConceptvecError, match="number or 'auto'"):
        cv.Params(distance_threshold="Auto")
    for bad in (0, 1, -0.1, float("nan"), "0.05", True):
        with pytest.raises(cv.ConceptvecError, match="significance must be a number between 0 and 1"):
            cv.Params(distance_threshold="auto", significance=bad)


def test_thresholds_resolved_to_the_type_each_use_needs():
    assert cv.Params(distance_threshold=7).fixed_distance == 7.0
    assert cv.Params(outlier_threshold=3).outlier_rule == 3.0
    assert cv.Params().outlier_rule == 15.0 and cv.Params(distance_threshold="auto").outlier_rule == "auto"
    assert cv.Params(outlier_threshold="auto").outlier_rule == "auto"
    with pytest.raises(cv.ConceptvecError, match="distance_threshold is 'auto'.*give a number"):
        cv.Params(distance_threshold="auto").fixed_distance


def test_auto_outliers_are_beyond_each_clusters_far_out_fence():
    # cluster 0: squared distances 1..8 and 40 (Q3 = 7, IQR = 4, fence 19); cluster 1: all 0.5 (fence 0.5)
    labels = np.array([0] * 9 + [1] * 4)
    sq = np.array([1, 2, 3, 4, 5, 6, 7, 8, 40, 0.5, 0.5, 0.5, 0.5])
    mask = cv.Params(outlier_threshold="auto").outliers(labels, sq)
    assert mask.tolist() == [False] * 8 + [True] + [False] * 4
    assert cv.Params(outlier_threshold="auto").outliers(labels, sq * 7.3).tolist() == mask.tolist()
    assert cv.Params().outliers(labels, sq).tolist() == (sq >= 15).tolist()


def test_roundtrip_and_replace():
    p = cv.Params(top=np.int64(50), distance_threshold=3)
    assert p.top == 50 and type(p.top) is int and p.distance_threshold == 3.0
    assert cv.Params.from_dict(p.to_dict()) == p
    assert p.replace(seed=4).seed == 4


@pytest.mark.parametrize("kwargs, match", [
    (dict(distance_threshold=0), r"distance_threshold must be a finite number > 0"),
    (dict(outlier_threshold=-1.0), r"outlier_threshold must be a finite number > 0"),
    (dict(outlier_threshold=float("inf")), r"finite"),
    (dict(distance_threshold="x"), r"must be a number"),
    (dict(top=1), r"top must be >= 2"),
    (dict(top=10.5), r"top must be a whole number"),
    (dict(top=True), r"whole number"),
    (dict(min_cluster_size=0), r"min_cluster_size must be >= 1"),
    (dict(seed=-1), r"seed must be >= 0"),
    (dict(distance_threshold="15"), r"distance_threshold must be a number or 'auto', got '15'"),
    (dict(outlier_threshold=True), r"outlier_threshold must be a number or 'auto', got True"),
    (dict(distance_threshold=np.bool_(True)), r"must be a number"),
    (dict(top=10, min_cluster_size=11), r"min_cluster_size \(11\) is larger than top \(10\)"),
])
def test_bad_values(kwargs, match):
    with pytest.raises(cv.ConceptvecError, match=match):
        cv.Params(**kwargs)


def test_unknown_keys():
    with pytest.raises(cv.ConceptvecError, match=r"unknown parameter\(s\) \['d_max'\]"):
        cv.Params.from_dict({"d_max": 3})
