import numpy as np
import pytest

import conceptvec as cv


def test_paper_defaults():
    p = cv.Params()
    assert p.to_dict() == dict(top=100, distance_threshold=15.0, outlier_threshold=15.0, min_cluster_size=5,
                               n_init=5, max_iter=1000, seed=0)


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
    (dict(distance_threshold="15"), r"distance_threshold must be a number, got '15'"),
    (dict(outlier_threshold=True), r"outlier_threshold must be a number, got True"),
    (dict(distance_threshold=np.bool_(True)), r"must be a number"),
    (dict(top=10, min_cluster_size=11), r"min_cluster_size \(11\) is larger than top \(10\)"),
])
def test_bad_values(kwargs, match):
    with pytest.raises(cv.ConceptvecError, match=match):
        cv.Params(**kwargs)


def test_unknown_keys():
    with pytest.raises(cv.ConceptvecError, match=r"unknown parameter\(s\) \['d_max'\]"):
        cv.Params.from_dict({"d_max": 3})
