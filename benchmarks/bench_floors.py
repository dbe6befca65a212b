"""Benchmark: what finding each unit's floor (``core.live``) adds to the top-examples pass (issue 24, item 2).

The scan's step 1 streams A once for every neuron's top examples; ``top_examples_and_floors`` also tracks each
column's minimum, how many rows share it and how many are exactly 0, in the same pass. Both are timed on the same
ReLU'd array in memory (the pass's compute; a store read from disk adds the same I/O to both), ``--repeat`` times,
alternating, in CPU time of this process; the least of each is kept.

Usage: python benchmarks/bench_floors.py [--examples 20000] [--units 1024] [--top 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from conceptvec.core.streaming import top_examples, top_examples_and_floors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=20000)
    ap.add_argument("--units", type=int, default=1024)
    ap.add_argument("--top", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    acts = np.maximum(np.random.default_rng(0).standard_normal((a.examples, a.units)).astype(np.float32), 0)
    times: dict[str, list[float]] = {"top": [], "top and floors": []}
    for _ in range(a.repeat):
        for name, fn in (("top", top_examples), ("top and floors", top_examples_and_floors)):
            start = time.process_time()
            fn(acts, a.top)
            times[name].append(time.process_time() - start)
    least = {k: min(v) for k, v in times.items()}
    print(f"{a.examples} x {a.units} float32 (ReLU'd), top {a.top}, least of {a.repeat} CPU times: "
          f"top {least['top']:.3f} s, top and floors {least['top and floors']:.3f} s, "
          f"ratio {least['top and floors'] / least['top']:.2f}x")


if __name__ == "__main__":
    main()
