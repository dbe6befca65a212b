"""Steps 2-4 of the paper's method on the top examples X of one direction, plain arrays in and out.

Notation: A is the activation matrix, shape (n_examples, n_units), globally average-pooled;
X = A[top_indices] holds the N top activating examples, shape (N, n_units), in float64 as the
authors computed. The four steps follow ``scripts/neuron_method.py`` of lomahony/sw-interpretability:

1. ``top_indices``: the N examples with the largest activation (or projection on a direction),
   most activating first; ties keep ascending example order.
2. ward agglomerative clustering of X (euclidean); C = the number of merges whose height is
   ``>= distance_threshold``, plus one (scikit-learn's ``AgglomerativeClustering`` rule).
3. ``KMeans(C, n_init, max_iter, random_state=seed)`` on X; an example is an outlier when its
   squared distance to its own centroid is ``>= outlier_threshold``; clusters with fewer than
   ``min_cluster_size`` remaining members are removed.
4. each remaining cluster's mean, normalised, is a concept vector; concepts are ordered by
   ascending k-means label.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from scipy.cluster.hierarchy import linkage

from ..errors import ConceptvecError
from .auto import auto_clusters, unit_rows
from .kmeans import kmeans_step
from .outliers import outlier_mask
from .params import Params

REMOVED = -1


class LayerNullShares(Protocol):
    """``core.layernull.LayerNull`` as ``cluster_top`` uses it (that module imports this one)."""

    @property
    def shares(self) -> np.ndarray: ...


def ward_linkage(x: np.ndarray) -> np.ndarray:
    """SciPy linkage matrix (ward, euclidean) of the rows of ``x``: shape (N - 1, 4), heights in column 2."""
    return np.asarray(linkage(np.asarray(x, dtype=np.float64), method="ward", metric="euclidean"))  # SciPy: untyped


def n_clusters_at(linkage_matrix: np.ndarray, distance_threshold: float) -> int:
    """Number of clusters when merges at heights ``>= distance_threshold`` are not made (step 2)."""
    return int(np.count_nonzero(linkage_matrix[:, 2] >= distance_threshold)) + 1


def remove_outliers(
    kmeans_labels: np.ndarray, sq_distances: np.ndarray, outlier_threshold: float | str, min_cluster_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Concept index of every example (-1 when removed) and the k-means label each concept came from.

    Outliers (``sq_distance >= outlier_threshold``, or beyond their cluster's fence with ``"auto"``,
    see ``Params.outliers``) go first, then clusters left with fewer than ``min_cluster_size``
    members; kept clusters are numbered by ascending k-means label.
    """
    kept = np.where(~outlier_mask(kmeans_labels, sq_distances, outlier_threshold), kmeans_labels, REMOVED)
    clusters, counts = np.unique(kept[kept != REMOVED], return_counts=True)
    kept_clusters = clusters[counts >= min_cluster_size]
    labels = np.full(len(kmeans_labels), REMOVED, dtype=np.int64)
    for concept, cluster in enumerate(kept_clusters):
        labels[kept == cluster] = concept
    return labels, kept_clusters.astype(np.int64)


def concept_means(x: np.ndarray, labels: np.ndarray, n_concepts: int) -> np.ndarray:
    """Step 4: each concept's normalised mean of its members' activations, shape (n_concepts, n_units)."""
    vectors = np.empty((n_concepts, x.shape[1]), dtype=np.float64)
    for j in range(n_concepts):
        mean = x[labels == j].mean(axis=0)
        norm = np.linalg.norm(mean)
        if norm == 0:
            raise ConceptvecError(f"concept {j}: its members' mean activation is the zero vector, which has no direction.")
        vectors[j] = mean / norm
    return vectors


def cluster_top(x: np.ndarray, params: Params, *, n_clusters: int | None = None,
                features: np.ndarray | None = None, layer_null: LayerNullShares | None = None) -> dict[str, Any]:
    """Steps 2-4 on X, the top examples' activations (float64, shape (N, n_units)).

    Shared by ``disentangle`` and ``scan_layer``, so a scanned neuron goes through the same code.
    Returns the ConceptSet fields ``linkage``, ``n_agglomerative``, ``kmeans_labels``,
    ``centroid_sq_distances``, ``labels``, ``kmeans_cluster_ids`` and ``concept_vectors``, and
    ``split_tests`` (``core.auto.auto_clusters``; None with a fixed threshold).

    With ``distance_threshold="auto"`` steps 2 and 3 run on the examples scaled to unit length (the
    linkage and squared distances are of those); concept vectors are still their members' mean activations.
    ``n_clusters`` gives C instead of step 2's rule (a split withdrawn by ``Params.fdr``: 1); ``split_tests`` is then [].
    ``features`` (N, d), when given, are what steps 2-3 cluster instead of X (``Params.representation``, e.g. the
    attributions at the layer below); the concept vectors are still the members' mean rows of X.
    ``layer_null`` (``core.layernull.LayerNull``) is what the first split is tested against with ``Params(null="layer")``.
    """
    source = x if features is None else np.asarray(features, dtype=np.float64)
    if len(source) != len(x):
        raise ConceptvecError(f"features has {len(source)} rows for {len(x)} top examples; give one row per top example.")
    clustered = unit_rows(source) if params.auto_distance else source
    z = ward_linkage(clustered)
    split_tests: list[dict[str, Any]] | None = None
    if n_clusters is not None:
        n_agglomerative, split_tests = int(n_clusters), []
    elif params.auto_distance:
        if (params.null == "layer") != (layer_null is not None):
            raise ConceptvecError("Params(null='layer') and layer_null= go together: draw the null with cv.layer_null(acts, "
                                  "params=params) and pass it, or leave null at 'gaussian'.")
        n_agglomerative, split_tests = auto_clusters(
            clustered, z, significance=params.significance, min_cluster_size=params.min_cluster_size, seed=params.seed,
            first_null=None if layer_null is None else layer_null.shares)
    else:
        n_agglomerative = n_clusters_at(z, params.fixed_distance)
    kmeans_labels, sq = kmeans_step(clustered, n_agglomerative, params)
    labels, cluster_ids = remove_outliers(kmeans_labels, sq, params.outlier_rule, params.min_cluster_size)
    vectors = concept_means(x, labels, len(cluster_ids))
    return {
        "linkage": z,
        "n_agglomerative": n_agglomerative,
        "kmeans_labels": kmeans_labels,
        "centroid_sq_distances": sq,
        "labels": labels,
        "kmeans_cluster_ids": cluster_ids,
        "concept_vectors": vectors,
        "split_tests": split_tests,
    }


