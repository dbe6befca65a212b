"""The numbers behind a neuron page's figures: ``data.json``, and the table printed under each figure."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.metrics import layer_mean
from ..storage.conceptset import ConceptSet
from . import figures as F
from .examples import Examples


def page_data(cs: ConceptSet, acts: Any, examples: Examples, umap_d: dict | None, *, centre: Any = None) -> dict[str, Any]:
    """Every figure's numbers for one page, as plain JSON-ready lists, keyed by the figure's file stem.

    Parameters
    ----------
    cs : ConceptSet
    acts : array of shape (n_examples, n_units)
        The activation matrix A the set was made from (the Fig. 3 rankings stream all of it).
    examples : Examples
    umap_d : dict or None
        A ``figures.umap_data`` result; None leaves the UMAP out.
    centre : array of shape (n_units,), optional
        The layer's mean activation (``metrics.layer_mean(acts)``, one more pass when not given).
    """
    if centre is None and cs.n_concepts:
        centre = layer_mean(acts)
    dist = F.distance_matrices_data(cs)
    dendro = F.dendrogram_data(cs)
    data = {
        "neuron": cs.neuron,
        "params": cs.params.to_dict(),
        "summary": cs.summary(),
        "summary_table": F.summary_table(cs, examples),
        "top_activating": {**(top := F.top_activating_data(cs)), "caption": [examples.caption(i) for i in top["index"]]},
        "concepts": F.concept_groups_data(cs),
        "projecting": F.projecting_data(cs, acts),
        "projecting_cosine": F.projecting_data(cs, acts, rank="cosine"),
        "projecting_centred": F.projecting_data(cs, acts, rank="centred", centre=centre),
        "projection_comparison": F.projection_comparison_data(cs, centre=centre),
        "distance_matrices": {**dist, "top": dist["top"].tolist(), "kept": dist["kept"].tolist()},
        "dendrogram": {k: v for k, v in dendro.items() if k not in ("icoord", "dcoord")},
        "threshold_curve": F.threshold_curve_data(cs, thresholds=np.unique(np.append(cs.linkage[:, 2], F.run_cut(cs)[0]))),
        "components": F.components_data(cs),
        "class_makeup": F.class_makeup_data(cs, examples),
    }
    if umap_d is not None:
        data["umap"] = {**umap_d, "embedding": np.asarray(umap_d["embedding"]).tolist()}
    return data


def number_rows(stem: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the compact table printed under figure ``stem`` (a key of ``page_data``); [] for none."""
    d = data.get(stem)
    if d is None:
        return []
    rows: list[dict[str, Any]] = []
    if stem == "top_activating":
        rows = [dict(zip(("rank", "example", "id · label", "activation", "concept"), r))
                for r in zip(d["rank"], d["index"], d["caption"], d["activation"], d["concept"])]
    elif stem == "concepts":
        rows = [{"group": F.concept_name(g["concept"]), "members": len(g["index"]), "ranks": " ".join(map(str, g["rank"]))} for g in d["groups"]]
    elif stem in ("projecting", "projecting_cosine", "projecting_centred"):
        rows = [{"column": c["name"], "examples (value)": ", ".join(f"{i} ({v:.3g})" for i, v in zip(c["index"], c["value"]))} for c in d["columns"]]
    elif stem == "projection_comparison":
        rows = [{
            "concept": c["concept"], "members": len(c["index"]),
            "mean projection, concept vector": np.mean(c["projection_concept"]), "mean projection, neuron": np.mean(c["projection_neuron"]),
            "mean cosine, concept vector": np.mean(c["cosine_concept"]), "mean cosine, neuron": np.mean(c["cosine_neuron"]),
            "mean cosine, unsplit direction": np.mean(c["cosine_unsplit"]),
            "mean cosine, nearest other concept": np.mean(c["cosine_nearest_other"]) if c["nearest_other"] is not None else float("nan"),
            **({"centred: concept vector": c["centred_concept"], "centred: unsplit": c["centred_unsplit"],
                "centred: nearest other": c["centred_nearest_other"]} if "centred_concept" in c else {}),
        } for c in d["concepts"]]
    elif stem == "distance_matrices":
        rows = [{"top examples": len(d["top"]), "kept examples": len(d["kept_index"]), "mean intra-cluster": d["intra"], "mean inter-cluster": d["inter"]}]
    elif stem == "umap":
        rows = [{"kept examples": len(d["index"]), "seed": d["seed"], "n_neighbors": d["n_neighbors"], "min_dist": d["min_dist"]}]
    elif stem == "dendrogram":
        heights = sorted(d["heights"], reverse=True)[:10]
        rows = [{"distance_threshold": d["distance_threshold"], "clusters": d["n_clusters"], "highest merges": ", ".join(f"{h:.4g}" for h in heights)}]
    elif stem == "threshold_curve":
        t, c = np.asarray(d["threshold"]), np.asarray(d["n_clusters"])
        # Where C changes: the merge heights. Show the top of the tree, where thresholds matter.
        for k in range(len(t) - 1, -1, -1):
            if (k == len(t) - 1 or c[k] != c[k + 1]) and len(rows) < 12:
                rows.append({"threshold above": t[k], "clusters": int(c[k + 1]) if k < len(t) - 1 else int(c[k])})
        rows.append({"threshold above": "run", "clusters": d["n_agglomerative"]})
    elif stem == "components":
        rows = [{"concept": c["concept"], "weight on the neuron": c["neuron_weight"],
                 "largest units (weight)": ", ".join(f"{u} ({w:.3f})" for u, w in zip(c["top_units"], c["top_weights"]))} for c in d["concepts"]]
    elif stem == "class_makeup":
        rows = [{"group": F.concept_name(g["concept"]), "members": g["n"],
                 "labels": ", ".join(f"{s or '(none)'} ×{n}" for s, n in zip(g["labels"], g["counts"]))} for g in d["groups"]]
    return rows
