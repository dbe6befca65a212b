"""Diagnostic (issue 23 h1): is SigClust's 2-means share steadier than auto's ward root share under a small perturbation?

For live neurons of a real layer (``real_data.py``'s cache), the neuron's direction and the same direction perturbed
as ``bench_real.py`` perturbs it (10 % of its norm in standardised units). For each top-100 set (unit rows), two
statistics of the first split are tested against the **same** null samples (auto's null model,
``core.auto.null_model``, ``--draws`` samples seeded by the neuron, common to base and perturbed direction):

- ``ward``: the share of the sum of squares that ward's root merge explains (auto's statistic, root only, no walk);
- ``2-means``: one minus the best 2-means within sum of squares over the total (SigClust's; k-means, 3 restarts).

Printed per statistic: the share of neurons split (z above the 0.01 level) under each direction and how often the
decision is the same; the median |z base - z perturbed| and the sd of z over neurons; and, at the split rate that ward
has at the level (2-means' threshold moved to match it), how often each keeps its decision, with the rank correlation
of the z-scores. Not auto's full procedure (no walk below the root, fixed draws): a comparison of the statistics.

Usage: python benchmarks/bench_split_statistic.py --layer blocks.6 [--neurons 320] [--draws 60]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.stats import norm, spearmanr
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from conceptvec.core.auto import null_model, split_share, unit_rows
from conceptvec.core.live import live_mask
from conceptvec.core.streaming import top_examples, top_k_desc

import real_data

TOP = 100
PERTURBATION = 0.1
LEVEL = float(norm.isf(0.01))


def ward_share(y: np.ndarray) -> float:
    return split_share(y, linkage(y, "ward")[-1, 2])


def two_means_share(y: np.ndarray) -> float:
    ss = float(np.sum((y - y.mean(axis=0)) ** 2))
    return 1.0 - KMeans(2, n_init=3, random_state=0).fit(y).inertia_ / ss if ss > 0 else 0.0


def z_scores(x: np.ndarray, *, draws: int, seed: int) -> dict[str, float]:
    """Each statistic's z-score against the same ``draws`` samples of auto's null model of the unit rows of ``x``."""
    u = unit_rows(x)
    axes, weight = null_model(u)
    scale = axes[None, :] * weight[:, None]
    rng = np.random.default_rng(seed)
    null: dict[str, list[float]] = {"ward": [], "2-means": []}
    for _ in range(draws):
        y = rng.standard_normal((len(u), scale.shape[1])) * scale
        null["ward"].append(ward_share(y))
        null["2-means"].append(two_means_share(y))
    observed = {"ward": ward_share(u), "2-means": two_means_share(u)}
    return {k: (observed[k] - float(np.mean(v))) / float(np.std(v, ddof=1)) for k, v in null.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layer", default="blocks.6", help="text, blocks.5 or blocks.6")
    ap.add_argument("--neurons", type=int, default=320, help="live neurons sampled (all when more)")
    ap.add_argument("--draws", type=int, default=60)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    folder = real_data.build_text() if args.layer == "text" else real_data.build_images()
    acts = np.load(folder / ("acts.npy" if args.layer == "text" else f"{args.layer}.npy")).astype(np.float64)
    sd = acts.std(axis=0)
    sd[sd == 0] = 1.0
    _, scores = top_examples(acts, TOP, neurons=np.arange(acts.shape[1]))
    live = np.flatnonzero(live_mask(scores))
    rng = np.random.default_rng(args.seed)
    neurons = np.sort(rng.choice(live, size=min(args.neurons, len(live)), replace=False))
    start = time.perf_counter()
    z = {"ward": np.zeros((len(neurons), 2)), "2-means": np.zeros((len(neurons), 2))}
    with threadpool_limits(1):
        for i, j in enumerate(neurons):
            base = np.eye(acts.shape[1])[j] / sd[j]
            noise = rng.standard_normal(acts.shape[1]) / sd
            moved = base + PERTURBATION * np.linalg.norm(base * sd) * noise / np.linalg.norm(noise * sd)
            for col, d in enumerate((base, moved)):
                for name, value in z_scores(acts[top_k_desc(acts @ d, TOP)], draws=args.draws, seed=int(j)).items():
                    z[name][i, col] = value
    print(f"{args.layer}: {len(neurons)} live neurons, {args.draws} null draws each (common to both statistics and both "
          f"directions), {time.perf_counter() - start:.0f} s")
    for name, zz in z.items():
        split = zz > LEVEL
        print(f"  {name:<8} at 0.01: split {split[:, 0].mean():.0%} / {split[:, 1].mean():.0%} (base / perturbed), decision "
              f"same {np.mean(split[:, 0] == split[:, 1]):.0%}; median |z base - z perturbed| "
              f"{np.median(np.abs(zz[:, 0] - zz[:, 1])):.2f}, sd of z over neurons {zz[:, 0].std():.2f}")
    rate = float(np.mean(z["ward"][:, 0] > LEVEL))
    cut = {"ward": LEVEL, "2-means": float(np.quantile(z["2-means"][:, 0], 1 - rate)) if rate > 0 else np.inf}
    same = {k: np.mean((zz[:, 0] > cut[k]) == (zz[:, 1] > cut[k])) for k, zz in z.items()}
    rho = {k: spearmanr(zz[:, 0], zz[:, 1])[0] for k, zz in z.items()}
    print(f"  at ward's split rate ({rate:.0%}; 2-means z > {cut['2-means']:.2f}): decision same ward {same['ward']:.0%}, "
          f"2-means {same['2-means']:.0%}; rank correlation of z base / perturbed: ward {rho['ward']:.2f}, "
          f"2-means {rho['2-means']:.2f}")


if __name__ == "__main__":
    main()
