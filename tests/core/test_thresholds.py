import numpy as np
import pytest

import conceptvec as cv
from conceptvec.core.kmeans import kmeans_step
from conceptvec.core.steps import n_clusters_at, ward_linkage
from conceptvec import layer_thresholds, live_units


def test_rule_by_hand():
    rng = np.random.default_rng(0)
    acts = np.abs(rng.normal(0, 1, size=(200, 6)))
    acts[:, 5] = 0.0  # a dead unit
    acts[:3, 5] = 1.0
    p0 = cv.Params(top=20)
    assert live_units(acts, 20).tolist() == [0, 1, 2, 3, 4]
    params, record = layer_thresholds(acts, params=p0, distance_percentile=90, outlier_percentile=80)
    heights, sq = [], []
    tops = {u: acts[np.argsort(-acts[:, u], kind="stable")[:20]] for u in range(5)}
    for x in tops.values():
        heights.append(ward_linkage(x)[:, 2])
    d = np.percentile(np.concatenate(heights), 90)
    for x in tops.values():
        sq.append(kmeans_step(x, n_clusters_at(ward_linkage(x), d), p0)[1])
    assert params.distance_threshold == pytest.approx(d)
    assert params.outlier_threshold == pytest.approx(np.percentile(np.concatenate(sq), 80))
    assert record["n_live_units"] == 5 and "90th percentile" in record["rule"]
    assert params.top == 20 and params.seed == 0


def test_errors():
    with pytest.raises(cv.ConceptvecError, match="no live unit"):
        layer_thresholds(np.zeros((50, 3)), params=cv.Params(top=10))
    with pytest.raises(cv.ConceptvecError, match="outlier_percentile must be in"):
        layer_thresholds(np.ones((50, 3)), params=cv.Params(top=10), outlier_percentile=0)
