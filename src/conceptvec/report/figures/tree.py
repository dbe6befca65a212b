"""Step 2's ward tree: paper Fig. A.7 (the dendrogram and its cut) and Fig. A.8 (clusters per threshold)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ...core.steps import n_clusters_at
from ...storage.conceptset import ConceptSet
from .common import concept_colour


def run_cut(cs: ConceptSet) -> tuple[float, str]:
    """The height at which the run cut the ward tree, and how to name it.

    With a fixed threshold, the threshold. With ``"auto"``, which tests splits rather than cutting at
    one height, the height midway between the merges that leave C clusters when cut there (the tree is
    then of the unit-length examples).
    """
    t = cut_height(cs.params, cs.linkage, int(cs.n_agglomerative))
    if not cs.params.auto_distance:
        return t, f"distance_threshold = {t:g}"
    return t, f"auto (significance {cs.params.significance:g}): cut between the merges that leave C"


def cut_height(params: Any, linkage: np.ndarray, n_agglomerative: int) -> float:
    """The height of ``run_cut`` from a neuron's parameters, ward tree (N - 1, 4) and C (a scan's row has no ConceptSet)."""
    if not params.auto_distance:
        return float(params.distance_threshold)
    heights = np.sort(linkage[:, 2])[::-1]
    if len(heights) == 0:
        return 1.0
    if n_agglomerative <= 1:
        return float(heights[0]) * 1.02
    return float(heights[n_agglomerative - 2] + heights[min(n_agglomerative - 1, len(heights) - 1)]) / 2


def dendrogram_data(cs: ConceptSet) -> dict[str, Any]:
    """The ward tree's leaf order (example indices, left to right), merge heights, and the cut."""
    from scipy.cluster.hierarchy import dendrogram

    tree = dendrogram(cs.linkage, no_plot=True)
    leaves = np.asarray(tree["leaves"])
    cut, name = run_cut(cs)
    return {
        "leaf_index": cs.top_indices[leaves].tolist(),
        "leaf_concept": cs.labels[leaves].tolist(),
        "heights": cs.linkage[:, 2].tolist(),
        "distance_threshold": cs.params.distance_threshold,
        "cut": cut,
        "cut_name": name,
        "n_clusters": n_clusters_at(cs.linkage, cut),
        "icoord": tree["icoord"],
        "dcoord": tree["dcoord"],
    }


def dendrogram_plot(cs: ConceptSet) -> Figure:
    """Paper Fig. A.7: the ward dendrogram of the top examples, the ``distance_threshold`` cut
    drawn, and each leaf's final concept as a coloured strip."""
    d = dendrogram_data(cs)
    t = d["cut"]
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.subplots()
    for xs, ys in zip(d["icoord"], d["dcoord"]):
        above = max(ys) >= t
        ax.plot(xs, ys, color="#888888" if above else "#1f4e79", lw=0.9)
    ax.axhline(t, color="#d62728", ls="--", lw=1.2)
    ax.text(2, t, f" {d['cut_name']}  →  {d['n_clusters']} clusters", color="#d62728", va="bottom", fontsize=8)
    n = len(d["leaf_index"])
    xs = 5 + 10 * np.arange(n)  # scipy places leaf k at 5 + 10 k
    top = max(max(d["heights"]), t) if n > 1 else t
    strip = -0.04 * top
    ax.scatter(xs, np.full(n, strip), marker="s", s=12, c=[concept_colour(j) for j in d["leaf_concept"]], clip_on=False)
    ax.set_xlim(0, 10 * n)
    ax.set_ylim(2 * strip, top * 1.05)
    ax.set_xticks([])
    ax.set_ylabel("ward merge height" + (" (unit-length examples)" if cs.params.auto_distance else ""))
    ax.set_xlabel("top examples (leaves); strip: final concept, grey = removed")
    ax.set_title("Ward dendrogram of the top examples", fontsize=9)
    return fig


def threshold_curve_data(cs: ConceptSet, thresholds: np.ndarray | None = None, n: int = 200) -> dict[str, Any]:
    """Number of clusters C (step 2) for each distance threshold; by default ``n`` values from 0
    to just above the highest merge, plus every merge height (where C changes)."""
    heights = cs.linkage[:, 2]
    cut, name = run_cut(cs)
    if thresholds is None:
        grid = np.linspace(0.0, float(heights.max()) * 1.1 if len(heights) else 1.0, n)
        thresholds = np.unique(np.concatenate([grid, heights, [cut]]))
    thresholds = np.asarray(thresholds, dtype=float)
    return {
        "threshold": thresholds.tolist(),
        "n_clusters": [n_clusters_at(cs.linkage, t) for t in thresholds],
        "distance_threshold": cs.params.distance_threshold,
        "cut": cut,
        "cut_name": name,
        "n_agglomerative": int(cs.n_agglomerative),
    }


def threshold_curve(cs: ConceptSet, thresholds: np.ndarray | None = None) -> Figure:
    """Paper Fig. A.8: the number of clusters across distance thresholds, the run's value marked."""
    d = threshold_curve_data(cs, thresholds)
    fig = Figure(figsize=(6.5, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.step(d["threshold"], d["n_clusters"], where="post", color="#1f4e79")
    t = d["cut"]
    ax.axvline(t, color="#d62728", ls="--", lw=1.2)
    run = "auto" if cs.params.auto_distance else f"{t:g}"
    ax.annotate(f"run: {run} → C = {d['n_agglomerative']}", (t, d["n_agglomerative"]), xytext=(8, 12),
                textcoords="offset points", color="#d62728", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("distance_threshold")
    ax.set_ylabel("number of clusters C")
    ax.set_title("Clusters at each distance threshold", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    return fig
