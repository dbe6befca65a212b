"""Benchmark: the power of auto's one-concept answers (issue 23, item 5): what it costs per neuron, and whether it is
true (the separation it reports against auto's own split rate on planted two-concept samples).

``--cost`` (default): a planted layer (``core.planted.planted_layer``, ``--width`` units, ``--neurons`` neurons, top
100); for each of its one-facet neurons, the wall time of what ``conceptvec scan --power`` runs per neuron (its
``one_concept_or_two_closer_than`` and ``recommended_top`` at their defaults) and the two numbers.

``--accuracy``: planted neurons of several spectra (``isotropic``, ``long`` (one axis 10x the rest), ``test`` (the
neuron of tests/core/test_power.py: one axis 3x), ``decay`` (a power-law spectrum, 256 wide)). For each, at each top
of ``--tops``: auto's split rate (``--reps`` seeds, auto itself on two concepts: the neuron's unit rows shifted
+-delta/2 RMS along its leading axis) at every separation of the power grid, the separation auto splits in >= 80 %
(the truth), and the separation the simulation reports from one sample of 100 top examples; then the smallest top at
which auto splits two concepts 1.25 apart in >= 80 %, against ``recommended_top``.

``--real LAYER.npy``: on a real layer (no population known), for the first ``--neurons`` live units: X at top 50 as
simulated from the unit's top 100, and auto's own split rate at X and X / 1.3 on random 50-subsets of the top 100
with two concepts planted in their unit rows along the 100's leading axis.

Usage: python benchmarks/bench_power.py [--cost] [--width 256] [--neurons 40]
       python benchmarks/bench_power.py --accuracy [--kinds test,isotropic,long,decay] [--tops 50,100,200,300] [--reps 20]
         [--separation 1.25] [--sim-only]
       python benchmarks/bench_power.py --real /work/realdata/images/blocks.6.npy [--neurons 10] [--reps 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.cluster.hierarchy import linkage

from conceptvec.core.auto import auto_clusters, unit_rows
from conceptvec.core.planted import planted_layer
from conceptvec.core.power import GRID, TOPS, detectable_separation, detection_power, recommended_top


def cost(width: int, neurons: int) -> None:
    layer = planted_layer(width, n_neurons=neurons, seed=0)
    single = np.flatnonzero(layer.n_facets == 1)
    print(f"planted layer {layer.acts.shape[0]} x {width}, {len(single)} one-facet neurons of {neurons}, top 100")
    try:  # what `scan --power` runs per neuron: answer_power since issue 23's power fix, the two calls before it
        from conceptvec.core.power import answer_power
    except ImportError:
        answer_power = None
    times, found = [], []
    for j in single:
        x = layer.acts[np.argsort(-layer.acts[:, j], kind="stable")[:100]]
        t = time.perf_counter()
        if answer_power is not None:
            row = answer_power(x, significance=0.01)
        else:
            row = {"one_concept_or_two_closer_than": detectable_separation(x, significance=0.01),
                   "recommended_top": recommended_top(x, significance=0.01)}
        times.append(time.perf_counter() - t)
        found.append((row["one_concept_or_two_closer_than"], row.get("recommended_top"), row.get("recommended_for")))
    print(f"per neuron: median {np.median(times):.2f} s, mean {np.mean(times):.2f} s, max {np.max(times):.2f} s")
    print("(X, recommended_top, recommended_for) per neuron:", found)


class Neuron:
    """A planted one-concept neuron: a positive direction plus Gaussian noise of per-axis sd ``sds`` in a random basis
    orthogonal to it; two concepts are its unit rows shifted +-delta/2 (RMS units) along its leading noise axis."""

    def __init__(self, sds: np.ndarray):
        d = len(sds)
        self.base = np.abs(np.random.default_rng(0).normal(size=d))
        self.base /= np.linalg.norm(self.base)
        q = np.random.default_rng(1).normal(size=(d, d))
        q -= np.outer(self.base, self.base @ q)
        self.basis = np.linalg.qr(q)[0]
        self.sds = sds
        self.axis = self.basis[:, 0]
        self.rms = _rms(self.one(100, 0))

    def one(self, n: int, seed: int) -> np.ndarray:
        return self.base + (np.random.default_rng(seed).standard_normal((n, len(self.sds))) * self.sds) @ self.basis.T

    def two(self, n: int, seed: int, delta: float) -> np.ndarray:
        u = unit_rows(self.one(n, seed))
        u[: n // 2] += self.axis * delta * self.rms / 2
        u[n // 2 :] -= self.axis * delta * self.rms / 2
        return u


def _rms(x: np.ndarray) -> float:
    u = unit_rows(x)
    return float(np.sqrt(np.mean(np.sum((u - u.mean(axis=0)) ** 2, axis=1))))


def auto_rate(neuron: Neuron, n: int, delta: float, reps: int) -> float:
    """The share of ``reps`` two-concept samples that auto itself splits (its first test, as cv.disentangle runs it)."""
    hits = 0
    for s in range(reps):
        u = unit_rows(neuron.two(n, 1000 + s, delta))
        hits += auto_clusters(u, linkage(u, method="ward"), significance=0.01, min_cluster_size=5, seed=s)[0] >= 2
    return hits / reps


def kinds() -> dict[str, np.ndarray]:
    test = np.full(64, 0.05)
    test[0] = np.hypot(0.15, 0.05)
    long = np.full(64, 0.03)
    long[0] = 0.3
    return {"test": test, "isotropic": np.full(64, 0.08), "long": long,
            "decay": 0.25 / np.sqrt(np.arange(1, 257))}


def accuracy(names: list[str], tops: list[int], reps: int, separation: float, sim_only: bool = False) -> None:
    for name in names:
        neuron = Neuron(kinds()[name])
        x = neuron.one(100, 0)
        t = time.perf_counter()
        found = {n: detectable_separation(neuron.one(n, 0), significance=0.01) for n in tops}
        rec = recommended_top(x, separation=separation, significance=0.01)
        print(f"{name} ({len(neuron.sds)} wide): simulated X at each top {found}, recommended top for {separation}: "
              f"{rec:.0f} ({time.perf_counter() - t:.0f} s)", flush=True)
        if sim_only:
            continue
        for n in tops:
            rates = {}
            for delta in GRID:
                rates[delta] = auto_rate(neuron, n, delta, reps)
                if rates[delta] >= 0.8 and len(rates) > 1 and list(rates.values())[-2] >= 0.8:
                    break
            truth = next((d for d, r in rates.items() if r >= 0.8), np.inf)
            print(f"  top {n}: auto's split rate {rates}; auto splits >= 80 % from {truth}, simulated X "
                  f"{found[n]} (ratio {found[n] / truth:.2f})", flush=True)
        rates = {n: auto_rate(neuron, n, separation, reps) for n in TOPS if n <= 750}
        truth = next((n for n, r in rates.items() if r >= 0.8), np.inf)
        print(f"  two concepts {separation} apart: auto's split rate by top {rates}; >= 80 % from top {truth}, "
              f"recommended {rec:.0f}", flush=True)


def real(path: str, neurons: int, reps: int, n: int = 50) -> None:
    """On a real layer, where no population is known: the top 100 examples of each of the first ``neurons`` live
    units stand for the neuron; X at top ``n`` is the simulation's (from the model of those 100), and auto's own rate
    is measured on random ``n``-subsets of them, their unit rows shifted +-delta/2 RMS (the 100's RMS) along the
    100's leading axis."""
    acts = np.load(path, mmap_mode="r")
    print(f"{path}: {acts.shape[0]} x {acts.shape[1]}; per unit: X at top {n} (simulated), auto's split rate at X and "
          f"X / 1.3 on {reps} subsets of its top 100")
    done = 0
    for j in range(acts.shape[1]):
        order = np.argsort(-np.asarray(acts[:, j]), kind="stable")[:100]
        x = np.asarray(acts[order], dtype=np.float64)
        if x[:, j].min() <= 0:  # not live at top 100
            continue
        u = unit_rows(x)
        centred = u - u.mean(axis=0)
        rms = float(np.sqrt(np.mean(np.sum(centred**2, axis=1))))
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        closer = next((d for d in GRID if detection_power(x, d, n=n, reps=10) >= 0.8), np.inf)
        if not np.isfinite(closer):
            continue
        rates = []
        for delta in (closer, closer / 1.3):
            hits = 0
            for s in range(reps):
                v = u[np.random.default_rng(s).permutation(100)[:n]].copy()
                v[: n // 2] += axis * delta * rms / 2
                v[n // 2 :] -= axis * delta * rms / 2
                v = unit_rows(v)
                hits += auto_clusters(v, linkage(v, method="ward"), significance=0.01, min_cluster_size=5, seed=s)[0] >= 2
            rates.append(hits / reps)
        print(f"  unit {j}: X {closer}; auto splits {rates[0]:.2f} at X, {rates[1]:.2f} at X / 1.3", flush=True)
        done += 1
        if done == neurons:
            break


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accuracy", action="store_true")
    ap.add_argument("--real", default="", help="a real layer's activations (.npy, examples x units): the check on real spectra")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--neurons", type=int, default=40)
    ap.add_argument("--kinds", default="test,isotropic,long,decay")
    ap.add_argument("--tops", default="50,100,200,300")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--separation", type=float, default=1.25, help="the separation whose recommended top is checked")
    ap.add_argument("--sim-only", action="store_true", help="the simulation's numbers only (auto's rates do not depend on it)")
    args = ap.parse_args()
    if args.real:
        real(args.real, args.neurons, args.reps)
    elif args.accuracy:
        accuracy(args.kinds.split(","), [int(t) for t in args.tops.split(",")], args.reps, args.separation, args.sim_only)
    else:
        cost(args.width, args.neurons)


if __name__ == "__main__":
    main()
