"""Benchmark: `conceptvec thresholds` (the sweep) against an `auto` scan of the same layer (issue 24, item 4).

One run, the same activations for all: planted polysemantic neurons (``bench_scan.planted_activations``,
ReLU'd like pooled CNN activations), by default 5,000 examples x 192 units (efficientnet-lite0
``blocks.5``'s width). Timed:

1. ``cv.scan_layer(distance_threshold="auto")`` with its defaults (a layer this small is scanned in this process;
   projecting examples included), as ``conceptvec scan STORE --distance-threshold auto`` runs it;
2. the sweep in this process (``scan.sweep.sweep_layer(workers=1)``, what ``conceptvec thresholds`` does by default
   on a layer this small, as the scan does);
3. with ``--pool``, the sweep on a pool of ``--workers`` processes (default: every CPU), wall time only.

Each is timed ``--repeat`` times, alternating, in wall-clock and in this process's CPU time (the scan and the serial
sweep of a layer this small run in this process, so CPU time is all their work, and it is less disturbed by other
programs sharing the cores than wall time); the least of each is kept. Prints the times and the ratios sweep / auto
scan (goal: within 2x).

``--npy PATH`` takes a real layer instead (a saved (n_examples, n_units) array, e.g. efficientnet-lite0 ``blocks.5`` over
Debian's icons), where the paper's 15/15 is off-scale: most neurons keep no concept at any C, and the sweep proves it
per neuron instead of clustering (``core.sweep.no_concept_possible``).

Usage: python benchmarks/bench_thresholds.py [--examples 5000] [--units 192] [--npy PATH] [--repeat 2] [--workers N] [--pool]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402

import conceptvec as cv  # noqa: E402
from bench_scan import planted_activations  # noqa: E402
from conceptvec.scan.engine import default_workers  # noqa: E402
from conceptvec.scan.sweep import sweep_layer  # noqa: E402


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=5000)
    ap.add_argument("--units", type=int, default=192)
    ap.add_argument("--npy", default=None, help="a real layer's activations (.npy, n_examples x n_units) instead of the planted one")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--workers", type=int, default=None, help="the pool's size with --pool (default: every CPU)")
    ap.add_argument("--pool", action="store_true", help="also time the sweep on a pool of --workers processes")
    a = ap.parse_args()
    if a.npy:
        acts = np.load(a.npy, allow_pickle=False)
        what = f"{a.npy}, {acts.dtype}"
    else:
        acts, _ = planted_activations(n_examples=a.examples, n_units=a.units, n_classes=40)
        what = "planted, ReLU'd"
    print(f"layer {acts.shape[0]} x {acts.shape[1]} ({what}); CPUs {os.cpu_count()}; load average {os.getloadavg()}; "
          f"{a.repeat} repeat(s), least kept")
    warnings.simplefilter("ignore", cv.ThresholdScaleWarning)
    times: dict[str, list[tuple[float, float]]] = {"scan": [], "sweep": []}
    for _ in range(a.repeat):
        scan, wall, cpu = timed(lambda: cv.scan_layer(acts, params=cv.Params(distance_threshold="auto"), progress=False))
        times["scan"].append((wall, cpu))
        sweep, wall, cpu = timed(lambda: sweep_layer(acts, params=cv.Params(), workers=1, progress=False))
        times["sweep"].append((wall, cpu))
        assert (sweep.auto["n_concepts"] == scan.n_concepts[scan.live]).all()  # the sweep's auto row is the scan's answer
    (scan_wall, scan_cpu), (sweep_wall, sweep_cpu) = (np.min(times[k], axis=0) for k in ("scan", "sweep"))
    print(f"auto scan (defaults; in this process):  wall {scan_wall:7.1f} s  CPU {scan_cpu:7.1f} s  "
          f"({scan.summary()['n_live']} live neurons)")
    print(f"thresholds (sweep, one process):        wall {sweep_wall:7.1f} s  CPU {sweep_cpu:7.1f} s  "
          f"({len(sweep.units)} live neurons, {len(sweep.grid)} thresholds, "
          f"{np.mean([len(np.unique(c)) for c in sweep.n_clusters]):.1f} distinct C per neuron; "
          f"{int((sweep.n_concepts == 0).all(axis=1).sum())} with 0 concepts at every threshold)")
    print(f"ratio sweep / auto scan: wall {sweep_wall / scan_wall:.2f}x, CPU {sweep_cpu / scan_cpu:.2f}x (goal: within 2x)")
    if a.pool:
        workers = a.workers or default_workers()
        _, wall, _ = timed(lambda: sweep_layer(acts, params=cv.Params(), workers=workers, progress=False))
        print(f"thresholds (sweep, pool of {workers}):  wall {wall:7.1f} s  ({wall / scan_wall:.2f}x the auto scan)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
