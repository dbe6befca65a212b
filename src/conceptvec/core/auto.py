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
   spectrum: ``NULL_DRAWS`` Gaussian samples of the node's size, each point scaled by a radius weight
   (a Gaussian scale mixture, :func:`radius_weights`), so that a single concept whose weak examples
   scatter more than its strong ones is not mistaken for two. The split is kept when its share is
   above the null's with a normal-approximation p-value below ``significance`` (10 null samples decide
   a clear split, 40 a borderline one, and up to ``MAX_DRAWS`` one whose z-score stays within ``NEAR``
   standard errors of the level: the Monte-Carlo error, not the seed, then decides few splits) and
   exceeds the null's mean by ``MIN_EXCESS``.
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
# split so close to the level that 640 draws cannot place it is the only kind left to the seed. Doubling left as few
# splits to the seed as quadrupling (issue 24's first form) with 0.8x the draws on a real layer; NEAR 1.5 saved more
# but left 1.7x the flips there (benchmarks/bench_null_seed.py --variant; docs/thresholds.md: the flip rates).
NEAR = 2.0
GROWTH = 2  # the draws are multiplied by this while near
MAX_DRAWS = 640
# A minimum effect size beside the p-value: a kept split explains at least this share of its node's sum of squares
# beyond the null's mean. The p-value alone grows with n: at a top of 1,000 a single planted facet's skewed tail of
# weak examples beats the Gaussian null by z = 7 with an excess of 0.007, where every facet-separating split measured
# exceeds 0.05 (docs/thresholds.md, "Large tops").
MIN_EXCESS = 0.02
GRAM_FROM = 300  # null samples of at least this many rows get their distances from the Gram matrix (_ward_root_height)


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

    Each sample: n points of :func:`null_model`'s Gaussian scale mixture (each point's radius weight times a Gaussian
    with the covariance spectrum of ``points`` after each is scaled by its weight).
    """
    return null_sampler(points, rng)(draws)


def null_model(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """auto's unimodal model of ``points`` (n, d): a Gaussian scale mixture.

    Returns
    -------
    axes : array of shape (K,)
        The per-axis sd of the Gaussian (sum of squares 1; K = the rank of the weighted points, at most n - 1).
    weight : array of shape (n,)
        Each point's scale (root mean square 1): :func:`radius_weights`.
    """
    centred = points - points.mean(axis=0)
    n, d = centred.shape
    radius = np.linalg.norm(centred, axis=1)
    if not np.any(radius > 0):
        return np.zeros(0), np.ones(n)
    # The spectrum from the smaller of the n x n Gram matrix and the d x d covariance: cheap however wide the layer is.
    gram = centred @ centred.T if n <= d else centred.T @ centred
    weight = radius_weights(centred, gram=gram)
    safe = np.where(weight > 0, weight, 1.0)  # a point at the mean keeps weight 0
    if n <= d:  # the weighted points' Gram matrix from the same product
        gram = gram / np.outer(safe, safe)
    else:
        whitened = centred / safe[:, None]
        gram = whitened.T @ whitened
    spectrum = np.clip(np.linalg.eigvalsh(gram)[::-1][: n - 1], 0.0, None)
    spectrum = spectrum[spectrum > spectrum[0] * 1e-12]  # axes of zero variance change no share
    return np.sqrt(spectrum / spectrum.sum()), weight


def radius_weights(centred: np.ndarray, *, gram: np.ndarray | None = None) -> np.ndarray:
    """Each centred point's scale in a Gaussian scale mixture ``x = s * g``, shape (n,), root mean square 1.

    A point's squared radius is ``s**2 * |g|**2``: its spread mixes the scales' with the Gaussian's own chi-square
    spread, which is large when the points vary along few axes (in one dimension the radius *is* the coordinate).
    Taking the radius as the scale counts that spread twice, and the null gets heavier tails than the data, so that
    even one Gaussian concept becomes "two" once n is large (docs/thresholds.md, "Large tops"). So the weights are
    the radii to a power ``a`` in [0, 1] chosen so that their kurtosis is the scales' alone:
    ``E r**4 / (E r**2)**2 = E s**4 / (E s**2)**2 * (1 + 2 sum lambda**2 / (sum lambda)**2)`` for the Gaussian's
    spectrum lambda (exact; the spectrum's ``sum lambda**2`` debiased by ``(sum lambda)**2 / n``, the excess a sample
    spectrum has). A Gaussian gets ``a`` near 0 (equal weights), a wide scale mixture in many dimensions ``a`` near 1.
    ``gram``: ``centred @ centred.T`` (n <= d) or ``centred.T @ centred``, when the caller has it.
    """
    n, d = centred.shape
    squared = np.sum(centred**2, axis=1)
    if n < 3 or not np.any(squared > 0):
        return np.ones(n)
    if gram is None:
        gram = centred @ centred.T if n <= d else centred.T @ centred
    total = float(np.sum(squared))
    inv_dims = max(float(np.sum(gram**2)) / total**2 - 1.0 / n, 1.0 / min(n - 1, d))  # sum lambda^2 / (sum lambda)^2
    target = max(_kurtosis(squared, 1.0) / (1.0 + 2.0 * inv_dims), 1.0)
    lo, hi = 0.0, 1.0
    if _kurtosis(squared, hi) <= target:
        lo = hi
    for _ in range(30):  # the kurtosis of r**a grows with a: bisect to ~1e-9
        if lo == hi:
            break
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _kurtosis(squared, mid) < target else (lo, mid)
    weight = np.where(squared > 0, squared, 0.0) ** (lo / 2)
    return weight / np.sqrt(np.mean(weight**2)) if np.any(weight > 0) else np.ones(n)


def _kurtosis(squared: np.ndarray, power: float) -> float:
    """``E w**4 / (E w**2)**2`` for ``w = r**power`` (``squared`` = r**2, shape (n,))."""
    w2 = squared**power
    return float(np.mean(w2**2) / np.mean(w2) ** 2)


def null_sampler(points: np.ndarray, rng: np.random.Generator) -> Callable[[int], np.ndarray]:
    """A function ``draws -> shares`` of :func:`null_shares` for ``points``, the model computed once."""
    axes, weight = null_model(points)
    n = len(points)
    scale = axes[None, :] * weight[:, None]

    def shares(draws: int) -> np.ndarray:
        out = np.empty(draws)
        for b in range(draws):
            if scale.shape[1] == 0:
                out[b] = 0.0
                continue
            y = rng.standard_normal((n, scale.shape[1])) * scale
            out[b] = split_share(y, _ward_root_height(y))
        return out

    return shares


def _ward_root_height(y: np.ndarray) -> float:
    """The height of ward's last merge of the rows of ``y`` (n, k).

    From a few hundred rows in many dimensions the pairwise distances come from the Gram matrix (BLAS) rather than
    scipy's per-pair loop: the same tree, heights equal to ~1e-15, 1.7x faster at n = 500 and 3.3x at 1,000 (k = n - 1).
    """
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    n, k = y.shape
    if n < GRAM_FROM or k < 32:
        return float(linkage(y, method="ward")[-1, 2])
    squared = np.einsum("ij,ij->i", y, y)
    d2 = squared[:, None] + squared[None, :] - 2.0 * (y @ y.T)
    np.fill_diagonal(d2, 0.0)
    return float(linkage(np.sqrt(np.maximum(squareform(d2, checks=False), 0.0)), method="ward")[-1, 2])


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
        ``null_sd``, ``draws`` (FIRST_DRAWS for a clear split, NULL_DRAWS near the level, up to MAX_DRAWS while
        within NEAR standard errors of it), ``p_value``, ``split``.
        A split below the root whose share is under ``MIN_EXCESS`` cannot be kept whatever its null: none is drawn
        (``null_mean``, ``null_sd`` and ``p_value`` None, ``draws`` 0). The root's p-value is always measured (it is
        the neuron's ``first_split_p``), with FIRST_DRAWS only when its share is under ``MIN_EXCESS``.
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
        if tests and share < MIN_EXCESS:  # its excess over any null's mean is below MIN_EXCESS: no null is drawn
            tests.append(_undrawn(node, share))
            n_clusters += 1
            continue
        if first_null is not None and not tests:
            null = np.asarray(first_null, dtype=np.float64)
        else:
            sample = null_sampler(points, rng)
            null = sample(FIRST_DRAWS)
            if level - CLEAR_BELOW < _z(share, null) < level + CLEAR_ABOVE and share >= MIN_EXCESS:
                null = np.concatenate([null, sample(NULL_DRAWS - FIRST_DRAWS)])
                # more draws only while they could change the answer: near the level, the effect size met
                while (len(null) < MAX_DRAWS and near_level(_z(share, null), level, len(null))
                       and share - float(null.mean()) >= MIN_EXCESS):
                    null = np.concatenate([null, sample(min((GROWTH - 1) * len(null), MAX_DRAWS - len(null)))])
        z = _z(share, null)
        p_value = float(norm.sf(z))
        split = p_value < significance and share - float(null.mean()) >= MIN_EXCESS
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


def _undrawn(node: Any, share: float) -> dict[str, Any]:
    """The record of a split below the root too small to be kept whatever its null (no null drawn: None, 0 draws)."""
    return {"size": int(node.get_count()), "sides": [int(node.get_left().get_count()), int(node.get_right().get_count())],
            "share": share, "null_mean": None, "null_sd": None, "draws": 0, "p_value": None, "split": False}


def _z(share: float, null: np.ndarray) -> float:
    """The split's z-score under the null samples (+-inf when they do not vary)."""
    sd = float(null.std(ddof=1))
    if sd > 0:
        return (share - float(null.mean())) / sd
    return np.inf if share > null.mean() else -np.inf
