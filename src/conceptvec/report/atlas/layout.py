"""The atlas's map of every concept vector of the layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ConceptvecError

UMAP_UP_TO = 50_000  # concepts mapped with UMAP by "auto"; beyond, the first two principal components
PCA_FIRST = 50  # UMAP runs on this many principal components of the concept vectors (as umap-learn's docs advise)
MAP_METHODS = ("auto", "umap", "pca")


def concept_map(vectors: np.ndarray, *, method: str = "auto", seed: int = 0) -> dict[str, Any]:
    """2-D positions of the concept vectors (n, n_units), scaled to [0, 1]: ``x``, ``y`` and the ``method`` used.

    ``"umap"`` is umap-learn's UMAP (cosine metric) on the first ``PCA_FIRST`` principal components;
    ``"pca"`` the first two principal components; ``"auto"`` UMAP up to ``UMAP_UP_TO`` concepts.
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
        import umap  # umap-learn, a dependency of conceptvec; imported here only (it loads numba)

        xy = umap.UMAP(n_components=2, metric="cosine", random_state=seed, n_neighbors=min(15, n - 1), n_jobs=1,
                       n_epochs=200).fit_transform(xy)
        name = f"UMAP (cosine, on {k} principal components, 200 epochs, seed {seed})"
    if xy.shape[1] < 2:
        xy = np.column_stack([xy, np.zeros((n, 2 - xy.shape[1]))])
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    xy = (xy - lo) / np.where(hi > lo, hi - lo, 1.0)
    return {"method": name, "x": np.round(xy[:, 0], 4).tolist(), "y": np.round(xy[:, 1], 4).tolist()}


def _randomized(x: np.ndarray, k: int, seed: int) -> tuple[None, None, np.ndarray]:
    from sklearn.utils.extmath import randomized_svd

    return None, None, randomized_svd(x, k, random_state=seed)[2]

