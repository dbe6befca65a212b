"""Step 3's k-means, bit for bit the authors' scikit-learn ``KMeans``, without its per-call overhead.

The scan runs k-means on a 100 x 2048 array for every neuron of a layer, where the estimator's
validation and configuration cost about a third of the time. ``kmeans_step`` runs KMeans.fit's own
steps with scikit-learn's own (private) kernels once they have reproduced the estimator on a small
case in this process, and the estimator itself otherwise.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace
from collections.abc import Iterable
from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from .params import Params
from .plusplus import plusplus_chains


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


def kmeans_steps(x: np.ndarray, cluster_counts: list[int], params: Params) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """:func:`kmeans_step` at each C of ``cluster_counts`` on the same x (the threshold sweep's work per neuron): C ->
    (labels, squared distances), each exactly what ``kmeans_step(x, C, params)`` gives.

    The shared work is done once (validation, centring, norms), and the k-means++ of every restart of every C runs
    as one batch (``core.plusplus``), with the same draws and the same arithmetic as one chain at a time.
    """
    kernels = _kernels()
    X = _as_kmeans_input(x)
    counts = sorted({int(c) for c in cluster_counts})
    if kernels is None or X.dtype != np.float64 or not counts or counts[-1] > X.shape[0]:
        return {c: kmeans_step(x, c, params) for c in counts}  # the estimator, float32's chunked distances, or its error
    Xc, x_mean, xc_norms, tol = _centred(X, kernels)
    with kernels.blas_limit():  # as _sklearn_kmeans: one BLAS thread for the products, whose bits depend on it
        inits = plusplus_chains(Xc, xc_norms, counts, n_init=params.n_init, seed=params.seed)
    if inits is None:  # BLAS's rows are not served by position on this shape: one chain at a time
        return {c: kmeans_step(x, c, params) for c in counts}
    x_norms = kernels.row_norms(X, squared=True)
    out = {}
    for c in counts:
        # One cluster: every restart ends at the same mean (all labels 0, the same sum in the same order) with the same
        # inertia, and KMeans keeps the first of equal ones, so the first restart is the answer, bit for bit.
        labels, centers = _lloyd_restarts(Xc, x_mean, tol, inits[c][:1] if c == 1 else inits[c], params, kernels)
        sq = np.sqrt(_sq_distances(X, x_norms, centers)) ** 2  # as _kernel_kmeans: transform(x) ** 2
        kmeans_labels = labels.astype(np.int64)
        out[c] = kmeans_labels, sq[np.arange(len(kmeans_labels)), kmeans_labels]
    return out


def _load_kernels() -> SimpleNamespace | None:
    """scikit-learn's k-means building blocks (private names; tests check kmeans_step against KMeans itself)."""
    try:
        from sklearn.cluster._k_means_common import _is_same_clustering
        from sklearn.cluster._kmeans import _kmeans_plusplus, _kmeans_single_lloyd, _tolerance
        from sklearn.metrics.pairwise import _euclidean_distances
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
        from sklearn.utils.extmath import row_norms
        from sklearn.utils.parallel import _get_threadpool_controller
    except ImportError:  # pragma: no cover - scikit-learn moved them: kmeans_step uses the public KMeans
        return None
    # _kmeans_single_lloyd limits BLAS to one thread around each call (threadpoolctl, about 70 us a call: a fifth of a
    # restart on 100 rows); the undecorated function runs inside one such limit for all of a k-means' restarts instead.
    lloyd = getattr(_kmeans_single_lloyd, "__wrapped__", None)
    limited = lloyd is not None

    def blas_limit() -> Any:
        if not limited:  # pragma: no cover - the decorator changed: scikit-learn's own limit around each restart
            return contextlib.nullcontext()
        return _get_threadpool_controller().limit(limits=1, user_api="blas")

    if lloyd is None:  # pragma: no cover
        lloyd = _kmeans_single_lloyd
    return SimpleNamespace(tolerance=_tolerance, kmeans_plusplus=_kmeans_plusplus, single_lloyd=lloyd, blas_limit=blas_limit,
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
    if X.dtype == np.float64:
        return labels, np.sqrt(_sq_distances(X, k.row_norms(X, squared=True), centers)) ** 2
    return labels, k.euclidean_distances(X, centers, squared=False) ** 2


def _sq_distances(centers: np.ndarray, center_norms: np.ndarray, x: np.ndarray, x_norms: np.ndarray | None = None) -> np.ndarray:
    """scikit-learn's ``_euclidean_distances(centers, x, squared=True)`` for float64 arrays, in its order of operations
    (-2 a.b + |a|^2 + |b|^2, clipped at 0), so the bits are its bits; without its per-call array-API dispatch, which
    was most of the sweep's k-means time (about 10 calls per cluster per restart on 100 rows)."""
    distances = centers @ x.T
    distances *= -2  # -2 * (a @ b) in place: the same products
    distances += center_norms.reshape(-1, 1)
    distances += (np.einsum("ij,ij->i", x, x) if x_norms is None else x_norms).reshape(1, -1)
    np.maximum(distances, 0.0, out=distances)
    return np.asarray(distances)  # np.asarray: numpy's stubs type the product as Any


def _plusplus(X: np.ndarray, n_clusters: int, x_squared_norms: np.ndarray, random_state: np.random.RandomState) -> np.ndarray:
    """scikit-learn's ``_kmeans_plusplus`` (1.x) for a dense float64 ``X`` and unit sample weights: the same random
    draws, in the same order, and the same arithmetic, so the same initial centres to the bit
    (``tests/core/test_kmeans.py`` compares them on many cases, and ``_kernels``' self-check compares the whole
    k-means with the estimator before it is used)."""
    n_samples = X.shape[0]
    centers = np.empty((n_clusters, X.shape[1]), dtype=X.dtype)
    n_local_trials = 2 + int(np.log(n_clusters))
    weight = np.ones(n_samples, dtype=X.dtype)
    center_id = random_state.choice(n_samples, p=weight / weight.sum())
    centers[0] = X[center_id]
    closest_dist_sq = _sq_distances(centers[0, np.newaxis], np.einsum("ij,ij->i", centers[:1], centers[:1]), X,
                                    x_squared_norms)
    current_pot = closest_dist_sq @ weight  # a BLAS product with ones, as scikit-learn's, whose bits a sum need not give
    column_weight = weight.reshape(-1, 1)
    for c in range(1, n_clusters):
        rand_vals = random_state.uniform(size=n_local_trials) * current_pot
        # scikit-learn's cumsum(weight * closest_dist_sq): with unit weights the product is the distances, exactly
        # (array methods rather than numpy's functions: the same operations without a wrapper call each)
        candidate_ids = closest_dist_sq.ravel().cumsum().searchsorted(rand_vals)
        np.minimum(candidate_ids, n_samples - 1, out=candidate_ids)  # as scikit-learn's clip: rounding can overshoot
        candidates = X[candidate_ids]
        distance_to_candidates = _sq_distances(candidates, np.einsum("ij,ij->i", candidates, candidates), X, x_squared_norms)
        np.minimum(closest_dist_sq, distance_to_candidates, out=distance_to_candidates)
        candidates_pot = distance_to_candidates @ column_weight
        best = int(candidates_pot.argmin())
        current_pot = candidates_pot[best]
        closest_dist_sq = distance_to_candidates[best]
        centers[c] = X[candidate_ids[best]]
    return centers


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
    if _as_kmeans_input(x).shape[0] < n_clusters:
        raise ValueError(f"n_samples={x.shape[0]} should be >= n_clusters={n_clusters}.")
    X, X_mean, x_squared_norms, tol = _centred(_as_kmeans_input(x), k)
    random_state = np.random.RandomState(params.seed)  # check_random_state(int)
    if X.dtype == np.float64:
        inits: Any = (_plusplus(X, n_clusters, x_squared_norms, random_state) for _ in range(params.n_init))
    else:  # float32: scikit-learn's distances upcast in chunks, which _plusplus does not repeat
        weight = np.ones(X.shape[0], dtype=X.dtype)
        inits = (k.kmeans_plusplus(X, n_clusters, random_state=random_state, x_squared_norms=x_squared_norms,
                                   sample_weight=weight)[0] for _ in range(params.n_init))
    return _lloyd_restarts(X, X_mean, tol, inits, params, k)


def _centred(X: np.ndarray, k: SimpleNamespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """KMeans.fit's preparation: (its centred copy of X, X's mean, the copy's squared row norms, the tolerance)."""
    X = X.copy()  # validate_data(copy=True): KMeans centres its own copy
    tol = k.tolerance(X, 1e-4)  # KMeans(tol=1e-4): 1e-4 * mean(var(X, axis=0)), on X before centring
    X_mean = X.mean(axis=0)
    X -= X_mean
    return X, X_mean, k.row_norms(X, squared=True), tol


def _lloyd_restarts(X: np.ndarray, X_mean: np.ndarray, tol: float, inits: Iterable[np.ndarray], params: Params,
                    k: SimpleNamespace) -> tuple[np.ndarray, np.ndarray]:
    """KMeans.fit's restarts from the given initial centres (one per restart, made as the loop asks, in order: the
    k-means++ of a restart draws after the previous restart's), and its choice of the best: (labels, centres)."""
    sample_weight = np.ones(X.shape[0], dtype=X.dtype)  # _check_sample_weight(None, X)
    n_threads = k.effective_n_threads()
    best_labels = best_centers = best_inertia = None
    with k.blas_limit():
        for centers_init in inits:
            labels, inertia, centers, _ = k.single_lloyd(X, sample_weight, centers_init, max_iter=params.max_iter,
                                                         tol=tol, n_threads=n_threads)
            if best_inertia is None or (inertia < best_inertia
                                        and not k.is_same_clustering(labels, best_labels, len(centers))):
                best_labels, best_centers, best_inertia = labels, centers, inertia
    if best_labels is None:  # Params checks n_init >= 1, so a run was made
        raise ValueError(f"n_init={params.n_init}: k-means needs at least one run.")
    best_centers += X_mean
    return best_labels, best_centers
