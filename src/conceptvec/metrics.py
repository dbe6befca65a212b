"""Numbers that evaluate concept vectors: projections, cosine similarities, distances.

Notation: A is the activation matrix of shape (n_examples, n_units); V holds k direction vectors
of shape (k, n_units). Everything here takes NumPy arrays (memory-mapped ones included) and
streams over rows, so a store larger than RAM is fine.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist, squareform

from .errors import ConceptvecError

CHUNK_ROWS = 32768


def unit_vectors(vectors: np.ndarray) -> np.ndarray:
    """Rows of ``vectors`` scaled to unit euclidean norm (float64); a zero row is an error."""
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    norms = np.linalg.norm(v, axis=1)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        bad = np.flatnonzero((norms == 0) | ~np.isfinite(norms)).tolist()
        raise ConceptvecError(f"direction vector(s) {bad} have zero or non-finite norm; give non-zero, finite vectors.")
    return v / norms[:, None]


def project(acts: np.ndarray, vectors: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Projections A @ V.T of every example on each (normalised) vector, shape (n_examples, k), float64.

    Rows are read ``chunk_rows`` at a time, so a float16 memory-mapped store is never upcast whole.
    """
    v = unit_vectors(vectors)
    if v.shape[1] != acts.shape[1]:
        raise ConceptvecError(f"vectors have {v.shape[1]} components but the activations have {acts.shape[1]} units.")
    out = np.empty((acts.shape[0], v.shape[0]), dtype=np.float64)
    for start in range(0, acts.shape[0], chunk_rows):
        block = np.asarray(acts[start : start + chunk_rows], dtype=np.float64)
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
    return cos


def top_k_desc(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, largest first; ties keep ascending index order."""
    scores = np.asarray(scores)
    n = scores.shape[0]
    if k >= n:
        candidates = np.arange(n)
    else:
        kth = np.partition(scores, n - k)[n - k]
        candidates = np.flatnonzero(scores >= kth)
    # lexsort sorts by the last key first: descending score, then ascending index.
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order[:k]]


def maximally_projecting(acts: np.ndarray, vectors: np.ndarray, top: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """The ``top`` examples with the largest projection on each vector.

    Returns
    -------
    indices : array of shape (k, top), most projecting first
    projections : array of shape (k, top), the projections on the normalised vectors
    """
    proj = project(acts, vectors)
    top = min(top, proj.shape[0])
    idx = np.stack([top_k_desc(proj[:, j], top) for j in range(proj.shape[1])]) if proj.shape[1] else np.empty((0, top), dtype=np.int64)
    vals = np.take_along_axis(proj.T, idx, axis=1) if proj.shape[1] else np.empty((0, top))
    return idx.astype(np.int64), vals


def most_similar(acts: np.ndarray, vectors: np.ndarray, top: int = 100, chunk_rows: int = CHUNK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """The ``top`` examples with the largest cosine similarity to each vector.

    Where activations share a large common component (all-positive post-ReLU layers), ranking by
    projection favours examples of large norm whatever their direction; cosine ranks by direction only.

    Returns
    -------
    indices : array of shape (k, top), most similar first
    similarities : array of shape (k, top)
    """
    proj = project(acts, vectors, chunk_rows)
    norms = np.empty(acts.shape[0])
    for start in range(0, acts.shape[0], chunk_rows):
        norms[start : start + chunk_rows] = np.linalg.norm(np.asarray(acts[start : start + chunk_rows], dtype=np.float64), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms[:, None] > 0, proj / norms[:, None], 0.0)
    top = min(top, cos.shape[0])
    idx = np.stack([top_k_desc(cos[:, j], top) for j in range(cos.shape[1])]) if cos.shape[1] else np.empty((0, top), dtype=np.int64)
    vals = np.take_along_axis(cos.T, idx, axis=1) if cos.shape[1] else np.empty((0, top))
    return idx.astype(np.int64), vals


def distance_matrix(acts: np.ndarray) -> np.ndarray:
    """Euclidean distances between all pairs of rows (paper Fig. 4)."""
    return squareform(pdist(np.asarray(acts, dtype=np.float64), metric="euclidean"))


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
