"""The paper's method on one direction (a neuron, an SVD direction, any vector).

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

import numbers
from types import SimpleNamespace
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import linkage
from sklearn.cluster import KMeans

from ._io import environment
from .conceptset import ConceptSet
from .errors import ConceptvecError
from .metrics import project, top_k_desc, unit_vectors
from .params import Params
from .store import ActivationStore

REMOVED = -1


def ward_linkage(x: np.ndarray) -> np.ndarray:
    """SciPy linkage matrix (ward, euclidean) of the rows of ``x``: shape (N - 1, 4), heights in column 2."""
    return linkage(np.asarray(x, dtype=np.float64), method="ward", metric="euclidean")


def n_clusters_at(linkage_matrix: np.ndarray, distance_threshold: float) -> int:
    """Number of clusters when merges at heights ``>= distance_threshold`` are not made (step 2)."""
    return int(np.count_nonzero(linkage_matrix[:, 2] >= distance_threshold)) + 1


def kmeans_step(x: np.ndarray, n_clusters: int, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """k-means of step 3: each example's cluster and its squared distance to that cluster's centroid.

    The result is, bit for bit, that of the authors' ``KMeans(n_clusters, n_init, max_iter,
    random_state=seed).fit(x)`` followed by ``transform(x) ** 2`` (``tests/test_method.py`` checks
    it against scikit-learn on many cases): ``_sklearn_kmeans`` runs KMeans.fit's own steps with
    scikit-learn's own k-means++ and Lloyd kernels, without the estimator's per-call machinery,
    which cost about a third of the time on the scan's 100 x 2048 arrays.
    """
    if _kernels() is None:  # a scikit-learn whose kernels moved or changed: the estimator itself
        labels, sq = _estimator_kmeans(x, n_clusters, params)
    else:
        labels, sq = _kernel_kmeans(x, n_clusters, params)
    kmeans_labels = labels.astype(np.int64)
    return kmeans_labels, sq[np.arange(len(kmeans_labels)), kmeans_labels]


def _load_kernels() -> SimpleNamespace | None:
    """scikit-learn's k-means building blocks (private names; tests check kmeans_step against KMeans itself)."""
    try:
        from sklearn.cluster._k_means_common import _is_same_clustering
        from sklearn.cluster._kmeans import _kmeans_plusplus, _kmeans_single_lloyd, _tolerance
        from sklearn.metrics.pairwise import _euclidean_distances
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
        from sklearn.utils.extmath import row_norms
    except ImportError:  # pragma: no cover - scikit-learn moved them: kmeans_step uses the public KMeans
        return None
    return SimpleNamespace(tolerance=_tolerance, kmeans_plusplus=_kmeans_plusplus, single_lloyd=_kmeans_single_lloyd,
                           is_same_clustering=_is_same_clustering, row_norms=row_norms,
                           euclidean_distances=_euclidean_distances, effective_n_threads=_openmp_effective_n_threads)


def _estimator_kmeans(x: np.ndarray, n_clusters: int, params: Params) -> tuple[np.ndarray, np.ndarray]:
    km = KMeans(n_clusters=n_clusters, n_init=params.n_init, max_iter=params.max_iter, random_state=params.seed)
    km.fit(x)
    return km.labels_, km.transform(x) ** 2


def _kernel_kmeans(x: np.ndarray, n_clusters: int, params: Params) -> tuple[np.ndarray, np.ndarray]:
    X = _as_kmeans_input(x)
    labels, centers = _sklearn_kmeans(X, n_clusters, params)
    # As the authors: squared transform() distances, not inertia terms, so values match theirs to the bit.
    # transform(x) is euclidean_distances(x, centers): its computational part, without re-validation.
    return labels, _KERNELS.euclidean_distances(X, centers, squared=False) ** 2


_KERNELS: SimpleNamespace | None = None
_KERNELS_CHECKED = False


def _kernels() -> SimpleNamespace | None:
    """The kernels, once they have given KMeans' own result on a small case in this process; else None.

    Private names can change signature or behaviour in any scikit-learn release; a failed or
    different self-check makes ``kmeans_step`` fall back to the estimator (slower, the same result).
    """
    global _KERNELS, _KERNELS_CHECKED
    if not _KERNELS_CHECKED:
        _KERNELS_CHECKED = True
        _KERNELS = _load_kernels()
        if _KERNELS is not None:
            x = np.random.default_rng(0).normal(size=(30, 4)) + np.repeat(np.eye(4)[:3] * 6, 10, axis=0)
            check = Params(top=30, seed=3)
            try:
                ours, theirs = _kernel_kmeans(x, 3, check), _estimator_kmeans(x, 3, check)
                same = np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1])
            except Exception:  # noqa: BLE001 - any failure of private names means: do not use them
                same = False
            if not same:
                _KERNELS = None
    return _KERNELS


def _as_kmeans_input(x: np.ndarray) -> np.ndarray:
    """x as KMeans' validation passes it on (C-ordered; float32 kept, anything else float64), without a copy when it already is."""
    x = np.asarray(x)
    return np.asarray(x, dtype=np.float32 if x.dtype == np.float32 else np.float64, order="C")


def _sklearn_kmeans(x: np.ndarray, n_clusters: int, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """(labels, centers) of ``KMeans(n_clusters, n_init, max_iter, random_state=seed).fit(x)`` (lloyd, k-means++).

    The steps of scikit-learn's ``KMeans.fit`` for a dense array without sample weights, in its
    order and with its functions, so the random draws, the arithmetic and the choice of the best
    run are scikit-learn's. What is left out is per-call overhead that cannot change the result
    on the arrays ``cluster_top`` passes (finite, C-contiguous float64 with n_samples >= n_clusters):
    parameter and input validation, feature-name checks, the config context, the MKL/vcomp warning
    check, and the ConvergenceWarning for fewer distinct clusters than asked.
    """
    k = _KERNELS
    X = _as_kmeans_input(x).copy()  # validate_data(copy=True): KMeans centres its own copy
    if X.shape[0] < n_clusters:
        raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={n_clusters}.")
    tol = k.tolerance(X, 1e-4)  # KMeans(tol=1e-4): 1e-4 * mean(var(X, axis=0)), on X before centring
    random_state = np.random.RandomState(params.seed)  # check_random_state(int)
    sample_weight = np.ones(X.shape[0], dtype=X.dtype)  # _check_sample_weight(None, X)
    n_threads = k.effective_n_threads()
    X_mean = X.mean(axis=0)
    X -= X_mean
    x_squared_norms = k.row_norms(X, squared=True)
    best_labels = best_centers = best_inertia = None
    for _ in range(params.n_init):
        centers_init, _ = k.kmeans_plusplus(X, n_clusters, random_state=random_state, x_squared_norms=x_squared_norms,
                                            sample_weight=sample_weight)
        labels, inertia, centers, _ = k.single_lloyd(X, sample_weight, centers_init, max_iter=params.max_iter,
                                                     tol=tol, n_threads=n_threads)
        if best_inertia is None or (inertia < best_inertia and not k.is_same_clustering(labels, best_labels, n_clusters)):
            best_labels, best_centers, best_inertia = labels, centers, inertia
    best_centers += X_mean
    return best_labels, best_centers


def remove_outliers(
    kmeans_labels: np.ndarray, sq_distances: np.ndarray, outlier_threshold: float, min_cluster_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Concept index of every example (-1 when removed) and the k-means label each concept came from.

    Outliers (``sq_distance >= outlier_threshold``) go first, then clusters left with fewer than
    ``min_cluster_size`` members; kept clusters are numbered by ascending k-means label.
    """
    kept = np.where(sq_distances < outlier_threshold, kmeans_labels, REMOVED)
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


def cluster_top(x: np.ndarray, params: Params) -> dict[str, Any]:
    """Steps 2-4 on X, the top examples' activations (float64, shape (N, n_units)).

    Shared by ``disentangle`` and ``scan_layer``, so a scanned neuron goes through the same code.
    Returns the ConceptSet fields ``linkage``, ``n_agglomerative``, ``kmeans_labels``,
    ``centroid_sq_distances``, ``labels``, ``kmeans_cluster_ids`` and ``concept_vectors``.
    """
    z = ward_linkage(x)
    n_agglomerative = n_clusters_at(z, params.distance_threshold)
    kmeans_labels, sq = kmeans_step(x, n_agglomerative, params)
    labels, cluster_ids = remove_outliers(kmeans_labels, sq, params.outlier_threshold, params.min_cluster_size)
    vectors = concept_means(x, labels, len(cluster_ids))
    return {
        "linkage": z,
        "n_agglomerative": n_agglomerative,
        "kmeans_labels": kmeans_labels,
        "centroid_sq_distances": sq,
        "labels": labels,
        "kmeans_cluster_ids": cluster_ids,
        "concept_vectors": vectors,
    }


def disentangle(
    acts: np.ndarray | ActivationStore,
    neuron: int | None = None,
    direction: np.ndarray | None = None,
    params: Params | None = None,
) -> ConceptSet:
    """Split a neuron (or any direction) into concept vectors with the paper's method.

    Parameters
    ----------
    acts : array of shape (n_examples, n_units), or an ActivationStore
        Pooled activations of one layer.
    neuron : int, optional
        The unit whose top activating examples are clustered.
    direction : array of shape (n_units,), optional
        Instead of a neuron: examples are ranked by their projection on this vector.
    params : Params, optional
        Defaults to the paper's ``Params()``.
    """
    params = params or Params()
    if not isinstance(params, Params):
        raise ConceptvecError(f"params must be a conceptvec.Params, got {type(params).__name__}.")
    matrix, source = _as_matrix(acts)
    n_examples, n_units = matrix.shape

    if (neuron is None) == (direction is None):
        raise ConceptvecError("give exactly one of neuron= (a unit index) or direction= (a vector of length n_units).")
    if neuron is not None:
        neuron = _check_neuron(neuron, n_units)
        scores = np.asarray(matrix[:, neuron], dtype=np.float64)
        what = f"neuron {neuron}"
        unit_direction = None
    else:
        d = np.asarray(direction, dtype=np.float64)
        if d.ndim != 1 or d.shape[0] != n_units:
            raise ConceptvecError(f"direction must be a vector of length {n_units} (one value per unit), got shape {d.shape}.")
        if not np.all(np.isfinite(d)):
            raise ConceptvecError("direction contains NaN or inf values; give a finite vector.")
        unit_direction = unit_vectors(d)[0]
        scores = project(matrix, unit_direction)[:, 0]
        what = "the direction"

    if params.top > n_examples:
        raise ConceptvecError(
            f"top={params.top} is larger than the number of examples ({n_examples}); use top <= {n_examples} "
            f"(e.g. Params(top={min(100, n_examples)}))."
        )
    _check_finite(scores, f"the activations along {what}")
    top_indices = top_k_desc(scores, params.top).astype(np.int64)
    order = np.argsort(top_indices)  # read memory-mapped rows in file order
    x = np.empty((params.top, n_units), dtype=np.float64)
    x[order] = matrix[top_indices[order]]
    _check_finite(x, "the top examples' activations", rows=top_indices)

    return ConceptSet(
        top_indices=top_indices,
        top_scores=scores[top_indices],
        top_activations=x,
        **cluster_top(x, params),
        params=params,
        neuron=neuron,
        direction=unit_direction,
        provenance={"activations": source, "n_examples": n_examples, "n_units": n_units, **environment()},
    )


def _as_matrix(acts: Any) -> tuple[np.ndarray, dict[str, Any]]:
    if isinstance(acts, ActivationStore):
        return acts.activations, acts.provenance()
    if not hasattr(acts, "shape") or not hasattr(acts, "dtype"):
        acts = np.asarray(acts)
    if acts.ndim != 2:
        raise ConceptvecError(
            f"activations must be a 2-D array (n_examples, n_units), got {acts.ndim}-D shape {tuple(acts.shape)}. "
            f"Pool spatial maps first (mean over H, W) or reshape a single vector with x[None, :]."
        )
    if 0 in acts.shape:
        raise ConceptvecError(f"activations are empty (shape {tuple(acts.shape)}); give at least one example and one unit.")
    if not (np.issubdtype(acts.dtype, np.floating) or np.issubdtype(acts.dtype, np.integer)):
        raise ConceptvecError(f"activations must be numbers, got dtype {acts.dtype}.")
    return acts, {"activations": "array", "dtype": str(acts.dtype)}


def _check_neuron(neuron: Any, n_units: int) -> int:
    if isinstance(neuron, bool) or not isinstance(neuron, numbers.Integral):
        raise ConceptvecError(f"neuron must be a whole number from 0 to {n_units - 1}, got {neuron!r}.")
    if not 0 <= neuron < n_units:
        raise ConceptvecError(f"neuron {neuron} is out of range: this layer has {n_units} units, so neuron must be 0 to {n_units - 1}.")
    return int(neuron)


def _check_finite(values: np.ndarray, what: str, rows: np.ndarray | None = None) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        bad_rows = np.flatnonzero(bad.any(axis=1) if bad.ndim == 2 else bad)
        examples = (rows[bad_rows] if rows is not None else bad_rows).tolist()
        shown = ", ".join(map(str, examples[:10])) + (" ..." if len(examples) > 10 else "")
        raise ConceptvecError(
            f"{what} contain {int(bad.sum())} NaN or inf value(s), in {len(examples)} example(s): {shown}. "
            f"Remove or repair these examples before disentangling."
        )
