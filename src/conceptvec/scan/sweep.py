"""``conceptvec thresholds`` at scan speed: ``core.sweep.threshold_sweep`` with its per-neuron work on the scan's workers.

The sweep's cost is per neuron (a ward tree, one k-means per distinct C along the grid, and ``auto``),
independent across neurons, like the scan's steps 2-4. Here that work runs on the process pool the
local scan engine uses (loky's reusable executor, one BLAS thread per worker, ``engine.prepare_worker``),
a few neurons per task and a bounded number of tasks in flight, so memory holds about
``4 x workers x SWEEP_BATCH`` neurons' rows whatever the layer's size. The result is the one the
serial sweep gives, number for number (tests/scan/test_sweep.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..core.params import Params
from ..core.sweep import ThresholdSweep, check_representation, threshold_sweep
from ..engines.registry import ENGINES, check_engine
from ..errors import ConceptvecError
from ..core.arrays import as_matrix
from ..core.selection import parse_neurons
from .engine import SMALL_SCAN_CELLS, default_workers, prepare_worker

__all__ = ["SWEEP_BATCH", "sweep_layer"]

SWEEP_BATCH = 4  # neurons per task: a neuron's k-means at ~30 values of C take about half a second


def sweep_layer(acts: Any, *, params: Params = Params(), workers: int | None = None, engine: str = "local",
                progress: bool = False, **kwargs: Any) -> ThresholdSweep:
    """:func:`conceptvec.core.sweep.threshold_sweep` on ``workers`` processes (default as the scan's: the CPUs this
    process may use, or this process alone for a small layer, ``engine.SMALL_SCAN_CELLS``; 0 or 1: this process alone). ``engine``: ``local`` (Ray is not offered for the sweep yet). Other keywords
    (``neurons``, ``thresholds``, ``n_grid``, ``distance_percentile``, ``outlier_percentile``) as there."""
    if engine != "local" and engine in ENGINES:
        raise ConceptvecError(f"conceptvec thresholds runs on this machine's processes (--workers); engine {engine!r} is offered "
                              f"for scan and extract only. Leave out --engine.")
    check_engine(engine, stage="scan", workers=workers)
    check_representation(params)  # before any process starts
    if workers is None:
        # the scan's default (engine.LocalEngine): a small layer is swept in this process, where a pool's start-up
        # and task traffic cost more than they save (measured: docs/benchmarks.md, issue 24)
        matrix, _ = as_matrix(acts)
        cells = len(parse_neurons(kwargs.get("neurons"), matrix.shape[1])) * params.top * matrix.shape[1]
        n_workers = 1 if cells < SMALL_SCAN_CELLS else default_workers()
    else:
        matrix, _ = as_matrix(acts)  # no more processes than neurons, as the scan's engine
        n_workers = min(max(int(workers), 1), len(parse_neurons(kwargs.get("neurons"), matrix.shape[1])))
    if n_workers <= 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return threshold_sweep(acts, params=params, progress=progress, **kwargs)
    from joblib.externals.loky import get_reusable_executor

    executor = get_reusable_executor(max_workers=n_workers)

    def map_neurons(fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        return _bounded_map(executor, fn, items, in_flight=4 * n_workers)

    return threshold_sweep(acts, params=params, progress=progress, map_neurons=map_neurons, **kwargs)


def _run_batch(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    prepare_worker()
    return [fn(item) for item in items]


def _bounded_map(executor: Any, fn: Callable[[Any], Any], items: Iterable[Any], *, in_flight: int) -> Iterator[Any]:
    """``map(fn, items)`` on ``executor``, in order, ``SWEEP_BATCH`` items per task and at most ``in_flight`` tasks
    submitted ahead: the items (a neuron's rows each) are read only as the workers catch up."""
    pending: deque[Any] = deque()
    batch: list[Any] = []
    try:
        for item in items:
            batch.append(item)
            if len(batch) == SWEEP_BATCH:
                pending.append(executor.submit(_run_batch, fn, batch))
                batch = []
            while len(pending) >= in_flight:
                yield from pending.popleft().result()
        if batch:
            pending.append(executor.submit(_run_batch, fn, batch))
        while pending:
            yield from pending.popleft().result()
    finally:
        for fut in pending:  # Ctrl-C or an error: nothing more is started
            fut.cancel()
