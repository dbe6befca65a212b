"""The atlas's map of every concept vector of the layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ConceptvecError

UMAP_UP_TO = 50_000  # concepts mapped with UMAP by "auto"; beyond, the first two principal components
PCA_FIRST = 50  # UMAP runs on this many principal components of the concept vectors (as umap-learn's docs advise)
NEIGHBOURS = 15  # UMAP's neighbours per point (umap-learn's default)
MAP_METHODS = ("auto", "umap", "pca")


def concept_map(vectors: np.ndarray, *, method: str = "auto", seed: int = 0) -> dict[str, Any]:
    """2-D positions of the concept vectors (n, n_units), scaled to [0, 1]: ``x``, ``y`` and the ``method`` used.

    ``"umap"`` is umap-learn's UMAP (cosine metric) on the first ``PCA_FIRST`` principal components, given each
    point's exact ``NEIGHBOURS`` nearest neighbours (scikit-learn, brute force); ``"pca"`` the first two principal
    components; ``"auto"`` UMAP from 15 up to ``UMAP_UP_TO`` concepts, PCA otherwise.
    """
    if method not in MAP_METHODS:
        raise ConceptvecError(f"map method must be one of {', '.join(MAP_METHODS)}, got {method!r}.")
    v = np.asarray(vectors, dtype=np.float32)
    n = len(v)
    if n == 0:
        return {"method": "none", "x": [], "y": []}
    use_umap = method == "umap" or (method == "auto" and 15 <= n <= UMAP_UP_TO)
    centred = v - v.mean(axis=0)
    k = int(min(PCA_FIRST if use_umap else 2, n, v.shape[1]))
    # principal components by an SVD of the centred vectors (what sklearn's PCA does, without its import time)
    _, _, vt = np.linalg.svd(centred, full_matrices=False) if n * v.shape[1] <= 4e7 else _randomized(centred, k, seed)
    xy = centred @ vt[:k].T
    name = f"PCA (first {min(2, k)} components)"
    if use_umap and n >= 15:
        xy = _umap(xy, seed)
        name = f"UMAP (cosine, exact {min(NEIGHBOURS, n - 1)} nearest neighbours, on {k} principal components, 200 epochs, seed {seed})"
    if xy.shape[1] < 2:
        xy = np.column_stack([xy, np.zeros((n, 2 - xy.shape[1]))])
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    xy = (xy - lo) / np.where(hi > lo, hi - lo, 1.0)
    return {"method": name, "x": np.round(xy[:, 0], 4).tolist(), "y": np.round(xy[:, 1], 4).tolist()}


def _umap(x: np.ndarray, seed: int) -> np.ndarray:
    import warnings

    import umap  # umap-learn, a dependency of conceptvec; imported here only (it loads numba)
    from sklearn.neighbors import NearestNeighbors

    # The neighbours are computed here, exactly: left to umap-learn, above 4,096 points they come from pynndescent,
    # whose numba functions compile in every new process (about 40 s on 2 cores; 56 s against 16 s for 4,265 points).
    k = min(NEIGHBOURS, len(x) - 1)
    dist, idx = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute", n_jobs=1).fit(x).kneighbors(x)
    with warnings.catch_warnings():  # "no NNDescent search index: transform unavailable": the map never transforms
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        return umap.UMAP(n_components=2, metric="cosine", random_state=seed, n_neighbors=k, n_jobs=1, n_epochs=200,
                         precomputed_knn=(idx, dist.astype(np.float32))).fit_transform(x)


def _randomized(x: np.ndarray, k: int, seed: int) -> tuple[None, None, np.ndarray]:
    from sklearn.utils.extmath import randomized_svd

    return None, None, randomized_svd(x, k, random_state=seed)[2]

