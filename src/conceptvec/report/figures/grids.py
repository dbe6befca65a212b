"""Grids of examples: the top activating ones, the same grouped by concept, and paper Fig. 3."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ...core.metrics import layer_mean, maximally_projecting, most_similar
from ...errors import ConceptvecError
from ...storage.conceptset import ConceptSet
from ..examples import Examples
from .common import CELL, NEURON_COLOUR, check_acts, concept_colour, example_panel, hide_axes, removal_reasons


# -- the top activating examples, and grouped by concept -------------------------------------
MAX_PANELS = 100  # examples drawn in a grid (the paper's top): more cost minutes per page and show no more
def top_activating_data(cs: ConceptSet, n: int | None = None) -> dict[str, list]:
    """The neuron's top ``n`` examples (all N by default), most activating first."""
    n = len(cs.top_indices) if n is None else min(int(n), len(cs.top_indices))
    return {
        "rank": list(range(1, n + 1)),
        "index": cs.top_indices[:n].tolist(),
        "activation": cs.top_scores[:n].tolist(),
        "concept": cs.labels[:n].tolist(),
    }


def top_activating_grid(cs: ConceptSet, examples: Examples, n: int | None = None, ncols: int = 10) -> Figure:
    """The neuron's top activating examples in activation order, with ids, labels and activations: the first ``n``,
    by default all of them up to ``MAX_PANELS`` (a figure of 1,000 panels costs minutes and says no more; the
    page's slider shows every top example)."""
    d = top_activating_data(cs, n if n is not None else MAX_PANELS)
    count = len(d["index"])
    ncols = max(1, min(ncols, count))
    nrows = max(1, math.ceil(count / ncols))
    fig = Figure(figsize=(CELL * ncols, CELL * 1.2 * nrows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    hide_axes(axes)
    for k, (index, act) in enumerate(zip(d["index"], d["activation"])):
        axes[k].set_axis_on()
        example_panel(axes[k], examples, index, f"#{k + 1} {examples.caption(index)}\nact {act:.3g}")
    what = f"neuron {cs.neuron}" if cs.neuron is not None else "the direction"
    shown = "" if count == len(cs.top_indices) else f" (the first of {len(cs.top_indices)})"
    fig.suptitle(f"Top {count} activating examples of {what}{shown}", fontsize=10)
    return fig


def concept_groups_data(cs: ConceptSet) -> dict[str, list]:
    """The top examples grouped: one group per concept in activation order, removed ones last."""
    reasons = removal_reasons(cs)
    groups = []
    for j in [*range(cs.n_concepts), -1]:
        pos = np.flatnonzero(cs.labels == j)
        if j < 0 and not len(pos):
            continue
        groups.append({
            "concept": j,
            "index": cs.top_indices[pos].tolist(),
            "rank": (pos + 1).tolist(),
            "reason": [reasons[p] for p in pos],
        })
    return {"groups": groups}


def concept_groups_grid(cs: ConceptSet, examples: Examples, ncols: int = 10) -> Figure:
    """The top examples grouped by concept (one block per concept); removed ones last, marked why. Beyond
    ``MAX_PANELS`` top examples each group shows its first ones, in proportion to its size (at least a row)."""
    groups = concept_groups_data(cs)["groups"]
    total = len(cs.top_indices)
    if total > MAX_PANELS:
        for g in groups:
            g["members"] = len(g["index"])
            keep = max(ncols, math.ceil(MAX_PANELS * len(g["index"]) / total))
            g.update({k: g[k][:keep] for k in ("index", "rank", "reason")})
    rows = [max(1, math.ceil(len(g["index"]) / ncols)) for g in groups]
    fig = Figure(figsize=(CELL * ncols, sum(CELL * 1.2 * r + 0.35 for r in rows) + 0.4), layout="constrained")
    subfigs = fig.subfigures(len(groups), 1, squeeze=False, height_ratios=[r + 0.3 for r in rows]).ravel()
    for sub, g, nrows in zip(subfigs, groups, rows):
        j = g["concept"]
        colour = concept_colour(j)
        size = g.get("members", len(g["index"]))
        title = (
            f"Concept {j}: {size} members" if j >= 0
            else f"Removed in step 3: {size} (outliers and members of clusters smaller than {cs.params.min_cluster_size})"
        ) + (f" (the first {len(g['index'])} shown)" if size > len(g["index"]) else "")
        sub.suptitle(title, fontsize=9, color=colour if j >= 0 else "#555555", ha="left", x=0.01)
        axes = np.atleast_1d(sub.subplots(nrows, ncols, squeeze=False)).ravel()
        hide_axes(axes)
        for k, (index, rank, why) in enumerate(zip(g["index"], g["rank"], g["reason"])):
            axes[k].set_axis_on()
            note = f"\n{why}" if why else ""
            example_panel(axes[k], examples, index, f"#{rank} {examples.caption(index)}{note}", colour)
    return fig


# -- Fig. 3: maximally activating vs maximally projecting examples ---------------------------
RANKINGS = {"projection": "maximally projecting (the paper's)", "cosine": "most cosine-similar",
            "centred": "most cosine-similar once the layer's mean is subtracted"}
HEADS = {"projection": "projecting", "cosine": "cosine", "centred": "centred cosine"}


def projecting_data(cs: ConceptSet, acts: Any, n: int = 10, rank: str = "projection", centre: Any = None) -> dict[str, list]:
    """Columns of Fig. 3: the neuron's top ``n`` examples, then each concept's ``n`` maximally projecting
    ones (``rank="cosine"``: the ``n`` most cosine-similar ones instead; ``rank="centred"``: most
    cosine-similar after subtracting ``centre``, by default the layer's mean, ``metrics.layer_mean(acts)``)."""
    if rank not in RANKINGS:
        raise ConceptvecError(f"rank must be one of {list(RANKINGS)}, got {rank!r}.")
    check_acts(cs, acts)
    n = min(int(n), acts.shape[0])
    columns = [{
        "name": f"neuron {cs.neuron}" if cs.neuron is not None else "direction",
        "concept": None,
        "index": cs.top_indices[:n].tolist(),
        "value": cs.top_scores[:n].tolist(),
    }]
    if cs.n_concepts:
        if rank == "projection":
            idx, vals = maximally_projecting(acts, cs.concept_vectors, top=n)
        else:
            if rank == "centred" and centre is None:
                centre = layer_mean(acts)
            idx, vals = most_similar(acts, cs.concept_vectors, top=n, centre=centre if rank == "centred" else None)
        for j in range(cs.n_concepts):
            columns.append({"name": f"concept {j}", "concept": j, "index": idx[j].tolist(), "value": vals[j].tolist()})
    return {"columns": columns}


def projecting_grid(
    cs: ConceptSet, acts: Any, examples: Examples, n: int = 10, rank: str = "projection", data: dict | None = None
) -> Figure:
    """Paper Fig. 3: the neuron's maximally activating examples beside the maximally projecting
    examples along each concept vector, one column each (``rank="cosine"``: most cosine-similar;
    ``rank="centred"``: most cosine-similar to the concept once the layer's mean is subtracted).

    ``data`` from :func:`projecting_data` with the same ``rank`` saves a second pass over ``acts``.
    """
    columns = (data if data is not None else projecting_data(cs, acts, n, rank))["columns"]
    nrows = max(len(c["index"]) for c in columns)
    fig = Figure(figsize=(1.45 * len(columns) + 0.2, 1.45 * nrows + 0.6), layout="constrained")
    subfigs = fig.subfigures(1, len(columns), squeeze=False, wspace=0.02).ravel()
    for sub, col in zip(subfigs, columns):
        j = col["concept"]
        colour = NEURON_COLOUR if j is None else concept_colour(j)
        head = "activating" if j is None else HEADS[rank]
        sub.suptitle(f"{col['name']}\n(max {head})", fontsize=9, color=colour)
        axes = np.atleast_1d(sub.subplots(nrows, 1, squeeze=False)).ravel()
        hide_axes(axes)
        for k, (index, value) in enumerate(zip(col["index"], col["value"])):
            axes[k].set_axis_on()
            example_panel(axes[k], examples, index, f"{examples.caption(index)}  {value:.3g}", colour)
    return fig
