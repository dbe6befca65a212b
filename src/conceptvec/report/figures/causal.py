"""Causal effect of a neuron's concepts: the selectivity heatmap and the steering curve (``conceptvec causal``).

``effects`` is a :class:`~conceptvec.storage.causal_effects.CausalEffects`: interventions (each concept
vector, the neuron, random directions) by example groups (each concept's members, random examples).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...storage.causal_effects import CausalEffects
from .common import NEURON_COLOUR, concept_colour


def selectivity_data(effects: CausalEffects, metric: str = "d_logit") -> dict[str, Any]:
    """The heatmap's numbers: rows (concepts, neuron, random mean), columns (example groups), mean change of ``metric``."""
    rows, groups, values = effects.matrix(metric)
    return {"rows": rows, "groups": groups, "metric": metric, "values": values.tolist()}


def selectivity_heatmap(effects: CausalEffects, metric: str = "d_logit"):
    """Heatmap of the mean change of ``metric`` (default the target logit) when each direction is removed, per example group.

    A concept used by the model for its own examples has its most negative cell on the diagonal.
    """
    from matplotlib.figure import Figure

    d = selectivity_data(effects, metric)
    values = np.asarray(d["values"], dtype=np.float64)
    fig = Figure(figsize=(1.6 + 1.1 * len(d["groups"]), 0.9 + 0.45 * len(d["rows"])), layout="constrained")
    ax = fig.add_subplot()
    finite = values[np.isfinite(values)]
    limit = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(d["groups"])), [g if g == "random" else f"{g}\nmembers" for g in d["groups"]], fontsize=8)
    ax.set_yticks(range(len(d["rows"])), d["rows"], fontsize=8)
    ax.set_xlabel("example group")
    ax.set_ylabel("direction " + ("mean-ablated" if effects.params.get("mode") == "mean" else "ablated"))
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            if np.isfinite(v):
                ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=7.5,
                        color="white" if abs(v) > 0.6 * limit else "black")
    fig.colorbar(image, ax=ax, label={"d_logit": "change of the target logit"}.get(metric, metric), shrink=0.9)
    return fig


def steering_data(effects: CausalEffects) -> dict[str, Any]:
    """Per concept: alphas and the mean projection, neuron activation and target logit over its members."""
    out: dict[str, Any] = {}
    for r in effects.steering:
        c = out.setdefault(r["concept"], {"alpha": [], "projection": [], "neuron_activation": [], "target_logit": []})
        for k in c:
            c[k].append(float(r[k]))
    return out


def steering_curve(effects: CausalEffects):
    """Steering along each concept vector (x + alpha v, alpha in units of its members' mean projection): the
    layer's projection on v and the neuron's activation (left), the target logit (right), over the concept's members."""
    from matplotlib.figure import Figure

    d = steering_data(effects)
    fig = Figure(figsize=(8.4, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for j, (name, c) in enumerate(d.items()):
        colour = concept_colour(int(name.split()[-1]) if name.split()[-1].isdigit() else j)
        left.plot(c["alpha"], c["projection"], "-o", ms=3, color=colour, label=f"{name}: projection on it")
        left.plot(c["alpha"], c["neuron_activation"], "--s", ms=3, color=colour, alpha=0.7, label=f"{name}: neuron activation")
        right.plot(c["alpha"], c["target_logit"], "-o", ms=3, color=colour, label=name)
    for ax, label in ((left, "members' mean at the layer"), (right, "members' mean target logit")):
        ax.axvline(0, color=NEURON_COLOUR, lw=0.6, ls=":")
        ax.set_xlabel("alpha (x the members' mean projection)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    left.legend(fontsize=6.5)
    right.legend(fontsize=7)
    return fig
