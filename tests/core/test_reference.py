import numpy as np

import conceptvec as cv

from conceptvec import maximally_projecting
from conceptvec import AUTHORS_REMOVED, authors_procedure


def test_projection_loop_finds_the_maximally_projecting_examples():
    rng = np.random.default_rng(0)
    acts = np.abs(rng.normal(0, 3, size=(150, 6)))
    # distance threshold 10: five clusters, of which one is too small and some examples are outliers
    theirs = authors_procedure(acts, 2, top=40, distance_threshold=10, outlier_threshold=100, project_all=True)
    assert theirs["C"] == 5 and (np.asarray(theirs["labels"]) == AUTHORS_REMOVED).any()
    assert len(theirs["top_projs"]) == len(theirs["concept_vectors"]) >= 1
    ours, _ = maximally_projecting(acts, theirs["concept_vectors"], top=40)
    for mine, yours in zip(ours, theirs["top_projs"]):
        np.testing.assert_array_equal(mine, yours)
    # Their labels against ours, example by example: the same kept clusters (by k-means label) and the same removals.
    ours_cs = cv.disentangle(acts, neuron=2, params=cv.Params(top=40, distance_threshold=10, outlier_threshold=100))
    kept = np.where(ours_cs.labels >= 0, ours_cs.kmeans_cluster_ids[np.maximum(ours_cs.labels, 0)], AUTHORS_REMOVED)
    np.testing.assert_array_equal(np.asarray(theirs["labels"]), kept)
