"""A dictionary's reconstruction quality over the whole store, a few rows at a time; imports no torch."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import ConceptvecError
from ..progress import progress_bar
from .blocks import all_blocks
from .model import Dictionary

QUALITY_ROWS = 512  # rows encoded at once by the quality pass

QualityStep = Callable[[np.ndarray], tuple[float, float, np.ndarray]]
"""Rows x (rows, n_units) float32 -> (squared reconstruction error, active codes, examples per atom with a non-zero code)."""


def codes_step(dic: Dictionary, encode: Callable[[np.ndarray], np.ndarray] | None = None) -> QualityStep:
    """The quality step of any dictionary: its codes (``encode``, default ``dic.encode``) decoded in float64."""
    encode = encode or dic.encode

    def step(x: np.ndarray) -> tuple[float, float, np.ndarray]:
        z = np.asarray(encode(x), dtype=np.float64)
        active = z != 0
        return float(((x - dic.decode(z)) ** 2).sum()), float(active.sum()), active.sum(axis=0)

    return step


def measure_quality(matrix: np.ndarray, step: QualityStep, *, rows: int, shuffle: bool = False, seed: int = 0,
                    progress: bool = False) -> dict[str, Any]:
    """Explained variance 1 - SSE / SST, mean L0 (active atoms per example) and dead atoms, over the whole store.

    ``step`` reconstructs ``QUALITY_ROWS`` rows at a time (:func:`codes_step`, or the SAE's own in torch).
    """
    n = matrix.shape[0]
    sse = sum_x2 = l0 = 0.0
    sum_x = np.zeros(matrix.shape[1])
    fired: np.ndarray | None = None
    with progress_bar("examples", disable=not progress, transient=True) as bar:
        task = bar.add_task("dictionary quality", total=n)
        for block in all_blocks(matrix, rows=rows, shuffle=shuffle, seed=seed):
            # codes are (rows, n_atoms): a few rows at a time, so that 16k atoms do not multiply a block's memory
            for b in range(0, len(block), QUALITY_ROWS):
                x = block[b:b + QUALITY_ROWS]
                err, active, per_atom = step(x)
                sse += err
                l0 += active
                fired = per_atom.astype(np.int64) if fired is None else fired + per_atom
                sum_x += x.sum(axis=0, dtype=np.float64)
                sum_x2 += float(np.einsum("ij,ij->", x, x, dtype=np.float64))
            bar.advance(task, len(block))
    if fired is None:
        raise ConceptvecError("the store has no examples to measure the dictionary on.")
    sst = sum_x2 - float((sum_x ** 2).sum()) / n
    return {"explained_variance": 1.0 - sse / sst if sst > 0 else float("nan"), "mean_l0": l0 / n,
            "dead_atoms": int((fired == 0).sum()), "atom_frequency_max": float(fired.max() / n), "n_examples": int(n)}
