"""Benchmark: `conceptvec thresholds` (the sweep) against an `auto` scan of the same layer (issue 24, item 4).

One run, the same activations for all: planted polysemantic neurons (``bench_scan.planted_activations``,
ReLU'd like pooled CNN activations), by default 5,000 examples x 192 units (efficientnet-lite0
``blocks.5``'s width). Timed:

1. ``cv.scan_layer(distance_threshold="auto")`` with its defaults (workers: every CPU; projecting examples
   included), as ``conceptvec scan STORE --distance-threshold auto`` runs it;
2. the sweep on a pool of ``--workers`` processes (default: every CPU) (``scan.sweep.sweep_layer``);
3. the sweep in this process alone (``--workers 1``; what it was before, and what ``conceptvec thresholds``
   does by default on a layer this small, as the scan does).

Prints each time and the ratios sweep / auto scan (goal: within 2x).

Usage: python benchmarks/bench_thresholds.py [--examples 5000] [--units 192] [--workers N] [--skip-serial]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))

import conceptvec as cv  # noqa: E402
from bench_scan import planted_activations  # noqa: E402
from conceptvec.scan.engine import default_workers  # noqa: E402
from conceptvec.scan.sweep import sweep_layer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=5000)
    ap.add_argument("--units", type=int, default=192)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--skip-serial", action="store_true")
    a = ap.parse_args()
    acts, planted = planted_activations(n_examples=a.examples, n_units=a.units, n_classes=40)
    workers = a.workers or default_workers()
    print(f"layer {a.examples} x {a.units} (planted, ReLU'd); workers {workers}; CPUs {os.cpu_count()}")
    warnings.simplefilter("ignore", cv.ThresholdScaleWarning)

    t = time.perf_counter()
    scan = cv.scan_layer(acts, params=cv.Params(distance_threshold="auto"), workers=a.workers, progress=False)
    t_scan = time.perf_counter() - t
    print(f"auto scan:                 {t_scan:8.1f} s  ({scan.summary()['n_live']} live neurons)")

    t = time.perf_counter()
    sweep = sweep_layer(acts, params=cv.Params(), workers=workers, progress=False)
    t_sweep = time.perf_counter() - t
    print(f"thresholds (sweep, pool):  {t_sweep:8.1f} s  ({len(sweep.units)} live neurons, {len(sweep.grid)} thresholds; "
          f"{t_sweep / t_scan:.2f}x the auto scan)")
    assert (sweep.auto["n_concepts"] == scan.n_concepts[scan.live]).all()  # the sweep's auto row is the scan's answer
    if not a.skip_serial:
        t = time.perf_counter()
        sweep_layer(acts, params=cv.Params(), workers=1, progress=False)
        t_serial = time.perf_counter() - t
        print(f"thresholds (one process):  {t_serial:8.1f} s  ({t_serial / t_scan:.2f}x the auto scan; the pool is "
              f"{t_serial / t_sweep:.2f}x faster)")


if __name__ == "__main__":
    main()
