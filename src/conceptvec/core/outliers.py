"""The outlier rule of step 3: an example far from its k-means centroid is removed.

A fixed ``outlier_threshold`` removes squared distances ``>=`` it (the paper's code: 15); ``"auto"`` removes
those beyond their cluster's far-out fence. Standalone, so that a stored ConceptSet re-applies it without the method.
"""

from __future__ import annotations

import numpy as np

OUTLIER_FENCE = 3.0  # Tukey's "far out": Q3 + 3 IQR


def outlier_mask(kmeans_labels: np.ndarray, sq_distances: np.ndarray, outlier_threshold: float | str) -> np.ndarray:
    """Examples the outlier rule removes, shape (N,): ``sq >= outlier_threshold``, or beyond the fence with ``"auto"``."""
    sq = np.asarray(sq_distances, dtype=np.float64)
    if isinstance(outlier_threshold, str):  # "auto" (Params checks the value)
        return sq > outlier_fences(kmeans_labels, sq)
    return sq >= outlier_threshold


def outlier_fences(kmeans_labels: np.ndarray, sq_distances: np.ndarray) -> np.ndarray:
    """Per example, its cluster's far-out fence Q3 + OUTLIER_FENCE x IQR of the squared distances, shape (N,)."""
    labels = np.asarray(kmeans_labels)
    sq = np.asarray(sq_distances, dtype=np.float64)
    fences = np.empty(len(sq))
    for cluster in np.unique(labels):
        mine = labels == cluster
        q1, q3 = np.percentile(sq[mine], [25, 75])
        fences[mine] = q3 + OUTLIER_FENCE * (q3 - q1)
    return fences
