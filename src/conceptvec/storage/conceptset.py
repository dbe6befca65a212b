"""ConceptSet: the result of the method for one neuron or direction, and its file format.

On disk a ConceptSet is a directory::

    conceptset.json       parameters, neuron, counts, provenance (model, layer, data, versions)
    arrays.safetensors    top_indices, top_scores, top_activations, linkage, kmeans_labels,
                          centroid_sq_distances, labels, kmeans_cluster_ids, concept_vectors[, direction]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from .atomic import atomic_directory, input_path, write_json
from .files import read_arrays, read_format
from ..errors import ConceptvecError, StoreError
from ..core.live import dead_reason, live_mask
from ..core.params import UNSTABLE_BELOW, Params

FORMAT = "conceptvec.ConceptSet/1"
METADATA_FILE = "conceptset.json"
ARRAYS_FILE = "arrays.safetensors"
_ARRAYS = (
    "top_indices", "top_scores", "top_activations", "linkage", "kmeans_labels",
    "centroid_sq_distances", "labels", "kmeans_cluster_ids", "concept_vectors",
)


@dataclass
class ConceptSet:
    """Concept vectors of one neuron (or direction) and everything that led to them.

    Attributes
    ----------
    top_indices : array of shape (top,)
        Example indices of the top activating examples, most activating first (step 1).
    top_scores : array of shape (top,)
        Their activation of the neuron (or projection on the unit direction).
    top_activations : array of shape (top, n_units)
        Their activations, float64; X in the method.
    linkage : array of shape (top - 1, 4)
        SciPy ward linkage matrix of X (step 2); re-cut it to try other distance thresholds.
    n_agglomerative : int
        C, the number of clusters at ``params.distance_threshold``.
    kmeans_labels, centroid_sq_distances : arrays of shape (top,)
        k-means cluster of each top example and its squared distance to that centroid (step 3).
    labels : array of shape (top,)
        Concept index of each top example, -1 when removed as an outlier or in a small cluster.
    kmeans_cluster_ids : array of shape (n_concepts,)
        The k-means cluster each concept came from.
    concept_vectors : array of shape (n_concepts, n_units)
        Unit-norm concept vectors (step 4).
    floor : float or None
        The neuron's floor over the layer (``core.live``: where it rests; NaN when it has none), which decides
        :attr:`is_live`; None for a set saved before floors were recorded (the floor is then taken to be 0).
    stability : dict, optional
        ``core.stability.Stability.to_dict()`` when it was measured: per concept ``reappearance`` and
        ``mean_jaccard`` over bootstrap runs, ``count_agreement``, ``runs``, ``min_jaccard``, ``seed``.
    split_tests : list of dict, optional
        With ``distance_threshold="auto"``: every split of ward's tree that was tested, with its share
        of the sum of squares, the null's mean and sd, its p-value and whether it was kept (``core.auto``).
        With auto, ``linkage`` and ``centroid_sq_distances`` are of the examples scaled to unit length.
    evidence : list of dict, optional
        Set by ``cv.concept_evidence``: per concept, every check's numbers and outcome and a verdict
        ("supported by 2 of 3 checks (split, labels)"; ``core.evidence``).
    """

    top_indices: np.ndarray
    top_scores: np.ndarray
    top_activations: np.ndarray
    linkage: np.ndarray
    n_agglomerative: int
    kmeans_labels: np.ndarray
    centroid_sq_distances: np.ndarray
    labels: np.ndarray
    kmeans_cluster_ids: np.ndarray
    concept_vectors: np.ndarray
    params: Params
    neuron: int | None = None
    direction: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    stability: dict[str, Any] | None = None
    split_tests: list[dict[str, Any]] | None = None
    evidence: list[dict[str, Any]] | None = None
    floor: float | None = None

    def unstable(self, *, level: float = UNSTABLE_BELOW) -> np.ndarray | None:
        """Mask of shape (n_concepts,): concepts that came back in fewer than ``level`` of the stability runs; None if not measured."""
        if self.stability is None:
            return None
        return np.asarray(self.stability["reappearance"], dtype=np.float64) < level

    @property
    def n_concepts(self) -> int:
        return int(self.concept_vectors.shape[0])

    @property
    def n_units(self) -> int:
        return int(self.top_activations.shape[1])

    @property
    def is_live(self) -> bool:
        """Whether the neuron has a top: its top examples are ranked (``core.live``: not all tied, not ending
        at the neuron's floor, ``floor``); a signed layer's neuron is live whatever the sign of its top."""
        return bool(live_mask(self.top_scores, self.floor)[0])

    @property
    def dead_reason(self) -> str | None:
        """Why the neuron is not live, as a clause about "it" (None when it is live)."""
        return dead_reason(self.top_scores, self.floor)

    @property
    def outliers(self) -> np.ndarray:
        """Mask over the top examples: too far from their k-means centroid (``Params.outliers``)."""
        return self.params.outliers(self.kmeans_labels, self.centroid_sq_distances)

    @property
    def kept(self) -> np.ndarray:
        """Mask over the top examples: members of a concept."""
        return self.labels >= 0

    def members(self, concept: int) -> np.ndarray:
        """Example indices of a concept's members, in activation order."""
        if not 0 <= concept < self.n_concepts:
            raise IndexError(f"concept {concept} out of range: this set has {self.n_concepts} concept(s).")
        return np.asarray(self.top_indices[self.labels == concept])  # np.asarray: numpy's stubs type this as Any

    @property
    def neuron_direction(self) -> np.ndarray:
        """The starting direction: the neuron's basis vector, or the given unit direction."""
        if self.direction is not None:
            return self.direction
        e = np.zeros(self.n_units)
        e[self.neuron] = 1.0
        return e

    @property
    def unsplit_direction(self) -> np.ndarray:
        """The normalised mean of the kept top examples, shape (n_units,): what C = 1 would give.

        The baseline a concept vector must beat (``core.metrics.unsplit_direction`` on arrays; computed
        here because storage takes from core only the parameters). A set with no kept example has none.
        """
        kept = self.top_activations[self.labels >= 0]
        mean = kept.mean(axis=0) if len(kept) else np.zeros(self.n_units)
        norm = np.linalg.norm(mean)
        if norm == 0 or not np.isfinite(norm):
            raise ConceptvecError("this set kept no top example with a direction (no concept), so it has no unsplit direction.")
        return mean / norm

    def summary(self) -> dict[str, Any]:
        """Counts in plain numbers, as written to conceptset.json."""
        sizes = [int(np.sum(self.labels == j)) for j in range(self.n_concepts)]
        return {
            "neuron": self.neuron,
            "n_top": int(len(self.top_indices)),
            "n_agglomerative": int(self.n_agglomerative),
            "n_concepts": self.n_concepts,
            "concept_sizes": sizes,
            "n_outliers": int(self.outliers.sum()),
            "n_in_removed_small_clusters": int(np.sum(~self.outliers & ~self.kept)),
            "live": self.is_live,
        }

    def __repr__(self) -> str:
        s = self.summary()
        start = f"neuron={self.neuron}" if self.neuron is not None else "direction"
        return (
            f"ConceptSet({start}, top={s['n_top']}, C={s['n_agglomerative']}, "
            f"concepts={s['n_concepts']} of sizes {s['concept_sizes']}, outliers={s['n_outliers']})"
        )

    # -- files -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the set to directory ``path`` atomically; an existing non-empty one needs ``overwrite``."""
        arrays = {name: np.ascontiguousarray(getattr(self, name)) for name in _ARRAYS}
        if self.direction is not None:
            arrays["direction"] = np.ascontiguousarray(self.direction)
        meta = {
            "format": FORMAT,
            "params": self.params.to_dict(),
            **self.summary(),
            "provenance": self.provenance,
            **({"stability": self.stability} if self.stability is not None else {}),
            **({"split_tests": self.split_tests} if self.split_tests is not None else {}),
            **({"evidence": self.evidence} if self.evidence is not None else {}),
            # JSON has no NaN: null is "no floor", a missing key "not recorded"
            **({"floor": None if np.isnan(self.floor) else float(self.floor)} if self.floor is not None else {}),
        }
        with atomic_directory(path, overwrite=overwrite, what="ConceptSet", marker=METADATA_FILE,
                              protect=[recorded_store(self)]) as tmp:
            save_file(arrays, str(tmp / ARRAYS_FILE))
            write_json(tmp / METADATA_FILE, meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "ConceptSet":
        """Read a set written by ``save`` (safetensors and JSON only; nothing is unpickled)."""
        path = input_path(path, what="ConceptSet.load", fix="the folder cv.disentangle(...).save(path) or `conceptvec disentangle` wrote")
        meta_file = path / METADATA_FILE
        if not meta_file.exists():
            if (path / "metadata.json").exists():
                raise StoreError(f"{path} is an activation store, not a ConceptSet; open it with cv.ActivationStore.open.")
            raise StoreError(f"no ConceptSet at {path} ({METADATA_FILE} not found); make one with cv.disentangle(...).save(path) or `conceptvec disentangle`.")
        again = "disentangle the neuron again into a new folder"
        meta = read_format(meta_file, expected=FORMAT, what="a ConceptSet", fix=again)
        arrays = read_arrays(path / ARRAYS_FILE, needed=tuple(n for n in _ARRAYS if n != "n_agglomerative"), fix=again)
        missing = [key for key in ("n_agglomerative", "params") if key not in meta]
        if missing:
            raise StoreError(f"the ConceptSet {path} is damaged: it lacks {', '.join(missing)}; {again}.")
        return cls(
            **{name: arrays[name] for name in _ARRAYS if name != "n_agglomerative"},
            n_agglomerative=int(meta["n_agglomerative"]),
            params=Params.from_dict(meta["params"]),
            neuron=meta.get("neuron"),
            direction=arrays.get("direction"),
            provenance=meta.get("provenance", {}),
            stability=meta.get("stability"),
            split_tests=meta.get("split_tests"),
            evidence=meta.get("evidence"),
            floor=(np.nan if meta["floor"] is None else float(meta["floor"])) if "floor" in meta else None,
        )


def recorded_store(cs: ConceptSet) -> str | None:
    """The store path a ConceptSet's provenance records, if any."""
    prov = cs.provenance or {}
    for where in (prov, prov.get("activations") if isinstance(prov.get("activations"), dict) else {}):
        if isinstance(where, dict) and where.get("store"):
            return str(where["store"])
    return None
