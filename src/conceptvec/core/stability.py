"""Whether a neuron's concepts come back when its top examples are resampled and k-means is re-seeded.

Notation as in ``scan.disentangle``: X holds the N top examples of a neuron, shape (N, n_units), and V
its k concept vectors, shape (k, n_units). Each of ``runs`` runs draws N rows of X with replacement
(a bootstrap sample), runs steps 2-4 on them with another k-means seed, and matches the original
concepts to the run's by the Hungarian method (``scipy.optimize.linear_sum_assignment``) on the Jaccard
similarity of their members, counted over the examples drawn in that run (clusterwise stability,
Hennig 2007, as R's ``fpc::clusterboot``). A concept *reappears* in a run when its match has Jaccard
>= ``min_jaccard`` (Hennig reads >= 0.75 as stable, <= 0.5 as dissolved). Concepts that reappear
in few runs split the neuron by chance rather than by what its examples hold.

With ``distance_threshold="auto"`` each run draws ``SUBSAMPLE`` of the rows without replacement instead
(subsampling, Ben-Hur et al. 2002): a bootstrap sample repeats rows, and a repeated row is a tight
clump that the significance test rightly calls a separate group, so bootstrap runs would split more
than any real sample of examples does (measured on the demo's neuron 29: bootstrap runs found 2-5
clusters where the full sample and 80 % subsamples found 2 in 8 of 10).

Members, not directions: on an all-positive layer every concept vector shares the layer's mean
component, so cosines between any two are high. On one continuous blob of 60 examples cut into two
arbitrary concepts, matching by cosine >= 0.9 "found" them again in 70-80 % of the runs; matching by
members does not share that blind spot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from threadpoolctl import threadpool_limits

from ..errors import ConceptvecError
from .options import whole_number
from .params import UNSTABLE_BELOW, Params
from .steps import LayerNullShares, cluster_top

__all__ = ["Stability", "concept_stability", "resampling"]

SUBSAMPLE = 0.8  # share of the rows each run keeps, without replacement, under distance_threshold="auto"


def resampling(params: Params) -> str:
    """How the stability runs draw the top examples under ``params``: ``"bootstrap"`` or ``"subsample 0.8"``."""
    return f"subsample {SUBSAMPLE:g}" if params.auto_distance else "bootstrap"


@dataclass(frozen=True)
class Stability:
    """How often each concept and the concept count come back under resampling.

    Attributes
    ----------
    reappearance : array of shape (k,)
        Share of runs in which each concept has a match with Jaccard >= ``min_jaccard``.
    jaccard : array of shape (runs, k)
        Each concept's matched Jaccard per run (0 when it had no match); ``jaccard.mean(0)`` is Hennig's stability.
    counts : array of shape (runs,)
        Concepts found by each run.
    count_agreement : float
        Share of runs that found as many concepts as the original.
    runs, min_jaccard, seed
        As given.
    resampling : str
        ``"bootstrap"``, or ``"subsample 0.8"`` under ``distance_threshold="auto"``.
    """

    reappearance: np.ndarray
    jaccard: np.ndarray
    counts: np.ndarray
    count_agreement: float
    runs: int
    min_jaccard: float
    seed: int
    resampling: str = "bootstrap"

    def unstable(self, *, level: float = UNSTABLE_BELOW) -> np.ndarray:
        """Mask of shape (k,): concepts that reappear in fewer than ``level`` of the runs."""
        return self.reappearance < level

    def to_dict(self) -> dict[str, Any]:
        return {"reappearance": self.reappearance.tolist(), "mean_jaccard": self.jaccard.mean(axis=0).tolist(),
                "counts": self.counts.tolist(), "count_agreement": self.count_agreement, "runs": self.runs,
                "min_jaccard": self.min_jaccard, "seed": self.seed, "resampling": self.resampling}


MAX_STABILITY = 1000  # resampling runs: beyond this the answer no longer changes, only the minutes


def concept_stability(
    x: np.ndarray, labels: np.ndarray, *, params: Params, runs: int = 20, min_jaccard: float = 0.75, seed: int = 0,
    layer_null: LayerNullShares | None = None,
) -> Stability:
    """Resample the top examples ``runs`` times, re-run steps 2-4, and match the concepts back (see the module notes).

    Parameters
    ----------
    x : array of shape (N, n_units)
        The neuron's top examples' activations (``ConceptSet.top_activations``).
    labels : array of shape (N,)
        Their concepts, -1 when removed (``ConceptSet.labels``); k = ``labels.max() + 1`` concepts.
    params : Params
        The parameters that gave them; run b uses k-means seed ``params.seed + b + 1``.
    runs : int
        Bootstrap samples (subsamples under ``distance_threshold="auto"``), each with its own k-means seed.
    min_jaccard : float
        A run's concept is the same concept from this Jaccard similarity of members up.
    seed : int
        Seed of the bootstrap draws.
    layer_null : LayerNull, optional
        With ``Params(null="layer")``: the layer's null the concepts were tested against (``core.layernull``); each
        subsample's first split is compared with it as drawn (at N, not the subsample's size).
    """
    runs = whole_number("runs", runs, 1, MAX_STABILITY, why="each run clusters the neuron again; 20 to 100 tell which concepts come back")
    seed = whole_number("seed", seed, 0)
    if isinstance(min_jaccard, bool) or not isinstance(min_jaccard, (int, float, np.floating)) or not 0 < min_jaccard <= 1:
        raise ConceptvecError(f"min_jaccard must be a number in (0, 1], got {min_jaccard!r}.")
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.shape != (len(x),):
        raise ConceptvecError(f"labels must have one entry per top example ({len(x)}), got shape {labels.shape}.")
    k = int(labels.max()) + 1 if len(labels) else 0
    rng = np.random.default_rng(seed)
    jaccard = np.zeros((runs, k))
    counts = np.zeros(runs, dtype=np.int64)
    with threadpool_limits(1):  # small work, many times
        for b in range(runs):
            if params.auto_distance:
                drawn = np.sort(rng.choice(len(x), size=int(round(SUBSAMPLE * len(x))), replace=False))
            else:
                drawn = np.sort(rng.integers(0, len(x), size=len(x)))
            found = cluster_top(x[drawn], params.replace(seed=params.seed + b + 1), layer_null=layer_null)["labels"]
            counts[b] = int(found.max()) + 1
            if k and counts[b]:
                present = np.zeros(len(x), dtype=bool)
                present[drawn] = True
                # members as sets of original examples: ours among those drawn, the run's by the rows it was given
                ours = [(labels == j) & present for j in range(k)]
                theirs = [np.isin(np.arange(len(x)), drawn[found == j]) for j in range(counts[b])]
                sim = np.array([[np.sum(a & c) / max(np.sum(a | c), 1) for c in theirs] for a in ours])
                rows, cols = linear_sum_assignment(-sim)
                jaccard[b, rows] = sim[rows, cols]
    return Stability(
        reappearance=(jaccard >= min_jaccard).mean(axis=0) if k else np.zeros(0),
        jaccard=jaccard,
        counts=counts,
        count_agreement=float(np.mean(counts == k)),
        runs=runs,
        min_jaccard=float(min_jaccard),
        seed=seed,
        resampling=resampling(params),
    )
