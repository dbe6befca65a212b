"""The store read for fitting: blocks of rows in a seeded order, never the whole matrix in memory; imports no torch.

Every pass reads A in blocks of ``block_rows`` rows (a block is the only part of A in memory). An epoch
visits the blocks in an order drawn from (seed, epoch) and shuffles the rows inside each block, so a run
resumed at an epoch boundary continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..core.streaming import block_rows as default_block_rows
from ..core.streaming import check_block_finite


def rows_per_block(matrix: np.ndarray, block_rows: int | None) -> int:
    return min(matrix.shape[0], block_rows or default_block_rows(matrix))


def read_block(matrix: np.ndarray, start: int, rows: int, *, shuffle: bool, seed: int) -> np.ndarray:
    """Rows ``start:start+rows`` of A as float32; with ``shuffle``, every unit's column permuted within the block
    (the same permutation whatever the epoch, so the shuffled baseline is one fixed matrix)."""
    block = np.asarray(matrix[start:start + rows], dtype=np.float32)
    check_block_finite(block, start)
    if shuffle:
        rng = np.random.default_rng([seed, 7919, start])
        block = np.take_along_axis(block, rng.permuted(np.tile(np.arange(len(block))[:, None], (1, block.shape[1])), axis=0), axis=0)
    return block


def epoch_blocks(matrix: np.ndarray, *, rows: int, epoch: int, seed: int, shuffle: bool) -> Iterator[np.ndarray]:
    """The blocks of one epoch in their seeded order, rows shuffled within each block."""
    n = matrix.shape[0]
    rng = np.random.default_rng([seed, epoch])
    for b in rng.permutation(np.arange(0, n, rows)):
        block = read_block(matrix, int(b), rows, shuffle=shuffle, seed=seed)
        yield block[rng.permutation(len(block))]


def all_blocks(matrix: np.ndarray, *, rows: int, shuffle: bool, seed: int) -> Iterator[np.ndarray]:
    """The blocks in order (for the mean and the quality pass)."""
    for start in range(0, matrix.shape[0], rows):
        yield read_block(matrix, start, rows, shuffle=shuffle, seed=seed)
