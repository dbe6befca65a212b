"""Numbers that evaluate concept vectors: projections, cosine similarities, distances.

Notation: A is the activation matrix of shape (n_examples, n_units); V holds k direction vectors
of shape (k, n_units). Everything here takes NumPy arrays (memory-mapped ones included) and
streams over rows, so a store larger than RAM is fine.
"""

from __future__ import annotations

from typing import Callable

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


def maximally_projecting(acts: np.ndarray, vectors: np.ndarray, top: int = 100, chunk_rows: int = CHUNK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """The ``top`` examples with the largest projection on each vector, streamed over A in chunks.

    Returns
    -------
    indices : array of shape (k, top), most projecting first (ties: lower example index first)
    projections : array of shape (k, top), the projections on the normalised vectors
    """
    v = _checked_vectors(acts, vectors)
    return _stream_top(acts, lambda block: block @ v.T, len(v), top, chunk_rows)


def most_similar(acts: np.ndarray, vectors: np.ndarray, top: int = 100, chunk_rows: int = CHUNK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """The ``top`` examples with the largest cosine similarity to each vector, streamed over A in chunks.

    Where activations share a large common component (all-positive post-ReLU layers), ranking by
    projection favours examples of large norm whatever their direction; cosine ranks by direction only.

    Returns
    -------
    indices : array of shape (k, top), most similar first (ties: lower example index first)
    similarities : array of shape (k, top); 0 for an all-zero example
    """
    v = _checked_vectors(acts, vectors)

    def cosine(block: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(block, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(norms[:, None] > 0, (block @ v.T) / norms[:, None], 0.0)

    return _stream_top(acts, cosine, len(v), top, chunk_rows)


def _checked_vectors(acts: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    v = unit_vectors(vectors) if len(vectors) else np.empty((0, acts.shape[1]))
    if v.shape[1] != acts.shape[1]:
        raise ConceptvecError(f"vectors have {v.shape[1]} components but the activations have {acts.shape[1]} units.")
    return v


def _stream_top(acts: np.ndarray, score: Callable[[np.ndarray], np.ndarray], k: int, top: int, chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``score(block)``, the ``top`` best rows of A in ``top_k_desc`` order, one chunk of rows at a time."""
    top = min(top, acts.shape[0])
    if k == 0:
        return np.empty((0, top), dtype=np.int64), np.empty((0, top))
    selector = _TopK(k, top)
    for start in range(0, acts.shape[0], chunk_rows):
        block = np.asarray(acts[start : start + chunk_rows], dtype=np.float64)
        _check_block_finite(block, start)
        selector.update(score(block), start)
    idx, vals = selector.result()
    return idx.astype(np.int64), vals


def _check_block_finite(block: np.ndarray, start: int) -> None:
    bad = ~np.isfinite(block)
    if bad.any():
        rows = (np.flatnonzero(bad.any(axis=1)) + start).tolist()
        shown = ", ".join(map(str, rows[:10])) + (" ..." if len(rows) > 10 else "")
        raise ConceptvecError(
            f"the activations contain NaN or inf values in example(s) {shown}. Remove or repair these examples (or re-extract them) first."
        )


class _TopK:
    """Per column, the k best rows seen so far in ``metrics.top_k_desc`` order (score desc, row asc).

    Blocks arrive in row order, so a later row that ties the k-th score never enters; a row
    enters only when it beats a column's current k-th score. Candidates live in two (n_cols, k)
    arrays, scores and rows, each column sorted by that order; free places hold score -inf
    (scores are finite), so the k-th score of a column not yet full is -inf and every row enters.
    """

    def __init__(self, n_cols: int, k: int):
        self.n_cols, self.k = n_cols, k
        self.val = np.full((n_cols, k), -np.inf)
        self.row = np.full((n_cols, k), -1, dtype=np.int64)
        self.seen = 0

    def update(self, block: np.ndarray, start: int) -> None:
        pos = 0
        while pos < len(block):
            # Sub-blocks no longer than the rows already seen: a column then gains about k new
            # candidates per step, however low its threshold still is.
            size = min(len(block) - pos, max(self.k, self.seen))
            sub = block[pos : pos + size]
            # Thresholds are values of earlier blocks (or -inf), so casting them to the block's dtype is exact.
            mask = sub > self.val[:, -1].astype(sub.dtype)
            # Flat indices (row-major: by row, then column) are much faster to find than 2-D ones.
            r, c = np.divmod(np.flatnonzero(mask), sub.shape[1])
            if r.size:
                self._merge(c, r + start + pos, sub[r, c])
            pos += size
            self.seen += size

    def _merge(self, col: np.ndarray, row: np.ndarray, val: np.ndarray) -> None:
        # New candidates grouped by column, in ascending row order within a column (stable sort).
        order = np.argsort(col, kind="stable")
        col, row, val = col[order], row[order], val[order]
        counts = np.bincount(col, minlength=self.n_cols)
        place = np.arange(len(col)) - (np.cumsum(counts) - counts)[col] + self.k
        width = self.k + int(counts.max())
        vals = np.full((self.n_cols, width), -np.inf)
        rows = np.full((self.n_cols, width), -1, dtype=np.int64)
        vals[:, : self.k], rows[:, : self.k] = self.val, self.row
        vals[col, place], rows[col, place] = val, row
        # Kept candidates (earlier rows) come first, new ones follow in row order: a stable sort by
        # descending score therefore orders ties by ascending row.
        best = np.argsort(-vals, axis=1, kind="stable")[:, : self.k]
        self.val = np.take_along_axis(vals, best, axis=1)
        self.row = np.take_along_axis(rows, best, axis=1)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores), both of shape (n_cols, k), best first."""
        if self.seen < self.k:
            raise ConceptvecError(f"fewer than {self.k} examples; use top <= the number of examples.")
        return self.row, self.val



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
