"""The result of a layer scan: every scanned neuron's concepts, a table, a summary figure, and its files.

Notation as in ``scan.disentangle``: A is the activation matrix, shape (n_examples, n_units); a scan ran
the method from m starting directions and stacks all concept vectors in V, shape
(n_total_concepts, n_units), with ``concept_offsets`` (m + 1,) as the index: the concepts of the
i-th scanned direction are rows ``concept_offsets[i]:concept_offsets[i + 1]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import save_file

from ..core.arrays import as_matrix, read_rows
from ..core.evidence import count_words, layer_verdicts, short_verdict
from ..core.fdr import adjusted_p
from ..core.live import live_mask
from ..core.scale import SCALE_FIX, scale_problems
from ..core.metrics import concept_counts, layer_mean, member_cosines
from ..core.params import UNSTABLE_BELOW, Params
from ..errors import ConceptvecError, StoreError
from ..storage.atomic import atomic_directory, input_path, write_json
from ..storage.conceptset import ConceptSet
from ..storage.files import read_arrays, read_format
from ..storage.store import ActivationStore
from .evidence import layer_power, store_labels

FORMAT = "conceptvec.ScanResult/1"
SCAN_FILE = "scan.json"
CONCEPTS_FILE = "concepts.safetensors"
METHOD_FILE = "method.safetensors"
PROJECTING_FILE = "projecting.safetensors"
TABLE_FILE = "neurons.parquet"
CONCEPT_TABLE_FILE = "concepts.parquet"
BATCH_NEURONS = 256  # neurons whose top examples are read from A together
SUMMARY_FILE = "summary.json"
FIGURE_FILE = "summary.png"

METHOD_ARRAYS = ("top_indices", "top_scores", "linkage", "n_agglomerative", "kmeans_labels",
                 "centroid_sq_distances", "labels")


def share_of_live(summary: dict[str, Any], *, digits: int = 1) -> str:
    """The share of live units with 2 or more concepts, as text ("none live" when no unit is live, not "nan%")."""
    if not summary["n_live"]:
        return "none live"
    return f"{100 * summary['share_with_2_or_more_concepts']:.{digits}f}%"


@dataclass
class ScanResult:
    """The method's results for every scanned neuron (or direction) of a layer.

    Attributes
    ----------
    neurons : array of shape (m,)
        The scanned neurons (for directions: the row index of each direction), ascending.
    n_agglomerative, n_concepts : arrays of shape (m,)
        C and the number of concepts kept, per scanned neuron.
    top_indices, top_scores : arrays of shape (m, top)
        Top activating examples (step 1) and their activations (or projections).
    linkage : array of shape (m, top - 1, 4); kmeans_labels, centroid_sq_distances, labels : (m, top)
        As in ConceptSet, per neuron.
    concept_vectors : array of shape (n_total_concepts, n_units)
        All unit concept vectors of the scan; ``concept_offsets`` (m + 1,) is the index.
    kmeans_cluster_ids : array of shape (n_total_concepts,)
    directions : array of shape (m, n_units) or None
        The unit starting directions when not neurons; ``kind`` names them ('neurons', 'svd:K', 'file:...').
    projecting : dict or None
        Maximally projecting examples of every concept: ``indices``, ``projections``, ``cosine``,
        each of shape (n_total_concepts, top).
    stability : dict or None
        With ``scan_layer(stability=B)``: ``runs``, ``resampling``, ``concept_reappearance``
        (n_total_concepts,), each concept's share of runs it came back in, and ``count_agreement`` (m,),
        each neuron's share of runs that found as many concepts.
    floors : array of shape (m,) or None
        Each scanned unit's floor over the layer (``core.live``; NaN: none), which decides :attr:`live`; None for a
        scan saved before floors were recorded (the floor is then taken to be 0).
    first_p : array of shape (m,) or None
        With ``distance_threshold="auto"``: each neuron's first split's p-value (``core.fdr.first_split_p``).
    layer_error : dict or None
        With ``auto``: the rule that made the splits (``rule``, ``level``), the live neurons ``tested``, the first
        ``splits`` kept, the ``expected_false_splits`` (``core.fdr.layer_error``) and the splits ``withdrawn`` by
        ``Params.fdr``.
    """

    neurons: np.ndarray
    top_indices: np.ndarray
    top_scores: np.ndarray
    linkage: np.ndarray
    n_agglomerative: np.ndarray
    kmeans_labels: np.ndarray
    centroid_sq_distances: np.ndarray
    labels: np.ndarray
    concept_vectors: np.ndarray
    concept_offsets: np.ndarray
    kmeans_cluster_ids: np.ndarray
    params: Params
    kind: str = "neurons"
    directions: np.ndarray | None = None
    projecting: dict[str, np.ndarray] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    resumed: int = 0  # neurons taken from a previous, interrupted run of the same scan
    reused: bool = False  # the whole result was read from a finished scan directory
    activations: Any = field(default=None, repr=False)  # A, read for scan[neuron]; None: opened from store_path when needed
    stability: dict[str, Any] | None = None
    floors: np.ndarray | None = None
    first_p: np.ndarray | None = None
    layer_error: dict[str, Any] | None = None
    _evidence: list[list[dict[str, Any]]] | None = field(default=None, init=False, repr=False)

    UNSTABLE = UNSTABLE_BELOW  # a concept back in fewer than half of the stability runs is flagged unstable

    @property
    def n_concepts(self) -> np.ndarray:
        return np.diff(self.concept_offsets)

    @property
    def n_units(self) -> int:
        return int(self.concept_vectors.shape[1])

    def __len__(self) -> int:
        return len(self.neurons)

    def position(self, neuron: int) -> int:
        """The row of a scanned neuron (or direction) in the scan's per-neuron arrays; KeyError when not scanned."""
        if isinstance(neuron, (bool, np.bool_)) or not isinstance(neuron, (int, np.integer)):
            raise ConceptvecError(f"neuron must be a whole number (a scanned neuron or direction), got {neuron!r}.")
        i = int(np.searchsorted(self.neurons, neuron))
        if i == len(self.neurons) or self.neurons[i] != neuron:
            shown = f"{self.neurons[0]}-{self.neurons[-1]}" if len(self.neurons) > 1 else str(self.neurons[0])
            raise KeyError(f"neuron {neuron} was not scanned (this scan holds {len(self.neurons)} of them, {shown}).")
        return i

    def concepts_of(self, neuron: int) -> np.ndarray:
        """Concept vectors of one scanned neuron, shape (n_concepts, n_units)."""
        i = self.position(neuron)
        return self.concept_vectors[self.concept_offsets[i] : self.concept_offsets[i + 1]]

    def __getitem__(self, neuron: int) -> ConceptSet:
        """The neuron's ConceptSet, as ``disentangle`` gives it (top activations are read from A)."""
        i = self.position(int(neuron) if isinstance(neuron, str) and neuron.strip().isdigit() else neuron)
        matrix = self._matrix()
        top = self.top_indices[i]
        x = read_rows(matrix, top)
        a, b = self.concept_offsets[i], self.concept_offsets[i + 1]
        return ConceptSet(
            top_indices=top.copy(),
            top_scores=self.top_scores[i].copy(),
            floor=float(self.floors[i]) if self.floors is not None else None,
            top_activations=x,
            linkage=self.linkage[i].copy(),
            n_agglomerative=int(self.n_agglomerative[i]),
            kmeans_labels=self.kmeans_labels[i].copy(),
            centroid_sq_distances=self.centroid_sq_distances[i].copy(),
            labels=self.labels[i].copy(),
            kmeans_cluster_ids=self.kmeans_cluster_ids[a:b].copy(),
            concept_vectors=self.concept_vectors[a:b].copy(),
            params=self.params,
            neuron=int(self.neurons[i]) if self.kind == "neurons" else None,
            direction=self.directions[i].copy() if self.directions is not None else None,
            provenance={**self.provenance, "scan": {"kind": self.kind, "index": int(self.neurons[i]),
                                                    # the first split's p-value, raw and adjusted over the scan, for cv.concept_evidence's split check
                                                    **({"first_split_p": float(self.first_p[i]), "first_split_q": float(adjusted_p(self.first_p)[i])}
                                                       if self.first_p is not None else {})}},
            # the scan keeps each concept's reappearance and the count agreement (not the per-run Jaccards)
            stability=({"reappearance": self.stability["concept_reappearance"][a:b].tolist(),
                        "count_agreement": float(self.stability["count_agreement"][i]), "runs": self.stability["runs"],
                        "resampling": self.stability["resampling"]} if self.stability is not None else None),
        )

    def with_activations(self, acts: np.ndarray | ActivationStore) -> "ScanResult":
        """This scan reading its top examples' activations from ``acts`` (for ``scan[neuron]``); returns self."""
        self.activations = as_matrix(acts)[0]
        return self

    @property
    def store_path(self) -> str | None:
        """The activation store the scan was made from, as recorded (None for an array)."""
        return self.provenance.get("activations", {}).get("store")

    def _matrix(self) -> np.ndarray:
        if self.activations is None:
            store = self.store_path
            if store and Path(store).exists():
                self.activations = ActivationStore.open(store).activations
            else:
                raise ConceptvecError(
                    "this scan's activations are not at hand (the scan was made from an array, or the store moved); "
                    "load it with cv.ScanResult.load(path, acts=...) to read the top examples' activations."
                )
        return self.activations

    # -- numbers, table, figure --------------------------------------------------------------
    @property
    def live(self) -> np.ndarray:
        """Per scanned neuron: whether it has a top (``core.live``, as :attr:`ConceptSet.is_live`)."""
        return live_mask(self.top_scores, self.floors)

    def summary(self) -> dict[str, Any]:
        """Histogram of concepts per neuron and the share of neurons with 2 or more concepts.

        Counted over live neurons only: a neuron without a top (``core.live``) has concepts of
        arbitrary examples (``not_live`` lists them).
        """
        live = self.live
        c_hist = np.bincount(self.n_agglomerative[live], minlength=1)
        return {
            **concept_counts(self.n_concepts, live),
            "not_live": self.neurons[~live].tolist(),
            "clusters_per_neuron": {str(i): int(v) for i, v in enumerate(c_hist) if i >= 1},  # C >= 1 always
            "scale_warnings": self.scale_problems(),
            **({"layer_error": self.layer_error} if self.layer_error is not None else {}),
        }

    def scale_problems(self) -> list[str]:
        """How the thresholds miss this layer's scale over the live neurons (``core.scale``); empty when they fit."""
        live = self.live
        if not live.any():
            return []
        what = f"the {int(live.sum())} live {'neurons' if self.kind == 'neurons' else 'directions'} scanned"
        return scale_problems(self.linkage[live], self.centroid_sq_distances[live], self.labels[live], self.params, what=what)

    def evidence(self) -> list[list[dict[str, Any]]]:
        """Per scanned neuron, its concepts' evidence (``core.evidence.verdicts``): the first split's p-value, the
        stability runs and the store's class labels, where the scan has them (no causal check: that needs the model)."""
        if self._evidence is None:
            self._evidence = layer_verdicts(
                self.concept_offsets, self.top_indices, self.labels, first_p=self.first_p, level=self.params.evidence_fdr,
                reappearance=self.stability["concept_reappearance"] if self.stability is not None else None,
                example_labels=store_labels(self.store_path), seed=self.params.seed,
                auto_level=self.params.decision_level,
                auto_fdr=self.params.fdr is not None)
        return self._evidence

    def power(self, *, recommend_for: float | str | None = "finer", seed: int = 0, progress: bool = False) -> pa.Table:
        """For every live neuron auto gave one concept: "one concept, or two closer than X" (``core.power``), and with
        ``recommend_for`` (a separation; 'finer': one step of the power grid below the neuron's X; None: none) the top
        that would detect two concepts that far apart; a table (``scan.evidence.layer_power``). About 0.6 s per
        neuron on a planted 256-wide layer: not part of the scan, asked for (``--power``)."""
        one = self.live & (self.n_concepts == 1) & (self.params.auto_distance and self.params.representation == "activations")
        level = self.params.decision_level
        return layer_power(self._matrix(), self.top_indices, self.neurons, one, significance=level,
                           recommend_for=recommend_for, seed=seed, progress=progress)

    def table(self) -> pa.Table:
        """One row per scanned neuron: neuron, C, concepts, cluster sizes, outliers removed, small-cluster examples removed."""
        outliers = self.params.outliers(self.kmeans_labels, self.centroid_sq_distances)
        sizes = [[int(np.sum(self.labels[i] == j)) for j in range(int(c))] for i, c in enumerate(self.n_concepts)]
        return pa.table({
            "neuron": pa.array(self.neurons, pa.int64()),
            "C": pa.array(self.n_agglomerative, pa.int64()),
            "concepts": pa.array(self.n_concepts, pa.int64()),
            "cluster_sizes": pa.array(sizes, pa.list_(pa.int64())),
            "outliers_removed": pa.array(outliers.sum(axis=1), pa.int64()),
            "small_cluster_examples_removed": pa.array(np.sum(~outliers & (self.labels < 0), axis=1), pa.int64()),
            "first_concept": pa.array(self.concept_offsets[:-1], pa.int64()),
            "live": pa.array(self.live, pa.bool_()),
            # the count in words that follow the evidence ("unsupported split into 2 groups"), and the concepts it supports
            "evidence": pa.array([count_words(int(c), rows) for c, rows in zip(self.n_concepts, self.evidence())], pa.string()),
            # the count's first split p in core.evidence.borderline_band of the level (False: not, or no p)
            "borderline": pa.array([bool(rows and rows[0].get("borderline")) for rows in self.evidence()], pa.bool_()),
            "supported_concepts": pa.array([sum(bool(r["supported_by"]) for r in rows) for rows in self.evidence()], pa.int64()),
            **({"first_split_p": pa.array(self.first_p, pa.float64())} if self.first_p is not None else {}),
            **({"count_agreement": pa.array(self.stability["count_agreement"], pa.float64()),
                "unstable_concepts": pa.array([int(np.sum(self.stability["concept_reappearance"][a:b] < self.UNSTABLE))
                                               for a, b in zip(self.concept_offsets[:-1], self.concept_offsets[1:])], pa.int64())}
               if self.stability is not None else {}),
        })

    def concept_table(self, *, centre: np.ndarray | None = None) -> pa.Table:
        """One row per concept: its neuron, index, members, and its members' mean cosine with their concept vector,
        with the neuron's unsplit direction (the mean of all its kept examples) and with the nearest other concept
        of the same neuron (NaN when it has one), as they are and (``*_centred``) with ``centre`` subtracted.

        ``centre`` (n_units,) defaults to the layer's mean activation (``metrics.layer_mean``, one pass over A).
        The members' activations are read from A for a batch of neurons at a time.
        """
        matrix = self._matrix()
        centre = layer_mean(matrix) if centre is None else centre
        columns: dict[str, list] = {name: [] for name in (
            "neuron", "concept", "members", "cos_concept", "cos_unsplit", "cos_nearest_other", "nearest_other",
            "cos_concept_centred", "cos_unsplit_centred", "cos_nearest_other_centred", "live")}
        live = self.live
        with_concepts = np.flatnonzero(self.n_concepts > 0)
        for first in range(0, len(with_concepts), BATCH_NEURONS):
            batch = with_concepts[first : first + BATCH_NEURONS]
            rows = np.unique(self.top_indices[batch])  # ascending: memory-mapped rows in file order
            block = np.asarray(matrix[rows], dtype=np.float64)
            for i in batch:
                x = block[np.searchsorted(rows, self.top_indices[i])]
                vectors = self.concept_vectors[self.concept_offsets[i] : self.concept_offsets[i + 1]]
                plain = member_cosines(x, self.labels[i], vectors)
                centred = member_cosines(x, self.labels[i], vectors, centre=centre)
                k = len(vectors)
                columns["neuron"] += [int(self.neurons[i])] * k
                columns["concept"] += list(range(k))
                columns["members"] += plain["members"].tolist()
                for key in ("concept", "unsplit", "nearest_other"):
                    columns[f"cos_{key}"] += plain[key].tolist()
                    columns[f"cos_{key}_centred"] += centred[key].tolist()
                columns["nearest_other"] += plain["nearest_other_index"].tolist()
                columns["live"] += [bool(live[i])] * k
        evidence = [r for i in with_concepts for r in self.evidence()[i]]
        columns["supported_by"] = [short_verdict(r) for r in evidence]
        columns["verdict"] = [r["verdict"] for r in evidence]
        for key in ("split_p", "split_q", "label_purity", "label_enrichment_p", "label_purity_p"):
            columns[key] = [float(r.get(key, np.nan)) for r in evidence]
        types = {"neuron": pa.int64(), "concept": pa.int64(), "members": pa.int64(), "nearest_other": pa.int64(), "live": pa.bool_(),
                 "supported_by": pa.string(), "verdict": pa.string()}
        if self.stability is not None:
            reappearance = self.stability["concept_reappearance"][np.concatenate(
                [np.arange(self.concept_offsets[i], self.concept_offsets[i + 1]) for i in with_concepts] or [np.zeros(0, np.int64)])]
            columns["reappearance"] = reappearance.tolist()
            columns["unstable"] = (reappearance < self.UNSTABLE).tolist()
            types["unstable"] = pa.bool_()
        return pa.table({name: pa.array(values, types.get(name, pa.float64())) for name, values in columns.items()})

    def plot_summary(self):
        """Histograms of C and of concepts per neuron; returns a matplotlib Figure."""
        from matplotlib.figure import Figure

        s = self.summary()
        fig = Figure(figsize=(9, 3.6), layout="constrained")
        what = "neuron" if self.kind == "neurons" else "direction"
        for ax, key, label in zip(fig.subplots(1, 2), ("clusters_per_neuron", "concepts_per_neuron"),
                                  ("C, clusters by auto's significance test" if self.params.auto_distance
                                   else "C, clusters at the distance threshold", "concepts kept")):
            hist = s[key]
            xs = np.array([int(k) for k in hist])
            ys = np.array(list(hist.values()))
            ax.bar(xs, ys, color="#4477aa", width=0.8)
            for x, y in zip(xs, ys):
                if y:
                    ax.text(x, y, str(y), ha="center", va="bottom", fontsize=8)
            ax.set_xlabel(label)
            ax.set_ylabel(f"{what}s")
            ax.set_xticks(xs if len(xs) <= 20 else xs[:: -(-len(xs) // 15)])  # a tick per bar, unless they would overlap
            ax.margins(y=0.12)
        not_live = s["n_scanned"] - s["n_live"]
        fig.suptitle(
            f"{s['n_scanned']} {what}s scanned ({self.kind}): {s['n_with_2_or_more_concepts']} of {s['n_live']} live "
            f"({share_of_live(s)}) have 2 or more concepts"
            + (f"; {not_live} not live, left out" if not_live else "") + f"\nrule: {self.rule_text()}", fontsize=10,
        )
        if s["scale_warnings"]:
            # the numbers above are then a statement about the threshold: say so on the figure people look at
            import textwrap

            fig.set_size_inches(9, 4.6)
            text = "Off scale: " + s["scale_warnings"][0].split("; the ward")[0] + ". " + SCALE_FIX
            fig.supxlabel(textwrap.fill(text, 150), fontsize=8, color="#b00000")
        return fig

    def rule_text(self) -> str:
        """Which rule made the splits, with the expected number of false ones where the rule has a level."""
        e = self.layer_error
        if e is None:
            return self.params.describe()
        withdrawn = f", {e['withdrawn']} withdrawn" if e.get("withdrawn") else ""
        return (f"auto, {e['rule']}: {e['splits']} first splits{withdrawn}; "
                f"expected false splits <= {e['expected_false_splits']:.1f}")

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the scan to directory ``path`` atomically.

        Files: ``scan.json`` (params, provenance, versions, summary), ``concepts.safetensors``
        (all concept vectors, ``concept_offsets`` index, ``concept_neuron``, ``kmeans_cluster_ids``),
        ``method.safetensors`` (per-neuron top examples, linkage, labels), ``projecting.safetensors``,
        ``neurons.parquet`` (the table), ``concepts.parquet`` (one row per concept: :meth:`concept_table`,
        when A is at hand), ``summary.json`` and ``summary.png``.
        """
        with atomic_directory(path, overwrite=overwrite, what="scan", marker=SCAN_FILE, protect=[self.store_path]) as tmp:
            self.write_files(tmp)
        return Path(path)

    def write_files(self, directory: Path, *, call: dict[str, Any] | None = None) -> None:
        """Write the scan's files into an existing ``directory`` (``save`` does it atomically); ``call`` identifies the scan for reuse."""
        save_file(self._concept_arrays(), str(directory / CONCEPTS_FILE))
        method = {name: np.ascontiguousarray(getattr(self, name)) for name in METHOD_ARRAYS}
        method["neurons"] = self.neurons
        if self.stability is not None:
            method["count_agreement"] = np.ascontiguousarray(self.stability["count_agreement"])
        if self.floors is not None:
            method["floors"] = np.ascontiguousarray(self.floors, dtype=np.float64)
        if self.first_p is not None:
            method["first_p"] = np.ascontiguousarray(self.first_p, dtype=np.float64)
        if self.directions is not None:
            method["directions"] = np.ascontiguousarray(self.directions)
        save_file(method, str(directory / METHOD_FILE))
        if self.projecting is not None:
            save_file({k: np.ascontiguousarray(v) for k, v in self.projecting.items()}, str(directory / PROJECTING_FILE))
        pq.write_table(self.table(), directory / TABLE_FILE)
        try:
            pq.write_table(self.concept_table(), directory / CONCEPT_TABLE_FILE)
            concept_table = {"concept_table": CONCEPT_TABLE_FILE}
        except ConceptvecError:  # A is not at hand (a scan of an array, reloaded): the rest of the scan stands without it
            concept_table = {}
        summary = self.summary()
        write_json(directory / SUMMARY_FILE, summary)
        self.plot_summary().savefig(directory / FIGURE_FILE, dpi=120)
        write_json(directory / SCAN_FILE, {
            "format": FORMAT,
            "kind": self.kind,
            "params": self.params.to_dict(),
            "n_scanned": int(len(self.neurons)),
            "n_units": self.n_units,
            "summary": summary,
            "files": {"concepts": CONCEPTS_FILE, "method": METHOD_FILE, "table": TABLE_FILE, **concept_table, "summary": SUMMARY_FILE,
                      "figure": FIGURE_FILE, **({"projecting": PROJECTING_FILE} if self.projecting is not None else {})},
            "provenance": self.provenance,
            **({"stability": {"runs": self.stability["runs"], "resampling": self.stability["resampling"]}}
               if self.stability is not None else {}),
            **({"layer_error": self.layer_error} if self.layer_error is not None else {}),
            **({"call": call} if call is not None else {}),
        })

    def _concept_arrays(self) -> dict[str, np.ndarray]:
        return {
            "concept_vectors": np.ascontiguousarray(self.concept_vectors),
            "concept_offsets": self.concept_offsets.astype(np.int64),
            "concept_neuron": np.repeat(self.neurons, self.n_concepts).astype(np.int64),
            "kmeans_cluster_ids": self.kmeans_cluster_ids.astype(np.int64),
            **({"concept_reappearance": np.ascontiguousarray(self.stability["concept_reappearance"], dtype=np.float64)}
               if self.stability is not None else {}),
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, acts: np.ndarray | ActivationStore | None = None) -> "ScanResult":
        """Read a scan written by ``save`` or ``scan_layer(out=...)`` (safetensors and JSON; nothing unpickled).

        ``acts`` (optional) is the activation matrix, for ``scan[neuron]`` when the store is not
        where the scan recorded it.
        """
        path = input_path(path, what="ScanResult.load", fix="the folder cv.scan_layer(..., out=) or `conceptvec scan --out` wrote")
        meta_file = path / SCAN_FILE
        if not meta_file.exists():
            hint = (f" ({path.name}.partial holds an unfinished scan: run the same scan again to finish it)"
                    if Path(str(path) + ".partial").exists() else "")
            raise StoreError(f"no scan at {path} ({SCAN_FILE} not found){hint}; make one with cv.scan_layer(...) or `conceptvec scan`.")
        again = "run the scan again into a new folder"
        meta = read_format(meta_file, expected=FORMAT, what="a scan", fix=again)
        concepts = read_arrays(path / CONCEPTS_FILE, needed=("concept_vectors", "concept_offsets", "kmeans_cluster_ids"), fix=again)
        method = read_arrays(path / METHOD_FILE, needed=("neurons", *METHOD_ARRAYS), fix=again)
        projecting = read_arrays(path / PROJECTING_FILE, fix=again) if (path / PROJECTING_FILE).exists() else None
        if "params" not in meta:
            raise StoreError(f"{meta_file} is damaged: it lacks params; {again}.")
        matrix = as_matrix(acts)[0] if acts is not None else None
        if matrix is not None:
            check_given_activations(acts, matrix, meta.get("provenance", {}), path)
        return cls(
            neurons=method["neurons"],
            top_indices=method["top_indices"], top_scores=method["top_scores"], linkage=method["linkage"],
            n_agglomerative=method["n_agglomerative"], kmeans_labels=method["kmeans_labels"],
            centroid_sq_distances=method["centroid_sq_distances"], labels=method["labels"],
            concept_vectors=concepts["concept_vectors"],
            concept_offsets=concepts["concept_offsets"],
            kmeans_cluster_ids=concepts["kmeans_cluster_ids"],
            params=Params.from_dict(meta["params"]),
            kind=meta.get("kind", "neurons"),
            directions=method.get("directions"),
            projecting=projecting,
            provenance=meta.get("provenance", {}),
            activations=matrix,
            stability=({**meta["stability"], "concept_reappearance": concepts["concept_reappearance"],
                        "count_agreement": method["count_agreement"]}
                       if "stability" in meta and "concept_reappearance" in concepts and "count_agreement" in method else None),
            floors=method.get("floors"),
            first_p=method.get("first_p"),
            layer_error=meta.get("layer_error"),
        )

    def __repr__(self) -> str:
        s = self.summary()
        return (f"ScanResult({self.kind}, {s['n_scanned']} scanned, {s['n_live']} live, {s['n_concepts_total']} concepts, "
                + (f"{share_of_live(s)} of live with 2 or more)" if s["n_live"] else "none live)"))


def check_given_activations(acts: Any, matrix: np.ndarray, provenance: dict[str, Any], path: Path) -> None:
    """Refuse activations given to :meth:`ScanResult.load` that are not the scan's own: another store (by its id), or a
    matrix of another shape (its top example indices would point past it or at other examples)."""
    if isinstance(acts, ActivationStore):
        acts.check_made_from(provenance, what=f"the scan at {path}")
    shape = (provenance.get("n_examples"), provenance.get("n_units"))
    if None not in shape and tuple(matrix.shape) != shape:
        raise StoreError(f"the scan at {path} was computed from activations of shape {shape}, not {tuple(matrix.shape)}; "
                         f"give the store it came from.")
