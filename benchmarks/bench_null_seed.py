"""Benchmark: how much ``distance_threshold="auto"`` depends on its null's seed (issue 24, item 3).

``auto`` tests each ward split against Gaussian null samples drawn from ``Params.seed``; a split whose z-score is
near the level can be kept with one seed and not with another. For every live neuron of a layer, C (auto's number of
clusters) is computed with seeds 0, 1 and 2 (``core.auto.auto_clusters`` on the unit-length top rows, as the scan
does); printed: the share of live neurons whose C differs between two of the seeds, the share whose "one concept"
(C = 1) differs, and the CPU time of the tests per seed.

``--variant NEAR,GROWTH,MAX`` (repeatable) measures other forms of auto's extra draws near the level in the same run
on the same trees (``core.auto``'s ``NEAR``, ``GROWTH`` and ``MAX_DRAWS`` set for the call; ``0,4,40`` is the
rule before issue 24: at most 40 draws). Without it, the package's own constants are measured.

Layers: a planted one (``bench_scan.planted_activations``, 5,000 x 192, ReLU'd) and, when present, the real ones
under ``--realdata`` (efficientnet-lite0 ``blocks.5`` over 3,000 icons; an all-MiniLM-L6-v2 MLP layer, 8,000 x 1,536).

Usage: python benchmarks/bench_null_seed.py [--realdata /work/realdata] [--units N] [--top 100] [--variant 2,4,640 ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402

import conceptvec as cv  # noqa: E402
from bench_scan import planted_activations  # noqa: E402
import conceptvec.core.auto as auto  # noqa: E402
from conceptvec.core.arrays import read_rows  # noqa: E402
from conceptvec.core.auto import auto_clusters, unit_rows  # noqa: E402
from conceptvec.core.live import live_mask  # noqa: E402
from conceptvec.core.steps import ward_linkage  # noqa: E402
from conceptvec.core.streaming import top_examples_and_floors  # noqa: E402

SEEDS = (0, 1, 2)


Variant = tuple[float, int, int]  # NEAR, GROWTH, MAX_DRAWS


@contextmanager
def variant(v: Variant | None) -> Iterator[None]:
    """auto's extra draws near the level set to ``v`` for the block (None: the package's own)."""
    if v is None:
        yield
        return
    saved = auto.NEAR, auto.GROWTH, auto.MAX_DRAWS
    auto.NEAR, auto.GROWTH, auto.MAX_DRAWS = v
    try:
        yield
    finally:
        auto.NEAR, auto.GROWTH, auto.MAX_DRAWS = saved


def flips(acts: np.ndarray, *, top: int, units: int | None, params: cv.Params,
          variants: list[Variant | None]) -> list[str]:
    """One line per variant: how often C differs across SEEDS, and the tests' CPU time per seed."""
    cols = np.arange(acts.shape[1] if units is None else min(units, acts.shape[1]))
    rows, scores, floors = top_examples_and_floors(acts, top, neurons=cols)
    live = live_mask(scores, floors)
    m = int(live.sum())
    c = np.zeros((len(variants), len(SEEDS), m), dtype=np.int64)
    cpu = np.zeros((len(variants), len(SEEDS)))
    draws = np.zeros((len(variants), 2))  # null draws, tests
    for j, i in enumerate(np.flatnonzero(live)):
        unit = unit_rows(read_rows(acts, rows[i]))
        z = ward_linkage(unit)
        for k, v in enumerate(variants):
            with variant(v):
                for s, seed in enumerate(SEEDS):
                    start = time.process_time()
                    c[k, s, j], tests = auto_clusters(unit, z, significance=params.significance,
                                                      min_cluster_size=params.min_cluster_size, seed=seed)
                    cpu[k, s] += time.process_time() - start
                    draws[k] += (sum(t["draws"] for t in tests), len(tests))
    lines = []
    for k, v in enumerate(variants):
        name = "package" if v is None else f"NEAR {v[0]:g}, GROWTH {v[1]}, MAX_DRAWS {v[2]}"
        differ = int(np.sum((c[k] != c[k, 0]).any(axis=0)))
        single = c[k] == 1
        single_differ = int(np.sum((single != single[0]).any(axis=0)))
        lines.append(f"  [{name}] {m} live neurons: C differs between seeds 0, 1, 2 on {differ} ({100 * differ / m:.2f} %); "
                     f"one concept (C = 1) differs on {single_differ} ({100 * single_differ / m:.2f} %); "
                     f"mean C {c[k].mean():.2f}; mean draws per test {draws[k, 0] / max(draws[k, 1], 1):.1f}; "
                     f"tests' CPU time per seed {cpu[k].mean():.1f} s")
    return lines


def parse_variant(text: str) -> Variant:
    near, growth, most = text.split(",")
    return float(near), int(growth), int(most)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--realdata", default="/work/realdata")
    ap.add_argument("--units", type=int, default=None, help="only the first N units of each layer")
    ap.add_argument("--top", type=int, default=100)
    ap.add_argument("--variant", type=parse_variant, action="append", default=None,
                    help="NEAR,GROWTH,MAX_DRAWS of auto's extra draws (repeatable); 0,4,40 is the rule before issue 24")
    ap.add_argument("--only", choices=("planted", "images", "text"), action="append", default=None)
    a = ap.parse_args()
    variants: list[Variant | None] = a.variant or [None]
    only = set(a.only or ("planted", "images", "text"))
    params = cv.Params(top=a.top, distance_threshold="auto")
    if "planted" in only:
        planted, _ = planted_activations(n_examples=5000, n_units=192, n_classes=40)
        print("planted 5000 x 192:", flush=True)
        print("\n".join(flips(np.asarray(planted), top=a.top, units=a.units, params=params, variants=variants)), flush=True)
    for key, name, path in (("images", "efficientnet-lite0 blocks.5", "images/blocks.5.npy"),
                            ("text", "all-MiniLM-L6-v2 MLP", "text/acts.npy")):
        file = Path(a.realdata) / path
        if key in only and file.exists():
            acts = np.load(file, mmap_mode="r", allow_pickle=False)
            print(f"{name} {acts.shape[0]} x {acts.shape[1]}:", flush=True)
            print("\n".join(flips(acts, top=a.top, units=a.units, params=params, variants=variants)), flush=True)


if __name__ == "__main__":
    main()
