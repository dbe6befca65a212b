"""What a distance threshold means on a layer (``core.sweep``): the layer's merge heights with the
threshold's quantile, and concepts per neuron across thresholds (the layer-wide paper Fig. A.8)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from ...core.sweep import MAX_BINNED, ThresholdSweep, threshold_grid

GIVEN_COLOUR = "#d62728"
RULE_COLOUR = "#2ca02c"
AUTO_COLOUR = "#009e9e"
BIN_COLOURS = ("#9a9a9a", "#1f77b4", "#ff7f0e", "#d62728", "#7b3294")  # 0, 1, 2, 3, 4+ concepts


def threshold_sweep_data(sweep: ThresholdSweep) -> dict[str, Any]:
    """The numbers the figure draws: ``ThresholdSweep.to_dict()``."""
    return sweep.to_dict()


def threshold_sweep_plot(sweep: ThresholdSweep) -> Figure:
    """Left: histogram of every live neuron's ward merge heights, the given threshold and the layer rule's
    marked with their quantile. Right: share of neurons with 0, 1, 2, 3, 4+ concepts at each threshold,
    with the mean number of clusters C and of concepts per neuron; ``auto``'s mean concepts per neuron, which
    has no threshold, as a horizontal line."""
    d = threshold_sweep_data(sweep)
    given, rule, curve = d["given"], d["layer_rule"], d["curve"]
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.3))
    heights = sweep.heights.ravel()
    positive = heights[heights > 0]
    lo = min(positive.min(), given["distance_threshold"], rule["distance_threshold"])
    hi = max(positive.max(), given["distance_threshold"], rule["distance_threshold"])
    left.hist(positive, bins=np.geomspace(lo, hi * 1.01, 50), color="#4477aa")
    left.margins(y=0.35)  # room for the legend above the bars
    left.set_xscale("log")
    left.set_xlabel("ward merge height")
    left.set_ylabel("merges")
    left.set_title(f"top {sweep.params.top} of {d['n_live']} live neurons", fontsize=9)

    x = np.asarray(curve["threshold"])
    shares = curve["share_of_neurons_with_concepts"]
    keys = [str(k) for k in range(MAX_BINNED)] + [f"{MAX_BINNED}+"]
    right.stackplot(x, *[shares[k] for k in keys], labels=[f"{k} concept{'' if k == '1' else 's'}" for k in keys],
                    colors=BIN_COLOURS, alpha=0.75, step="post")
    right.set_xscale("log")
    right.set_xlim(x[0], x[-1])
    right.set_ylim(0, 1)
    right.set_xlabel("distance_threshold")
    right.set_ylabel("share of live neurons")
    outlier = sweep.params.outlier_threshold
    right.set_title(f"concepts per neuron at each distance threshold (outlier_threshold {outlier if isinstance(outlier, str) else f'{outlier:g}'})",
                    fontsize=9)
    means = right.twinx()
    means.step(x, curve["mean_concepts_per_neuron"], where="post", color="black", lw=1.4, label="mean concepts")
    means.step(x, curve["mean_clusters_per_neuron"], where="post", color="black", lw=1.0, ls=":", label="mean C")
    auto = d["auto"]
    means.axhline(auto["mean_concepts_per_neuron"], color=AUTO_COLOUR, lw=1.6, ls="-.",
                  label=f"auto (significance {auto['significance']:g}): {auto['mean_concepts_per_neuron']:.2f} concepts / neuron")
    means.set_yscale("log")
    means.set_ylabel("mean per neuron (log)")

    for what, colour, values in (("given", GIVEN_COLOUR, given), ("layer rule", RULE_COLOUR, rule)):
        t = values["distance_threshold"]
        left.axvline(t, color=colour, ls="--", lw=1.3, label=f"{what} {t:.3g}: {100 * values['quantile']:.1f}% of merges below, "
                     f"{values['mean_concepts_per_neuron']:.2f} concepts / neuron")
        right.axvline(t, color=colour, ls="--", lw=1.3)
    left.legend(fontsize=7, loc="upper right")
    _threshold_axes((left, right), legend_on=right, means=means, legend_x=1.12)
    return fig


def clusters_at(heights: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(m, g): C of each of m trees (merge heights (m, N - 1)) at each threshold of ``grid`` (g,): 1 + merges at or above it."""
    return 1 + np.sum(np.asarray(heights)[:, :, None] >= np.asarray(grid)[None, None, :], axis=1)


def clusters_across_thresholds(heights: np.ndarray, *, n_concepts: np.ndarray, marked: float | None, unit_length: bool,
                               n_grid: int = 40) -> Figure:
    """Clusters per neuron across distance thresholds, read off the ward trees a scan already holds (no k-means).

    ``heights`` (m, N - 1): the merge heights of m live neurons' trees; C at a threshold t is 1 + the merges at or above
    t (``core.steps.n_clusters_at``). Concepts are C's clusters less outliers and too-small ones, so C is an upper bound;
    ``n_concepts`` (m,) are the concepts the scan kept, drawn as their mean. ``marked``: the scan's fixed threshold
    (None with ``auto``); ``unit_length``: the trees are of unit-length examples (``auto``'s scale).
    """
    h = np.asarray(heights, dtype=np.float64)
    grid = threshold_grid(h, () if marked is None else (marked,), n=n_grid)
    c = clusters_at(h, grid)
    m = max(1, len(h))
    keys = [str(k) for k in range(1, MAX_BINNED)] + [f"{MAX_BINNED}+"]
    shares = [np.sum(c == k, axis=0) / m for k in range(1, MAX_BINNED)] + [np.sum(c >= MAX_BINNED, axis=0) / m]
    fig = Figure(figsize=(8.6, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.stackplot(grid, *shares, labels=[f"C = {k}" for k in keys], colors=BIN_COLOURS[1:], alpha=0.75, step="post")
    ax.set_xscale("log")
    ax.set_xlim(grid[0], grid[-1])
    ax.set_ylim(0, 1)
    scale = "ward merge height of the unit-length top examples (auto's scale)" if unit_length else "distance_threshold (ward merge height)"
    ax.set_xlabel(scale)
    ax.set_ylabel("share of live neurons")
    ax.set_title(f"clusters C per neuron at each threshold, read off the scan's ward trees of {len(h)} live neurons\n"
                 "(no k-means: concepts <= C; `conceptvec thresholds` counts concepts)", fontsize=9)
    means = ax.twinx()
    means.step(grid, c.mean(axis=0), where="post", color="black", lw=1.2, ls=":", label="mean C")
    kept = float(np.mean(n_concepts)) if len(n_concepts) else float("nan")
    means.axhline(kept, color=AUTO_COLOUR, lw=1.6, ls="-.", label=f"the scan: {kept:.2f} concepts / neuron")
    means.set_yscale("log")
    means.set_ylabel("mean per neuron (log)")
    if marked is not None:
        ax.axvline(marked, color=GIVEN_COLOUR, ls="--", lw=1.3, label=f"the scan's threshold {marked:g}")
    _threshold_axes((ax,), legend_on=ax, means=means, legend_x=1.1)
    return fig


def _threshold_axes(axes: tuple[Any, ...], *, legend_on: Any, means: Any, legend_x: float) -> None:
    """Log threshold ticks written as plain numbers on ``axes``; one legend (curves, then ``means``) right of ``legend_on``."""
    for axis in axes:
        axis.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axis.xaxis.set_minor_formatter(ticker.NullFormatter())
    means.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    handles, labels = legend_on.get_legend_handles_labels()
    more, more_labels = means.get_legend_handles_labels()
    legend_on.legend(handles[::-1] + more, labels[::-1] + more_labels, fontsize=7, loc="center left",
                     bbox_to_anchor=(legend_x, 0.5))
