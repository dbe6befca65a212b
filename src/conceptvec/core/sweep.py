"""What a distance threshold means on a layer: where it falls among the layer's merge heights, and
how many concepts per neuron it gives, against every other threshold (the layer-wide paper Fig. A.8).

The paper's ``distance_threshold = 15`` is a height on Inception V3 ``Mixed_7b``'s scale. On another
layer, what it means is where it falls among that layer's ward merge heights: a threshold above the
q-th quantile of them cuts the (1 - q) share of merges, and C = 1 + the number of merges cut. This
module measures that for the live neurons of a layer (``thresholds.live_units``), with one ward
linkage per neuron reused for every threshold, and one k-means per distinct C per neuron (k-means
depends on C alone, so every threshold giving the same C shares it).

Notation: A is the activation matrix, shape (n_examples, n_units); for m live neurons with top-N
examples, ``heights`` is (m, N - 1), their ward merge heights; ``grid`` (g,) the thresholds swept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial.distance import pdist, squareform

from ..errors import ConceptvecError
from ..progress import progress_bar
from .arrays import as_matrix, read_rows
from .live import dead_summary, live_mask
from .kmeans import kmeans_steps
from .steps import cluster_top, n_clusters_at, remove_outliers, ward_linkage
from .metrics import concept_counts
from .params import Params
from .selection import parse_neurons
from .streaming import top_examples_and_floors
from .thresholds import rule_description

__all__ = ["QUANTILES", "ThresholdSweep", "no_concept_possible", "quantile_of", "sweep_neuron", "threshold_grid", "threshold_sweep"]

QUANTILES = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.97, 0.99, 1.0)
MAX_BINNED = 4  # concepts per neuron are counted 0, 1, 2, 3 and "4 or more" along the grid


def quantile_of(heights: np.ndarray, threshold: float) -> float:
    """The share of merge heights below ``threshold``: the share of merges made at it (a quantile in [0, 1])."""
    h = np.asarray(heights, dtype=np.float64).ravel()
    if h.size == 0:
        raise ConceptvecError("no merge heights: the layer needs at least one live neuron with 2 or more top examples.")
    return float(np.count_nonzero(h < threshold) / h.size)


def threshold_grid(heights: np.ndarray, marked: tuple[float, ...] = (), *, n: int = 40) -> np.ndarray:
    """``n`` thresholds spaced geometrically over the layer's merge heights, from their median (where C is about
    N / 2, so no concept survives) to above the highest (C = 1), widened to hold and holding exactly every ``marked``."""
    h = np.asarray(heights, dtype=np.float64).ravel()
    positive = h[h > 0]
    if positive.size == 0:
        raise ConceptvecError("every merge height is zero (the top examples are identical); no threshold can split them.")
    lo = min([float(np.median(positive))] + [float(t) for t in marked])
    hi = max([float(positive.max()) * 1.1] + [float(t) * 1.1 for t in marked])
    return np.unique(np.concatenate([np.geomspace(lo, hi, n), np.asarray(marked, dtype=np.float64)]))


@dataclass(frozen=True)
class ThresholdSweep:
    """The method's step 2 and 3 counts over a grid of distance thresholds, for the live neurons of a layer.

    Attributes
    ----------
    units : array of shape (m,)
        The live neurons looked at.
    not_live : array
        The selected neurons left out: not live (``core.live``).
    heights : array of shape (m, N - 1)
        Ward merge heights of each neuron's top-N examples.
    grid : array of shape (g,)
        Distance thresholds, ascending; it holds ``params.distance_threshold`` and the rule's threshold.
    n_clusters, n_concepts : arrays of shape (m, g)
        C and the number of concepts kept per neuron at each threshold (``params.outlier_threshold``).
    params : Params
        The thresholds given (the paper's 15 and 15 by default) and the rest of the method.
    rule : dict
        ``thresholds.layer_thresholds``' rule over these neurons: its record, and ``n_concepts`` (m,).
    auto : dict
        ``distance_threshold="auto"`` on the same neurons (``params.significance``): ``n_clusters``
        and ``n_concepts`` (m,).
    """

    units: np.ndarray
    not_live: np.ndarray
    heights: np.ndarray
    grid: np.ndarray
    n_clusters: np.ndarray
    n_concepts: np.ndarray
    params: Params
    rule: dict[str, Any]
    auto: dict[str, Any]

    def at(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(C, concepts kept) per neuron at a threshold of the grid, each of shape (m,)."""
        hits = np.flatnonzero(self.grid == threshold)
        if hits.size == 0:
            raise ConceptvecError(f"distance threshold {threshold:g} is not on the sweep's grid; give it as thresholds=[...] .")
        return self.n_clusters[:, hits[0]], self.n_concepts[:, hits[0]]

    def binned_shares(self) -> dict[str, list[float]]:
        """Per grid threshold, the share of neurons with 0, 1, 2, 3 and 4 or more concepts."""
        m = max(1, len(self.units))
        shares = {str(k): (np.sum(self.n_concepts == k, axis=0) / m).tolist() for k in range(MAX_BINNED)}
        shares[f"{MAX_BINNED}+"] = (np.sum(self.n_concepts >= MAX_BINNED, axis=0) / m).tolist()
        return shares

    def to_dict(self) -> dict[str, Any]:
        """The numbers, as plain JSON values: what the threshold means here, the rule, and the curve."""
        t = self.params.fixed_distance
        c, k = self.at(t)
        rule_c, _ = self.at(self.rule["distance_threshold"])
        h = self.heights.ravel()
        return {
            "n_live": int(len(self.units)),
            "not_live": self.not_live.tolist(),
            "merge_heights": {
                "n": int(h.size),
                "quantiles": {f"{q:g}": float(np.quantile(h, q)) for q in QUANTILES},
                "mean": float(h.mean()),
            },
            "given": {
                "distance_threshold": t,
                "outlier_threshold": self.params.outlier_threshold,
                "quantile": quantile_of(h, t),
                "clusters_per_neuron": _histogram(c),
                "mean_clusters_per_neuron": float(c.mean()),
                **concept_counts(k),
            },
            "layer_rule": {
                **{key: value for key, value in self.rule.items() if key != "n_concepts"},
                "quantile": quantile_of(h, self.rule["distance_threshold"]),
                "clusters_per_neuron": _histogram(rule_c),
                **concept_counts(self.rule["n_concepts"]),
            },
            "auto": {
                "distance_threshold": "auto",
                "outlier_threshold": "auto",
                "significance": self.params.significance,
                "clusters_per_neuron": _histogram(self.auto["n_clusters"]),
                "mean_clusters_per_neuron": float(np.mean(self.auto["n_clusters"])),
                **concept_counts(self.auto["n_concepts"]),
            },
            "curve": {
                "threshold": self.grid.tolist(),
                "quantile": [quantile_of(h, g) for g in self.grid],
                "mean_clusters_per_neuron": self.n_clusters.mean(axis=0).tolist(),
                "mean_concepts_per_neuron": self.n_concepts.mean(axis=0).tolist(),
                "share_of_neurons_with_concepts": self.binned_shares(),
            },
        }


def _histogram(values: np.ndarray) -> dict[str, int]:
    counts = np.bincount(np.asarray(values, dtype=np.int64), minlength=1)
    return {str(i): int(v) for i, v in enumerate(counts) if v}


MAX_GRID = 1000


def check_representation(params: Params) -> None:
    """The sweep clusters the layer's rows: a representation that needs the model per neuron is refused."""
    if params.representation != "activations":
        raise ConceptvecError(f"conceptvec thresholds sweeps the layer's activations; representation={params.representation!r} "
                              f"needs the model for every neuron. Leave --representation out.")


def threshold_sweep(
    acts: Any,
    *,
    params: Params = Params(),
    neurons: Any = None,
    thresholds: Any = None,
    n_grid: int = 40,
    distance_percentile: float = 97.0,
    outlier_percentile: float = 90.0,
    progress: bool = False,
    map_neurons: Callable[..., Iterable[Any]] | None = None,
) -> ThresholdSweep:
    """Concepts per live neuron across distance thresholds, where ``params.distance_threshold`` falls, and what
    the layer-quantile rule and ``distance_threshold="auto"`` give on the same neurons.

    Parameters
    ----------
    acts : array of shape (n_examples, n_units), or an ActivationStore
    params : Params
        ``distance_threshold`` is the threshold asked about (paper: 15); ``outlier_threshold``,
        ``min_cluster_size``, ``top`` and the k-means settings are used at every threshold.
    neurons : int, sequence or text such as ``"0-99"``, optional
        The neurons looked at (default all); only the live ones count.
    thresholds : array of shape (g,), optional
        The grid; default :func:`threshold_grid` (``n_grid`` thresholds over the layer's merge heights).
        The given threshold and the rule's are always added.
    distance_percentile, outlier_percentile : float
        ``thresholds.layer_thresholds``' rule, computed over the same neurons for comparison.
    map_neurons : callable, optional
        ``map_neurons(sweep_neuron, tasks)``: runs :func:`sweep_neuron` on every task and yields the results in
        order (default: the built-in ``map``, in this process; ``scan.sweep`` passes a process pool's).

    Returns
    -------
    ThresholdSweep
    """
    if not isinstance(params, Params):
        raise ConceptvecError(f"params must be a conceptvec.Params, got {type(params).__name__}.")
    check_representation(params)
    if params.auto_distance:
        raise ConceptvecError("the sweep says what a fixed distance threshold means on this layer and reports 'auto' beside "
                              "it in any case; give the fixed one to compare (the paper's 15 by default).")
    for name, q in (("distance_percentile", distance_percentile), ("outlier_percentile", outlier_percentile)):
        if not 0 < q <= 100:
            raise ConceptvecError(f"{name} must be in (0, 100], got {q}.")
    if isinstance(n_grid, bool) or not isinstance(n_grid, (int, np.integer)) or not 2 <= n_grid <= MAX_GRID:
        raise ConceptvecError(f"n_grid must be a whole number >= 2 and at most {MAX_GRID} (--grid: every threshold clusters "
                              f"every neuron again; 40 draws the curve), got {n_grid!r}.")
    matrix, _ = as_matrix(acts)
    n_examples, n_units = matrix.shape
    selected = parse_neurons(neurons, n_units)
    if params.top > n_examples:
        raise ConceptvecError(f"top={params.top} is larger than the number of examples ({n_examples}); use --top (Params(top=...)) "
                              f"<= {n_examples}.")

    # One pass over A for every selected neuron's top examples, in the method's top-k order.
    top_rows, top_scores, floors = top_examples_and_floors(matrix, params.top, neurons=selected, progress=progress)
    live = live_mask(top_scores, floors)
    units, rows = selected[live], top_rows[live]
    if len(units) == 0:
        raise ConceptvecError(f"none of the {len(selected)} selected neuron(s) is live "
                              f"({dead_summary(top_scores, selected, floors=floors, shown=5)}); "
                              f"select others with --neurons, or lower --top.")

    # Step 2's ward trees once per neuron (they do not depend on the threshold), then every threshold read off them.
    xs = (read_rows(matrix, rows[i]) for i in range(len(units)))
    linkages = list((map_neurons or map)(ward_linkage, xs))
    heights = np.stack([z[:, 2] for z in linkages])
    rule_distance = float(np.percentile(heights, distance_percentile))
    grid = (threshold_grid(heights, (params.fixed_distance, rule_distance), n=n_grid) if thresholds is None
            else np.unique(np.concatenate([_checked_grid(thresholds), [params.fixed_distance, rule_distance]])))

    n_clusters = np.stack([[n_clusters_at(z, t) for t in grid] for z in linkages]).astype(np.int64)
    c_rule = [n_clusters_at(z, rule_distance) for z in linkages]
    tasks = ((read_rows(matrix, rows[i]), n_clusters[i], c_rule[i], params) for i in range(len(units)))
    n_concepts = np.zeros_like(n_clusters)
    at_rule = []
    auto = {"n_clusters": np.zeros(len(units), dtype=np.int64), "n_concepts": np.zeros(len(units), dtype=np.int64)}
    with progress_bar("neuron", disable=not progress) as bar:
        task = bar.add_task("k-means at each C, and auto", total=len(units))
        for i, done in enumerate((map_neurons or map)(sweep_neuron, tasks)):
            n_concepts[i], rule_fit, auto["n_clusters"][i], auto["n_concepts"][i] = done
            at_rule.append(rule_fit)
            bar.advance(task)
    rule_outlier = float(np.percentile(np.concatenate([sq for _, sq in at_rule]), outlier_percentile))
    rule_concepts = np.array([len(remove_outliers(labels, sq, rule_outlier, params.min_cluster_size)[1]) for labels, sq in at_rule],
                             dtype=np.int64)
    rule = {
        "rule": rule_description(distance_percentile=distance_percentile, outlier_percentile=outlier_percentile,
                                 top=params.top) + " (thresholds.layer_thresholds)",
        "distance_percentile": distance_percentile,
        "outlier_percentile": outlier_percentile,
        "n_live_units": int(len(units)),
        "distance_threshold": rule_distance,
        "outlier_threshold": rule_outlier,
        "n_concepts": rule_concepts,
    }
    return ThresholdSweep(units=units, not_live=selected[~live], heights=heights, grid=grid, n_clusters=n_clusters,
                          n_concepts=n_concepts, params=params, rule=rule, auto=auto)


def sweep_neuron(task: tuple[np.ndarray, np.ndarray, int, Params]) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], int, int]:
    """One neuron's part of the sweep: ``task`` = (x, its top rows (N, n_units); C at each threshold (g,); C at the
    rule's threshold; params). Returns (concepts at each threshold (g,), the k-means (labels, sq) at the rule's C,
    auto's C, auto's concepts). One k-means per distinct C: k-means depends on C alone."""
    x, n_clusters, c_rule, params = task
    counts = np.unique(n_clusters).tolist()
    if no_concept_possible(x, params):  # 0 concepts at every C, proven: only the rule's C needs its k-means
        fits = kmeans_steps(x, [int(c_rule)], params)
        concepts_at = dict.fromkeys(counts, 0)
    else:  # steps 3 and 4 depend on C alone: one k-means per distinct C (their k-means++ batched: core.plusplus)
        fits = kmeans_steps(x, counts + [int(c_rule)], params)
        concepts_at = {c: _n_concepts(*fit, params) for c, fit in fits.items()}
    n_concepts = np.array([concepts_at[c] for c in n_clusters.tolist()], dtype=np.int64)
    found = cluster_top(x, params.replace(distance_threshold="auto", outlier_threshold="auto"))
    return n_concepts, fits[int(c_rule)], int(found["n_agglomerative"]), len(found["kmeans_cluster_ids"])


def _n_concepts(kmeans_labels: np.ndarray, sq: np.ndarray, params: Params) -> int:
    """``len(remove_outliers(...)[1])``: the clusters left with ``min_cluster_size`` members or more once outliers go
    (for a fixed outlier threshold counted directly, without numbering every example's concept)."""
    if isinstance(params.outlier_rule, str):
        return len(remove_outliers(kmeans_labels, sq, params.outlier_rule, params.min_cluster_size)[1])
    kept = kmeans_labels[~(sq >= params.outlier_rule)]  # outliers.outlier_mask's rule for a fixed threshold
    return int(np.count_nonzero(np.bincount(kept) >= params.min_cluster_size)) if len(kept) else 0


def no_concept_possible(x: np.ndarray, params: Params) -> bool:
    """Whether steps 3-4 keep no concept of x (N, n_units) at any C, whatever k-means does: true when no
    ``min_cluster_size`` examples lie pairwise closer than twice the outlier radius.

    With a fixed ``outlier_threshold`` r^2, a kept concept has ``min_cluster_size`` members each closer than r to its
    cluster's centroid, so pairwise closer than 2r (the triangle inequality). They would form a clique of that size
    in the graph linking examples closer than 2r; when the graph's (min_cluster_size - 1)-core is empty there is no
    such clique. The radius is widened by far more than the rounding of k-means' squared distances (expanded
    products of float64 rows), so the answer holds for the computed distances, not only the exact ones. On a layer
    where the threshold is off-scale (the paper's 15 on efficientnet-lite0 ``blocks.5``: 191 of 192 neurons) this
    spares the sweep every k-means but the rule's.
    """
    if isinstance(params.outlier_rule, str) or params.min_cluster_size < 2:  # "auto" fences are relative to each cluster
        return False
    r2 = float(params.outlier_rule)
    if r2 <= 0:
        return True  # no squared distance is below 0: every example is an outlier
    x = np.asarray(x, dtype=np.float64)
    slack = 1e-6 * (r2 + 4 * float(np.max(np.einsum("ij,ij->i", x, x))))  # >> float64 rounding of |a|^2 - 2ab + |b|^2
    close = squareform(pdist(x)) < 2 * np.sqrt(r2 + slack)
    np.fill_diagonal(close, False)
    alive = np.ones(len(x), dtype=bool)
    while alive.any():  # peel examples with fewer than min_cluster_size - 1 close ones left: the core
        weak = alive & (close[:, alive].sum(axis=1) < params.min_cluster_size - 1)
        if not weak.any():
            return False
        alive &= ~weak
    return True


def _checked_grid(thresholds: Any) -> np.ndarray:
    t = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ConceptvecError(f"thresholds must be finite numbers > 0, got {thresholds!r}.")
    return t
