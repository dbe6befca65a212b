"""CausalEffects: what ablating (or steering) a neuron's concept directions does to the model's outputs.

On disk a folder (``RunDir.causal(neuron)``, that is ``RUN/neuron_<n>/causal/``)::

    causal.json        parameters, selectivity per concept, provenance (model, layer, data, versions)
    effects.parquet    one row per (intervention, example group): mean metric changes
    steering.parquet   one row per (concept, alpha): the layer's projection, the neuron's activation, the target logit

Interventions are named ``concept j``, ``neuron`` and ``random r``; example groups ``concept j``
(the concept's members), any groups the caller named, and ``random`` (random examples). "Hurt" is the drop of the target logit,
``-d_logit``. Torch-free, so that a report reads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_directory, write_json
from .files import read_format

FORMAT = "conceptvec.CausalEffects/1"
METADATA_FILE = "causal.json"
EFFECTS_FILE = "effects.parquet"
STEERING_FILE = "steering.parquet"
METRICS = ("d_logit", "d_prob", "kl", "flip", "d_loss", "cos_change")


@dataclass
class CausalEffects:
    """Effects of interventions on one layer, per example group.

    Attributes
    ----------
    effects : list of dict
        One row per (intervention, group): ``intervention``, ``kind`` (concept, neuron, random),
        ``group``, ``n_examples`` and the mean of each metric (NaN where the task has none): ``d_logit``
        and ``d_prob`` (change of the target's logit and probability), ``kl`` (KL(base || edited)),
        ``flip`` (share of top-1 predictions that change), ``d_loss`` (next-token loss change, causal
        LMs), ``cos_change`` (1 - cosine of the final embedding, encoders).
    steering : list of dict
        One row per (concept, alpha): ``concept``, ``alpha``, ``projection`` (mean of the pooled layer
        output on the concept vector), ``neuron_activation``, ``target_logit`` over the concept's members.
    params : dict
        mode, seed, n_random, random_examples, alphas, task, batch size, whether the layers below were shared.
    provenance : dict
        model, layer, the ConceptSet and store it came from, versions.
    """

    effects: list[dict[str, Any]]
    steering: list[dict[str, Any]]
    params: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    neuron: int | None = None

    def value(self, intervention: str, group: str, metric: str = "d_logit") -> float:
        """The mean ``metric`` of ``intervention`` on ``group`` (NaN when absent)."""
        for row in self.effects:
            if row["intervention"] == intervention and row["group"] == group:
                return float(row[metric])
        return float("nan")

    def hurt(self, intervention: str, group: str) -> float:
        """The drop of the target logit, -d_logit."""
        return -self.value(intervention, group)

    @property
    def concepts(self) -> list[str]:
        return list(dict.fromkeys(r["intervention"] for r in self.effects if r["kind"] == "concept"))

    @property
    def randoms(self) -> list[str]:
        return list(dict.fromkeys(r["intervention"] for r in self.effects if r["kind"] == "random"))

    @property
    def groups(self) -> list[str]:
        """Example groups in the order they were measured: the concepts' members, any given groups, random examples."""
        return list(dict.fromkeys(r["group"] for r in self.effects))

    def selectivity(self) -> list[dict[str, Any]]:
        """Per concept: does ablating it hurt its own members more than the other concepts' members and the
        random examples, and more than any random direction hurts its members?"""
        rows = []
        for name in self.concepts:
            own = self.hurt(name, name)
            others = [self.hurt(name, g) for g in self.concepts if g != name]
            randoms = [self.hurt(r, name) for r in self.randoms]
            rows.append({
                "concept": name, "hurt_own": own,
                "hurt_other_concepts_max": max(others) if others else None,
                "hurt_random_examples": self.hurt(name, "random"),
                "hurt_random_directions_max": max(randoms) if randoms else None,
                "hurt_neuron_on_own": self.hurt("neuron", name),
                "more_than_other_concepts": bool(own > max(others)) if others else None,
                "more_than_random_examples": bool(own > self.hurt(name, "random")),
                "more_than_random_directions": bool(own > max(randoms)) if randoms else None,
            })
        return rows

    def matrix(self, metric: str = "d_logit") -> tuple[list[str], list[str], np.ndarray]:
        """(row names, group names, values): concepts, the neuron and the random directions' mean, by group."""
        groups = self.groups
        rows = self.concepts + ["neuron"]
        values = [[self.value(r, g, metric) for g in groups] for r in rows]
        if self.randoms:
            rows.append("random (mean)")
            values.append([float(np.mean([self.value(r, g, metric) for r in self.randoms])) for g in groups])
        return rows, groups, np.asarray(values, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "neuron": self.neuron, "params": self.params, "selectivity": self.selectivity(),
                "provenance": self.provenance}

    def save(self, out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``causal.json``, ``effects.parquet`` and ``steering.parquet`` to ``out`` atomically."""
        with atomic_directory(out, overwrite=overwrite, what="causal effects", marker=METADATA_FILE) as tmp:
            pq.write_table(pa.Table.from_pylist(self.effects), tmp / EFFECTS_FILE)
            pq.write_table(pa.Table.from_pylist(self.steering, schema=_steering_schema() if not self.steering else None),
                           tmp / STEERING_FILE)
            write_json(tmp / METADATA_FILE, self.to_dict())
        return Path(out)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "CausalEffects":
        path = Path(path)
        meta = read_format(path / METADATA_FILE, expected=FORMAT, what="causal effects",
                           fix="compute them again with `conceptvec causal RUN --neuron N`")
        return cls(pq.read_table(path / EFFECTS_FILE).to_pylist(), pq.read_table(path / STEERING_FILE).to_pylist(),
                   meta["params"], meta.get("provenance", {}), meta.get("neuron"))


def _steering_schema() -> pa.Schema:
    return pa.schema([(k, pa.float64()) for k in ("alpha", "projection", "neuron_activation", "target_logit")]).insert(0, pa.field("concept", pa.string()))

