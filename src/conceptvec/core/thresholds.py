"""Setting the two thresholds for a layer by a stated rule, when the paper's 15/15 does not fit its scale.

The paper's ``distance_threshold = outlier_threshold = 15`` are tuned to Inception V3 ``Mixed_7b``;
a layer with other activation magnitudes needs its own. The rule here is layer-wide, so it is the
same for every neuron and chosen without looking at any one neuron's result:

- ``distance_threshold``: the ``distance_percentile``-th percentile of the ward merge heights of the
  top-N examples of every live unit;
- ``outlier_threshold``: the ``outlier_percentile``-th percentile of the squared distances of those
  examples to their own k-means centroid, with C from that distance threshold.

Only live units count (``core.live``: their top examples are ranked, whatever their sign).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import ConceptvecError
from ..progress import progress_bar
from .arrays import as_matrix
from .kmeans import kmeans_step
from .live import live_columns
from .steps import n_clusters_at, ward_linkage
from .params import Params
from .streaming import top_k_desc

__all__ = ["layer_thresholds", "live_units", "rule_description"]


def live_units(acts: np.ndarray, top: int) -> np.ndarray:
    """Indices of the units of ``acts`` (n_examples, n_units) that have a top of ``top`` examples (``core.live``)."""
    return live_columns(acts, top)


def layer_thresholds(
    acts: np.ndarray,
    *,
    params: Params = Params(),
    distance_percentile: float = 97.0,
    outlier_percentile: float = 90.0,
    progress: bool = False,
) -> tuple[Params, dict[str, Any]]:
    """``params`` with both thresholds set by the layer-wide rule, and a record of the rule and its inputs."""
    acts = as_matrix(acts)[0]  # None, a path or a ragged list: one line, not an IndexError
    for name, q in (("distance_percentile", distance_percentile), ("outlier_percentile", outlier_percentile)):
        if not 0 < q <= 100:
            raise ConceptvecError(f"{name} must be in (0, 100], got {q}.")
    if params.top > acts.shape[0]:
        raise ConceptvecError(f"top={params.top} is larger than the number of examples ({acts.shape[0]}).")
    units = live_units(acts, params.top)
    if len(units) == 0:
        raise ConceptvecError(f"no live unit in this layer: every unit's top {params.top} examples all tie, or end at the rectified "
                              f"floor 0 (the unit is above 0 on fewer examples); the rule needs at least one. Lower top.")
    tops = {u: np.asarray(acts[top_k_desc(acts[:, u], params.top)], dtype=np.float64) for u in units.tolist()}
    linkages = {u: ward_linkage(x) for u, x in tops.items()}
    distance = float(np.percentile(np.concatenate([z[:, 2] for z in linkages.values()]), distance_percentile))
    sq_all = []
    # one thread: k-means on a neuron's top rows is small work (see scan.disentangle)
    with progress_bar("unit", disable=not progress, transient=True) as bar, threadpool_limits(1):
        task = bar.add_task("calibrate thresholds", total=len(units))
        for u, x in tops.items():
            _, sq = kmeans_step(x, n_clusters_at(linkages[u], distance), params)
            sq_all.append(sq)
            bar.advance(task)
    outlier = float(np.percentile(np.concatenate(sq_all), outlier_percentile))
    record = {
        "rule": rule_description(distance_percentile=distance_percentile, outlier_percentile=outlier_percentile, top=params.top),
        "distance_percentile": distance_percentile,
        "outlier_percentile": outlier_percentile,
        "n_live_units": int(len(units)),
        "distance_threshold": distance,
        "outlier_threshold": outlier,
    }
    return params.replace(distance_threshold=distance, outlier_threshold=outlier), record


def rule_description(*, distance_percentile: float, outlier_percentile: float, top: int) -> str:
    """The layer-wide rule in words, as every output that applies it records it."""
    return (f"distance_threshold = {distance_percentile:g}th percentile of the ward merge heights of every live unit's "
            f"top-{top}; outlier_threshold = {outlier_percentile:g}th percentile of their squared distances to "
            f"their k-means centroid")
