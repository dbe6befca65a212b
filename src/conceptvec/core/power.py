"""Power of ``auto``'s test: the smallest separation it would detect for a neuron at its N and width, and the N
(``top``) at which it would detect a finer one.

Both come from one simulation. A neuron's top examples (unit rows, as auto sees them) give a model of them: a
Gaussian whose spectrum is the population's as :func:`split_half_spectrum` estimates it from the rows whitened by
auto's radius weights, each row scaled by a radius weight resampled from the examples' (auto's null model, with
that spectrum in place of the rows' sample spectrum, whose chance spread made the power conservative). A sample of
size n from the model, split into two equal halves whose means are ``delta`` apart along its leading axis (``delta``
in units of the examples' root-mean-square distance from their mean), is tested as auto tests a first split: its
root share against 10 null samples, 40 near the level, kept with auto's minimum effect size (``MIN_EXCESS``).

- "One concept, or two closer than X" (:func:`detectable_separation`): X is the smallest ``delta`` of ``GRID``
  detected in at least ``power`` of ``reps`` samples at the neuron's own N. Checked against auto itself on planted
  two-concept samples (each concept the neuron's unit rows, their means X apart): auto splits about 80 % there
  (tests/core/test_power.py, benchmarks/bench_power.py --accuracy).
- The recommended N (:func:`recommended_top`, :func:`answer_power`): the smallest size of ``TOPS`` at which a
  separation is detected with ``power``; by default (``FINER``) one step of ``GRID`` finer than X, so that the
  answer reads "one concept, or two closer than 1.5 (top 300 would detect two 1.25 apart)".

The null samples are auto's own (``core.auto.null_sampler``), drawn on a sample's rank (its other axes have zero
variance, so leaving them out changes nothing). docs/thresholds.md, "Power", has the diagnosis and the measurements.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.stats import norm

from ..errors import ConceptvecError
from .auto import (CLEAR_ABOVE, CLEAR_BELOW, FIRST_DRAWS, MIN_EXCESS, NULL_DRAWS, null_model, null_sampler, radius_weights,
                   split_share, unit_rows)

GRID = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
TOPS = (50, 100, 200, 300, 500, 750, 1000)  # the sizes recommended_top tries, smallest first
FINER = "finer"  # a recommended top for one step of GRID finer than the answer's own X (finer_separation)
RECOMMEND_FOR = FINER  # the separation a recommended top is for, unless stated (docs/thresholds.md, "Power")
SPLITS = 5  # random halvings of the top examples that estimate their spectrum (split_half_spectrum)
MIN_SPLIT = 10  # fewer top examples: their sample spectrum (halves too small to estimate one)


def _model(x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """The model of ``x``'s unit rows that the samples are drawn from: per-axis sd (K,), each row's radius weight
    (N,; auto's, ``core.auto.radius_weights``), and the rows' RMS distance from their mean (0 when they do not vary).

    The axes are the population spectrum as :func:`split_half_spectrum` estimates it from the radius-whitened rows,
    not the rows' sample spectrum: N rows of a flat spectrum have a sample spectrum spread out by chance (leading
    axes too long, trailing ones too short), and a sample drawn from that spreads it again, so that its planted
    concepts compete with long axes of noise (docs/thresholds.md, "Power")."""
    unit = unit_rows(x)
    centred = unit - unit.mean(axis=0)
    rms = float(np.sqrt(np.mean(np.sum(centred**2, axis=1))))
    if rms == 0:
        return np.zeros(0), np.zeros(0), 0.0
    weight = radius_weights(centred)
    whitened = centred / np.where(weight > 0, weight, 1.0)[:, None]
    axes = split_half_spectrum(whitened, seed=seed) if len(x) >= MIN_SPLIT else null_model(unit)[0]
    return (axes, weight, rms) if len(axes) else (np.zeros(0), np.zeros(0), 0.0)


def split_half_spectrum(z: np.ndarray, *, splits: int = SPLITS, seed: int = 0) -> np.ndarray:
    """The population spectrum of the centred rows ``z`` (n, d) estimated out of sample, as per-axis sd (K,), sum of
    squares 1, K = min(n - 1, d).

    For each of ``splits`` random halvings and both halves: the variance of the other half along each axis of this
    half's covariance, by the axis' rank in this half (NERCOME, Lam 2016: the variance along a direction estimated
    from independent rows is unbiased, where a sample eigenvalue is not); axes beyond a half's rank get an even share
    of the variance left, up to K; the variances are averaged over the 2 x ``splits`` estimates by rank, then sorted.
    """
    n, d = z.shape
    rank = min(n - 1, d)
    total = float(np.sum(z**2)) / n
    rng = np.random.default_rng(seed)
    summed = np.zeros(rank)
    for _ in range(splits):
        order = rng.permutation(n)
        halves = (z[order[: n // 2]], z[order[n // 2 :]])
        for fit, held in (halves, halves[::-1]):
            _, sv, vt = np.linalg.svd(fit - fit.mean(axis=0), full_matrices=False)
            k = min(int(np.sum(sv > sv[0] * 1e-9)) if sv.size and sv[0] > 0 else 0, rank)
            variance = np.mean((held @ vt[:k].T) ** 2, axis=0)
            rest = max(total - float(variance.sum()), 0.0)
            summed += np.concatenate([variance, np.full(rank - k, rest / (rank - k))]) if rank > k else variance
    spectrum = np.sort(summed)[::-1]
    if not spectrum.size or spectrum[0] <= 0:
        return np.zeros(0)
    spectrum = spectrum[spectrum > spectrum[0] * 1e-12]
    sd: np.ndarray = np.sqrt(spectrum / spectrum.sum())
    return sd


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
    return answer_power(x, recommend_for=None, power=power, significance=significance, reps=reps,
                        seed=seed)["one_concept_or_two_closer_than"]


def finer_separation(closer: float) -> float | None:
    """The separation a recommended top is for by default: the step of ``GRID`` below ``closer`` (a neuron's
    :func:`detectable_separation`; ``GRID[-1]`` when that is inf), None when ``closer`` is the grid's finest."""
    below = [g for g in GRID if g < closer]
    return float(below[-1]) if below else None


def detection_power(x: np.ndarray, separation: float, *, n: int, significance: float = 0.01, reps: int = 20,
                    seed: int = 0) -> float:
    """The share of ``reps`` samples of size ``n`` from the model of ``x`` (:func:`split_half_spectrum`, auto's radius
    weights) with two equal halves ``separation`` apart (RMS units, as :func:`detectable_separation`) whose split
    auto's first test keeps.

    Each sample is tested as auto tests it: against ``FIRST_DRAWS`` null samples, ``NULL_DRAWS`` near the level
    (the null's own noise is part of auto's power). With 20 reps the power is known to about +-0.09.
    """
    rng = np.random.default_rng(seed)
    model = _model(x, seed)
    if model[2] == 0 or n < 4:
        return 0.0
    level = float(norm.isf(significance))
    return sum(_kept(rng, _sample(rng, model, n, separation), level) for _ in range(reps)) / reps


def _reaches(model: tuple[np.ndarray, np.ndarray, float], separation: float, *, n: int, power: float,
             significance: float, reps: int, seed: int) -> bool:
    """Whether :func:`detection_power` would be at least ``power``: the same samples, stopped once the answer is known."""
    rng = np.random.default_rng(seed)
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


def recommended_top(x: np.ndarray, *, separation: float | None = None, power: float = 0.8, significance: float = 0.01,
                    reps: int = 10, tops: tuple[int, ...] = TOPS, seed: int = 0) -> float:
    """The smallest ``top`` of ``tops`` at which auto detects two equal concepts ``separation`` apart with ``power``.

    Parameters
    ----------
    x : array of shape (N, n_units)
        The neuron's top examples; their spectrum (:func:`split_half_spectrum`, at most N - 1 axes) stands for the
        neuron's at every size.
    separation : float, optional
        The separation of the two concepts' means in units of the top examples' RMS spread (unit rows), as
        :func:`detectable_separation` reports it. None: one step of ``GRID`` finer than the neuron's own
        :func:`detectable_separation` (:func:`finer_separation`), the question "would more examples see two
        concepts closer than the answer's X?"; then only tops above N are tried (at N that step was missed).

    Returns
    -------
    float
        That top, or ``inf`` when even ``tops[-1]`` is not enough (or no finer step exists).
    """
    found = answer_power(x, recommend_for=FINER if separation is None else separation, power=power,
                         significance=significance, reps=reps, tops=tops, seed=seed)
    return found.get("recommended_top", float("inf"))


def answer_power(x: np.ndarray, *, recommend_for: float | str | None = RECOMMEND_FOR, power: float = 0.8,
                 significance: float = 0.01, reps: int = 10, tops: tuple[int, ...] = TOPS, seed: int = 0) -> dict[str, float]:
    """The power of a one-concept answer, one model of ``x`` for all of it (what ``cv.concept_evidence`` and
    ``conceptvec scan --power`` report).

    Parameters
    ----------
    x : array of shape (N, n_units)
        The neuron's top examples.
    recommend_for : float, 'finer' or None
        The separation (RMS units) whose recommended top is reported; 'finer' (``FINER``, the default): one step of
        ``GRID`` below the answer's own X (:func:`finer_separation`), tried at tops above N only; None: no
        recommendation.

    Returns
    -------
    dict with ``one_concept_or_two_closer_than`` (:func:`detectable_separation`) and, when a recommendation was
    asked for and a finer step exists, ``recommended_top`` (inf beyond ``tops[-1]``), ``recommended_for`` and
    ``recommended_within`` (the largest top tried: pass only ``tops`` the data has examples for).
    """
    if isinstance(recommend_for, str) and recommend_for != FINER:
        raise ConceptvecError(f"recommend_for must be a separation, {FINER!r} or None, got {recommend_for!r}.")
    if not isinstance(x, np.ndarray) or x.ndim != 2:  # a ConceptSet is what a notebook user holds at this point
        raise ConceptvecError(f"power takes the neuron's top examples as an array (N, n_units), got "
                              f"{type(x).__name__}; for a ConceptSet use cv.concept_evidence(cs), which reports it, or "
                              f"pass cs.top_activations (the rows auto clustered, for the activations representation).")
    model = _model(x, seed)
    closer = float("inf")
    for delta in GRID:
        if _reaches(model, delta, n=len(x), power=power, significance=significance, reps=reps, seed=seed):
            closer = float(delta)
            break
    found = {"one_concept_or_two_closer_than": closer}
    if recommend_for is None:
        return found
    sizes = sorted(tops)
    if recommend_for == FINER:
        separation = finer_separation(closer)
        if separation is None:
            return found
        sizes = [t for t in sizes if t > len(x)]  # at N the finer step was missed
    else:
        separation = float(recommend_for)
    # From the smallest size up: a size that misses is settled by its first few samples (reps - need + 1 misses),
    # one that reaches needs `need` hits, so the cost is one reaching size plus cheap misses (bisection paid for
    # reaching sizes above the answer: 1.3x on the planted layer of benchmarks/bench_power.py).
    found["recommended_top"] = next((float(t) for t in sizes if _reaches(model, separation, n=t, power=power,
                                     significance=significance, reps=reps, seed=seed)), float("inf"))
    found["recommended_for"] = separation
    found["recommended_within"] = float(max(sizes)) if sizes else float(len(x))  # the largest top tried
    return found
