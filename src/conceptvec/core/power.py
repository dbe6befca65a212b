"""Power of ``auto``'s test: the smallest separation it would detect for a neuron at its N and width, and the N
(``top``) at which it would detect a stated separation.

Both come from one simulation. A neuron's top examples (unit rows, as auto sees them) give auto's own null model of
them: a Gaussian with the spectrum of the rows whitened by their radius, each row scaled by a radius weight
(``core.auto.null_model``; the radius weights are resampled from the examples'). A sample of size n from
that model, split into two equal halves whose means are ``delta`` apart along its leading axis (``delta`` in units
of the examples' root-mean-square distance from their mean), is tested as auto tests a first split: its root
share against 10 null samples, 40 near the level, kept with auto's minimum effect size (``MIN_EXCESS``). Drawn from the null model itself, a sample with ``delta = 0``
is split at about the level, so what the power counts is the separation, not a misfit of the null.

- "One concept, or two closer than X" (:func:`detectable_separation`): X is the smallest ``delta`` of ``GRID``
  detected in at least ``power`` of ``reps`` samples at the neuron's own N.
- The recommended N (:func:`recommended_top`): the smallest size of ``TOPS`` at which a stated separation is
  detected with ``power`` (the spectrum as the N top examples estimate it, at most N - 1 axes).

The null samples are auto's own (``core.auto.null_sampler``), drawn on a sample's rank (its other axes have zero
variance, so leaving them out changes nothing).
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.stats import norm

from .auto import CLEAR_ABOVE, CLEAR_BELOW, FIRST_DRAWS, MIN_EXCESS, NULL_DRAWS, null_model, null_sampler, split_share, unit_rows

GRID = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
TOPS = (50, 100, 200, 300, 500, 750, 1000)  # the sizes recommended_top tries, smallest first
RECOMMEND_FOR = 0.5  # the separation (RMS units) a recommended top is for, unless stated


def _model(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """auto's null model of ``x``'s unit rows (``core.auto.null_model``): per-axis sd (K,), each row's radius weight
    (N,), and the rows' RMS distance from their mean (0 when they do not vary).

    The spectrum is the N rows' sample spectrum, wider than the neuron's at N ~ width (its leading axis too long),
    which makes a sample of another size drawn from it harder to split along that axis: the power is conservative
    there (docs/thresholds.md, "Power"). Ledoit-Wolf shrinkage overshoots the other way on the test neuron."""
    unit = unit_rows(x)
    rms = float(np.sqrt(np.mean(np.sum((unit - unit.mean(axis=0)) ** 2, axis=1))))
    if rms == 0:
        return np.zeros(0), np.zeros(0), 0.0
    axes, weight = null_model(unit)
    return (axes, weight, rms) if len(axes) else (np.zeros(0), np.zeros(0), 0.0)


def _sample(rng: np.random.Generator, model: tuple[np.ndarray, np.ndarray, float], n: int, separation: float) -> np.ndarray:
    """``n`` rows from auto's null model of a neuron (radius weights resampled), two equal halves ``separation``
    apart (RMS units) along its leading axis: shape (n, K), in units of the RMS spread."""
    axes, weight, _ = model
    scatter = weight[rng.integers(0, len(weight), size=n)]
    y: np.ndarray = rng.standard_normal((n, len(axes))) * axes * scatter[:, None]
    y[:, 0] += np.where(np.arange(n) < n // 2, separation / 2, -separation / 2)
    return y


def _kept(rng: np.random.Generator, y: np.ndarray, level: float) -> bool:
    """Whether auto's first test keeps the root split of ``y``: against 10 null samples, 40 near the level, and an
    excess share of at least ``MIN_EXCESS``."""
    share = split_share(y, linkage(y, method="ward")[-1, 2])
    sample = null_sampler(y, rng)
    null = sample(FIRST_DRAWS)
    if level - CLEAR_BELOW < _z(share, null) < level + CLEAR_ABOVE:
        null = np.concatenate([null, sample(NULL_DRAWS - FIRST_DRAWS)])
    return _z(share, null) > level and share - float(null.mean()) >= MIN_EXCESS


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
    for delta in GRID:
        if _reaches(x, delta, n=len(x), power=power, significance=significance, reps=reps, seed=seed):
            return float(delta)
    return float("inf")


def detection_power(x: np.ndarray, separation: float, *, n: int, significance: float = 0.01, reps: int = 20,
                    seed: int = 0) -> float:
    """The share of ``reps`` samples of size ``n`` from auto's null model of ``x`` with two equal halves
    ``separation`` apart (RMS units, as :func:`detectable_separation`) whose split auto's first test keeps.

    Each sample is tested as auto tests it: against ``FIRST_DRAWS`` null samples, ``NULL_DRAWS`` near the level
    (the null's own noise is part of auto's power). With 20 reps the power is known to about +-0.09.
    """
    rng = np.random.default_rng(seed)
    model = _model(x)
    if model[2] == 0 or n < 4:
        return 0.0
    level = float(norm.isf(significance))
    return sum(_kept(rng, _sample(rng, model, n, separation), level) for _ in range(reps)) / reps


def _reaches(x: np.ndarray, separation: float, *, n: int, power: float, significance: float, reps: int, seed: int) -> bool:
    """Whether :func:`detection_power` would be at least ``power``: the same samples, stopped once the answer is known."""
    rng = np.random.default_rng(seed)
    model = _model(x)
    if model[2] == 0 or n < 4:
        return False
    level = float(norm.isf(significance))
    need = int(np.ceil(power * reps - 1e-9))
    hits = 0
    for done in range(reps):
        hits += _kept(rng, _sample(rng, model, n, separation), level)
        if hits >= need or hits + reps - done - 1 < need:
            break
    return hits >= need


def _z(share: float, null: np.ndarray) -> float:
    sd = float(null.std(ddof=1))
    return (share - float(null.mean())) / sd if sd > 0 else (np.inf if share > null.mean() else -np.inf)


def recommended_top(x: np.ndarray, *, separation: float = RECOMMEND_FOR, power: float = 0.8, significance: float = 0.01,
                    reps: int = 10, tops: tuple[int, ...] = TOPS, seed: int = 0) -> float:
    """The smallest ``top`` of ``tops`` at which auto detects two equal concepts ``separation`` apart with ``power``.

    Parameters
    ----------
    x : array of shape (N, n_units)
        The neuron's top examples; their spectrum (at most N - 1 axes) stands for the neuron's at every size.
    separation : float
        The separation of the two concepts' means in units of the top examples' RMS spread (unit rows), as
        :func:`detectable_separation` reports it.

    Returns
    -------
    float
        That top, or ``inf`` when even ``tops[-1]`` is not enough.
    """
    # Power grows with N: bisect the sizes (3 simulations of 7 sizes) rather than try each from the smallest.
    sizes = sorted(tops)
    lo, hi = 0, len(sizes)  # the answer's index is in [lo, hi]; hi == len(sizes): none is enough
    while lo < hi:
        mid = (lo + hi) // 2
        if _reaches(x, separation, n=sizes[mid], power=power, significance=significance, reps=reps, seed=seed):
            hi = mid
        else:
            lo = mid + 1
    return float(sizes[lo]) if lo < len(sizes) else float("inf")

