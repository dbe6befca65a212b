"""Shared concepts of a scanned layer: ``cv.shared_concepts(scan)`` and its table in the scan folder.

The maths is ``core.shared`` (on V and each concept's owner); this adds what the scan knows: each group's
neurons, how much its concepts' members overlap (the same examples found through different neurons), the
commonest class labels, the layer's activation statistics for the random-direction baseline, and files.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import load_file, save_file

from ..core.options import whole_number
from ..core.shared import shared_groups
from ..errors import ConceptvecError, StoreError
from ..progress import progress_bar
from ..storage.atomic import read_json, read_manifest, record_written, unrecorded, write_json
from ..storage.store import ActivationStore
from .result import ScanResult

GROUPS_FILE = "shared_groups.parquet"
ARRAYS_FILE = "shared_concepts.safetensors"
META_FILE = "shared_concepts.json"
FORMAT = "conceptvec.SharedConcepts/1"
LABELS_SHOWN = 3


@dataclass
class SharedConcepts:
    """Groups of concept vectors of different neurons that point the same way (``core.shared``).

    Attributes
    ----------
    group : array of shape (n_total_concepts,)
        Each concept's group (index into ``groups``), -1 when it shares with no other neuron.
    groups : list of dict
        One per group, largest first: ``group``, ``concepts`` (indices into the scan's concept vectors),
        ``neurons`` and ``concept_of_neuron`` (which concept of each), ``mean_cosine``, ``min_cosine``,
        ``overlap`` (mean Jaccard index of the members' example sets over the group's pairs), ``labels``.
    level : float
        The cosine above which two concepts are linked (from ``significance`` on this layer).
    baseline_groups : array of shape (null_draws,)
        Groups that random directions of the layer gave in each draw, by the same test.
    neighbours, neighbour_cosines : arrays of shape (n_total_concepts, k)
        Each concept's nearest concepts of other neurons (-1 past the end) and their cosines.
    """

    group: np.ndarray
    groups: list[dict[str, Any]]
    level: float
    baseline_groups: np.ndarray
    neighbours: np.ndarray
    neighbour_cosines: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.groups)

    def table(self) -> pa.Table:
        """One row per group."""
        cols = ("group", "concepts", "neurons", "concept_of_neuron", "mean_cosine", "min_cosine", "overlap", "labels")
        types = {"group": pa.int64(), "concepts": pa.list_(pa.int64()), "neurons": pa.list_(pa.int64()),
                 "concept_of_neuron": pa.list_(pa.int64()), "labels": pa.list_(pa.string())}
        return pa.table({c: pa.array([g[c] for g in self.groups], types.get(c, pa.float64())) for c in cols})

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table, the per-concept arrays and the settings into folder ``path`` (the scan's folder, usually).

        Each file is written under a temporary name and renamed; nothing else in the folder is touched.
        """
        path = Path(path)
        if not path.is_dir():
            raise ConceptvecError(f"{path} is not a folder; save shared concepts into the scan's folder.")
        names = (GROUPS_FILE, ARRAYS_FILE, META_FILE)
        theirs = unrecorded(path, names)  # only shared concepts written here before (listed, unchanged) are replaced
        if theirs:
            raise ConceptvecError(f"{path} holds {', '.join(theirs)}, which conceptvec did not write there (or which changed since); "
                                  f"saving shared concepts would replace them. Move them away, or save into another folder.")
        tmp = path / f".{GROUPS_FILE}.{os.getpid()}"
        pq.write_table(self.table(), tmp)
        os.replace(tmp, path / GROUPS_FILE)
        tmp = path / f".{ARRAYS_FILE}.{os.getpid()}"
        save_file({"group": self.group.astype(np.int64), "neighbours": self.neighbours.astype(np.int64),
                   "neighbour_cosines": self.neighbour_cosines.astype(np.float32),
                   "baseline_groups": self.baseline_groups.astype(np.int64)}, str(tmp))
        os.replace(tmp, path / ARRAYS_FILE)
        write_json(path / META_FILE, {"format": FORMAT, "level": self.level, "n_groups": len(self.groups),
                                      "params": self.params, "files": {"groups": GROUPS_FILE, "arrays": ARRAYS_FILE}})
        if read_manifest(path) is not None:
            record_written(path, *names)  # part of the scan's output now: its --overwrite may replace them, nothing else may
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SharedConcepts":
        """Read what :meth:`save` wrote (JSON, Parquet, safetensors; nothing unpickled)."""
        path = Path(path)
        if not (path / META_FILE).is_file():
            raise StoreError(f"no shared concepts in {path}; make them with cv.shared_concepts(scan).save(path).")
        meta = read_json(path / META_FILE)
        arrays = load_file(str(path / ARRAYS_FILE))
        groups = pq.read_table(path / GROUPS_FILE).to_pylist()
        return cls(group=arrays["group"], groups=groups, level=float(meta["level"]), baseline_groups=arrays["baseline_groups"],
                   neighbours=arrays["neighbours"], neighbour_cosines=arrays["neighbour_cosines"], params=meta.get("params", {}))

    def __repr__(self) -> str:
        return (f"SharedConcepts({len(self.groups)} groups of {int(np.sum(self.group >= 0))} concepts at cosine > {self.level:.3f}; "
                f"random directions gave groups in {int(np.sum(self.baseline_groups > 0))} of {len(self.baseline_groups)} draws)")


def layer_statistics(acts: Any, *, chunk_rows: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Mean (n_units,) and covariance (n_units, n_units) of the layer's activations, in one pass over A."""
    n, d = acts.shape
    total = np.zeros(d)
    outer = np.zeros((d, d))
    for a in range(0, n, chunk_rows):
        x = np.asarray(acts[a : a + chunk_rows], dtype=np.float64)
        total += x.sum(axis=0)
        outer += x.T @ x
    mean = total / max(n, 1)
    return mean, (outer - n * np.outer(mean, mean)) / max(n - 1, 1)


def shared_concepts(scan: ScanResult, *, significance: float = 0.05, null_draws: int = 10, neighbours: int = 5,
                    seed: int = 0, acts: Any = None, progress: bool = True) -> SharedConcepts:
    """Concept vectors of different neurons of ``scan`` that point the same way, against random directions of the layer.

    Parameters
    ----------
    scan : ScanResult
    significance : float
        Family-wise chance that two concepts no more alike than this layer's pairs are linked (see ``core.shared``).
    null_draws : int
        Sets of random directions of the layer (Gaussian with its activations' mean and covariance when the
        activations are at hand) put through the same test: the baseline.
    neighbours : int
        Nearest concepts of other neurons kept for each concept.
    seed : int
    acts : array of shape (n_examples, n_units) or ActivationStore, optional
        The layer's activations, when the scan's store is not where it recorded (for the baseline and labels).
    progress : bool
    """
    seed = whole_number("seed", seed, 0)
    if not isinstance(scan, ScanResult):
        raise ConceptvecError(f"shared_concepts needs a ScanResult (cv.scan_layer(...) or cv.ScanResult.load(path)), got "
                              f"{type(scan).__name__}.")
    # each draw is the whole test again on random directions: 10**9 would run for ever with no output
    null_draws = whole_number("null_draws", null_draws, 0, 1000, why="10 to 100 draws give the baseline")
    if acts is not None:
        scan.with_activations(acts)
    matrix, label_names = scan.activations, None
    store_path = scan.store_path
    if store_path and Path(store_path).exists():
        store = ActivationStore.open(store_path)
        label_names = store.label_names
        matrix = store.activations if matrix is None else matrix
    owner = np.repeat(scan.neurons, scan.n_concepts)
    layer = layer_statistics(matrix) if matrix is not None and null_draws else None
    with progress_bar("steps", disable=not progress) as bar:
        task = bar.add_task("shared concepts", total=null_draws + 1)
        found = shared_groups(scan.concept_vectors, owner, significance=significance, null_draws=null_draws,
                              neighbours=neighbours, seed=seed, layer=layer, advance=lambda: bar.advance(task))
    members = concept_members(scan)
    groups = []
    v = scan.concept_vectors / np.maximum(np.linalg.norm(scan.concept_vectors, axis=1, keepdims=True), 1e-12)
    for g in range(found.n_groups):
        idx = np.flatnonzero(found.group == g)
        c = v[idx] @ v[idx].T
        cross = owner[idx, None] != owner[None, idx]
        sets = [set(members[i].tolist()) for i in idx]
        jac = [len(sets[a] & sets[b]) / max(1, len(sets[a] | sets[b])) for a in range(len(idx)) for b in range(a + 1, len(idx))
               if owner[idx[a]] != owner[idx[b]]]
        names = Counter(str(label_names[e]) for i in idx for e in members[i]) if label_names is not None else Counter()
        groups.append({
            "group": g, "concepts": idx.tolist(), "neurons": owner[idx].tolist(),
            "concept_of_neuron": (idx - scan.concept_offsets[np.searchsorted(scan.neurons, owner[idx])]).tolist(),
            "mean_cosine": float(c[cross].mean()), "min_cosine": float(c[cross].min()),
            "overlap": float(np.mean(jac)) if jac else 0.0,
            "labels": [name for name, _ in names.most_common(LABELS_SHOWN) if name],
        })
    params = {"significance": significance, "null_draws": null_draws, "neighbours": neighbours, "seed": seed,
              "baseline": "layer activations' mean and covariance" if layer is not None else "concept vectors' mean and covariance"}
    return SharedConcepts(group=found.group, groups=groups, level=found.level, baseline_groups=found.baseline_groups,
                          neighbours=found.neighbours, neighbour_cosines=found.neighbour_cosines, params=params)


def concept_members(scan: ScanResult) -> list[np.ndarray]:
    """The member examples (rows of A) of every concept of the scan, in concept-vector order."""
    out = []
    for i in range(len(scan.neurons)):
        for j in range(int(scan.n_concepts[i])):
            out.append(scan.top_indices[i][scan.labels[i] == j])
    return out
