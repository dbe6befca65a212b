"""Benchmark: how often does auto's count flip under a 10 % perturbation of the direction, by how near the first
split's p-value is to the level? Chooses the "borderline" band of ``core.evidence.BORDERLINE`` (issue 23, h3b).

Layers: the cached activations of ``real_data.py`` (efficientnet-lite0 ``blocks.6`` / ``blocks.5`` over icons,
all-MiniLM-L6-v2 ``encoder.layer.3.intermediate`` over package descriptions). For each live neuron (a sample of
``--neurons`` on text): auto's count (the default, ``Params(distance_threshold="auto")``, on the activations) for the
unit direction and for the same direction plus a random perturbation of 10 % of its standardised norm (as
``bench_real.py``'s consistency), and the unperturbed first split's p-value: the only one a user sees. Printed: per
band of p / level, the neurons in it and the share whose count flips; then inside and outside the band
``core.evidence.borderline_band`` (level / BORDERLINE_BELOW .. level * BORDERLINE_ABOVE).

Usage: python benchmarks/bench_borderline.py [--layers blocks.6,blocks.5,text] [--neurons 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import conceptvec as cv
from conceptvec.core.evidence import borderline_band
from conceptvec.core.fdr import first_split_p
from conceptvec.core.live import live_mask
from conceptvec.core.steps import cluster_top
from conceptvec.core.streaming import top_examples, top_k_desc

import real_data

TOP = 100
PERTURBATION = 0.1
EDGES = (0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 1.0 + 1e-9)  # bands of the first split's p


def layer_acts(name: str) -> np.ndarray:
    if name == "text":
        return np.load(real_data.ROOT / "text" / "acts.npy").astype(np.float64)
    return np.load(real_data.ROOT / "images" / f"{name}.npy").astype(np.float64)


def run(name: str, *, n_neurons: int, seed: int) -> list[tuple[float, bool, bool]]:
    """(first p of the unit direction, whether the perturbed direction's count differs, and whether by its first split's
    decision) per sampled live neuron."""
    t0 = time.perf_counter()
    acts = layer_acts(name)
    params = cv.Params(distance_threshold="auto")
    sd = acts.std(axis=0)
    sd[sd == 0] = 1.0
    _, scores = top_examples(acts, TOP, neurons=np.arange(acts.shape[1]))
    live = np.flatnonzero(live_mask(scores))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(live, size=min(n_neurons, len(live)), replace=False))
    rows = []
    for j in chosen:
        base = np.eye(acts.shape[1])[j] / sd[j]
        noise = rng.standard_normal(acts.shape[1]) / sd
        moved = base + PERTURBATION * np.linalg.norm(base * sd) * noise / np.linalg.norm(noise * sd)
        outs = [cluster_top(acts[top_k_desc(acts @ d, TOP)], params) for d in (base, moved)]
        counts = [int(o["labels"].max()) + 1 for o in outs]
        ps = [first_split_p(o["split_tests"]) for o in outs]
        # a flip the first split's decision makes (split against not), or a deeper split's
        first = (ps[0] <= params.significance) != (ps[1] <= params.significance)
        rows.append((ps[0], counts[0] != counts[1], bool(first and counts[0] != counts[1])))
    print(f"\n{name}: {acts.shape[0]} examples x {acts.shape[1]} units; {len(chosen)} of {len(live)} live neurons; "
          f"level {params.significance:g}; {time.perf_counter() - t0:.0f} s")
    return rows


def report(rows: list[tuple[float, bool, bool]], level: float) -> None:
    p = np.array([r[0] for r in rows])
    flip = np.array([r[1] for r in rows])
    first = np.array([r[2] for r in rows])
    print(f"  {'first p':<16} {'neurons':>7} {'flipped':>7} {'share':>6} {'by the first split':>18}")
    for lo, hi in zip(EDGES[:-1], EDGES[1:]):
        m = (p >= lo) & (p < hi)
        print(f"  {f'{lo:g}-{min(hi, 1):g}':<16} {int(m.sum()):>7} {int(flip[m].sum()):>7} "
              f"{(f'{flip[m].mean():.0%}' if m.any() else '-'):>6} {int(first[m].sum()):>18}")
    lo, hi = borderline_band(level)
    inside = (p >= lo) & (p <= hi)
    for what, m in (("borderline", inside), ("not", ~inside)):
        print(f"  {what:<10} (p {'in' if what == 'borderline' else 'outside'} {lo:g}-{hi:g}): "
              f"{int(m.sum())} neurons, {int(flip[m].sum())} flip ({flip[m].mean():.0%})" if m.any() else f"  {what}: none")
    print(f"  of all {int(flip.sum())} flips, {int(flip[inside].sum())} are borderline")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", default="blocks.6,blocks.5,text")
    ap.add_argument("--neurons", type=int, default=320, help="live neurons per layer (a random sample when fewer)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    level = cv.Params(distance_threshold="auto").significance
    pooled: list[tuple[float, bool, bool]] = []
    with threadpool_limits(1):
        for name in [n for n in args.layers.split(",") if n]:
            rows = run(name, n_neurons=args.neurons, seed=args.seed)
            report(rows, level)
            pooled += rows
    if len(args.layers.split(",")) > 1:
        print("\nall layers:")
        report(pooled, level)


if __name__ == "__main__":
    main()
