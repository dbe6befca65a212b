"""Reading A in blocks of rows, and keeping each column's top rows as the blocks pass.

Notation: A is the activation matrix, shape (n_examples, n_units), possibly a memory-mapped store
larger than RAM. Every pass over A in conceptvec reads it through ``row_blocks``, with blocks of
about ``BLOCK_BYTES`` of activations, and every top-k selection follows ``top_k_desc``'s order
(descending score, ties by ascending example index), whether it sorts one column (``top_k_desc``)
or streams many (``TopK``).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ..errors import ConceptvecError
from ..progress import progress_bar
from .arrays import as_matrix
from .live import FloorTracker

BLOCK_BYTES = 64 * 2**20  # about this many bytes of activations per block of rows
MIN_BLOCK_ROWS = 256


def block_rows(matrix: np.ndarray, *, row_bytes: int | None = None) -> int:
    """Rows per block so that a block holds about ``BLOCK_BYTES`` (at least ``MIN_BLOCK_ROWS``).

    A row is a row of ``matrix`` unless ``row_bytes`` gives the size of what is computed per row.
    """
    size = row_bytes if row_bytes is not None else matrix.shape[1] * matrix.dtype.itemsize
    return max(MIN_BLOCK_ROWS, BLOCK_BYTES // max(1, size))


def row_blocks(
    matrix: np.ndarray, *, rows: int | None = None, native: bool = False, description: str = "examples", progress: bool = False
) -> Iterator[tuple[int, np.ndarray]]:
    """(start, block) over the rows of ``matrix``, with an optional progress bar over examples.

    Blocks are float64, or with ``native`` kept in A's float dtype (their order is the same).
    ``rows`` defaults to :func:`block_rows`.
    """
    n = matrix.shape[0]
    rows = rows or block_rows(matrix)
    with progress_bar("examples", disable=not progress, transient=True) as bar:
        task = bar.add_task(description, total=n)
        for start in range(0, n, rows):
            block = np.asarray(matrix[start : start + rows])
            if not (native and block.dtype in (np.float16, np.float32, np.float64)):
                block = block.astype(np.float64)
            yield start, block
            bar.advance(task, len(block))


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



def check_block_finite(block: np.ndarray, start: int) -> None:
    bad = ~np.isfinite(block)
    if bad.any():
        rows = (np.flatnonzero(bad.any(axis=1)) + start).tolist()
        shown = ", ".join(map(str, rows[:10])) + (" ..." if len(rows) > 10 else "")
        raise ConceptvecError(
            f"the activations contain NaN or inf values in example(s) {shown}. Remove or repair these examples (or re-extract them) first."
        )



class TopK:
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


def top_examples(
    acts: Any,
    k: int,
    *,
    neurons: np.ndarray | None = None,
    directions: np.ndarray | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` examples of many neurons (or unit directions) in one chunked pass over A.

    Gives for every column what ``metrics.top_k_desc`` gives on that column alone (scores of a
    neuron are its float64 activations; of a direction, the projections A @ v).

    Returns
    -------
    indices : array of shape (m, k), most activating first
    scores : array of shape (m, k), float64
    """
    indices, scores, _ = _top_pass(acts, k, neurons=neurons, directions=directions, progress=progress, floors=False)
    return indices, scores


def top_examples_and_floors(
    acts: Any,
    k: int,
    *,
    neurons: np.ndarray | None = None,
    directions: np.ndarray | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`top_examples`, and each column's floor (``core.live``; NaN where it has none), shape (m,), from the same pass."""
    indices, scores, floors = _top_pass(acts, k, neurons=neurons, directions=directions, progress=progress, floors=True)
    if floors is None:  # _top_pass tracks them when asked
        raise ConceptvecError("the floors were not tracked; this is a bug.")
    return indices, scores, floors


def _top_pass(acts: Any, k: int, *, neurons: np.ndarray | None, directions: np.ndarray | None, progress: bool,
              floors: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    matrix, _ = as_matrix(acts)
    cols = np.arange(matrix.shape[1]) if neurons is None else np.asarray(neurons)
    m = len(directions) if directions is not None else len(cols)
    if k > matrix.shape[0]:
        raise ConceptvecError(f"top={k} is larger than the number of examples ({matrix.shape[0]}); use top <= {matrix.shape[0]}.")
    selector = TopK(m, k)
    tracker = FloorTracker(m) if floors else None
    every_column = directions is None and len(cols) == matrix.shape[1]
    for start, block in row_blocks(matrix, native=directions is None, description="top examples", progress=progress):
        check_block_finite(block, start)
        if directions is not None:
            scores = block @ directions.T
        else:
            scores = block if every_column else block[:, cols]
        selector.update(scores, start)
        if tracker is not None:
            tracker.update(scores)
    indices, top_scores = selector.result()
    return indices, top_scores, None if tracker is None else tracker.floors()
