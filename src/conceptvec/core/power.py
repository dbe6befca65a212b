"""Power of ``auto``'s test: the smallest separation it would detect for a neuron at its N and width.

A one-concept answer means "one concept, or two closer than X". X comes from simulation on the neuron's own top
examples (unit rows, as auto sees them): samples with their covariance spectrum (``core.auto.null_sampler``'s
construction) are split into two equal halves whose means are ``delta`` apart along the leading axis, ``delta`` in
units of the examples' root-mean-square distance from their mean; X is the smallest ``delta`` of ``GRID`` whose
split auto's first test keeps in at least ``power`` of ``reps`` samples.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.stats import norm

from .auto import FIRST_DRAWS, null_sampler, split_share, unit_rows

GRID = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)


def detectable_separation(x: np.ndarray, *, significance: float = 0.01, power: float = 0.8, reps: int = 10,
                          seed: int = 0) -> float:
    """The smallest separation of two equal concepts that auto's first split detects with ``power``.

    Parameters
    ----------
    x : array of shape (N, n_units)
        The neuron's top examples (activations or any representation).
    significance : float
        auto's level (``Params.significance``).

    Returns
    -------
    float
        The separation of the two halves' means in units of the examples' RMS distance from their mean (after
        scaling each to unit length); ``inf`` when even ``GRID[-1]`` is missed.
    """
    rng = np.random.default_rng(seed)
    unit = unit_rows(x)
    centred = unit - unit.mean(axis=0)
    n = len(unit)
    radius = np.linalg.norm(centred, axis=1)
    rms = float(np.sqrt(np.mean(radius**2)))
    spectrum = np.clip(np.linalg.eigvalsh(centred @ centred.T)[::-1][: n - 1], 0.0, None)
    if rms == 0 or spectrum.sum() == 0:
        return float("inf")
    scale = np.sqrt(spectrum / spectrum.sum()) * rms  # per-axis sd of samples with the examples' spectrum
    level = float(norm.isf(significance))
    half = np.arange(n) < n // 2
    for delta in GRID:
        hits = 0
        for _ in range(reps):
            y = rng.standard_normal((n, n - 1)) * scale
            y[:, 0] += np.where(half, delta / 2, -delta / 2) * rms
            share = split_share(y, linkage(y, method="ward")[-1, 2])
            null = null_sampler(y, rng)(FIRST_DRAWS)
            sd = float(null.std(ddof=1))
            hits += bool(sd > 0 and (share - null.mean()) / sd > level)
        if hits >= power * reps:
            return float(delta)
    return float("inf")
