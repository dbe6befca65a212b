"""The paper's method over every neuron of a layer (or many directions), vectorised and parallel.

Notation as in ``method.py``: A is the activation matrix, shape (n_examples, n_units); a scan runs
the method from m starting directions (neurons, SVD directions, or vectors from a file) and keeps,
for each, the N = ``params.top`` top examples and the method's results. All concept vectors of
the scan are stacked in V, shape (n_total_concepts, n_units), with ``concept_offsets`` (m + 1,)
as the index: the concepts of the i-th scanned direction are rows
``concept_offsets[i]:concept_offsets[i + 1]``.

Where the time goes, and what this module does about it:

1. Top examples: one chunked pass over A (memory-mapped rows are read once) keeps, per column,
   the N best candidates ordered as ``metrics.top_k_desc`` orders them (descending score, ties
   by ascending example index), so the selection is the one ``disentangle`` makes.
2. Steps 2-4 (``method.cluster_top``): per neuron, in parallel worker processes, each with one
   OpenMP/BLAS thread (k-means on 100 rows gains nothing from threads and loses much to their
   start-up when cores are shared) and malloc thresholds that keep freed pages (``_prepare_worker``).
   Workers read a store's rows from its memory-mapped .npy; an in-memory array's top rows are
   gathered by this process into shared slots (``_RowSlots``) rather than pickled into each task.
3. Maximally projecting examples of all concepts: one streamed product A @ V.T, chunk by chunk.

On disk a scan is a directory (see ``ScanResult.save``); with ``out=`` the scan writes its
progress into ``<out>.partial`` in chunks of neurons, and calling it again continues from there.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from ._io import atomic_directory, environment, read_json, write_json
from .conceptset import ConceptSet
from .errors import ConceptvecError, StoreError
from .method import _as_matrix, cluster_top
from .metrics import _check_block_finite, _TopK, unit_vectors
from .params import Params
from .store import ActivationStore

FORMAT = "conceptvec.ScanResult/1"
SCAN_FILE = "scan.json"
CONCEPTS_FILE = "concepts.safetensors"
METHOD_FILE = "method.safetensors"
PROJECTING_FILE = "projecting.safetensors"
TABLE_FILE = "neurons.parquet"
SUMMARY_FILE = "summary.json"
FIGURE_FILE = "summary.png"
# Resume files, inside <out>.partial only.
_STATE_FILE = "state.json"
_TOP_FILE = "top.safetensors"
_PART = "part-{:06d}.safetensors"

BLOCK_BYTES = 64 * 2**20  # rows read per step: about this many bytes of activations
BATCH = 32  # neurons per task sent to a worker, and per chunk of saved progress

_METHOD_ARRAYS = ("top_indices", "top_scores", "linkage", "n_agglomerative", "kmeans_labels",
                  "centroid_sq_distances", "labels")


# -- starting directions ------------------------------------------------------------------------
def parse_neurons(neurons: Any, n_units: int, what: str = "neuron") -> np.ndarray:
    """Sorted unique unit indices from None (all), an int, a sequence, or text such as ``"0-99,512"``.

    Ranges are inclusive at both ends, as a user reads "neurons 0-99".
    """
    if neurons is None:
        return np.arange(n_units, dtype=np.int64)
    valid = f"{what}s must be within 0-{n_units - 1} (this layer has {n_units})"
    if isinstance(neurons, str):
        values: list[int] = []
        for part in neurons.replace(" ", "").split(","):
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not m:
                raise ConceptvecError(f"cannot read {what} range {neurons!r}: write it like '0-99' or '0-99,512,1000-1023'.")
            lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
            if hi < lo:
                raise ConceptvecError(f"{what} range {part!r} is backwards; write the smaller number first ('{hi}-{lo}').")
            if hi >= n_units:
                raise ConceptvecError(f"{what} range {part!r} is out of bounds: {valid}.")
            values.extend(range(lo, hi + 1))
        arr = np.asarray(values, dtype=np.int64)
    else:
        arr = np.atleast_1d(np.asarray(neurons))
        if arr.size == 0:
            raise ConceptvecError(f"no {what}s selected; {valid}.")
        if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool):
            raise ConceptvecError(f"{what}s must be whole numbers (an int, a list of ints, or text such as '0-99'), got {neurons!r}.")
        arr = arr.astype(np.int64)
    if arr.size == 0:
        raise ConceptvecError(f"no {what}s selected; {valid}.")
    bad = arr[(arr < 0) | (arr >= n_units)]
    if bad.size:
        raise ConceptvecError(f"{what}(s) {bad[:5].tolist()} out of bounds: {valid}.")
    return np.unique(arr)


def svd_directions(acts: np.ndarray | ActivationStore, k: int, top: int = 100, progress: bool = False) -> np.ndarray:
    """The top ``k`` right singular vectors of A, as the authors' ``SVD_method.py`` (A not centred).

    Signs are chosen so the top examples project positively: a vector is flipped when the sum of
    the ``top`` largest projections on -v exceeds that on v. A is read in chunks; the vectors come
    from the eigenvectors of the Gram matrix A.T @ A (float64), which for the leading, separated
    singular values equals ``numpy.linalg.svd`` to rounding.

    Returns
    -------
    array of shape (k, n_units), unit rows, by descending singular value
    """
    matrix, _ = _as_matrix(acts)
    n, d = matrix.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= min(n, d):
        raise ConceptvecError(f"svd:K needs 1 <= K <= {min(n, d)} (min of examples and units), got {k!r}.")
    gram = np.zeros((d, d), dtype=np.float64)
    for start, block in _blocks(matrix, "SVD (A.T A)", progress):
        _check_block_finite(block, start)
        gram += block.T @ block
    values, vectors = np.linalg.eigh(gram)
    v = vectors[:, ::-1][:, :k].T.copy()
    proj = np.concatenate([block @ v.T for _, block in _blocks(matrix, "SVD (signs)", progress)])
    t = min(top, n)
    pos = np.sort(np.partition(proj, n - t, axis=0)[n - t:], axis=0).sum(axis=0)
    neg = np.sort(np.partition(-proj, n - t, axis=0)[n - t:], axis=0).sum(axis=0)
    v[neg > pos] *= -1.0
    return unit_vectors(v)


def load_directions(path: str | os.PathLike, n_units: int) -> np.ndarray:
    """Direction vectors from a .npy file, a .safetensors file, or a scan / ConceptSet directory.

    A safetensors file may hold one tensor, or ``concept_vectors`` (as a scan or ConceptSet writes),
    or ``directions`` / ``vectors``. Returns an array of shape (k, n_units), float64, not normalised.
    """
    path = Path(path)
    if not path.exists():
        raise ConceptvecError(f"direction file {path} does not exist; give a .npy or .safetensors file of shape (k, {n_units}).")
    if path.is_dir():
        for name in (CONCEPTS_FILE, "arrays.safetensors"):
            if (path / name).exists():
                return load_directions(path / name, n_units)
        raise ConceptvecError(f"{path} is a directory without {CONCEPTS_FILE} or arrays.safetensors; give a .npy or .safetensors file.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ConceptvecError(f"could not read {path} as a .npy array without pickle ({exc}); save it with np.save of a float array.") from None
    elif suffix == ".safetensors":
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ConceptvecError(f"could not read {path} as safetensors: {exc}") from None
        for key in ("concept_vectors", "directions", "vectors"):
            if key in tensors:
                arr = tensors[key]
                break
        else:
            if len(tensors) != 1:
                raise ConceptvecError(
                    f"{path} holds tensors {sorted(tensors)}; name the directions 'directions' (or keep a single tensor)."
                )
            arr = next(iter(tensors.values()))
    else:
        raise ConceptvecError(f"direction file {path} must end in .npy or .safetensors (or be a scan or ConceptSet directory).")
    arr = np.asarray(arr)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n_units or arr.shape[0] == 0:
        raise ConceptvecError(
            f"direction file {path} has shape {arr.shape}; expected shape (k, {n_units}) (one row per direction, "
            f"one value per unit of this layer) or ({n_units},)."
        )
    if not np.issubdtype(arr.dtype, np.number):
        raise ConceptvecError(f"direction file {path} holds {arr.dtype} values; expected numbers.")
    arr = arr.astype(np.float64)
    norms = np.linalg.norm(arr, axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
    if bad.size:
        raise ConceptvecError(f"direction file {path}: row(s) {bad[:10].tolist()} are zero or not finite; every direction needs a finite, non-zero vector.")
    return arr


def _resolve_directions(directions: Any, matrix: np.ndarray, params: Params, progress: bool) -> tuple[str, np.ndarray | None]:
    """('neurons', None), ('svd:K', V) or ('file:PATH' / 'array', V) with V unit rows of shape (k, n_units)."""
    n_units = matrix.shape[1]
    if directions is None or (isinstance(directions, str) and directions == "neurons"):
        return "neurons", None
    if isinstance(directions, np.ndarray):
        d = directions[None, :] if directions.ndim == 1 else directions
        if d.ndim != 2 or d.shape[1] != n_units:
            raise ConceptvecError(f"directions array has shape {directions.shape}; expected shape (k, {n_units}).")
        return "array", unit_vectors(d)
    if isinstance(directions, str) and directions.startswith("svd"):
        m = re.fullmatch(r"svd:(\d+)", directions)
        if not m:
            raise ConceptvecError(f"cannot read directions {directions!r}: write svd:K, e.g. svd:50 for the top 50 singular vectors.")
        k = int(m.group(1))
        return f"svd:{k}", svd_directions(matrix, k, top=params.top, progress=progress)
    if isinstance(directions, (str, os.PathLike)):
        return f"file:{Path(directions).resolve()}", unit_vectors(load_directions(directions, n_units))
    raise ConceptvecError(f"directions must be 'neurons', 'svd:K', a file path, or an array; got {type(directions).__name__}.")


# -- streaming over A ---------------------------------------------------------------------------
def _block_rows(matrix: np.ndarray) -> int:
    return max(256, BLOCK_BYTES // max(1, matrix.shape[1] * matrix.dtype.itemsize))


def _blocks(
    matrix: np.ndarray, description: str, progress: bool, rows: int | None = None, native: bool = False
) -> Iterator[tuple[int, np.ndarray]]:
    """(start, block) over the rows of ``matrix``, with a progress bar over examples.

    Blocks are float64, or with ``native`` kept in A's float dtype (their order is the same).
    """
    from ._progress import progress_bar

    n = matrix.shape[0]
    rows = rows or _block_rows(matrix)
    with progress_bar("examples", disable=not progress, transient=True) as bar:
        task = bar.add_task(description, total=n)
        for start in range(0, n, rows):
            block = np.asarray(matrix[start : start + rows])
            if not (native and block.dtype in (np.float16, np.float32, np.float64)):
                block = block.astype(np.float64)
            yield start, block
            bar.advance(task, len(block))


def top_examples(
    acts: np.ndarray | ActivationStore,
    k: int,
    neurons: np.ndarray | None = None,
    directions: np.ndarray | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` examples of many neurons (or unit directions) in one chunked pass over A.

    Gives for every column what ``metrics.top_k_desc`` gives on that column alone (scores of a
    neuron are its float64 activations; of a direction, the projections A @ v).

    Returns
    -------
    indices : array of shape (m, k), most activating first
    scores : array of shape (m, k), float64
    """
    matrix, _ = _as_matrix(acts)
    cols = np.arange(matrix.shape[1]) if neurons is None else np.asarray(neurons)
    m = len(directions) if directions is not None else len(cols)
    if k > matrix.shape[0]:
        raise ConceptvecError(f"top={k} is larger than the number of examples ({matrix.shape[0]}); use top <= {matrix.shape[0]}.")
    selector = _TopK(m, k)
    every_column = directions is None and len(cols) == matrix.shape[1]
    for start, block in _blocks(matrix, "top examples", progress, native=directions is None):
        _check_block_finite(block, start)
        if directions is not None:
            scores = block @ directions.T
        else:
            scores = block if every_column else block[:, cols]
        selector.update(scores, start)
    return selector.result()


def maximally_projecting(
    acts: np.ndarray | ActivationStore, vectors: np.ndarray, top: int = 100, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``top`` examples with the largest projection on each vector, from one streamed A @ V.T.

    Returns
    -------
    indices : array of shape (k, top), most projecting first
    projections : array of shape (k, top), on the normalised vectors
    cosine : array of shape (k, top), cosine similarity of each example with the vector (0 for a zero example)
    """
    matrix, _ = _as_matrix(acts)
    v = unit_vectors(vectors) if len(vectors) else np.empty((0, matrix.shape[1]))
    top = min(top, matrix.shape[0])
    if len(v) == 0:
        empty = np.empty((0, top))
        return empty.astype(np.int64), empty, empty.copy()
    selector = _TopK(len(v), top)
    norms = np.empty(matrix.shape[0])
    # Keep the (rows, k) product block near BLOCK_BYTES whatever the number of concepts.
    rows = max(256, min(_block_rows(matrix), BLOCK_BYTES // (8 * len(v))))
    for start, block in _blocks(matrix, "maximally projecting", progress, rows=rows):
        norms[start : start + len(block)] = np.linalg.norm(block, axis=1)
        selector.update(block @ v.T, start)
    idx, proj = selector.result()
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = proj / norms[idx]
    cos[norms[idx] == 0] = 0.0
    return idx, proj, cos


# -- steps 2-4 in worker processes --------------------------------------------------------------
_WORKER_READY = False


def _prepare_worker() -> None:
    """Once per worker process (never in the caller's): one OpenMP/BLAS thread, and a malloc that keeps freed memory.

    Steps 2-4 allocate and free arrays of a neuron's size (100 x 2048 float64: 1.6 MB) many times.
    glibc's malloc serves such sizes with fresh mmap'd pages, or trims them off its heap when freed,
    so every new array pays page faults again: about a fifth of a neuron's time here. Fixing the
    mmap threshold at 32 MiB and the trim threshold at 256 MiB keeps the pages in the worker.
    """
    global _WORKER_READY
    if _WORKER_READY:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # kept for the process' life (see module notes)
    try:
        import ctypes
        import platform

        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(None)
            libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, 256 * 2**20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # pragma: no cover - another C library: its defaults
        pass
    _WORKER_READY = True


_MMAPS: dict[str, np.ndarray] = {}


def _cluster_batch(task: dict[str, Any]) -> dict[str, np.ndarray]:
    """Steps 2-4 for a batch of neurons; rows come in the task, in a shared slot, or from the memory-mapped .npy."""
    if task.get("worker"):
        _prepare_worker()
    params = Params.from_dict(task["params"])
    top = task["top_indices"]
    if "rows" in task:
        rows = task["rows"]
    elif "slot" in task:
        # Mapped for this task only (the file is removed when the scan ends): read in place, cast per neuron.
        slot = task["slot"]
        rows = np.memmap(slot["path"], dtype=np.dtype(slot["dtype"]), mode="r", offset=slot["offset"], shape=slot["shape"])
    else:
        path = task["npy"]
        if path not in _MMAPS:
            _MMAPS[path] = np.load(path, mmap_mode="r", allow_pickle=False)
        rows = None
    import sklearn

    # The scan has checked A for NaN/inf and Params its values: skip sklearn's re-checks (results unchanged).
    out: dict[str, list] = {k: [] for k in ("linkage", "n_agglomerative", "kmeans_labels", "centroid_sq_distances",
                                             "labels", "kmeans_cluster_ids", "concept_vectors")}
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        for i in range(len(top)):
            if rows is not None:
                x = np.array(rows[i], dtype=np.float64)  # a private C-ordered copy, also of shared rows
            else:
                # As disentangle: read the memory-mapped rows in file order.
                order = np.argsort(top[i])
                x = np.empty((len(top[i]), _MMAPS[path].shape[1]), dtype=np.float64)
                x[order] = _MMAPS[path][top[i][order]]
            for key, value in cluster_top(x, params).items():
                out[key].append(value)
    d = task["n_units"]
    return {
        "linkage": np.stack(out["linkage"]),
        "n_agglomerative": np.asarray(out["n_agglomerative"], dtype=np.int64),
        "kmeans_labels": np.stack(out["kmeans_labels"]),
        "centroid_sq_distances": np.stack(out["centroid_sq_distances"]),
        "labels": np.stack(out["labels"]),
        "n_concepts": np.asarray([len(v) for v in out["concept_vectors"]], dtype=np.int64),
        "kmeans_cluster_ids": np.concatenate(out["kmeans_cluster_ids"]).astype(np.int64),
        "concept_vectors": np.concatenate(out["concept_vectors"]) if out["concept_vectors"] else np.empty((0, d)),
    }


def _npy_path(matrix: np.ndarray) -> str | None:
    """The .npy file behind a memory-mapped matrix, when workers can open it themselves."""
    filename = getattr(matrix, "filename", None)
    if isinstance(matrix, np.memmap) and filename and str(filename).endswith(".npy"):
        try:
            check = np.load(filename, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if check.shape == matrix.shape and check.dtype == matrix.dtype:
            return str(filename)
    return None


def default_workers() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# -- the result ---------------------------------------------------------------------------------
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
    _acts: Any = field(default=None, repr=False)

    @property
    def n_concepts(self) -> np.ndarray:
        return np.diff(self.concept_offsets)

    @property
    def n_units(self) -> int:
        return int(self.concept_vectors.shape[1])

    def __len__(self) -> int:
        return len(self.neurons)

    def _position(self, neuron: int) -> int:
        i = int(np.searchsorted(self.neurons, neuron))
        if i == len(self.neurons) or self.neurons[i] != neuron:
            shown = f"{self.neurons[0]}-{self.neurons[-1]}" if len(self.neurons) > 1 else str(self.neurons[0])
            raise KeyError(f"neuron {neuron} was not scanned (this scan holds {len(self.neurons)} of them, {shown}).")
        return i

    def concepts_of(self, neuron: int) -> np.ndarray:
        """Concept vectors of one scanned neuron, shape (n_concepts, n_units)."""
        i = self._position(neuron)
        return self.concept_vectors[self.concept_offsets[i] : self.concept_offsets[i + 1]]

    def __getitem__(self, neuron: int) -> ConceptSet:
        """The neuron's ConceptSet, as ``disentangle`` gives it (top activations are read from A)."""
        i = self._position(int(neuron))
        matrix = self._matrix()
        top = self.top_indices[i]
        order = np.argsort(top)
        x = np.empty((len(top), matrix.shape[1]), dtype=np.float64)
        x[order] = matrix[top[order]]
        a, b = self.concept_offsets[i], self.concept_offsets[i + 1]
        return ConceptSet(
            top_indices=top.copy(),
            top_scores=self.top_scores[i].copy(),
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
            provenance={**self.provenance, "scan": {"kind": self.kind, "index": int(self.neurons[i])}},
        )

    @property
    def store_path(self) -> str | None:
        """The activation store the scan was made from, as recorded (None for an array)."""
        return self.provenance.get("activations", {}).get("store")

    def _matrix(self) -> np.ndarray:
        if self._acts is None:
            store = self.store_path
            if store and Path(store).exists():
                self._acts = ActivationStore.open(store).activations
            else:
                raise ConceptvecError(
                    "this scan's activations are not at hand (the scan was made from an array, or the store moved); "
                    "load it with cv.ScanResult.load(path, acts=...) to read the top examples' activations."
                )
        return self._acts

    # -- numbers, table, figure --------------------------------------------------------------
    @property
    def live(self) -> np.ndarray:
        """Per scanned neuron: every top example activates it (see :attr:`ConceptSet.is_live`)."""
        return self.top_scores[:, -1] > 0

    def summary(self) -> dict[str, Any]:
        """Histogram of concepts per neuron and the share of neurons with 2 or more concepts.

        Counted over live neurons only: a neuron whose top examples include zero activations has
        concepts of arbitrary examples (``not_live`` lists them).
        """
        live = self.live
        counts = self.n_concepts[live]
        hist = np.bincount(counts, minlength=1)
        c_hist = np.bincount(self.n_agglomerative[live], minlength=1)
        return {
            "n_scanned": int(len(live)),
            "n_live": int(live.sum()),
            "not_live": self.neurons[~live].tolist(),
            "n_concepts_total": int(counts.sum()),
            "concepts_per_neuron": {str(i): int(v) for i, v in enumerate(hist)},
            "clusters_per_neuron": {str(i): int(v) for i, v in enumerate(c_hist) if i >= 1},  # C >= 1 always
            "n_with_2_or_more_concepts": int(np.sum(counts >= 2)),
            "share_with_2_or_more_concepts": float(np.mean(counts >= 2)) if len(counts) else float("nan"),
            "mean_concepts_per_neuron": float(counts.mean()) if len(counts) else float("nan"),
        }

    def table(self) -> pa.Table:
        """One row per scanned neuron: neuron, C, concepts, cluster sizes, outliers removed, small-cluster examples removed."""
        outliers = self.centroid_sq_distances >= self.params.outlier_threshold
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
        })

    def plot_summary(self):
        """Histograms of C and of concepts per neuron; returns a matplotlib Figure."""
        from matplotlib.figure import Figure

        s = self.summary()
        fig = Figure(figsize=(9, 3.6), layout="constrained")
        what = "neuron" if self.kind == "neurons" else "direction"
        for ax, key, label in zip(fig.subplots(1, 2), ("clusters_per_neuron", "concepts_per_neuron"),
                                  ("C, clusters at the distance threshold", "concepts kept")):
            hist = s[key]
            xs = np.array([int(k) for k in hist])
            ys = np.array(list(hist.values()))
            ax.bar(xs, ys, color="#4477aa", width=0.8)
            for x, y in zip(xs, ys):
                if y:
                    ax.text(x, y, str(y), ha="center", va="bottom", fontsize=8)
            ax.set_xlabel(label)
            ax.set_ylabel(f"{what}s")
            ax.set_xticks(xs)
            ax.margins(y=0.12)
        not_live = s["n_scanned"] - s["n_live"]
        fig.suptitle(
            f"{s['n_scanned']} {what}s scanned ({self.kind}): {s['n_with_2_or_more_concepts']} of {s['n_live']} live "
            f"({100 * s['share_with_2_or_more_concepts']:.1f}%) have 2 or more concepts"
            + (f"; {not_live} not live, left out" if not_live else ""), fontsize=10,
        )
        return fig

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the scan to directory ``path`` atomically.

        Files: ``scan.json`` (params, provenance, versions, summary), ``concepts.safetensors``
        (all concept vectors, ``concept_offsets`` index, ``concept_neuron``, ``kmeans_cluster_ids``),
        ``method.safetensors`` (per-neuron top examples, linkage, labels), ``projecting.safetensors``,
        ``neurons.parquet`` (the table), ``summary.json`` and ``summary.png``.
        """
        with atomic_directory(path, overwrite=overwrite, what="scan") as tmp:
            self._write(tmp)
        return Path(path)

    def _write(self, directory: Path, state: dict[str, Any] | None = None) -> None:
        save_file(self._concept_arrays(), str(directory / CONCEPTS_FILE))
        method = {name: np.ascontiguousarray(getattr(self, name)) for name in _METHOD_ARRAYS}
        method["neurons"] = self.neurons
        if self.directions is not None:
            method["directions"] = np.ascontiguousarray(self.directions)
        save_file(method, str(directory / METHOD_FILE))
        if self.projecting is not None:
            save_file({k: np.ascontiguousarray(v) for k, v in self.projecting.items()}, str(directory / PROJECTING_FILE))
        pq.write_table(self.table(), directory / TABLE_FILE)
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
            "files": {"concepts": CONCEPTS_FILE, "method": METHOD_FILE, "table": TABLE_FILE, "summary": SUMMARY_FILE,
                      "figure": FIGURE_FILE, **({"projecting": PROJECTING_FILE} if self.projecting is not None else {})},
            "provenance": self.provenance,
            **({"call": state} if state is not None else {}),
        })

    def _concept_arrays(self) -> dict[str, np.ndarray]:
        return {
            "concept_vectors": np.ascontiguousarray(self.concept_vectors),
            "concept_offsets": self.concept_offsets.astype(np.int64),
            "concept_neuron": np.repeat(self.neurons, self.n_concepts).astype(np.int64),
            "kmeans_cluster_ids": self.kmeans_cluster_ids.astype(np.int64),
        }

    @classmethod
    def load(cls, path: str | os.PathLike, acts: np.ndarray | ActivationStore | None = None) -> "ScanResult":
        """Read a scan written by ``save`` or ``scan_layer(out=...)`` (safetensors and JSON; nothing unpickled).

        ``acts`` (optional) is the activation matrix, for ``scan[neuron]`` when the store is not
        where the scan recorded it.
        """
        path = Path(path)
        meta_file = path / SCAN_FILE
        if not meta_file.exists():
            hint = (f" ({path.name}.partial holds an unfinished scan: run the same scan again to finish it)"
                    if Path(str(path) + ".partial").exists() else "")
            raise StoreError(f"no scan at {path} ({SCAN_FILE} not found){hint}; make one with cv.scan_layer(...) or `conceptvec scan`.")
        meta = read_json(meta_file)
        if meta.get("format") != FORMAT:
            raise StoreError(f"{meta_file} is not a scan (format {meta.get('format')!r}, expected {FORMAT!r}).")
        concepts = load_file(str(path / CONCEPTS_FILE))
        method = load_file(str(path / METHOD_FILE))
        projecting = load_file(str(path / PROJECTING_FILE)) if (path / PROJECTING_FILE).exists() else None
        matrix = _as_matrix(acts)[0] if acts is not None else None
        return cls(
            neurons=method["neurons"],
            **{name: method[name] for name in _METHOD_ARRAYS},
            concept_vectors=concepts["concept_vectors"],
            concept_offsets=concepts["concept_offsets"],
            kmeans_cluster_ids=concepts["kmeans_cluster_ids"],
            params=Params.from_dict(meta["params"]),
            kind=meta.get("kind", "neurons"),
            directions=method.get("directions"),
            projecting=projecting,
            provenance=meta.get("provenance", {}),
            _acts=matrix,
        )

    def __repr__(self) -> str:
        s = self.summary()
        return (f"ScanResult({self.kind}, {s['n_scanned']} scanned, {s['n_live']} live, {s['n_concepts_total']} concepts, "
                f"{100 * s['share_with_2_or_more_concepts']:.1f}% of live with 2 or more)")


# -- the scan -----------------------------------------------------------------------------------
def scan_layer(
    acts: np.ndarray | ActivationStore,
    params: Params | None = None,
    neurons: Any = None,
    workers: int | None = None,
    directions: Any = "neurons",
    projecting: bool = True,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ScanResult:
    """Run the paper's method on every neuron of a layer (or on many directions) at once.

    The result for each neuron equals ``disentangle(acts, neuron=j, params=params)``: the same top
    examples, clusters, labels and concept vectors (it runs the same ``cluster_top``).

    Parameters
    ----------
    acts : array of shape (n_examples, n_units), or an ActivationStore
    params : Params, optional
        Defaults to the paper's ``Params()``.
    neurons : None, int, sequence of ints, or text such as ``"0-99,512"``
        Which neurons (or which rows of the directions) to scan; None scans all.
    workers : int, optional
        Worker processes for steps 2-4; default: the usable CPUs. 1 runs in this process.
    directions : 'neurons', 'svd:K', a path, or an array of shape (k, n_units)
        Starting directions: the neurons (default); the top K right singular vectors of A; or
        vectors from a .npy / .safetensors file or scan / ConceptSet directory (e.g. another run's
        concept vectors, or CAVs). Top examples of a direction are ranked by projection on it.
    projecting : bool
        Also find the maximally projecting examples of every concept (one streamed A @ V.T).
    out : path, optional
        Directory to write the scan to. Progress is kept in ``<out>.partial`` chunk by chunk, so a
        killed scan called again continues from the neurons already done; a finished ``out`` made by
        the same call is read back instead of recomputed (``result.reused``).
    overwrite : bool
        Replace an existing ``out`` made by a different call.
    progress : bool
        Show progress bars.
    """
    params = params or Params()
    if not isinstance(params, Params):
        raise ConceptvecError(f"params must be a conceptvec.Params, got {type(params).__name__}.")
    matrix, source = _as_matrix(acts)
    n_examples, n_units = matrix.shape
    if params.top > n_examples:
        raise ConceptvecError(
            f"top={params.top} is larger than the number of examples ({n_examples}); use top <= {n_examples}."
        )
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1):
        raise ConceptvecError(f"workers must be a whole number >= 1, got {workers!r}.")
    if isinstance(directions, str) and directions not in ("neurons",) and not directions.startswith("svd") and not Path(directions).exists():
        raise ConceptvecError(
            f"directions {directions!r} is not 'neurons', 'svd:K', or an existing .npy / .safetensors file."
        )

    fingerprint_dirs = _fingerprint_directions(directions, n_units)
    out_path = Path(out) if out is not None else None
    if out_path is not None and not overwrite and (out_path / SCAN_FILE).exists():
        done = read_json(out_path / SCAN_FILE).get("call")
        if done is not None and done == _call(params, neurons, fingerprint_dirs, projecting, matrix, source):
            result = ScanResult.load(out_path, acts=matrix)
            result.reused = True
            return result
    if out_path is not None and out_path.exists() and not overwrite and any(out_path.iterdir()):
        raise ConceptvecError(
            f"{out_path} already exists and holds a different scan (or other files). Choose another --out, "
            f"delete it, or pass overwrite=True (--overwrite)."
        )

    kind, vectors = _resolve_directions(directions, matrix, params, progress)
    m_total = n_units if vectors is None else len(vectors)
    selected = parse_neurons(neurons, m_total, what="neuron" if vectors is None else "direction")
    call = _call(params, neurons, fingerprint_dirs, projecting, matrix, source)

    partial = _Partial(out_path, call) if out_path is not None else None
    provenance = {"activations": source, "n_examples": n_examples, "n_units": n_units, **environment()}

    # Step 1 for all neurons at once.
    top = partial.load_top() if partial else None
    if top is None:
        dirs = vectors[selected] if vectors is not None else None
        top_indices, top_scores = top_examples(matrix, params.top, neurons=selected if dirs is None else None,
                                               directions=dirs, progress=progress)
        if partial:
            partial.save_top(top_indices, top_scores)
    else:
        top_indices, top_scores = top

    # Steps 2-4, in batches of neurons; finished batches are saved when resumable.
    batches = [np.arange(s, min(s + BATCH, len(selected))) for s in range(0, len(selected), BATCH)]
    results: dict[int, dict[str, np.ndarray]] = partial.load_parts(len(batches)) if partial else {}
    resumed = sum(len(batches[b]) for b in results)
    todo = [b for b in range(len(batches)) if b not in results]
    npy = _npy_path(matrix)

    def make_task(b: int, slots: _RowSlots | None = None) -> dict[str, Any]:
        rows = top_indices[batches[b]]
        task: dict[str, Any] = {"params": params.to_dict(), "top_indices": rows, "n_units": n_units}
        if npy is not None:
            task["npy"] = npy  # the worker reads the rows from the memory-mapped store itself
        elif slots is not None:
            task["slot"] = slots.put(b, matrix, rows)  # (batch, top, n_units) in A's dtype, in shared memory
        else:
            task["rows"] = np.asarray(matrix[rows])  # in this process: cast per neuron in _cluster_batch
        return task

    def finished(b: int, res: dict[str, np.ndarray]) -> None:
        results[b] = res
        if partial:
            partial.save_part(b, res)

    from ._progress import progress_bar

    n_workers = min(workers or default_workers(), len(todo)) if todo else 1
    with progress_bar("neurons", disable=not progress, transient=True) as bar:
        task_id = bar.add_task("clustering", total=len(selected), completed=resumed)
        if n_workers <= 1:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                for b in todo:
                    finished(b, _cluster_batch(make_task(b)))
                    bar.advance(task_id, len(batches[b]))
        else:
            in_flight = 2 * n_workers
            slots = None if npy is not None else _RowSlots(in_flight, (BATCH, params.top, n_units), matrix.dtype)
            try:
                _run_parallel(todo, lambda b: make_task(b, slots), finished, n_workers, in_flight,
                              lambda b: bar.advance(task_id, len(batches[b])), slots)
            finally:
                if slots is not None:
                    slots.close()

    parts = [results[b] for b in range(len(batches))]
    n_concepts = np.concatenate([p["n_concepts"] for p in parts])
    result = ScanResult(
        neurons=selected,
        top_indices=top_indices,
        top_scores=top_scores,
        linkage=np.concatenate([p["linkage"] for p in parts]),
        n_agglomerative=np.concatenate([p["n_agglomerative"] for p in parts]),
        kmeans_labels=np.concatenate([p["kmeans_labels"] for p in parts]),
        centroid_sq_distances=np.concatenate([p["centroid_sq_distances"] for p in parts]),
        labels=np.concatenate([p["labels"] for p in parts]),
        concept_vectors=np.concatenate([p["concept_vectors"] for p in parts]),
        concept_offsets=np.concatenate([[0], np.cumsum(n_concepts)]).astype(np.int64),
        kmeans_cluster_ids=np.concatenate([p["kmeans_cluster_ids"] for p in parts]),
        params=params,
        kind=kind,
        directions=vectors[selected] if vectors is not None else None,
        provenance=provenance,
        resumed=resumed,
        _acts=matrix,
    )
    if projecting:
        idx, proj, cos = maximally_projecting(matrix, result.concept_vectors, params.top, progress=progress)
        result.projecting = {"indices": idx, "projections": proj, "cosine": cos}
    if partial:
        partial.finish(result, overwrite=overwrite)
    return result


def _run_parallel(todo, make_task, finished, n_workers, in_flight, advance, slots) -> None:
    """Steps 2-4 of the batches in ``todo`` on a reusable pool, at most ``in_flight`` tasks at a time.

    With ``slots``, each task's rows wait in a shared slot until its result is back.
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    from joblib.externals.loky import get_reusable_executor

    executor = get_reusable_executor(max_workers=n_workers)
    pending: dict[Any, int] = {}
    queue = list(todo)
    try:
        while queue or pending:
            while queue and len(pending) < in_flight:
                b = queue.pop(0)
                pending[executor.submit(_cluster_batch, {**make_task(b), "worker": True})] = b
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                b = pending.pop(fut)
                if slots is not None:
                    slots.release(b)
                finished(b, fut.result())
                advance(b)
    except BaseException:
        for fut in pending:
            fut.cancel()
        raise


class _RowSlots:
    """Shared memory for the top rows of the batches in flight: a file in /dev/shm that workers map.

    Sending a batch's rows with the task costs a pickled copy in this process and an unpickled one
    in the worker (1.7 GB each for a 2,048-neuron layer); here this process gathers them once into
    a free slot and the worker reads them in place. Only batches in flight hold a slot.
    """

    def __init__(self, n_slots: int, shape: tuple[int, int, int], dtype: np.dtype):
        import tempfile

        shm = "/dev/shm"
        fd, self.path = tempfile.mkstemp(prefix="conceptvec-scan-", suffix=".rows",
                                         dir=shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None)
        os.close(fd)
        self.shape, self.dtype = shape, np.dtype(dtype)
        self.slot_bytes = int(np.prod(shape)) * self.dtype.itemsize
        self.array = np.memmap(self.path, dtype=self.dtype, mode="w+", shape=(n_slots, *shape))
        self.free = list(range(n_slots))
        self.held: dict[int, int] = {}

    def put(self, b: int, matrix: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        slot = self.free.pop()
        self.held[b] = slot
        out = self.array[slot, : len(rows)]
        if isinstance(matrix, np.ndarray) and matrix.flags.c_contiguous:
            np.take(matrix, rows, axis=0, out=out, mode="clip")  # indices are valid; 'raise' would buffer `out`
        else:
            out[...] = np.asarray(matrix[rows])
        return {"path": self.path, "offset": slot * self.slot_bytes, "dtype": self.dtype.str,
                "shape": (len(rows), *self.shape[1:])}

    def release(self, b: int) -> None:
        self.free.append(self.held.pop(b))

    def close(self) -> None:
        del self.array
        try:
            os.unlink(self.path)
        except FileNotFoundError:  # pragma: no cover
            pass


# -- resuming -----------------------------------------------------------------------------------
def _digest(arr: np.ndarray) -> str:
    return hashlib.sha1(arr.tobytes()).hexdigest()


def _fingerprint_directions(directions: Any, n_units: int) -> Any:
    # A file's contents, not its path, decide whether a finished or partial scan can be reused.
    if isinstance(directions, np.ndarray):
        return _digest(np.ascontiguousarray(directions))
    if isinstance(directions, (str, os.PathLike)) and Path(directions).exists():
        return f"{Path(directions).resolve()}#sha1={_digest(np.ascontiguousarray(load_directions(directions, n_units)))}"
    return directions


def _call(params: Params, neurons: Any, directions: Any, projecting: bool, matrix: np.ndarray, source: dict) -> dict[str, Any]:
    """What makes two scans the same: parameters, selection, directions and the activations."""
    n = matrix.shape[0]
    sample = np.asarray(matrix[[0, n // 2, n - 1]])
    return {
        "params": params.to_dict(),
        "neurons": neurons if neurons is None or isinstance(neurons, str) else np.asarray(neurons).tolist(),
        "directions": str(directions),
        "projecting": bool(projecting),
        "activations": {"shape": list(matrix.shape), "dtype": str(matrix.dtype), "sample_sha1": _digest(sample),
                        **({"store": source["store"]} if "store" in source else {})},
    }


class _Partial:
    """``<out>.partial``: the top examples and finished batches of an unfinished scan."""

    def __init__(self, out: Path, call: dict[str, Any]):
        self.out = out
        self.dir = Path(str(out) + ".partial")
        self.call = call
        state = self.dir / _STATE_FILE
        if self.dir.exists() and (not state.exists() or read_json(state) != call):
            # A different scan stopped here: its progress cannot be reused.
            shutil.rmtree(self.dir)
        if not self.dir.exists():
            self.dir.mkdir(parents=True)
            write_json(state, call)

    def _save(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        tmp = self.dir / f".{name}.tmp"
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
        os.replace(tmp, self.dir / name)

    def load_top(self) -> tuple[np.ndarray, np.ndarray] | None:
        f = self.dir / _TOP_FILE
        if not f.exists():
            return None
        t = load_file(str(f))
        return t["top_indices"], t["top_scores"]

    def save_top(self, indices: np.ndarray, scores: np.ndarray) -> None:
        self._save(_TOP_FILE, {"top_indices": indices, "top_scores": scores})

    def load_parts(self, n_batches: int) -> dict[int, dict[str, np.ndarray]]:
        return {b: load_file(str(self.dir / _PART.format(b))) for b in range(n_batches) if (self.dir / _PART.format(b)).exists()}

    def save_part(self, b: int, res: dict[str, np.ndarray]) -> None:
        self._save(_PART.format(b), res)

    def finish(self, result: ScanResult, overwrite: bool) -> None:
        with atomic_directory(self.out, overwrite=True, what="scan") as tmp:
            result._write(tmp, state=self.call)
        shutil.rmtree(self.dir, ignore_errors=True)
