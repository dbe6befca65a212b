"""Steps 2-4 of a scan as Ray tasks: batches of neurons clustered on a Ray cluster (``engine="ray"``).

Each task is one ``BatchTask`` run by the same ``cluster_batch`` the local engine runs, so the
results are identical bit for bit; the scan saves each finished batch as it arrives, so a stopped
scan resumes as a local one does. How a task gets its rows of A:

- ``data="shared"``: the worker maps the store's ``activations.npy`` at the same path (one machine,
  or a store on a disk every node mounts at the same path); a task carries only indices;
- ``data="object-store"``: this process gathers the batch's rows and Ray ships them (any cluster);
- ``data="auto"`` (default): shared when the cluster is this machine alone and A is a store, else
  the object store.

A task whose worker dies is run again by Ray (``max_retries``); an error the method raises in a
worker reaches the caller as the same exception a local run raises.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConceptvecError
from ..engines.raycluster import RETRIES, check_reachable, cluster_cpus, connected, this_machine_only, user_error
from .engine import BatchResult, BatchTask, cluster_batch, keep_in_flight, npy_path

DATA_PATHS = ("auto", "shared", "object-store")


def run_batch(function: Callable[[BatchTask], BatchResult], task: BatchTask, rows: np.ndarray | None) -> BatchResult:
    """In a Ray worker: ``function`` (``cluster_batch``) on ``task``, with the rows Ray shipped when it shipped them."""
    return function(task if rows is None else replace(task, rows=rows))


class RayEngine:
    """Steps 2-4 as Ray tasks, one per batch of neurons, one CPU each.

    Parameters
    ----------
    workers : int, optional
        Tasks running at once; default (None): all the CPUs of the cluster; 0 or 1: one at a time.
    ray_address : str, optional
        The Ray cluster (``ray start --head`` prints it); default: ``RAY_ADDRESS``, else a local Ray
        started for the run. A process already connected to Ray uses that cluster.
    data : 'auto', 'shared' or 'object-store'
        How workers read the rows (module notes).
    """

    name = "ray"
    batch_function: Callable[[BatchTask], BatchResult] = staticmethod(cluster_batch)

    def __init__(self, *, workers: int | None = None, ray_address: str | None = None, data: str = "auto"):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0):
            raise ConceptvecError(f"workers must be a whole number >= 0 (0 or 1: one task at a time; left out: the CPUs of the Ray cluster), got {workers!r}.")
        if data not in DATA_PATHS:
            raise ConceptvecError(f"data must be one of {', '.join(DATA_PATHS)}, got {data!r}.")
        check_reachable(ray_address)  # before the scan's first pass, not after it
        self.workers, self.ray_address, self.data = workers, ray_address, data

    def run(self, matrix: np.ndarray, tasks: Sequence[tuple[int, BatchTask]], *,
            finished: Callable[[int, BatchResult], None]) -> None:
        """Cluster every ``(index, task)`` on the cluster; ``finished`` is called here, in this process, as each returns."""
        if not tasks:
            return
        with connected(self.ray_address) as ray:
            npy = npy_path(matrix)
            if self.data == "shared" and npy is None:
                raise ConceptvecError("data='shared' needs an activation store (its activations.npy); the activations given "
                                      "are an array in memory: use data='object-store'.")
            if self.data == "object-store" or (self.data == "auto" and not this_machine_only(ray)):
                npy = None
            remote = ray.remote(num_cpus=1, max_retries=RETRIES)(run_batch)
            # Given workers: that many tasks at once, one per worker. By default twice the cluster's CPUs are
            # in flight, so that no CPU waits for this process to hand it the next batch.
            in_flight = max(1, self.workers) if self.workers is not None else 2 * cluster_cpus(ray)

            def submit(b: int, task: BatchTask) -> Any:
                rows = None if npy is not None else np.asarray(matrix[task.top_indices])
                return remote.remote(self.batch_function, replace(task, npy=npy, in_worker=True), rows)

            def collect(b: int, ref: Any) -> None:
                try:
                    result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - the worker's own error, unwrapped
                    error = user_error(exc)
                    if isinstance(error, OSError) and npy is not None and getattr(error, "filename", None) == npy:
                        raise ConceptvecError(f"a Ray worker cannot read the store's activations at {npy} ({error.strerror or error}); "
                                              f"put the store on a disk every node mounts at the same path, or let the rows "
                                              f"travel through Ray's object store (RayEngine(data='object-store')).") from None
                    raise error from None
                finished(b, result)

            keep_in_flight(tasks, in_flight, submit=submit, wait=lambda refs: ray.wait(refs, num_returns=1)[0], collect=collect,
                           cancel=lambda ref: ray.cancel(ref, force=True))
