"""Benchmark: how much ``distance_threshold="auto"`` depends on its null's seed (issue 24, item 3).

``auto`` tests each ward split against Gaussian null samples drawn from ``Params.seed``; a split whose z-score is
near the level can be kept with one seed and not with another. For every live neuron of a layer, C (auto's number of
clusters) is computed with seeds 0, 1 and 2 (``core.auto.auto_clusters`` on the unit-length top rows, as the scan
does); printed: the share of live neurons whose C differs between two of the seeds, the share whose "one concept"
(C = 1) differs, and the CPU time of the tests per seed.

Layers: a planted one (``bench_scan.planted_activations``, 5,000 x 192, ReLU'd) and, when present, the real ones
under ``--realdata`` (efficientnet-lite0 ``blocks.5`` over 3,000 icons; an all-MiniLM-L6-v2 MLP layer, 8,000 x 1,536).

Usage: python benchmarks/bench_null_seed.py [--realdata /work/realdata] [--units N] [--top 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402

import conceptvec as cv  # noqa: E402
from bench_scan import planted_activations  # noqa: E402
from conceptvec.core.arrays import read_rows  # noqa: E402
from conceptvec.core.auto import auto_clusters, unit_rows  # noqa: E402
from conceptvec.core.live import live_mask  # noqa: E402
from conceptvec.core.steps import ward_linkage  # noqa: E402
from conceptvec.core.streaming import top_examples_and_floors  # noqa: E402

SEEDS = (0, 1, 2)


def flips(acts: np.ndarray, *, top: int, units: int | None, params: cv.Params) -> str:
    cols = np.arange(acts.shape[1] if units is None else min(units, acts.shape[1]))
    rows, scores, floors = top_examples_and_floors(acts, top, neurons=cols)
    live = live_mask(scores, floors)
    c = np.zeros((len(SEEDS), int(live.sum())), dtype=np.int64)
    cpu = np.zeros(len(SEEDS))
    for j, i in enumerate(np.flatnonzero(live)):
        unit = unit_rows(read_rows(acts, rows[i]))
        z = ward_linkage(unit)
        for s, seed in enumerate(SEEDS):
            start = time.process_time()
            c[s, j] = auto_clusters(unit, z, significance=params.significance, min_cluster_size=params.min_cluster_size,
                                    seed=seed)[0]
            cpu[s] += time.process_time() - start
    m = c.shape[1]
    differ = int(np.sum((c != c[0]).any(axis=0)))
    single = c == 1
    single_differ = int(np.sum((single != single[0]).any(axis=0)))
    return (f"{m} live neurons: C differs between seeds 0, 1, 2 on {differ} ({100 * differ / m:.2f} %); one concept "
            f"(C = 1) differs on {single_differ} ({100 * single_differ / m:.2f} %); mean C {c.mean():.2f}; "
            f"tests' CPU time per seed {cpu.mean():.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--realdata", default="/work/realdata")
    ap.add_argument("--units", type=int, default=None, help="only the first N units of each layer")
    ap.add_argument("--top", type=int, default=100)
    a = ap.parse_args()
    params = cv.Params(top=a.top, distance_threshold="auto")
    planted, _ = planted_activations(n_examples=5000, n_units=192, n_classes=40)
    print(f"planted 5000 x 192: {flips(np.asarray(planted), top=a.top, units=a.units, params=params)}", flush=True)
    for name, path in (("efficientnet-lite0 blocks.5", "images/blocks.5.npy"), ("all-MiniLM-L6-v2 MLP", "text/acts.npy")):
        file = Path(a.realdata) / path
        if file.exists():
            acts = np.load(file, mmap_mode="r", allow_pickle=False)
            print(f"{name} {acts.shape[0]} x {acts.shape[1]}: {flips(acts, top=a.top, units=a.units, params=params)}",
                  flush=True)


if __name__ == "__main__":
    main()
