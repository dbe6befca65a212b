"""The paper's figures for one neuron's ConceptSet, and for a layer scan.

Every figure function returns a matplotlib ``Figure`` (never the global ``plt`` state), so it can
be shown in a notebook or saved. Each has a ``*_data`` twin returning the numbers it draws, as
plain dicts of lists, which the report prints beside the figure and the tests check.

Notation: ``cs`` is a ConceptSet with X = ``cs.top_activations`` of shape (N, n_units), N = top;
``acts`` is the full activation matrix A of shape (n_examples, n_units); ``examples`` is a
renderer (``conceptvec.report.examples.Examples``). Panels that show an example carry the gid
``"example:<index>"`` so a reader (and the tests) can tell which example a panel shows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..conceptset import ConceptSet
from ..errors import ConceptvecError
from ..method import n_clusters_at
from ..metrics import cosine_similarity, distance_matrix, intra_inter_distances, maximally_projecting, project
from .examples import Examples

REMOVED_COLOUR = "#9a9a9a"
NEURON_COLOUR = "#444444"
_CELL = 1.25  # inches per example panel


def concept_colour(j: int) -> str:
    """Colour of concept j in every figure and in the report (-1, removed, is grey)."""
    if j < 0:
        return REMOVED_COLOUR
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
    return palette[j % len(palette)]


def concept_name(j: int) -> str:
    return "removed" if j < 0 else f"concept {j}"


def removal_reasons(cs: ConceptSet) -> list[str]:
    """Per top example: '' when kept, 'outlier' or 'small cluster' when removed (step 3)."""
    return ["" if lab >= 0 else ("outlier" if out else "small cluster") for lab, out in zip(cs.labels, cs.outliers)]


def _example_panel(ax: Any, examples: Examples, index: int, title: str, colour: str | None = None) -> None:
    examples.draw(ax, int(index))
    ax.set_gid(f"example:{int(index)}")
    ax.set_title(title, fontsize=6.5, pad=2)
    for side in ax.spines.values():
        side.set_visible(colour is not None)
        if colour is not None:
            side.set_edgecolor(colour)
            side.set_linewidth(2.5)


def _hide(axes: np.ndarray) -> None:
    for ax in np.ravel(axes):
        ax.set_axis_off()


def _check_acts(cs: ConceptSet, acts: Any) -> None:
    if getattr(acts, "ndim", None) != 2 or acts.shape[1] != cs.n_units:
        raise ConceptvecError(
            f"acts must be the (n_examples, {cs.n_units}) activation matrix the ConceptSet was made from, "
            f"got shape {getattr(acts, 'shape', None)}."
        )


# -- the top activating examples, and grouped by concept -------------------------------------
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
    """The neuron's top activating examples in activation order, with ids, labels and activations."""
    d = top_activating_data(cs, n)
    count = len(d["index"])
    ncols = max(1, min(ncols, count))
    nrows = max(1, math.ceil(count / ncols))
    fig = Figure(figsize=(_CELL * ncols, _CELL * 1.2 * nrows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    _hide(axes)
    for k, (index, act) in enumerate(zip(d["index"], d["activation"])):
        axes[k].set_axis_on()
        _example_panel(axes[k], examples, index, f"#{k + 1} {examples.caption(index)}\nact {act:.3g}")
    what = f"neuron {cs.neuron}" if cs.neuron is not None else "the direction"
    fig.suptitle(f"Top {count} activating examples of {what}", fontsize=10)
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
    """The top examples grouped by concept (one block per concept); removed ones last, marked why."""
    groups = concept_groups_data(cs)["groups"]
    rows = [max(1, math.ceil(len(g["index"]) / ncols)) for g in groups]
    fig = Figure(figsize=(_CELL * ncols, sum(_CELL * 1.2 * r + 0.35 for r in rows) + 0.4), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(groups), 1, height_ratios=[r + 0.3 for r in rows]))
    for sub, g, nrows in zip(subfigs, groups, rows):
        j = g["concept"]
        colour = concept_colour(j)
        title = (
            f"Concept {j}: {len(g['index'])} members" if j >= 0
            else f"Removed in step 3: {len(g['index'])} (outliers and members of clusters smaller than {cs.params.min_cluster_size})"
        )
        sub.suptitle(title, fontsize=9, color=colour if j >= 0 else "#555555", ha="left", x=0.01)
        axes = np.atleast_1d(sub.subplots(nrows, ncols, squeeze=False)).ravel()
        _hide(axes)
        for k, (index, rank, why) in enumerate(zip(g["index"], g["rank"], g["reason"])):
            axes[k].set_axis_on()
            note = f"\n{why}" if why else ""
            _example_panel(axes[k], examples, index, f"#{rank} {examples.caption(index)}{note}", colour)
    return fig


# -- Fig. 3: maximally activating vs maximally projecting examples ---------------------------
def projecting_data(cs: ConceptSet, acts: Any, n: int = 10) -> dict[str, list]:
    """Columns of Fig. 3: the neuron's top ``n`` examples, then each concept's ``n`` maximally projecting ones."""
    _check_acts(cs, acts)
    n = min(int(n), acts.shape[0])
    columns = [{
        "name": f"neuron {cs.neuron}" if cs.neuron is not None else "direction",
        "concept": None,
        "index": cs.top_indices[:n].tolist(),
        "value": cs.top_scores[:n].tolist(),
    }]
    if cs.n_concepts:
        idx, vals = maximally_projecting(acts, cs.concept_vectors, top=n)
        for j in range(cs.n_concepts):
            columns.append({"name": f"concept {j}", "concept": j, "index": idx[j].tolist(), "value": vals[j].tolist()})
    return {"columns": columns}


def projecting_grid(cs: ConceptSet, acts: Any, examples: Examples, n: int = 10) -> Figure:
    """Paper Fig. 3: the neuron's maximally activating examples beside the maximally projecting
    examples along each concept vector, one column each."""
    columns = projecting_data(cs, acts, n)["columns"]
    nrows = max(len(c["index"]) for c in columns)
    fig = Figure(figsize=(1.45 * len(columns) + 0.2, 1.45 * nrows + 0.6), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(1, len(columns), wspace=0.02))
    for sub, col in zip(subfigs, columns):
        j = col["concept"]
        colour = NEURON_COLOUR if j is None else concept_colour(j)
        head = "activating" if j is None else "projecting"
        sub.suptitle(f"{col['name']}\n(max {head})", fontsize=9, color=colour)
        axes = np.atleast_1d(sub.subplots(nrows, 1, squeeze=False)).ravel()
        _hide(axes)
        for k, (index, value) in enumerate(zip(col["index"], col["value"])):
            axes[k].set_axis_on()
            _example_panel(axes[k], examples, index, f"{examples.caption(index)}  {value:.3g}", colour)
    return fig
