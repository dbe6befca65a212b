"""The authors' procedure, transcribed loop for loop, to check conceptvec against and to time.

``scripts/neuron_method.py`` of lomahony/sw-interpretability, steps 1-4 for one neuron (figures,
UMAP and files left out), and optionally its projection of every example on every concept vector in
a Python loop. It is deliberately literal (argsort of the whole column, Python loops over examples)
and slow: use :func:`conceptvec.disentangle` and :func:`conceptvec.scan_layer` for work.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.cluster import AgglomerativeClustering, KMeans

__all__ = ["AUTHORS_REMOVED", "PAPER_HISTOGRAM", "authors_procedure"]

# The authors' histogram of concepts per neuron of Inception V3 Mixed_7b (their layer scan, 4,232 concepts)
PAPER_HISTOGRAM = {0: 15, 1: 491, 2: 991, 3: 456, 4: 85, 5: 9, 6: 1}
AUTHORS_REMOVED = 100  # the authors' label for outliers and members of removed clusters (conceptvec's own is core.steps.REMOVED, -1)


def authors_procedure(
    acts: np.ndarray,
    neuron: int,
    top: int = 100,
    distance_threshold: float = 15,
    outlier_threshold: float = 15,
    min_cluster_size: int = 5,
    project_all: bool = False,
) -> dict[str, Any]:
    """Steps 1-4 as the authors ran them, for one neuron.

    Returns
    -------
    dict with ``top_ims`` (top examples, most activating first), ``C`` (clusters of step 2),
    ``labels`` (k-means label of each top example, ``AUTHORS_REMOVED`` when removed), ``concept_vectors``
    (n_concepts, n_units) and, with ``project_all``, ``top_projs``: each concept's ``top`` maximally
    projecting examples from the per-example loop.
    """
    top_ims = acts[:, neuron].argsort()[-top:][::-1]
    top_activations = acts[top_ims, :]
    clusterer = AgglomerativeClustering(n_clusters=None, distance_threshold=distance_threshold, metric="euclidean", linkage="ward")
    clusterer.fit_predict(top_activations)
    kmeans = KMeans(n_clusters=clusterer.n_clusters_, random_state=0, n_init=5, max_iter=1000).fit(top_activations)
    clu_labs = kmeans.labels_
    centroid_dist = kmeans.transform(top_activations) ** 2
    nearest_centroid_dist = [centroid_dist[i, clu_labs[i]] for i in range(len(clu_labs))]
    labels = np.empty(len(clu_labs))
    labels[:] = AUTHORS_REMOVED
    for i in range(len(clu_labs)):
        if nearest_centroid_dist[i] < outlier_threshold:
            labels[i] = clu_labs[i]
    for cluster in range(clusterer.n_clusters_):
        if sum(labels == cluster) < min_cluster_size:
            labels[[labels[i] == cluster for i in range(len(labels))]] = AUTHORS_REMOVED
    concept_vecs = []
    for cluster in np.unique(labels):
        if cluster != AUTHORS_REMOVED:
            mean = top_activations[labels == cluster].mean(0)
            concept_vecs.append(mean / np.linalg.norm(mean))
    result = {
        "top_ims": top_ims,
        "C": int(clusterer.n_clusters_),
        "labels": labels,
        "concept_vectors": np.array(concept_vecs).reshape(-1, acts.shape[1]),
    }
    if project_all:
        dots = np.empty([len(acts), len(concept_vecs)])
        sims = np.empty([len(acts), len(concept_vecs)])
        for i in range(len(acts)):
            for c in range(len(concept_vecs)):
                dots[i, c] = np.dot(acts[i], concept_vecs[c])
                # the authors divide by the norm of example c, not of the concept vector; kept as written
                sims[i, c] = dots[i, c] / (np.linalg.norm(acts[i]) * np.linalg.norm(acts[c]))
        result["top_projs"] = [dots[:, c].argsort()[-top:][::-1] for c in range(len(concept_vecs))]
    return result
