"""k-means++ for many k-means of one array at once, each with the centres scikit-learn's ``_kmeans_plusplus`` gives.

The threshold sweep runs k-means at ~10-30 values of C on each neuron's top examples, 5 restarts each: hundreds of
k-means++ chains on one array X (N x d). Run one at a time (``core.kmeans._plusplus``), each of a chain's C - 1
steps is a handful of small numpy calls, and that per-call overhead was most of the sweep's time. Here all the
chains of an array step together:

- Every random number a chain uses is known before it starts: ``RandomState(seed)``'s doubles in order, one for
  the first centre (``choice``), then ``2 + int(log C)`` per further centre (``uniform``, which is exactly the
  double on [0, 1)), restart after restart. Every k-means starts a new ``RandomState(seed)``, so each C's draws are a
  prefix of one stream, drawn once per seed.
- A step's candidate distances are rows of a table. scikit-learn computes them as ``-2 X[ids] @ X.T + norms``
  with BLAS, whose bits for a row depend on the row's data and on where the row sits in the call (a BLAS kernel
  handles rows in tiles; an odd last row takes another path), never on the other rows. The table holds each
  row computed in each such position (``_CandidateRows``), and a self-check on the array's own shape confirms,
  before any use, that every position of every candidate count in use is served with BLAS's own bits
  (``_layout``); otherwise the chains run one at a time, as before.
- Everything else (cumulative sums, searches, minima, the BLAS product with ones giving each candidate's
  potential, the argmin) is the same operation on the same values per chain, vectorised across chains (the stacked
  product and the row-wise cumulative sum are self-checked against one chain's too).

The result is, centre for centre, ``core.kmeans._plusplus``'s (``tests/core/test_plusplus.py``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["plusplus_chains"]


def n_local_trials(n_clusters: int) -> int:
    """scikit-learn's number of candidates per k-means++ step."""
    return 2 + int(np.log(n_clusters))


def _sq_rows(products: np.ndarray, row_norms: np.ndarray, x_norms: np.ndarray) -> np.ndarray:
    """``core.kmeans._sq_distances``' arithmetic on given products: max(0, -2 p + |a|^2 + |b|^2), in its order."""
    distances = products * -2
    distances += row_norms.reshape(-1, 1)
    distances += x_norms.reshape(1, -1)
    np.maximum(distances, 0.0, out=distances)
    return distances


class _CandidateRows:
    """Squared distances of X's row i to every row of X as BLAS gives them for row i at position j of a call with t
    candidate rows, shape (N, N) per (t, j), made as first needed.

    A row's bits depend on where it sits in the call, and a call whose t rows are all row i gives row i's value at
    every position at once (``positional``). On the common shapes one product ``X @ X.T`` already holds every
    position but an odd call's last (``full``: the kernel's full path; the last row takes another), which is
    checked per shape by ``_layout`` before use.
    """

    def __init__(self, X: np.ndarray, x_norms: np.ndarray, full: bool) -> None:
        self.X, self.x_norms = X, x_norms
        n = len(X)
        self.norms = np.einsum("ij,ij->i", X, X)  # per row, as a call's own einsum of its candidates
        self.full: np.ndarray | None = None
        if full:  # an even number of rows: every row on the kernel's full path (a repeated last row pads an odd N)
            padded = X if n % 2 == 0 else np.concatenate([X, X[-1:]])
            self.full = _sq_rows((padded @ X.T)[:n], self.norms, x_norms)
        # by position: t -> ((N, t, N) rows, (N,) made); with ``full``, one table of odd calls' last rows (any odd t)
        self.by_position: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _table(self, ids: np.ndarray, t: int) -> np.ndarray:
        """The rows of ``ids`` at every position of a t-row call (with ``full``: of an odd call's last), made as needed."""
        n = len(self.X)
        key = 1 if self.full is not None else t
        if key not in self.by_position:
            self.by_position[key] = (np.empty((n, key, n)), np.zeros(n, dtype=bool))
        table, made = self.by_position[key]
        missing = np.unique(ids[~made[ids]])
        if len(missing):
            calls = 3 if self.full is not None else t  # with full: a 3-row call's last row stands for every odd call's
            products = np.stack([(self.X[np.full(calls, i)] @ self.X.T)[calls - key:] for i in missing.tolist()])
            table[missing] = _sq_rows(products.reshape(-1, n), np.repeat(self.norms[missing], key), self.x_norms).reshape(
                len(missing), key, n)
            made[missing] = True
        return table

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Candidate distances for ``ids`` of shape (K, t): (K, t, N), each as the t-row BLAS call would give it."""
        t = ids.shape[1]
        if self.full is None:
            return np.asarray(self._table(ids.ravel(), t)[ids, np.arange(t)])  # np.asarray: numpy's stubs say Any
        out = np.asarray(self.full[ids])
        if t % 2:
            out[:, -1] = self._table(ids[:, -1], t)[ids[:, -1], 0]
        return out

    def direct(self, ids: np.ndarray) -> np.ndarray:
        """The distances as ``core.kmeans._plusplus`` computes them for one step's candidates ``ids`` (t,): (t, N)."""
        candidates = self.X[ids]
        return _sq_rows(candidates @ self.X.T, np.einsum("ij,ij->i", candidates, candidates), self.x_norms)


_LAYOUT: dict[tuple[int, int, tuple[int, ...]], bool | None] = {}


def _layout(n: int, d: int, trials: tuple[int, ...]) -> bool | None:
    """How ``_CandidateRows`` may serve t-candidate steps (every t in ``trials``) on an n x d array with BLAS's own bits:
    True (``full``), False (``positional``), None (neither: run the chains one at a time). Checked once per shape,
    on random data, every position of every call compared with the call itself."""
    key = (n, d, trials)
    if key not in _LAYOUT:
        rng = np.random.default_rng(n * 7919 + d * 31 + len(trials))
        x = rng.normal(size=(n, d))
        x -= x.mean(axis=0)
        x_norms = np.einsum("ij,ij->i", x, x)
        _LAYOUT[key] = None
        # the vectorised steps' other products and sums, chain by chain as one chain's own
        d2 = np.maximum(rng.normal(size=(3, max(trials, default=2), n)), 0.0)
        stacked = d2 @ np.ones((n, 1)), d2[:, 0].cumsum(axis=1)
        if not all(np.array_equal(stacked[0][k], d2[k] @ np.ones((n, 1))) and np.array_equal(stacked[1][k], d2[k, 0].cumsum())
                   for k in range(3)):
            return None
        for full in (True, False):
            table = _CandidateRows(x, x_norms, full)
            checks = [rng.integers(0, n, size=(1, t)) for t in trials for _ in range(6)]
            if all(np.array_equal(table.rows(ids)[0], table.direct(ids[0])) for ids in checks):
                _LAYOUT[key] = full
                break
    return _LAYOUT[key]


_DOUBLES: dict[int, np.ndarray] = {}


def _doubles(seed: int, n: int) -> np.ndarray:
    """The first n doubles of ``RandomState(seed)`` (``random_sample``, which ``choice`` and ``uniform(0, 1)`` return as
    they are), kept per seed: every k-means of every neuron starts from the same stream, and seeding one costs more than
    a neuron's draws."""
    if len(_DOUBLES.get(seed, ())) < n:
        if len(_DOUBLES) > 8:
            _DOUBLES.clear()
        _DOUBLES[seed] = np.random.RandomState(seed).random_sample(max(n, 4096))
        _DOUBLES[seed].flags.writeable = False
    return _DOUBLES[seed][:n]


def plusplus_chains(X: np.ndarray, x_norms: np.ndarray, cluster_counts: list[int], *, n_init: int,
                    seed: int) -> dict[int, list[np.ndarray]] | None:
    """k-means++ centres of every restart of ``KMeans(C, n_init, random_state=seed)`` on X, for each C given.

    Parameters
    ----------
    X : array of shape (N, d)
        float64, C-contiguous, centred as KMeans centres it.
    x_norms : array of shape (N,)
        Squared row norms of X (``row_norms(X, squared=True)``).
    cluster_counts : list of int
        The values of C, each between 1 and N.
    n_init, seed : int
        Restarts, and the seed of the ``RandomState`` every k-means starts from.

    Returns
    -------
    dict C -> list of ``n_init`` arrays of shape (C, d), the initial centres of each restart, the same as
    ``core.kmeans._plusplus`` gives restart after restart from ``RandomState(seed)``; None when the self-check
    finds that BLAS does not give candidate rows by position on this shape (then run the chains one at a time).
    """
    n, d = X.shape
    layout = _layout(n, d, tuple(sorted({n_local_trials(c) for c in cluster_counts if c > 1})))
    if layout is None:
        return None
    table = _CandidateRows(X, x_norms, layout)
    weight = np.ones(n, dtype=X.dtype)
    p = weight / weight.sum()
    cdf = p.cumsum()  # RandomState.choice(n, p=p)'s own steps: the first centre
    cdf /= cdf[-1]
    first: dict[int, np.ndarray] = {}  # C -> (n_init,) ids of the first centres
    draws: dict[int, np.ndarray] = {}  # C -> (n_init, C - 1, t) uniforms of the later steps
    lengths = {c: n_init * (1 + (c - 1) * n_local_trials(c)) for c in cluster_counts}
    doubles = _doubles(seed, max(lengths.values()))
    for c in cluster_counts:
        t = n_local_trials(c)
        stream = doubles[:lengths[c]].reshape(n_init, -1)  # every k-means starts a new RandomState(seed): a prefix
        first[c] = cdf.searchsorted(stream[:, 0], side="right")
        draws[c] = stream[:, 1:].reshape(n_init, c - 1, t)
    ids: dict[int, np.ndarray] = {}
    for t in sorted({n_local_trials(c) for c in cluster_counts}):
        group = [c for c in cluster_counts if n_local_trials(c) == t]
        ids.update(_run_group(X, table, weight, group, first, draws, n_init=n_init, t=t))
    return {c: [X[ids[c][r]] for r in range(n_init)] for c in cluster_counts}


def _run_group(X: np.ndarray, table: _CandidateRows, weight: np.ndarray, group: list[int], first: dict[int, np.ndarray],
               draws: dict[int, np.ndarray], *, n_init: int, t: int) -> dict[int, np.ndarray]:
    """The chains of every C in ``group`` (all with t candidates a step), stepped together: C -> (n_init, C) centre ids."""
    n = len(X)
    sizes = np.repeat(np.asarray(group, dtype=np.int64), n_init)  # chain k is restart k % n_init of C = sizes[k]
    chosen = np.zeros((len(sizes), int(sizes.max())), dtype=np.int64)
    chosen[:, 0] = np.concatenate([first[c] for c in group])
    closest = np.empty((len(sizes), n), dtype=X.dtype)
    pot = np.empty(len(sizes), dtype=X.dtype)
    for i in np.unique(chosen[:, 0]).tolist():  # restarts often share their first centre
        center = np.empty((1, X.shape[1]), dtype=X.dtype)  # as _plusplus: a C-contiguous row holding the centre
        center[0] = X[i]
        row = _sq_rows(center @ X.T, np.einsum("ij,ij->i", center, center), table.x_norms)
        here = chosen[:, 0] == i
        closest[here] = row[0]
        pot[here] = (row @ weight)[0]
    column_weight = weight.reshape(-1, 1)
    uniforms = np.zeros((len(sizes), int(sizes.max()) - 1, t), dtype=X.dtype)
    for j, c in enumerate(group):
        uniforms[j * n_init:(j + 1) * n_init, :c - 1] = draws[c]
    for step in range(1, int(sizes.max())):
        active = np.flatnonzero(sizes > step)
        rand_vals = uniforms[active, step - 1] * pot[active, None]  # (K, t)
        cumulative = closest[active].cumsum(axis=1)  # (K, N): row by row, in order, as each chain's own cumsum
        candidate_ids = np.minimum((cumulative[:, None, :] < rand_vals[:, :, None]).sum(axis=2), n - 1)  # searchsorted
        to_candidates = np.minimum(closest[active, None, :], table.rows(candidate_ids))  # (K, t, N)
        candidates_pot = to_candidates @ column_weight  # (K, t, 1): BLAS per chain, as each chain's own product
        best = candidates_pot[:, :, 0].argmin(axis=1)
        picked = np.arange(len(active))
        pot[active] = candidates_pot[picked, best, 0]
        closest[active] = to_candidates[picked, best]
        chosen[active, step] = candidate_ids[picked, best]
    return {c: chosen[j * n_init:(j + 1) * n_init, :c] for j, c in enumerate(group)}
