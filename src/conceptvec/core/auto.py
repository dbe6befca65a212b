"""``distance_threshold="auto"``: the number of clusters decided by a significance test, the same on every layer.

The paper's ``distance_threshold = 15`` is a height on one layer's scale. ``auto`` replaces it with a
test whose one knob, ``Params.significance``, means the same on every layer and at every scale:

1. Every top example is scaled to unit length. A concept is a direction (concept vectors are
   normalised means); how strongly an example fires is not a concept, and an unnormalised tree cuts
   a neuron whose examples vary continuously in strength into strong and weak pieces. Unit rows
   also make everything below independent of the activations' scale.
2. Ward's tree of the unit rows is walked from the root (SigClust's recursion, Liu et al. 2008). A
   node's split is tested by its share of the node's sum of squares, ``height**2 / 2 / SS``, which
   is 1 - the 2-cluster index of SigClust. The null is unimodal with the node's own covariance
   spectrum: ``NULL_DRAWS`` Gaussian samples of the node's size, each point scaled by the observed
   point's distance from the node's mean (a Gaussian scale mixture), so that a single concept whose
   weak examples scatter more than its strong ones is not mistaken for two. The split is kept when
   its share is above the null's with a normal-approximation p-value below ``significance`` (10 null
   samples decide a clear split, 40 a borderline one, and up to ``MAX_DRAWS`` one whose z-score stays within
   ``NEAR`` standard errors of the level: the Monte-Carlo error, not the seed, then decides few splits).
   Both children of a kept split are tested in turn; a split that leaves fewer than
   ``min_cluster_size`` examples on one side is no concept, and the walk goes on into the larger side.
3. C = the number of leaves; k-means with C runs on the unit rows (step 3).
4. ``outlier_threshold="auto"``: an example is an outlier when its squared distance to its
   centroid is beyond its cluster's far-out fence, Q3 + ``OUTLIER_FENCE`` x IQR (Tukey), so that
   outliers are relative to each cluster's own spread.

``benchmarks/bench_truth.py`` compares this with the fixed thresholds and the layer-quantile rule on
planted layers of several widths and scales, and on the digits CNN; ``docs/thresholds.md`` says why this
test was chosen over the gap statistic and bootstrap stability.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from scipy.cluster.hierarchy import to_tree
from scipy.stats import norm

NULL_DRAWS = 40  # null samples per tested split; the p-value is from their mean and sd (normal approximation)
FIRST_DRAWS = 10  # drawn first; the rest only when the split's z-score is near the level's (CLEAR_ABOVE, CLEAR_BELOW)
# 10 draws estimate the null's sd to about 25 % and its mean to a third of an sd. A z-score 4 above the level
# stays above it even with the sd misjudged by a factor of 2; one 1.5 below stays below it with the sd 1.5x too
# large and the mean 2/3 sd off (each rarer than 1 in 50). Most splits, and most leaves, are that clear.
CLEAR_ABOVE = 4.0
CLEAR_BELOW = 1.5
# After 40 draws a z-score near the level is a coin toss between seeds: its standard error from B draws is about
# sqrt(1/B + z^2/(2B)) (the null's mean and sd estimated), 0.3 at the 1 % level with B = 40. While the z-score is within
# NEAR of those errors of the level, the draws are doubled (40, 80, 160, 320, 640), up to MAX_DRAWS (0.08 at 640): a
# split so close to the level that 640 draws cannot place it is the only kind left to the seed. NEAR 1.5 and doubling
# left as few splits to the seed as NEAR 2 and quadrupling (issue 24's first form) with 0.6-0.7x the draws and 0.7x
# the tests' CPU time on real layers (benchmarks/bench_null_seed.py --variant; docs/thresholds.md: the flip rates).
NEAR = 1.5
GROWTH = 2  # the draws are multiplied by this while near
MAX_DRAWS = 640

def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` (N, n_units) scaled to unit length (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    lengths = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(lengths > 0, lengths, 1.0)


def split_share(points: np.ndarray, height: float) -> float:
    """Share of the sum of squares of ``points`` (n, d) that a ward merge of ``height`` explains."""
    ss = float(np.sum((points - points.mean(axis=0)) ** 2))
    return float(height) ** 2 / 2.0 / ss if ss > 0 else 0.0


def null_shares(points: np.ndarray, rng: np.random.Generator, draws: int = NULL_DRAWS) -> np.ndarray:
    """Root-split shares of ``draws`` unimodal samples shaped like ``points`` (n, d), shape (draws,).

    Each sample: n points from a Gaussian with the covariance spectrum of ``points`` after each is
    scaled to the average radius, then scaled back by its point's radius (a Gaussian scale mixture).
    """
    return null_sampler(points, rng)(draws)


def null_sampler(points: np.ndarray, rng: np.random.Generator) -> Callable[[int], np.ndarray]:
    """A function ``draws -> shares`` of :func:`null_shares` for ``points``, the spectrum computed once."""
    from scipy.cluster.hierarchy import linkage

    centred = points - points.mean(axis=0)
    radius = np.linalg.norm(centred, axis=1)
    weight = radius / np.sqrt(np.mean(radius**2))
    whitened = centred / np.where(weight > 0, weight, 1.0)[:, None]
    n = len(points)
    # The spectrum from the n x n Gram matrix: cheap however wide the layer is.
    spectrum = np.clip(np.linalg.eigvalsh(whitened @ whitened.T)[::-1][: n - 1], 0.0, None)
    scale = np.sqrt(spectrum / spectrum.sum())[None, :] * weight[:, None]

    def shares(draws: int) -> np.ndarray:
        out = np.empty(draws)
        for b in range(draws):
            y = rng.standard_normal((n, n - 1)) * scale
            out[b] = split_share(y, linkage(y, method="ward")[-1, 2])
        return out

    return shares


def auto_clusters(
    unit: np.ndarray, linkage_matrix: np.ndarray, *, significance: float, min_cluster_size: int, seed: int,
    first_null: np.ndarray | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """C decided by testing ward's splits from the root, and the record of every test.

    Parameters
    ----------
    unit : array of shape (N, n_units)
        The top examples scaled to unit length (:func:`unit_rows`).
    linkage_matrix : array of shape (N - 1, 4)
        Ward linkage of ``unit``.
    significance : float
        A split is kept when its p-value under the unimodal null is below this.
    min_cluster_size : int
        A side with fewer examples is not a concept.
    seed : int
        Seeds the null samples: the same rows give the same answer.
    first_null : array of shape (m,), optional
        The null's shares for the first test instead of Gaussian samples: ``Params(null="layer")``, the first-split
        shares of random directions of the layer (``core.layernull``); deeper splits keep the Gaussian null.

    Returns
    -------
    n_clusters : int
    tests : list of dict
        Per tested split: ``size``, ``sides`` (the two children's sizes), ``share``, ``null_mean``,
        ``null_sd``, ``draws`` (FIRST_DRAWS for a clear split, NULL_DRAWS near the level, up to MAX_DRAWS within NEAR standard errors of it), ``p_value``, ``split``.
    """
    rng = np.random.default_rng(seed)
    level = float(norm.isf(significance))
    n_clusters = 0
    tests: list[dict[str, Any]] = []
    stack = [to_tree(linkage_matrix)]
    while stack:
        node = stack.pop()
        if node.is_leaf() or node.get_count() < 2 * min_cluster_size:
            n_clusters += 1
            continue
        left, right = node.get_left(), node.get_right()
        if min(left.get_count(), right.get_count()) < min_cluster_size:
            stack.append(left if left.get_count() >= right.get_count() else right)
            continue
        points = unit[node.pre_order()]
        share = split_share(points, node.dist)
        if first_null is not None and not tests:
            null = np.asarray(first_null, dtype=np.float64)
        else:
            sample = null_sampler(points, rng)
            null = sample(FIRST_DRAWS)
            if level - CLEAR_BELOW < _z(share, null) < level + CLEAR_ABOVE:
                null = np.concatenate([null, sample(NULL_DRAWS - FIRST_DRAWS)])
                while len(null) < MAX_DRAWS and near_level(_z(share, null), level, len(null)):
                    null = np.concatenate([null, sample(min((GROWTH - 1) * len(null), MAX_DRAWS - len(null)))])
        z = _z(share, null)
        p_value = float(norm.sf(z))
        split = p_value < significance
        tests.append({"size": int(node.get_count()), "sides": [int(left.get_count()), int(right.get_count())],
                      "share": share, "null_mean": float(null.mean()), "null_sd": float(null.std(ddof=1)),
                      "draws": int(len(null)), "p_value": p_value, "split": bool(split)})
        if split:
            stack += [right, left]
        else:
            n_clusters += 1
    return n_clusters, tests


def near_level(z: float, level: float, draws: int) -> bool:
    """Whether a z-score from ``draws`` null samples is within ``NEAR`` standard errors of the level (more draws decide)."""
    if not np.isfinite(z):
        return False
    return abs(z - level) < NEAR * float(np.sqrt(1.0 / draws + z * z / (2.0 * draws)))


def _z(share: float, null: np.ndarray) -> float:
    """The split's z-score under the null samples (+-inf when they do not vary)."""
    sd = float(null.std(ddof=1))
    if sd > 0:
        return (share - float(null.mean())) / sd
    return np.inf if share > null.mean() else -np.inf
