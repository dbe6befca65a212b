"""Whether the two thresholds fit the scale of a layer's distances, said in numbers of that layer.

The paper's ``distance_threshold = outlier_threshold = 15`` are tuned to Inception V3 ``Mixed_7b``.
Distances scale with the activations, so on another layer the same numbers can cut no merge (every
neuron one cluster), cut every merge (every example its own cluster, none big enough to keep), or
call every example an outlier (no concept anywhere). Any of these, over all the live neurons looked
at, makes the result a statement about the thresholds; ``scale_problems`` says so with the layer's
own merge heights and squared centroid distances, so that a user can pick thresholds on its scale.

Notation: for m neurons, ``linkage`` (m, N - 1, 4) SciPy ward linkages of their top-N examples,
``centroid_sq_distances`` (m, N) and ``labels`` (m, N) as in ConceptSet.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import ThresholdScaleWarning
from .params import Params

OFF_SCALE = 2.0  # a distance threshold this many times the largest merge height cannot tell one neuron from another
MOST = 0.5  # over this share of a scan's live neurons with no concept (or only singletons), the threshold is the story


def scale_problems(linkage: np.ndarray, centroid_sq_distances: np.ndarray, labels: np.ndarray, params: Params,
                   *, what: str = "these neurons") -> list[str]:
    """Sentences describing how the thresholds miss the scale of ``what`` (empty when they fit).

    Parameters
    ----------
    linkage : array of shape (m, N - 1, 4) or (N - 1, 4)
    centroid_sq_distances, labels : arrays of shape (m, N) or (N,)
    params : Params
    """
    z = np.asarray(linkage, dtype=np.float64).reshape(-1, *np.shape(linkage)[-2:])
    sq = np.asarray(centroid_sq_distances, dtype=np.float64).reshape(len(z), -1)
    lab = np.asarray(labels).reshape(len(z), -1)
    # auto decides C by a test on unit-length examples, which has no scale to miss.
    if len(z) == 0 or params.auto_distance:
        return []
    heights = z[:, :, 2]
    n_top = heights.shape[1] + 1
    d = params.fixed_distance
    c = np.count_nonzero(heights >= d, axis=1) + 1
    scale = (f"the ward merge heights of the top {n_top} examples of {what} have median {np.median(heights):.3g} "
             f"and 97th percentile {np.percentile(heights, 97):.3g}")
    problems = []
    # One cluster is a fair answer for one neuron (a monosemantic one); for every neuron of a scan, with a
    # threshold far above every merge, it is the threshold speaking.
    if len(z) > 1 and d > OFF_SCALE * heights.max():
        problems.append(f"distance_threshold {d:g} is more than {OFF_SCALE:g}x every merge height of {what} (largest "
                        f"{heights.max():.3g}), so each is one cluster whatever its examples; {scale}.")
    problems += _most_without_concepts(heights, lab, c, d, n_top, what=what, scale=scale)
    outlier = params.outlier_rule
    if isinstance(outlier, str):  # 'auto': a fence per cluster, on no fixed scale
        return problems
    outliers = sq >= outlier
    sq_scale = (f"the squared distances of the top examples of {what} to their k-means centroid have median "
                f"{np.median(sq):.3g} and 90th percentile {np.percentile(sq, 90):.3g}")
    if np.all(outliers.mean(axis=1) > 0.5):
        problems.append(f"outlier_threshold {params.outlier_threshold:g} makes most of the top examples of {what} "
                        f"outliers; {sq_scale}.")
    elif np.all(lab < 0):
        if np.all(c * params.min_cluster_size > n_top):
            problems.append(f"no concept was kept for {what}: distance_threshold {d:g} cuts {int(c.min())} or more clusters "
                            f"from {n_top} examples, fewer than min_cluster_size ({params.min_cluster_size}) members on "
                            f"average; {scale}.")
        else:
            problems.append(f"no concept was kept for {what}: every cluster lost its members to outlier_threshold "
                            f"{params.outlier_threshold:g} or was smaller than min_cluster_size ({params.min_cluster_size}); "
                            f"{scale}; {sq_scale}.")
    return problems


def _most_without_concepts(heights: np.ndarray, lab: np.ndarray, c: np.ndarray, d: float, n_top: int, *, what: str,
                           scale: str) -> list[str]:
    """The sentence for a scan where over ``MOST`` of the neurons get no concept or only singleton clusters
    (none when every neuron gets none: that case has its own sentence, which names the cause)."""
    none = np.all(lab < 0, axis=1)
    singletons = c >= n_top  # every example its own cluster: the threshold is below every merge
    bad = none | singletons
    if len(lab) < 2 or bad.mean() <= MOST or none.all():
        return []
    quantile = float(np.mean(heights < d))
    return [f"{int(bad.sum())} of {what} ({bad.mean():.0%}, over {MOST:.0%}) get 0 concepts"
            + (f" ({int(singletons.sum())} of them only singleton clusters)" if singletons.any() else "")
            + f" at distance_threshold {d:g}, which falls at quantile {quantile:.2f} of their ward merge heights; {scale}."]


def warn_scale(problems: list[str], *, hint: str) -> None:
    """Issue a ThresholdScaleWarning for each problem, ending with ``hint`` (what to set instead)."""
    for problem in problems:
        warnings.warn(f"{problem} {hint}", ThresholdScaleWarning, stacklevel=3)


SCALE_FIX = "Fix: --distance-threshold auto, or thresholds on this layer's scale from `conceptvec thresholds`."
SCALE_HINT = ("The paper's 15 and 15 fit Inception V3 Mixed_7b only: use distance_threshold='auto' "
              "(--distance-threshold auto), which is the same on every layer, or choose thresholds on this layer's "
              "scale (from the numbers above, or with `conceptvec thresholds`).")
