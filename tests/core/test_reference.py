import numpy as np

from conceptvec.metrics import maximally_projecting
from conceptvec.reference import REMOVED, authors_procedure


def test_projection_loop_finds_the_maximally_projecting_examples():
    rng = np.random.default_rng(0)
    acts = np.abs(rng.normal(0, 3, size=(150, 6)))
    theirs = authors_procedure(acts, 2, top=40, distance_threshold=20, outlier_threshold=100, project_all=True)
    assert len(theirs["top_projs"]) == len(theirs["concept_vectors"]) >= 1
    ours, _ = maximally_projecting(acts, theirs["concept_vectors"], top=40)
    for mine, yours in zip(ours, theirs["top_projs"]):
        np.testing.assert_array_equal(mine, yours)
    assert set(np.unique(theirs["labels"])) <= set(range(theirs["C"])) | {REMOVED}
