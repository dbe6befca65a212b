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

from ..storage.conceptset import ConceptSet
from ..errors import ConceptvecError
from ..core.method import n_clusters_at
from ..core.metrics import cosine_similarity, distance_matrix, intra_inter_distances, maximally_projecting, most_similar, project
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
RANKINGS = {"projection": "maximally projecting (the paper's)", "cosine": "most cosine-similar"}


def projecting_data(cs: ConceptSet, acts: Any, n: int = 10, rank: str = "projection") -> dict[str, list]:
    """Columns of Fig. 3: the neuron's top ``n`` examples, then each concept's ``n`` maximally projecting
    ones (``rank="cosine"``: the ``n`` most cosine-similar ones instead)."""
    if rank not in RANKINGS:
        raise ConceptvecError(f"rank must be one of {list(RANKINGS)}, got {rank!r}.")
    _check_acts(cs, acts)
    n = min(int(n), acts.shape[0])
    columns = [{
        "name": f"neuron {cs.neuron}" if cs.neuron is not None else "direction",
        "concept": None,
        "index": cs.top_indices[:n].tolist(),
        "value": cs.top_scores[:n].tolist(),
    }]
    if cs.n_concepts:
        rank_by = maximally_projecting if rank == "projection" else most_similar
        idx, vals = rank_by(acts, cs.concept_vectors, top=n)
        for j in range(cs.n_concepts):
            columns.append({"name": f"concept {j}", "concept": j, "index": idx[j].tolist(), "value": vals[j].tolist()})
    return {"columns": columns}


def projecting_grid(
    cs: ConceptSet, acts: Any, examples: Examples, n: int = 10, rank: str = "projection", data: dict | None = None
) -> Figure:
    """Paper Fig. 3: the neuron's maximally activating examples beside the maximally projecting
    examples along each concept vector, one column each (``rank="cosine"``: most cosine-similar).

    ``data`` from :func:`projecting_data` with the same ``rank`` saves a second pass over ``acts``.
    """
    columns = (data if data is not None else projecting_data(cs, acts, n, rank))["columns"]
    nrows = max(len(c["index"]) for c in columns)
    fig = Figure(figsize=(1.45 * len(columns) + 0.2, 1.45 * nrows + 0.6), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(1, len(columns), wspace=0.02))
    for sub, col in zip(subfigs, columns):
        j = col["concept"]
        colour = NEURON_COLOUR if j is None else concept_colour(j)
        head = "activating" if j is None else ("projecting" if rank == "projection" else "cosine")
        sub.suptitle(f"{col['name']}\n(max {head})", fontsize=9, color=colour)
        axes = np.atleast_1d(sub.subplots(nrows, 1, squeeze=False)).ravel()
        _hide(axes)
        for k, (index, value) in enumerate(zip(col["index"], col["value"])):
            axes[k].set_axis_on()
            _example_panel(axes[k], examples, index, f"{examples.caption(index)}  {value:.3g}", colour)
    return fig


# -- Fig. 5: projections and cosine similarities, concept vector vs neuron direction ----------
def projection_comparison_data(cs: ConceptSet) -> dict[str, list]:
    """Per concept, its members' projections and cosine similarities along the concept vector
    and along the neuron direction (members in activation order)."""
    concepts = []
    direction = cs.neuron_direction
    for j in range(cs.n_concepts):
        pos = np.flatnonzero(cs.labels == j)
        x = cs.top_activations[pos]
        both = np.stack([cs.concept_vectors[j], direction])
        proj = project(x, both)
        cos = cosine_similarity(x, both)
        concepts.append({
            "concept": j,
            "index": cs.top_indices[pos].tolist(),
            "projection_concept": proj[:, 0].tolist(),
            "projection_neuron": proj[:, 1].tolist(),
            "cosine_concept": cos[:, 0].tolist(),
            "cosine_neuron": cos[:, 1].tolist(),
        })
    return {"concepts": concepts}


def projection_comparison(cs: ConceptSet) -> Figure:
    """Paper Fig. 5: each concept's members projected on (left) and cosine-similar to (right)
    their concept vector (solid) and the neuron direction (dashed)."""
    data = projection_comparison_data(cs)["concepts"]
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    start = f"neuron {cs.neuron}" if cs.neuron is not None else "start direction"
    for ax, key, what in ((axes[0], "projection", "Projection"), (axes[1], "cosine", "Cosine similarity")):
        for c in data:
            colour = concept_colour(c["concept"])
            x = np.arange(1, len(c["index"]) + 1)
            ax.plot(x, c[f"{key}_concept"], "-o", ms=3, color=colour, label=f"concept {c['concept']} · its vector")
            ax.plot(x, c[f"{key}_neuron"], "--", marker="x", ms=3, color=colour, alpha=0.75, label=f"concept {c['concept']} · {start}")
        ax.set_xlabel("member of the cluster (activation order)")
        ax.set_ylabel(what)
        ax.set_title(f"{what} along the concept vector vs {start}", fontsize=9)
        ax.grid(alpha=0.3)
    if data:
        axes[1].legend(fontsize=7, loc="best")
    else:
        for ax in axes:
            ax.text(0.5, 0.5, "no concept kept", ha="center", va="center", transform=ax.transAxes)
    return fig


# -- Fig. 4: euclidean distance matrices ------------------------------------------------------
def distance_matrices_data(cs: ConceptSet) -> dict[str, Any]:
    """Distance matrix of the N top examples (activation order) and of the kept ones ordered by
    concept, with the mean intra- and inter-cluster distances of the kept ones."""
    pos = np.flatnonzero(cs.kept)
    order = pos[np.lexsort((pos, cs.labels[pos]))]  # by concept, then activation order
    intra, inter = intra_inter_distances(cs.top_activations, cs.labels)
    return {
        "top": distance_matrix(cs.top_activations),
        "kept_index": cs.top_indices[order].tolist(),
        "kept_concept": cs.labels[order].tolist(),
        "kept": distance_matrix(cs.top_activations[order]),
        "intra": intra,
        "inter": inter,
    }


def distance_matrices(cs: ConceptSet) -> Figure:
    """Paper Fig. 4: euclidean distances between the top-N activations (left) and between the
    kept ones ordered by concept (right), with mean intra- and inter-cluster distances."""
    d = distance_matrices_data(cs)
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    axes = fig.subplots(1, 2)
    vmax = float(d["top"].max()) if d["top"].size else 1.0
    im = axes[0].imshow(d["top"], cmap="viridis", vmin=0, vmax=vmax)
    axes[0].set_title(f"Top {len(d['top'])} examples, activation order", fontsize=9)
    axes[0].set_xlabel("rank")
    axes[0].set_ylabel("rank")
    n_kept = len(d["kept_index"])
    if n_kept:
        axes[1].imshow(d["kept"], cmap="viridis", vmin=0, vmax=vmax)
        labels = np.asarray(d["kept_concept"])
        bounds = np.flatnonzero(np.diff(labels)) + 0.5
        for b in bounds:
            axes[1].axhline(b, color="white", lw=1)
            axes[1].axvline(b, color="white", lw=1)
        concepts = np.unique(labels)
        axes[1].set_yticks([np.flatnonzero(labels == j).mean() for j in concepts], [f"c{j}" for j in concepts])
        for tick, j in zip(axes[1].get_yticklabels(), concepts):
            tick.set_color(concept_colour(int(j)))
    else:
        axes[1].text(0.5, 0.5, "no example kept", ha="center", va="center", transform=axes[1].transAxes)
    axes[1].set_title(
        f"{n_kept} kept examples by concept\nmean intra {d['intra']:.3g} · mean inter {d['inter']:.3g}", fontsize=9
    )
    axes[1].set_xlabel("kept example (by concept)")
    fig.colorbar(im, ax=axes, shrink=0.85, label="euclidean distance")
    return fig


# -- Fig. 2: UMAP of the kept examples ---------------------------------------------------------
def umap_data(cs: ConceptSet, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> dict[str, Any]:
    """2-D UMAP embedding (umap-learn, ``random_state=seed``) of the kept examples' activations.

    With fewer than 4 kept examples there is nothing to embed and ``embedding`` is empty.
    """
    pos = np.flatnonzero(cs.kept)
    out: dict[str, Any] = {
        "index": cs.top_indices[pos].tolist(),
        "concept": cs.labels[pos].tolist(),
        "seed": int(seed),
        "n_neighbors": int(min(n_neighbors, max(2, len(pos) - 1))),
        "min_dist": float(min_dist),
        "embedding": np.empty((0, 2)),
    }
    if len(pos) < 4:
        return out
    import warnings

    with warnings.catch_warnings():
        # umap warns that a fixed random_state disables parallelism; that is the point here.
        warnings.simplefilter("ignore")
        import umap

        reducer = umap.UMAP(
            n_components=2, n_neighbors=out["n_neighbors"], min_dist=min_dist, random_state=seed,
            init="spectral" if len(pos) > out["n_neighbors"] + 2 else "random",
        )
        out["embedding"] = reducer.fit_transform(cs.top_activations[pos])
    return out


def umap_plot(
    cs: ConceptSet, examples: Examples | None = None, seed: int = 0, n_thumbnails: int = 40, data: dict | None = None
) -> Figure:
    """Paper Fig. 2: UMAP of the kept examples coloured by concept, with up to ``n_thumbnails``
    spread-out examples drawn on the map (``data`` reuses a ``umap_data`` result)."""
    d = data if data is not None else umap_data(cs, seed=seed)
    emb = np.asarray(d["embedding"])
    labels = np.asarray(d["concept"])
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.subplots()
    if not len(emb):
        ax.text(0.5, 0.5, f"{len(labels)} kept example(s): too few for a UMAP", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    for j in np.unique(labels):
        m = labels == j
        ax.scatter(emb[m, 0], emb[m, 1], s=28, color=concept_colour(int(j)), label=f"concept {j} ({m.sum()})", zorder=3)
    span = np.ptp(emb, axis=0).max() or 1.0
    if examples is not None and n_thumbnails > 0:
        size = 0.07 * span
        for k in _spread_out(emb, n_thumbnails, min_gap=1.1 * size):
            i = d["index"][k]
            x, y = emb[k]
            inset = ax.inset_axes([x - size / 2, y - size / 2, size, size], transform=ax.transData, zorder=4)
            examples.draw(inset, i)
            inset.set_gid(f"example:{i}")
            for side in inset.spines.values():
                side.set_edgecolor(concept_colour(int(labels[k])))
                side.set_linewidth(1.5)
    pad = 0.08 * span
    ax.set_xlim(emb[:, 0].min() - pad, emb[:, 0].max() + pad)
    ax.set_ylim(emb[:, 1].min() - pad, emb[:, 1].max() + pad)
    ax.set_title(f"UMAP of the {len(labels)} kept examples (seed {d['seed']}, {d['n_neighbors']} neighbours)", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _spread_out(points: np.ndarray, k: int, min_gap: float) -> list[int]:
    """Up to k points, greedily, none closer than ``min_gap`` to one already chosen (thumbnails do not overlap)."""
    chosen: list[int] = []
    for i in range(len(points)):
        if len(chosen) >= k:
            break
        if all(np.abs(points[i] - points[c]).max() >= min_gap for c in chosen):
            chosen.append(i)
    return chosen


# -- Figs. A.7 and A.8: the dendrogram and the number of clusters per threshold ----------------
def dendrogram_data(cs: ConceptSet) -> dict[str, Any]:
    """The ward tree's leaf order (example indices, left to right), merge heights, and the cut."""
    from scipy.cluster.hierarchy import dendrogram

    tree = dendrogram(cs.linkage, no_plot=True)
    leaves = np.asarray(tree["leaves"])
    return {
        "leaf_index": cs.top_indices[leaves].tolist(),
        "leaf_concept": cs.labels[leaves].tolist(),
        "heights": cs.linkage[:, 2].tolist(),
        "distance_threshold": cs.params.distance_threshold,
        "n_clusters": n_clusters_at(cs.linkage, cs.params.distance_threshold),
        "icoord": tree["icoord"],
        "dcoord": tree["dcoord"],
    }


def dendrogram_plot(cs: ConceptSet) -> Figure:
    """Paper Fig. A.7: the ward dendrogram of the top examples, the ``distance_threshold`` cut
    drawn, and each leaf's final concept as a coloured strip."""
    d = dendrogram_data(cs)
    t = d["distance_threshold"]
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.subplots()
    for xs, ys in zip(d["icoord"], d["dcoord"]):
        above = max(ys) >= t
        ax.plot(xs, ys, color="#888888" if above else "#1f4e79", lw=0.9)
    ax.axhline(t, color="#d62728", ls="--", lw=1.2)
    ax.text(2, t, f" distance_threshold = {t:g}  →  {d['n_clusters']} clusters", color="#d62728", va="bottom", fontsize=8)
    n = len(d["leaf_index"])
    xs = 5 + 10 * np.arange(n)  # scipy places leaf k at 5 + 10 k
    top = max(max(d["heights"]), t) if n > 1 else t
    strip = -0.04 * top
    ax.scatter(xs, np.full(n, strip), marker="s", s=12, c=[concept_colour(j) for j in d["leaf_concept"]], clip_on=False)
    ax.set_xlim(0, 10 * n)
    ax.set_ylim(2 * strip, top * 1.05)
    ax.set_xticks([])
    ax.set_ylabel("ward merge height")
    ax.set_xlabel("top examples (leaves); strip: final concept, grey = removed")
    ax.set_title("Ward dendrogram of the top examples", fontsize=9)
    return fig


def threshold_curve_data(cs: ConceptSet, thresholds: np.ndarray | None = None, n: int = 200) -> dict[str, list]:
    """Number of clusters C (step 2) for each distance threshold; by default ``n`` values from 0
    to just above the highest merge, plus every merge height (where C changes)."""
    heights = cs.linkage[:, 2]
    if thresholds is None:
        grid = np.linspace(0.0, float(heights.max()) * 1.1 if len(heights) else 1.0, n)
        thresholds = np.unique(np.concatenate([grid, heights, [cs.params.distance_threshold]]))
    thresholds = np.asarray(thresholds, dtype=float)
    return {
        "threshold": thresholds.tolist(),
        "n_clusters": [n_clusters_at(cs.linkage, t) for t in thresholds],
        "distance_threshold": cs.params.distance_threshold,
        "n_agglomerative": int(cs.n_agglomerative),
    }


def threshold_curve(cs: ConceptSet, thresholds: np.ndarray | None = None) -> Figure:
    """Paper Fig. A.8: the number of clusters across distance thresholds, the run's value marked."""
    d = threshold_curve_data(cs, thresholds)
    fig = Figure(figsize=(6.5, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.step(d["threshold"], d["n_clusters"], where="post", color="#1f4e79")
    t = d["distance_threshold"]
    ax.axvline(t, color="#d62728", ls="--", lw=1.2)
    ax.annotate(f"run: {t:g} → C = {d['n_agglomerative']}", (t, d["n_agglomerative"]), xytext=(8, 12),
                textcoords="offset points", color="#d62728", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("distance_threshold")
    ax.set_ylabel("number of clusters C")
    ax.set_title("Clusters at each distance threshold", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    return fig


# -- Fig. A.9: the components of the concept vectors ------------------------------------------
def components_data(cs: ConceptSet, k: int = 5) -> dict[str, Any]:
    """Each concept vector's components and its ``k`` largest units (by absolute weight)."""
    concepts = []
    for j in range(cs.n_concepts):
        v = cs.concept_vectors[j]
        top = np.argsort(-np.abs(v), kind="stable")[:k]
        concepts.append({
            "concept": j,
            "components": v.tolist(),
            "top_units": top.tolist(),
            "top_weights": v[top].tolist(),
            "neuron_weight": float(v @ cs.neuron_direction),
        })
    return {"neuron": cs.neuron, "n_units": cs.n_units, "concepts": concepts}


def components_plot(cs: ConceptSet, k: int = 5) -> Figure:
    """Paper Fig. A.9: the components of each concept vector over the layer's units, the neuron
    and each vector's ``k`` largest units marked."""
    d = components_data(cs, k)
    rows = max(1, len(d["concepts"]))
    fig = Figure(figsize=(10, 1.7 * rows + 0.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, 1, sharex=True, squeeze=False)).ravel()
    units = np.arange(d["n_units"])
    if not d["concepts"]:
        axes[0].text(0.5, 0.5, "no concept kept", ha="center", va="center", transform=axes[0].transAxes)
    for ax, c in zip(axes, d["concepts"]):
        colour = concept_colour(c["concept"])
        ax.vlines(units, 0, c["components"], color=colour, lw=max(0.3, min(2.5, 300 / d["n_units"])))
        if d["neuron"] is not None:
            ax.axvline(d["neuron"], color=NEURON_COLOUR, ls=":", lw=1)
        for u, w in zip(c["top_units"], c["top_weights"]):
            ax.annotate(str(u), (u, w), fontsize=7, ha="center", va="bottom" if w >= 0 else "top")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_ylabel(f"concept {c['concept']}", color=colour)
        ax.margins(x=0.01, y=0.2)
    neuron = f"; dotted: neuron {d['neuron']}" if d["neuron"] is not None else ""
    axes[0].set_title(f"Components of the concept vectors (largest {k} units labelled{neuron})", fontsize=9)
    axes[-1].set_xlabel("unit")
    return fig


# -- class labels of each concept's members ----------------------------------------------------
def class_makeup_data(cs: ConceptSet, examples: Examples) -> dict[str, Any]:
    """Counts of each class label among every concept's members and among the removed examples."""
    groups = []
    for j in [*range(cs.n_concepts), -1]:
        idx = cs.top_indices[cs.labels == j]
        if j < 0 and not len(idx):
            continue
        names, counts = np.unique([examples.label(i) for i in idx], return_counts=True)
        order = np.lexsort((names, -counts))
        groups.append({"concept": j, "labels": names[order].tolist(), "counts": counts[order].tolist(), "n": int(len(idx))})
    return {"groups": groups}


def class_makeup(cs: ConceptSet, examples: Examples, max_classes: int = 10) -> Figure:
    """Class-label make-up of each concept's members (and the removed ones): stacked bars of the
    ``max_classes`` most common labels, the rest as 'other'."""
    groups = class_makeup_data(cs, examples)["groups"]
    totals: dict[str, int] = {}
    for g in groups:
        for name, c in zip(g["labels"], g["counts"]):
            totals[name] = totals.get(name, 0) + c
    shown = sorted(totals, key=lambda s: (-totals[s], s))[:max_classes]
    other = [s for s in totals if s not in shown]
    fig = Figure(figsize=(8, 0.55 * len(groups) + 1.6), layout="constrained")
    ax = fig.subplots()
    cmap = __import__("matplotlib").colormaps["tab20"]
    names = [concept_name(g["concept"]) + f" ({g['n']})" for g in groups]
    left = np.zeros(len(groups))
    for k, cls in enumerate(shown + (["other"] if other else [])):
        counts = np.array([
            sum(c for s, c in zip(g["labels"], g["counts"]) if (s in other if cls == "other" else s == cls))
            for g in groups
        ], dtype=float)
        colour = "#cccccc" if cls == "other" else cmap(k % 20)
        ax.barh(names, counts, left=left, color=colour, label=cls or "(no label)", edgecolor="white", lw=0.5)
        for y, (l, c) in enumerate(zip(left, counts)):
            if c >= 2:
                ax.text(l + c / 2, y, f"{int(c)}", ha="center", va="center", fontsize=7)
        left += counts
    ax.invert_yaxis()
    ax.set_xlabel("members")
    ax.set_title("Class labels of each concept's members", fontsize=9)
    ax.legend(fontsize=7, ncols=min(6, max(1, len(shown) + bool(other))), loc="upper center",
              bbox_to_anchor=(0.5, -0.25 if len(groups) > 2 else -0.45), frameon=False)
    return fig


# -- the numbers behind the figures -------------------------------------------------------------
def summary_table(cs: ConceptSet, examples: Examples | None = None) -> list[dict[str, Any]]:
    """One row per concept (and one for the removed examples): size, mean projection and cosine
    similarity along its vector and along the neuron direction, largest units, commonest labels."""
    comp = {c["concept"]: c for c in projection_comparison_data(cs)["concepts"]}
    units = {c["concept"]: c for c in components_data(cs, 3)["concepts"]}
    makeup = {g["concept"]: g for g in class_makeup_data(cs, examples)["groups"]} if examples is not None else {}
    rows = []
    for j in [*range(cs.n_concepts), -1]:
        n = int(np.sum(cs.labels == j))
        if j < 0 and not n:
            continue
        row: dict[str, Any] = {"concept": concept_name(j), "members": n}
        if j >= 0:
            c = comp[j]
            row.update({
                "mean projection (concept)": float(np.mean(c["projection_concept"])),
                "mean projection (neuron)": float(np.mean(c["projection_neuron"])),
                "mean cosine (concept)": float(np.mean(c["cosine_concept"])),
                "mean cosine (neuron)": float(np.mean(c["cosine_neuron"])),
                "largest units": ", ".join(f"{u} ({w:.2f})" for u, w in zip(units[j]["top_units"], units[j]["top_weights"])),
            })
        if j in makeup:
            g = makeup[j]
            row["commonest labels"] = ", ".join(f"{s or '(none)'} ×{c}" for s, c in zip(g["labels"][:3], g["counts"][:3]))
        rows.append(row)
    return rows


# -- a layer scan --------------------------------------------------------------------------------
def scan_data(n_concepts: Any, live: Any = None) -> dict[str, Any]:
    """Concepts per neuron of a scan (a ScanResult or its ``n_concepts`` array): histogram and
    share of polysemantic neurons (two or more concepts), over live neurons only (``live``, a mask;
    a ScanResult brings its own)."""
    counts = np.asarray(getattr(n_concepts, "n_concepts", n_concepts), dtype=np.int64)
    if live is None:
        live = getattr(n_concepts, "live", np.ones(len(counts), dtype=bool))
    live = np.asarray(live, dtype=bool)
    n_not_live = int(np.sum(~live))
    counts = counts[live]
    values, freq = np.unique(counts, return_counts=True)
    n = int(len(counts))
    return {
        "n_not_live": n_not_live,
        "n_neurons": n,
        "n_concepts": values.tolist(),
        "n_neurons_with": freq.tolist(),
        "n_polysemantic": int(np.sum(counts >= 2)),
        "share_polysemantic": float(np.mean(counts >= 2)) if n else float("nan"),
    }


def scan_histogram(n_concepts: Any, live: Any = None) -> Figure:
    """Histogram of the number of concepts per live neuron over a layer, with the polysemantic share."""
    d = scan_data(n_concepts, live)
    fig = Figure(figsize=(6.5, 3.6), layout="constrained")
    ax = fig.subplots()
    colours = ["#9a9a9a" if v == 0 else "#1f77b4" if v == 1 else "#d62728" for v in d["n_concepts"]]
    ax.bar(d["n_concepts"], d["n_neurons_with"], color=colours, width=0.8)
    for v, f in zip(d["n_concepts"], d["n_neurons_with"]):
        ax.text(v, f, str(f), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(d["n_concepts"])
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("concepts per neuron")
    ax.set_ylabel("neurons")
    ax.set_title(
        f"{d['n_polysemantic']} of {d['n_neurons']} live neurons polysemantic (≥ 2 concepts): {100 * d['share_polysemantic']:.0f}%"
        + (f"; {d['n_not_live']} not live, left out" if d["n_not_live"] else ""),
        fontsize=9,
    )
    return fig
