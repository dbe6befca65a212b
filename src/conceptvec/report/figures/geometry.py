"""The concepts in activation space: paper Fig. 5 (projections), Fig. 4 (distances) and Fig. 2 (UMAP)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ...core.metrics import cosine_similarity, distance_matrix, intra_inter_distances, member_cosines, project
from ...storage.conceptset import ConceptSet
from ..examples import Examples
from .common import concept_colour


# -- Fig. 5: projections and cosine similarities, concept vector vs neuron direction ----------
def projection_comparison_data(cs: ConceptSet, centre: Any = None) -> dict[str, list]:
    """Per concept, its members' projections and cosine similarities along the concept vector
    and along the neuron direction (members in activation order), and their cosines with the two
    baselines a component shared by the whole layer cannot fool: the neuron's unsplit direction
    (``cs.unsplit_direction``) and the nearest other concept of the neuron (``nearest_other``, None
    when it has one concept). With ``centre`` (n_units,), the layer's mean activation
    (``metrics.layer_mean``), also the members' mean cosines once it is subtracted (``centred_*``)."""
    concepts = []
    direction = cs.neuron_direction
    if not cs.n_concepts:  # nothing to compare, and no unsplit direction without kept members
        return {"concepts": []}
    unsplit = cs.unsplit_direction
    centred = member_cosines(cs.top_activations, cs.labels, cs.concept_vectors, centre=centre) if centre is not None else None
    nearest = member_cosines(cs.top_activations, cs.labels, cs.concept_vectors)["nearest_other_index"]
    for j in range(cs.n_concepts):
        pos = np.flatnonzero(cs.labels == j)
        x = cs.top_activations[pos]
        other = int(nearest[j]) if nearest[j] >= 0 else None
        both = np.stack([cs.concept_vectors[j], direction])
        proj = project(x, both)
        cos = cosine_similarity(x, np.stack([cs.concept_vectors[j], direction, unsplit,
                                             cs.concept_vectors[other] if other is not None else unsplit]))
        concepts.append({
            "concept": j,
            "index": cs.top_indices[pos].tolist(),
            "projection_concept": proj[:, 0].tolist(),
            "projection_neuron": proj[:, 1].tolist(),
            "cosine_concept": cos[:, 0].tolist(),
            "cosine_neuron": cos[:, 1].tolist(),
            "cosine_unsplit": cos[:, 2].tolist(),
            "nearest_other": other,
            "cosine_nearest_other": cos[:, 3].tolist() if other is not None else [],
            **({f"centred_{key}": float(centred[key][j]) for key in ("concept", "unsplit", "nearest_other")} if centred is not None else {}),
        })
    return {"concepts": concepts}


def projection_comparison(cs: ConceptSet, data: dict | None = None) -> Figure:
    """Paper Fig. 5: each concept's members projected on (left) and cosine-similar to (right)
    their concept vector (solid) and the neuron direction (dashed); on the right also the neuron's
    unsplit direction (dotted) and the nearest other concept (dash-dot), the baselines a component
    shared by the whole layer cannot fool. ``data`` from :func:`projection_comparison_data`."""
    concepts = (data if data is not None else projection_comparison_data(cs))["concepts"]
    fig = Figure(figsize=(11.5, 3.9), layout="constrained")
    axes = fig.subplots(1, 2)
    start = f"neuron {cs.neuron}" if cs.neuron is not None else "start direction"
    for ax, key, what in ((axes[0], "projection", "Projection"), (axes[1], "cosine", "Cosine similarity")):
        for c in concepts:
            colour = concept_colour(c["concept"])
            x = np.arange(1, len(c["index"]) + 1)
            ax.plot(x, c[f"{key}_concept"], "-o", ms=3, color=colour, label=f"concept {c['concept']} · its vector")
            ax.plot(x, c[f"{key}_neuron"], "--", marker="x", ms=3, color=colour, alpha=0.75, label=f"concept {c['concept']} · {start}")
            if key == "cosine":
                ax.plot(x, c["cosine_unsplit"], ":", lw=1.4, color=colour, alpha=0.9, label=f"concept {c['concept']} · unsplit direction")
                if c["nearest_other"] is not None:
                    ax.plot(x, c["cosine_nearest_other"], "-.", lw=1.0, color=colour, alpha=0.6,
                            label=f"concept {c['concept']} · nearest other (concept {c['nearest_other']})")
        ax.set_xlabel("member of the cluster (activation order)")
        ax.set_ylabel(what)
        ax.set_title(f"{what} with the concept vector vs {start}" + ("\n(and the unsplit direction, the nearest other concept)"
                                                                   if key == "cosine" else ""), fontsize=9)
        ax.grid(alpha=0.3)
    if concepts:
        axes[1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
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

        x = cs.top_activations[pos]
        reducer = umap.UMAP(
            n_components=2, n_neighbors=out["n_neighbors"], min_dist=min_dist, random_state=seed,
            init="spectral" if len(pos) > out["n_neighbors"] + 2 else "random",
            precomputed_knn=exact_neighbours(x, out["n_neighbors"]) if len(pos) < UMAP_SMALL else (None, None, None),
        )
        out["embedding"] = reducer.fit_transform(x)
    return out


UMAP_SMALL = 4096  # umap-learn computes every distance below this many points (above, pynndescent's neighbours)


def exact_neighbours(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, None]:
    """The ``k`` nearest neighbours of each row of ``x`` (n < ``UMAP_SMALL``) exactly as umap-learn finds them for a
    small dataset, as its ``precomputed_knn``: the same embedding, without compiling its parallel neighbour search
    (numba, about 5 of the 10 s a first fit in a process costs).

    umap-learn computes every distance with its own (numba, fastmath) euclidean on float32 rows through scikit-learn's
    ``pairwise_distances``, then each row's ``k`` smallest by a stable sort; so here. ``tests/report/test_figures.py``
    checks the embedding is umap-learn's bit for bit.
    """
    from sklearn.metrics import pairwise_distances
    from umap.distances import euclidean

    d = pairwise_distances(np.asarray(x, dtype=np.float32), metric=euclidean)
    idx = np.argsort(d, axis=1, kind="mergesort")[:, :k].astype(np.int32)
    return idx, d[np.arange(len(d))[:, None], idx].copy(), None


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
            inset = ax.inset_axes((x - size / 2, y - size / 2, size, size), transform=ax.transData, zorder=4)
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
