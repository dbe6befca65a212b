"""What each concept is made of: paper Fig. A.9 (vector components), class labels, and the summary table."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ...storage.conceptset import ConceptSet
from ..examples import Examples
from .common import NEURON_COLOUR, concept_colour, concept_name
from .geometry import projection_comparison_data


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
    if not any(name for g in makeup.values() for name in g["labels"]):
        makeup = {}  # examples without class labels (a list of paths): no column of "(none) x68"
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
            unstable = cs.unstable()  # None when stability was not measured
            if cs.stability is not None and unstable is not None:  # measured: flag a concept that comes back too rarely
                share = cs.stability["reappearance"][j]
                row[f"comes back (of {cs.stability['runs']} runs)"] = f"{share:.0%}" + (" unstable" if unstable[j] else "")
        if j in makeup:
            g = makeup[j]
            row["commonest labels"] = ", ".join(f"{s or '(none)'} ×{c}" for s, c in zip(g["labels"][:3], g["counts"][:3]))
        rows.append(row)
    return rows
