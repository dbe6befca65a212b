"""Step 3's k-means, bit for bit the authors' scikit-learn ``KMeans``, without its per-call overhead.

The scan runs k-means on a 100 x 2048 array for every neuron of a layer, where the estimator's
validation and configuration cost about a third of the time. ``kmeans_step`` runs KMeans.fit's own
steps with scikit-learn's own (private) kernels once they have reproduced the estimator on a small
case in this process, and the estimator itself otherwise.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from sklearn.cluster import KMeans

from .params import Params


def kmeans_step(x: np.ndarray, n_clusters: int, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """k-means of step 3: each example's cluster and its squared distance to that cluster's centroid.

    The result is, bit for bit, that of the authors' ``KMeans(n_clusters, n_init, max_iter,
    random_state=seed).fit(x)`` followed by ``transform(x) ** 2`` (``tests/test_method.py`` checks
    it against scikit-learn on many cases): ``_sklearn_kmeans`` runs KMeans.fit's own steps with
    scikit-learn's own k-means++ and Lloyd kernels, without the estimator's per-call machinery,
    which cost about a third of the time on the scan's 100 x 2048 arrays.
    """
    kernels = _kernels()
    if kernels is None:  # a scikit-learn whose kernels moved or changed: the estimator itself
        labels, sq = _estimator_kmeans(x, n_clusters, params)
    else:
        labels, sq = _kernel_kmeans(x, n_clusters, params, kernels)
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


def _kernel_kmeans(x: np.ndarray, n_clusters: int, params: Params, k: SimpleNamespace) -> tuple[np.ndarray, np.ndarray]:
    X = _as_kmeans_input(x)
    labels, centers = _sklearn_kmeans(X, n_clusters, params, k)
    # As the authors: squared transform() distances, not inertia terms, so values match theirs to the bit.
    # transform(x) is euclidean_distances(x, centers): its computational part, without re-validation.
    return labels, k.euclidean_distances(X, centers, squared=False) ** 2


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
                ours, theirs = _kernel_kmeans(x, 3, check, _KERNELS), _estimator_kmeans(x, 3, check)
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


def _sklearn_kmeans(x: np.ndarray, n_clusters: int, params: Params, k: SimpleNamespace) -> tuple[np.ndarray, np.ndarray]:
    """(labels, centers) of ``KMeans(n_clusters, n_init, max_iter, random_state=seed).fit(x)`` (lloyd, k-means++).

    The steps of scikit-learn's ``KMeans.fit`` for a dense array without sample weights, in its
    order and with its functions, so the random draws, the arithmetic and the choice of the best
    run are scikit-learn's. What is left out is per-call overhead that cannot change the result
    on the arrays ``cluster_top`` passes (finite, C-contiguous float64 with n_samples >= n_clusters):
    parameter and input validation, feature-name checks, the config context, the MKL/vcomp warning
    check, and the ConvergenceWarning for fewer distinct clusters than asked.
    """
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
    if best_labels is None:  # Params checks n_init >= 1, so a run was made
        raise ValueError(f"n_init={params.n_init}: k-means needs at least one run.")
    best_centers += X_mean
    return best_labels, best_centers
