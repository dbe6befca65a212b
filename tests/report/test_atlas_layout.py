"""The atlas's map of concept vectors: UMAP on exact neighbours keeps planted groups apart; PCA below 15 concepts."""

import numpy as np
import pytest

from conceptvec.errors import ConceptvecError
from conceptvec.report.atlas.layout import concept_map


def planted_groups(n_per: int, n_groups: int, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, dim))
    group = np.repeat(np.arange(n_groups), n_per)
    return centres[group] + 0.05 * rng.normal(size=(len(group), dim)), group


@pytest.mark.slow
def test_umap_map_keeps_planted_groups_apart():
    vectors, group = planted_groups(40, 4)
    m = concept_map(vectors, method="auto", seed=0)
    assert m["method"].startswith("UMAP (cosine, exact 15 nearest neighbours")
    xy = np.column_stack([m["x"], m["y"]])
    assert xy.min() == 0 and xy.max() == 1
    # each point's nearest other point on the map is of its own group
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert np.mean(group[d.argmin(axis=1)] == group) == 1.0
    # the same seed, the same map
    assert concept_map(vectors, method="umap", seed=0)["x"] == m["x"]


def test_small_layers_and_bad_methods():
    vectors, _ = planted_groups(3, 4)  # 12 concepts: too few for UMAP's neighbourhoods, so auto takes PCA
    m = concept_map(vectors, method="auto")
    assert m["method"] == "PCA (first 2 components)" and len(m["x"]) == 12
    assert concept_map(np.zeros((0, 5)))["method"] == "none"
    with pytest.raises(ConceptvecError, match="map method must be one of auto, umap, pca"):
        concept_map(vectors, method="tsne")
