"""Engines run steps 2-4 of the method for batches of neurons: here in this process or a process pool.

The scan (``scan.layer``) decides *what* is clustered: the top examples of every neuron, cut into
``BatchTask``s of up to ``BATCH`` neurons. An engine decides *where*: it calls ``cluster_batch`` on
every task and hands each result back through ``finished(batch, result)`` as it arrives, in any
order. Engines are picked by name from the one registry of every stage, ``engines.registry.ENGINES``:
``LocalEngine`` here, and ``scan.ray_engine.RayEngine`` (Ray tasks on a cluster), which implements ``Engine.run``
and gets the rows to its workers its own way.

How the local engine gets each batch's rows of A to its workers, cheapest first:

- a store's memory-mapped ``activations.npy``: the worker maps the file itself (``BatchTask.npy``);
- an in-memory array: this process gathers the rows into a free slot of a file in /dev/shm
  (``RowSlots``) that the worker maps, rather than pickling them into every task;
- in this process (one worker): the rows themselves (``BatchTask.rows``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from ..core.arrays import read_rows
from ..core.fdr import first_split_p
from ..core.layernull import LayerNull
from ..core.steps import cluster_top
from ..core.stability import concept_stability
from ..core.params import Params
from ..engines.registry import ENGINES, check_engine
from ..errors import ConceptvecError

BATCH = 32  # neurons per task, and per chunk of saved progress
# Below this many cells (neurons x top x units) the default engine clusters in this process: starting a
# pool costs 2-4 s of imports per worker, more than a scan that small takes (a 100 x 2048 neuron is
# about 4 ms, so 10**8 cells are about 2 s of clustering on one core).
SMALL_SCAN_CELLS = 10**8

BatchResult = dict[str, np.ndarray]
"""Per batch: ``linkage`` (b, top - 1, 4), ``n_agglomerative`` (b,), ``kmeans_labels``,
``centroid_sq_distances``, ``labels`` (b, top), ``n_concepts`` (b,), ``first_p`` (b,) (the first split's p-value,
``core.fdr.first_split_p``), ``kmeans_cluster_ids`` (c,)
and ``concept_vectors`` (c, n_units), c the batch's concepts."""


@dataclass(frozen=True)
class RowSlot:
    """Where a batch's rows wait in shared memory: ``shape`` (b, top, n_units) of ``dtype`` at ``offset`` in ``path``."""

    path: str
    offset: int
    dtype: str
    shape: tuple[int, int, int]


@dataclass(frozen=True)
class BatchTask:
    """Steps 2-4 for a batch of b neurons, with exactly one source of their top rows.

    Attributes
    ----------
    params : dict
        ``Params.to_dict()`` (plain values travel to any worker).
    top_indices : array of shape (b, top)
        Each neuron's top examples, most activating first.
    n_units : int
    rows : array of shape (b, top, n_units), optional
        The rows themselves.
    slot : RowSlot, optional
        The rows in shared memory.
    npy : str, optional
        The store's ``activations.npy``, read memory-mapped by the worker.
    in_worker : bool
        Set up the process for clustering first (``prepare_worker``); never in the caller's process.
    stability : int
        Resampling runs of ``core.stability.concept_stability`` per neuron; 0 skips it.
    null_shares : array of shape (m,), optional
        With ``Params(null="layer")``: the layer null's shares (``core.layernull``), drawn once by the scan.
    """

    params: dict[str, Any]
    top_indices: np.ndarray
    n_units: int
    rows: np.ndarray | None = None
    slot: RowSlot | None = None
    npy: str | None = None
    in_worker: bool = False
    stability: int = 0
    null_shares: np.ndarray | None = None


class Engine(Protocol):
    """Runs ``cluster_batch`` on every task; calls ``finished(index, result)`` once per task, as each completes."""

    def run(self, matrix: np.ndarray, tasks: Sequence[tuple[int, BatchTask]], *,
            finished: Callable[[int, BatchResult], None]) -> None: ...


_WORKER_READY = False


def prepare_worker() -> None:
    """Once per worker process (never in the caller's): one OpenMP/BLAS thread, and a malloc that keeps freed memory.

    k-means on 100 rows gains nothing from threads and loses much to their start-up when cores are
    shared. Steps 2-4 allocate and free arrays of a neuron's size (100 x 2048 float64: 1.6 MB) many
    times; glibc's malloc serves such sizes with fresh mmap'd pages, or trims them off its heap when
    freed, so every new array pays page faults again: about a fifth of a neuron's time here. Fixing
    the mmap threshold at 32 MiB and the trim threshold at 256 MiB keeps the pages in the worker.
    """
    global _WORKER_READY
    if _WORKER_READY:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # kept for the process' life
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


def cluster_batch(task: BatchTask) -> BatchResult:
    """Steps 2-4 (``core.steps.cluster_top``) for every neuron of a batch."""
    if task.in_worker:
        prepare_worker()
    params = Params.from_dict(task.params)
    null = None if task.null_shares is None else LayerNull(shares=task.null_shares, top=params.top,
                                                           min_cluster_size=params.min_cluster_size, seed=params.seed)
    top = task.top_indices
    rows: Any
    store: np.ndarray | None = None  # the store's memory-mapped activations, when the rows are read from there
    if task.rows is not None:
        rows = task.rows
    elif task.slot is not None:
        # Mapped for this task only (the file is removed when the scan ends): read in place, cast per neuron.
        s = task.slot
        rows = np.memmap(s.path, dtype=np.dtype(s.dtype), mode="r", offset=s.offset, shape=s.shape)
    elif task.npy is not None:
        if task.npy not in _MMAPS:
            _MMAPS[task.npy] = np.load(task.npy, mmap_mode="r", allow_pickle=False)
        rows, store = None, _MMAPS[task.npy]
    else:
        raise ConceptvecError("a batch task needs its rows, a shared slot or the store's .npy file.")
    import sklearn

    # The scan has checked A for NaN/inf and Params its values: skip sklearn's re-checks (results unchanged).
    out: dict[str, list] = {k: [] for k in ("linkage", "n_agglomerative", "kmeans_labels", "centroid_sq_distances",
                                             "labels", "kmeans_cluster_ids", "concept_vectors")}
    first_p: list[float] = []
    reappearance: list[np.ndarray] = []
    count_agreement: list[float] = []
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        for i in range(len(top)):
            if store is None:
                x = np.array(rows[i], dtype=np.float64)  # a private C-ordered copy, also of shared rows
            else:
                x = read_rows(store, top[i])  # as disentangle reads them
            found = cluster_top(x, params, layer_null=null)
            first_p.append(first_split_p(found["split_tests"]))
            for key, value in found.items():
                if key in out:  # split_tests stay with disentangle's ConceptSet; the scan keeps C
                    out[key].append(value)
            if task.stability:
                st = concept_stability(x, found["labels"], params=params, runs=task.stability, seed=params.seed,
                                       layer_null=null)
                reappearance.append(st.reappearance)
                count_agreement.append(st.count_agreement)
    stability = ({"concept_reappearance": np.concatenate(reappearance).astype(np.float64) if reappearance else np.zeros(0),
                  "count_agreement": np.asarray(count_agreement, dtype=np.float64)} if task.stability else {})
    return {
        **stability,
        "linkage": np.stack(out["linkage"]),
        "n_agglomerative": np.asarray(out["n_agglomerative"], dtype=np.int64),
        "kmeans_labels": np.stack(out["kmeans_labels"]),
        "centroid_sq_distances": np.stack(out["centroid_sq_distances"]),
        "labels": np.stack(out["labels"]),
        "n_concepts": np.asarray([len(v) for v in out["concept_vectors"]], dtype=np.int64),
        "first_p": np.asarray(first_p, dtype=np.float64),
        "kmeans_cluster_ids": np.concatenate(out["kmeans_cluster_ids"]).astype(np.int64),
        "concept_vectors": (np.concatenate(out["concept_vectors"]) if out["concept_vectors"]
                            else np.empty((0, task.n_units))),
    }


def npy_path(matrix: np.ndarray) -> str | None:
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


class RowSlots:
    """Shared memory for the top rows of the batches in flight: a file in /dev/shm that workers map.

    Sending a batch's rows with the task costs a pickled copy in this process and an unpickled one
    in the worker (1.7 GB each for a 2,048-neuron layer); here this process gathers them once into
    a free slot and the worker reads them in place. Only batches in flight hold a slot.
    """

    def __init__(self, n_slots: int, shape: tuple[int, int, int], dtype: np.dtype):
        shm = "/dev/shm"
        fd, self.path = tempfile.mkstemp(prefix="conceptvec-scan-", suffix=".rows",
                                         dir=shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None)
        os.close(fd)
        self.shape, self.dtype = shape, np.dtype(dtype)
        self.slot_bytes = int(np.prod(shape)) * self.dtype.itemsize
        self.array = np.memmap(self.path, dtype=self.dtype, mode="w+", shape=(n_slots, *shape))
        self.free = list(range(n_slots))
        self.held: dict[int, int] = {}

    def put(self, b: int, matrix: np.ndarray, rows: np.ndarray) -> RowSlot:
        """Gather ``matrix[rows]`` (rows of shape (b, top)) into a free slot held for batch ``b``."""
        slot = self.free.pop()
        self.held[b] = slot
        out = self.array[slot, : len(rows)]
        if isinstance(matrix, np.ndarray) and matrix.flags.c_contiguous:
            np.take(matrix, rows, axis=0, out=out, mode="clip")  # indices are valid; 'raise' would buffer `out`
        else:
            out[...] = np.asarray(matrix[rows])
        return RowSlot(path=self.path, offset=slot * self.slot_bytes, dtype=self.dtype.str, shape=(len(rows), *self.shape[1:]))

    def release(self, b: int) -> None:
        self.free.append(self.held.pop(b))

    def close(self) -> None:
        del self.array
        try:
            os.unlink(self.path)
        except FileNotFoundError:  # pragma: no cover
            pass


class LocalEngine:
    """Steps 2-4 on this machine: in this process (``workers=1``), else on a reusable process pool.

    Parameters
    ----------
    workers : int, optional
        Processes clustering neurons; default: the CPUs this process may use, or this process alone when
        the scan is small (``SMALL_SCAN_CELLS``). 0 or 1: this process alone, on one thread.
    """

    name = "local"

    def __init__(self, *, workers: int | None = None):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0):
            raise ConceptvecError(f"workers must be a whole number >= 0 (0 or 1: this process alone), got {workers!r}.")
        self.workers = workers

    def run(self, matrix: np.ndarray, tasks: Sequence[tuple[int, BatchTask]], *,
            finished: Callable[[int, BatchResult], None]) -> None:
        """Cluster every ``(index, task)``; tasks come without rows and get them here (see the module notes)."""
        if not tasks:
            return
        npy = npy_path(matrix)
        if self.workers is not None:
            n_workers = min(max(self.workers, 1), len(tasks))
        else:
            cells = sum(t.top_indices.size for _, t in tasks) * matrix.shape[1]
            n_workers = 1 if cells < SMALL_SCAN_CELLS else min(default_workers(), len(tasks))
        if n_workers <= 1:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                for b, task in tasks:
                    rows = None if npy is not None else np.asarray(matrix[task.top_indices])
                    finished(b, cluster_batch(_with(task, rows=rows, npy=npy)))
            return
        in_flight = 2 * n_workers
        shape = (max(len(t.top_indices) for _, t in tasks), tasks[0][1].top_indices.shape[1], matrix.shape[1])
        slots = None if npy is not None else RowSlots(in_flight, shape, matrix.dtype)
        try:
            self._run_pool(matrix, tasks, finished, n_workers, in_flight, npy, slots)
        finally:
            if slots is not None:
                slots.close()

    @staticmethod
    def _run_pool(matrix, tasks, finished, n_workers, in_flight, npy, slots) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait

        from joblib.externals.loky import get_reusable_executor

        executor = get_reusable_executor(max_workers=n_workers)

        def submit(b: int, task: BatchTask) -> Any:
            slot = slots.put(b, matrix, task.top_indices) if slots is not None else None
            return executor.submit(cluster_batch, _with(task, slot=slot, npy=npy, in_worker=True))

        def collect(b: int, fut: Any) -> None:
            if slots is not None:
                slots.release(b)
            finished(b, fut.result())

        keep_in_flight(tasks, in_flight, submit=submit, wait=lambda pending: wait(pending, return_when=FIRST_COMPLETED)[0],
                       collect=collect, cancel=lambda fut: fut.cancel())


def keep_in_flight(tasks: Sequence[tuple[int, BatchTask]], in_flight: int, *, submit: Callable[[int, BatchTask], Any],
                   wait: Callable[[list[Any]], Any], collect: Callable[[int, Any], None], cancel: Callable[[Any], Any]) -> None:
    """Keep up to ``in_flight`` tasks submitted (``submit(index, task)`` returns a handle); ``collect(index, handle)``
    each one ``wait(handles)`` says is done, in the order they finish; on any error ``cancel`` the others."""
    pending: dict[Any, int] = {}
    queue = list(tasks)
    try:
        while queue or pending:
            while queue and len(pending) < in_flight:
                b, task = queue.pop(0)
                pending[submit(b, task)] = b
            for handle in wait(list(pending)):
                collect(pending.pop(handle), handle)
    except BaseException:
        for handle in pending:
            cancel(handle)
        raise


def _with(task: BatchTask, **changes: Any) -> BatchTask:
    from dataclasses import replace

    return replace(task, **changes)


def make_engine(engine: str | Engine = "local", *, workers: int | None = None, ray_address: str | None = None) -> Engine:
    """An engine by name (``engines.registry.ENGINES``) built with ``workers`` and ``ray_address``, or an engine object
    as it is (then ``workers`` and ``ray_address`` belong to its own constructor and are refused here)."""
    if isinstance(engine, str):
        entry = check_engine(engine, stage="scan", ray_address=ray_address, workers=workers)
        factory = entry.runner("scan")
        return factory(workers=workers, **({"ray_address": ray_address} if entry.on_ray else {}))  # type: ignore[no-any-return]
    if not callable(getattr(engine, "run", None)):
        raise ConceptvecError(f"engine must be one of {', '.join(sorted(ENGINES))} or an object with a run() method.")
    if workers is not None or ray_address is not None:
        raise ConceptvecError("workers= and ray_address= go to an engine object's own constructor (e.g. "
                              "RayEngine(workers=8, ray_address=...)), not beside it; give the engine by name to use them here.")
    return engine
