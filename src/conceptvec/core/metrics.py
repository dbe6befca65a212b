"""Numbers that evaluate concept vectors: projections, cosine similarities, distances.

Notation: A is the activation matrix of shape (n_examples, n_units); V holds k direction vectors
of shape (k, n_units). Everything here takes NumPy arrays (memory-mapped ones included) and
streams over rows, so a store larger than RAM is fine.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.spatial.distance import pdist, squareform

from ..errors import ConceptvecError
from .arrays import as_matrix, check_directions
from .streaming import TopK, check_block_finite, row_blocks, top_k_desc  # noqa: F401 - top_k_desc is also metrics' public name

__all__ = ["concept_counts", "cosine_similarity", "distance_matrix", "intra_inter_distances", "layer_mean", "maximally_projecting",
           "member_cosines", "most_similar", "project", "top_k_desc", "unit_vectors", "unsplit_direction"]


def unit_vectors(vectors: np.ndarray) -> np.ndarray:
    """Rows of ``vectors`` scaled to unit euclidean norm (float64); a zero row is an error."""
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    with np.errstate(over="ignore"):  # an overflowing norm is handled below, not a warning
        norms = np.linalg.norm(v, axis=1)
    over = ~np.isfinite(norms) & np.isfinite(v).all(axis=1)
    if over.any():  # a direction of 1e200s is a direction: its norm overflows, so it is scaled by its largest entry first
        v = v.copy()
        v[over] /= np.max(np.abs(v[over]), axis=1, keepdims=True)
        norms[over] = np.linalg.norm(v[over], axis=1)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        bad = np.flatnonzero((norms == 0) | ~np.isfinite(norms)).tolist()
        raise ConceptvecError(f"direction vector(s) {bad} have zero or non-finite norm; give non-zero, finite vectors.")
    return np.asarray(v / norms[:, None])  # np.asarray: numpy's stubs type this as Any


def project(acts: np.ndarray, vectors: np.ndarray, *, chunk_rows: int | None = None) -> np.ndarray:
    """Projections A @ V.T of every example on each (normalised) vector, shape (n_examples, k), float64.

    Rows are read in blocks (``chunk_rows``, default :func:`~conceptvec.core.streaming.block_rows`), so a
    float16 memory-mapped store is never upcast whole.
    """
    v = unit_vectors(vectors)
    if v.shape[1] != acts.shape[1]:
        raise ConceptvecError(f"vectors have {v.shape[1]} components but the activations have {acts.shape[1]} units.")
    out = np.empty((acts.shape[0], v.shape[0]), dtype=np.float64)
    for start, block in row_blocks(acts, rows=chunk_rows):
        out[start : start + len(block)] = block @ v.T
    return out


def cosine_similarity(acts: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``acts`` with each vector, shape (n_rows, k); 0 for a zero row."""
    a = np.asarray(acts, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1)
    proj = a @ unit_vectors(vectors).T
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = proj / norms[:, None]
    cos[norms == 0] = 0.0
    return np.asarray(cos)  # np.asarray: numpy's stubs type this as Any


def layer_mean(acts: np.ndarray, *, chunk_rows: int | None = None) -> np.ndarray:
    """The layer's mean activation, shape (n_units,), float64, in one streamed pass over A.

    On an all-positive (post-ReLU) layer every example, and so every concept vector, lies near this
    direction: cosines with any direction near it are high whatever the concept. ``centre=`` of the
    rankings below subtracts it, so that a ranking compares examples by how they differ from the layer.
    """
    total = np.zeros(acts.shape[1], dtype=np.float64)
    for start, block in row_blocks(acts, rows=chunk_rows):
        check_block_finite(block, start)
        total += block.sum(axis=0)
    return np.asarray(total / acts.shape[0])  # np.asarray: numpy's stubs type this as Any


def unsplit_direction(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The neuron's unsplit direction: the normalised mean of its kept top examples, what C = 1 would give.

    The baseline a concept vector must beat: a concept that describes its members better than the
    neuron does may still describe them no better than the mean of all of the neuron's examples.

    Parameters
    ----------
    x : array of shape (N, n_units), the top examples' activations
    labels : array of shape (N,), concept of each example, -1 when removed

    Returns
    -------
    array of shape (n_units,), unit norm
    """
    kept = np.asarray(x, dtype=np.float64)[np.asarray(labels) >= 0]
    if len(kept) == 0:
        raise ConceptvecError("no top example was kept (every label is -1), so there is no unsplit direction; lower "
                              "min_cluster_size or raise outlier_threshold.")
    return np.asarray(unit_vectors(kept.mean(axis=0))[0])  # np.asarray: numpy's stubs type this as Any


def member_cosines(x: np.ndarray, labels: np.ndarray, vectors: np.ndarray, *, centre: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per concept, its members' mean cosine with their concept vector, with the unsplit direction and with the
    nearest other concept of the neuron (the other concept vector most cosine-similar to its own; NaN when alone).

    ``centre`` (n_units,), e.g. :func:`layer_mean`, is subtracted from the members' activations first.

    Parameters
    ----------
    x : array of shape (N, n_units); labels : array of shape (N,); vectors : array of shape (k, n_units)

    Returns
    -------
    dict of arrays of shape (k,): ``members``, ``concept``, ``unsplit``, ``nearest_other`` (cosines) and
    ``nearest_other_index`` (-1 when alone)
    """
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    k = len(vectors)
    out = {"members": np.zeros(k, dtype=np.int64), "concept": np.full(k, np.nan), "unsplit": np.full(k, np.nan),
           "nearest_other": np.full(k, np.nan), "nearest_other_index": np.full(k, -1, dtype=np.int64)}
    if k == 0:
        return out
    v = unit_vectors(vectors)
    similar = v @ v.T
    np.fill_diagonal(similar, -np.inf)
    rows = x - centre if centre is not None else x
    cos = cosine_similarity(rows, np.vstack([v, unsplit_direction(x, labels)]))
    for j in range(k):
        mine = labels == j
        out["members"][j] = int(mine.sum())
        out["concept"][j] = cos[mine, j].mean()
        out["unsplit"][j] = cos[mine, k].mean()
        if k > 1:
            other = int(np.argmax(similar[j]))
            out["nearest_other_index"][j] = other
            out["nearest_other"][j] = cos[mine, other].mean()
    return out


def maximally_projecting(acts: np.ndarray, vectors: np.ndarray, *, top: int = 100, chunk_rows: int | None = None,
                         centre: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``top`` examples with the largest projection on each vector, streamed over A in chunks.

    ``centre`` (n_units,), e.g. :func:`layer_mean`, is subtracted from every example first: the
    ranking is the same (a shift per vector), the values are projections of the difference from it.

    Returns
    -------
    indices : array of shape (k, top), most projecting first (ties: lower example index first)
    projections : array of shape (k, top), the projections on the normalised vectors
    """
    acts, _ = as_matrix(acts)
    v = _checked_vectors(acts, vectors)
    shift = _checked_centre(acts, centre)
    return _stream_top(acts, lambda block: (block - shift) @ v.T, len(v), top, chunk_rows)


def most_similar(acts: np.ndarray, vectors: np.ndarray, *, top: int = 100, chunk_rows: int | None = None,
                 centre: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``top`` examples with the largest cosine similarity to each vector, streamed over A in chunks.

    Where activations share a large common component (all-positive post-ReLU layers), ranking by
    projection favours examples of large norm whatever their direction; cosine ranks by direction only.
    With ``centre`` (n_units,), e.g. :func:`layer_mean`, it is the cosine of each example's difference
    from the centre (the *centred* ranking): an example near the layer's mean no longer scores high on
    every vector near the mean direction.

    Returns
    -------
    indices : array of shape (k, top), most similar first (ties: lower example index first)
    similarities : array of shape (k, top); 0 for an all-zero example
    """
    acts, _ = as_matrix(acts)
    v = _checked_vectors(acts, vectors)
    shift = _checked_centre(acts, centre)

    def cosine(block: np.ndarray) -> np.ndarray:
        block = block - shift
        norms = np.linalg.norm(block, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(norms[:, None] > 0, (block @ v.T) / norms[:, None], 0.0)

    return _stream_top(acts, cosine, len(v), top, chunk_rows)


def _checked_vectors(acts: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    if not isinstance(vectors, (str, bytes)) and hasattr(vectors, "__len__") and len(vectors) == 0:
        return np.empty((0, acts.shape[1]))
    return unit_vectors(check_directions(vectors, acts.shape[1], what="vectors"))


def _checked_centre(acts: np.ndarray, centre: np.ndarray | None) -> np.ndarray | float:
    if centre is None:
        return 0.0
    c = np.asarray(centre, dtype=np.float64)
    if c.shape != (acts.shape[1],) or not np.all(np.isfinite(c)):
        raise ConceptvecError(f"centre must be a finite vector of length {acts.shape[1]} (e.g. metrics.layer_mean(acts)), "
                              f"got shape {c.shape}.")
    return c


def _stream_top(acts: np.ndarray, score: Callable[[np.ndarray], np.ndarray], k: int, top: int, chunk_rows: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``score(block)``, the ``top`` best rows of A in ``top_k_desc`` order, one chunk of rows at a time."""
    top = min(top, acts.shape[0])
    if k == 0:
        return np.empty((0, top), dtype=np.int64), np.empty((0, top))
    selector = TopK(k, top)
    for start, block in row_blocks(acts, rows=chunk_rows):
        check_block_finite(block, start)
        selector.update(score(block), start)
    idx, vals = selector.result()
    return idx.astype(np.int64), vals





def distance_matrix(acts: np.ndarray) -> np.ndarray:
    """Euclidean distances between all pairs of rows (paper Fig. 4)."""
    return np.asarray(squareform(pdist(np.asarray(acts, dtype=np.float64), metric="euclidean")))  # SciPy: untyped


def intra_inter_distances(acts: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean euclidean distance within clusters and between clusters; rows labelled -1 are ignored."""
    labels = np.asarray(labels)
    keep = labels >= 0
    d = distance_matrix(np.asarray(acts)[keep])
    lab = labels[keep]
    same = lab[:, None] == lab[None, :]
    off_diag = ~np.eye(len(lab), dtype=bool)
    intra = d[same & off_diag]
    inter = d[~same]
    return (float(intra.mean()) if intra.size else float("nan"), float(inter.mean()) if inter.size else float("nan"))


def concept_counts(n_concepts: np.ndarray, live: np.ndarray | None = None) -> dict[str, Any]:
    """How many concepts the scanned neurons have: the one summary of a scan, used by ScanResult and the report.

    Counted over live neurons only (``live``, a mask of shape (m,); all when None): a dead or constant
    unit's concepts group arbitrary examples.

    Parameters
    ----------
    n_concepts : array of shape (m,)
    live : array of shape (m,), optional
    """
    counts = np.asarray(n_concepts, dtype=np.int64)
    live = np.ones(len(counts), dtype=bool) if live is None else np.asarray(live, dtype=bool)
    kept = counts[live]
    hist = np.bincount(kept, minlength=1)
    n = int(len(kept))
    return {
        "n_scanned": int(len(counts)),
        "n_live": n,
        "n_concepts_total": int(kept.sum()),
        "concepts_per_neuron": {str(i): int(v) for i, v in enumerate(hist)},
        "n_with_2_or_more_concepts": int(np.sum(kept >= 2)),
        "share_with_2_or_more_concepts": float(np.mean(kept >= 2)) if n else float("nan"),
        "mean_concepts_per_neuron": float(kept.mean()) if n else float("nan"),
    }
