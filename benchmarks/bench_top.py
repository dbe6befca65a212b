"""Benchmark: the scan's cost per top example at top 100, 500 and 1,000 (issue 23, item 5), and where it goes.

One planted layer (``core.planted.planted_layer``: ``--width`` units, ``--neurons`` neurons with 1-4 facets,
``--per-neuron`` examples each (default twice the largest top), 2,000 background rows) is scanned with ``distance_threshold="auto"`` at each top, on one worker,
the maximally projecting examples included (as ``conceptvec scan`` runs it). For each top it prints the wall time
per neuron and per top example, the ratio of the cost per example to top 100's, and the share of the time in
each part (profiled in the same run): auto's null samples (ward trees of N x (N - 1) Gaussian samples), ward on
the top examples, k-means, the evidence columns, the rest. Then the counts found against the planted ones.

Usage: python benchmarks/bench_top.py [--width 1536] [--neurons 12] [--tops 100,500,1000] [--per-neuron 2000]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import conceptvec as cv
from conceptvec.core.planted import planted_layer

PARTS = {  # (file suffix, function name) whose cumulative time is the part's
    "auto's null samples": ("core/auto.py", "shares"),
    "ward on the top examples": ("core/steps.py", "ward_linkage"),
    "k-means": ("core/kmeans.py", "kmeans_step"),
    "evidence columns": ("scan/result.py", "evidence"),
}


def parts(stats: pstats.Stats) -> dict[str, float]:
    found = dict.fromkeys(PARTS, 0.0)
    for (path, _, name), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        for part, (suffix, fn) in PARTS.items():
            if path.endswith(suffix) and name == fn:
                found[part] += cumulative
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=1536)
    ap.add_argument("--neurons", type=int, default=12)
    ap.add_argument("--tops", default="100,500,1000")
    ap.add_argument("--per-neuron", type=int, default=0, help="planted examples per neuron (default 2 x the largest top, "
                    "so that every top is the neuron's strongest examples, not all of them)")
    args = ap.parse_args()
    tops = [int(t) for t in args.tops.split(",")]
    per_neuron = args.per_neuron or 2 * max(tops)
    layer = planted_layer(args.width, n_neurons=args.neurons, top=per_neuron, n_background=2000, seed=0)
    print(f"planted layer {layer.acts.shape[0]} x {args.width}, {args.neurons} neurons with "
          f"{np.bincount(layer.n_facets).tolist()} facets (by count 0-4), {per_neuron} examples each")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        store = cv.ActivationStore.create(Path(tmp) / "store", layer.acts)
        with warnings.catch_warnings():  # a first scan pays for imports and the figure backend: left out of the timings
            warnings.simplefilter("ignore", cv.ConceptvecWarning)
            cv.scan_layer(store, params=cv.Params(distance_threshold="auto", top=tops[0]), neurons=[0], workers=1,
                          out=Path(tmp) / "warm-up", progress=False)
        for top in tops:
            params = cv.Params(distance_threshold="auto", top=top)
            profile = cProfile.Profile()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", cv.ConceptvecWarning)
                t0 = time.perf_counter()
                profile.enable()
                scan = cv.scan_layer(store, params=params, neurons=list(range(args.neurons)), workers=1,
                                     out=Path(tmp) / f"scan{top}", progress=False)
                profile.disable()
                wall = time.perf_counter() - t0
            per_example = wall / args.neurons / top
            base = per_example if base is None else base
            shares = {k: v / wall for k, v in parts(pstats.Stats(profile)).items()}
            exact = int(np.sum(scan.n_concepts == layer.n_facets))
            print(f"top {top:5d}: {wall:7.1f} s, {wall / args.neurons:6.2f} s per neuron, {1e3 * per_example:6.2f} ms per "
                  f"top example ({per_example / base:4.1f}x top {tops[0]}'s); "
                  + ", ".join(f"{k} {100 * v:.0f} %" for k, v in shares.items()) + f", the rest {100 * (1 - sum(shares.values())):.0f} %"
                  + f"; exact counts {exact} of {args.neurons}", flush=True)


if __name__ == "__main__":
    main()
