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
from .common import CELL, NEURON_COLOUR, check_acts, concept_colour, removal_reasons
from .panels import canvas, heading, panel, rows_of


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
    nrows = rows_of(d["index"], ncols)
    fig = Figure(figsize=(CELL * ncols, CELL * 1.2 * nrows + 0.5))
    ax, top = canvas(fig), CELL * 1.2 * nrows + 0.05  # the suptitle has the top 0.45 in
    for k, (index, act) in enumerate(zip(d["index"], d["activation"])):
        r, c = divmod(k, ncols)
        panel(ax, examples, index, f"#{k + 1} {examples.caption(index)}\nact {act:.3g}",
              (c * CELL, top - (r + 1) * CELL * 1.2, CELL, CELL * 1.2), margin=0.1)
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
    rows = [rows_of(g["index"], ncols) for g in groups]
    fig = Figure(figsize=(CELL * ncols, sum(CELL * 1.2 * r + 0.35 for r in rows) + 0.4))
    ax = canvas(fig)
    y = fig.get_size_inches()[1] - 0.2  # the top of the next group, in inches
    for g, nrows in zip(groups, rows):
        j = g["concept"]
        colour = concept_colour(j)
        size = g.get("members", len(g["index"]))
        title = (
            f"Concept {j}: {size} members" if j >= 0
            else f"Removed in step 3: {size} (outliers and members of clusters smaller than {cs.params.min_cluster_size})"
        ) + (f" (the first {len(g['index'])} shown)" if size > len(g["index"]) else "")
        heading(ax, 0.1, y, title, colour=colour if j >= 0 else "#555555")
        y -= 0.3
        for k, (index, rank, why) in enumerate(zip(g["index"], g["rank"], g["reason"])):
            r, c = divmod(k, ncols)
            note = f"\n{why}" if why else ""
            panel(ax, examples, index, f"#{rank} {examples.caption(index)}{note}", (c * CELL, y - (r + 1) * CELL * 1.2, CELL, CELL * 1.2),
                  colour)
        y -= CELL * 1.2 * nrows + 0.05
    return fig


# -- Fig. 3: maximally activating vs maximally projecting examples ---------------------------
RANKINGS = {"projection": "maximally projecting (the paper's)", "cosine": "most cosine-similar",
            "centred": "most cosine-similar once the layer's mean is subtracted"}
COLUMN = 1.45  # inches per column (and row) of Fig. 3
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
    fig = Figure(figsize=(COLUMN * len(columns) + 0.2, COLUMN * nrows + 0.6))
    ax, top = canvas(fig), fig.get_size_inches()[1]
    for c, col in enumerate(columns):
        j = col["concept"]
        colour = NEURON_COLOUR if j is None else concept_colour(j)
        head = "activating" if j is None else HEADS[rank]
        x = 0.1 + c * COLUMN
        heading(ax, x + COLUMN / 2, top - 0.05, f"{col['name']}\n(max {head})", colour=colour, ha="center")
        for k, (index, value) in enumerate(zip(col["index"], col["value"])):
            panel(ax, examples, index, f"{examples.caption(index)}  {value:.3g}", (x, top - 0.45 - (k + 1) * COLUMN, COLUMN, COLUMN),
                  colour)
    return fig
