"""Benchmark: how many concepts each threshold rule finds where the answer is known.

1. Planted layers (``core.planted.planted_layer``) of widths 256 to 2048 at activation scales 0.2, 1
   and 5: 40 neurons each, with 1-4 facets (every fourth neuron one, whose top examples vary
   continuously in strength), noise of total norm 0.35 against facets of norm about 1.4. For the paper's fixed thresholds (15, 15), the demo's layer-quantile
   rule (97th / 90th percentiles, ``thresholds.layer_thresholds``, over the planted neurons) and
   ``distance_threshold="auto"``: the exact-count rate, the rate of one concept on single-facet
   neurons, the adjusted Rand index of kept members against the planted facets (multi-facet neurons),
   and whether every neuron's count is the same at every scale. A harder strength range (0.2-2, a 10x
   spread, where weak examples are mostly noise) and a noisier layer (noise norm 1.0, facets blurred into
   each other) are printed as stress lines.
2. The digits CNN of the demo (shipped weights): of the units whose top examples mix a merged pair of
   digits, the share whose pair the method splits (each digit the majority of a concept), against the
   share of the 10-class control network's live units split into 2 or more concepts (no unit there
   was pushed to mix two digits).

3. ``--alternatives``: the criteria studied before ``auto`` was chosen, each deciding C for ward's tree
   of the same planted neurons: the gap statistic with a PCA-aligned uniform reference (Tibshirani et
   al. 2001; 10 references, k <= 6, the smallest k with Gap(k) >= Gap(k+1) - s(k+1)), subsample
   stability (Ben-Hur et al. 2002; 10 pairs of 80 % subsamples per k, the k with the largest mean
   adjusted Rand index on their overlap, 1 when none reaches 0.9), both on unit-length examples; and
   auto's own test on the examples as they are (not scaled to unit length).

Usage: python benchmarks/bench_truth.py [--widths 256,512,1024,2048] [--neurons 40] [--alternatives]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

import conceptvec as cv
from conceptvec.core.planted import planted_layer
from conceptvec.core.sweep import threshold_sweep
from conceptvec.core.thresholds import layer_thresholds

SCALES = (0.2, 1.0, 5.0)
LAYER_NULL = cv.Params(distance_threshold="auto", null="layer")
EXTRA_RULES: dict[str, cv.Params] = {}  # --layer-null adds auto with the layer's null (core.layernull)


def rules_for(acts: np.ndarray, n_neurons: int) -> dict[str, cv.Params]:
    paper = cv.Params()
    # the layer rule over the planted neurons; a grid of one threshold keeps the sweep to the rule itself
    sweep = threshold_sweep(acts, params=paper, neurons=f"0-{n_neurons - 1}", thresholds=[15.0])
    rule = paper.replace(distance_threshold=sweep.rule["distance_threshold"], outlier_threshold=sweep.rule["outlier_threshold"])
    return {"paper 15/15": paper, "layer rule": rule, "auto": cv.Params(distance_threshold="auto"), **EXTRA_RULES}


def score(acts: np.ndarray, layer, params: cv.Params, n_neurons: int) -> dict[str, object]:
    counts, aris = [], []
    null = cv.layer_null(acts, params=params) if params.null == "layer" else None  # drawn once per layer
    for j in range(n_neurons):
        cs = cv.disentangle(acts, neuron=j, params=params, layer_null=null)
        counts.append(cs.n_concepts)
        if layer.n_facets[j] > 1:
            truth = layer.facet[cs.top_indices][cs.kept]
            aris.append(adjusted_rand_score(truth, cs.labels[cs.kept]) if cs.kept.any() else 0.0)
    counts = np.asarray(counts)
    single = layer.n_facets[:n_neurons] == 1
    return {"counts": counts, "exact": float(np.mean(counts == layer.n_facets[:n_neurons])),
            "single_one": float(np.mean(counts[single] == 1)), "ari": float(np.mean(aris))}


def planted_part(widths: list[int], n_neurons: int) -> None:
    print(f"planted layers: {n_neurons} neurons each (a quarter single-facet), strengths uniform 0.5-1.5 unless said")
    print(f"{'width':>6} {'rule':<16} " + " ".join(f"{'scale ' + format(s, 'g'):>26}" for s in SCALES) + "  same counts")
    print(f"{'':>6} {'':<12} " + " ".join(f"{'exact  one-if-1  ARI':>26}" for _ in SCALES))
    summary: dict[str, list] = {}
    cases = [(w, (0.5, 1.5), 0.35, "") for w in widths] + [(512, (0.2, 2.0), 0.35, "*"), (512, (0.5, 1.5), 1.0, "**")]
    for width, strength, noise, mark in cases:
        per_rule: dict[str, list] = {}
        for scale in SCALES:
            layer = planted_layer(width, n_neurons=n_neurons, strength=strength, noise=noise, scale=scale, seed=width)
            for name, params in rules_for(layer.acts, n_neurons).items():
                per_rule.setdefault(name, []).append(score(layer.acts, layer, params, n_neurons))
        label = f"{width}{mark}"
        for name, results in per_rule.items():
            same = all(np.array_equal(results[0]["counts"], r["counts"]) for r in results)
            cells = " ".join(f"{r['exact']:>10.1%} {r['single_one']:>7.1%} {r['ari']:>6.3f}" for r in results)
            print(f"{label:>6} {name:<12} {cells}  {'yes' if same else 'no'}")
            if not mark:
                summary.setdefault(name, []).append((min(r["exact"] for r in results), min(r["single_one"] for r in results),
                                                     min(r["ari"] for r in results), same))
    print("* stress: strengths uniform 0.2-2 (a 10x spread; the weakest examples are mostly noise)")
    print("** stress: noise of norm 1.0 instead of 0.35 (facets blur into each other)")
    for name, rows in summary.items():
        print(f"{name:<12} worst over widths and scales: exact {min(r[0] for r in rows):.1%}, one concept on single-facet "
              f"{min(r[1] for r in rows):.1%}, ARI {min(r[2] for r in rows):.3f}, same counts at every scale: "
              f"{'yes' if all(r[3] for r in rows) else 'no'}")


def digits_part() -> None:
    import torch

    from conceptvec.core.live import live_mask
    from conceptvec.core.streaming import top_examples
    from conceptvec.demo.demo import merged_pair_units
    from conceptvec.sources.digits import load_digits_images
    from conceptvec.models.digits import load_shipped_digits_cnn, preprocess_digits
    from conceptvec.models.hooks import capture_layer, forward_to_layer

    images, digits = load_digits_images()
    x = preprocess_digits(images)
    acts = {}
    for name, merged in (("merged", True), ("control", False)):
        model, _, _ = load_shipped_digits_cnn(merged=merged)
        with capture_layer(model.block3) as captured, torch.inference_mode():
            acts[name] = forward_to_layer(model, x, captured).numpy().astype(np.float64)
    print("\ndigits CNN (shipped weights, block3, 1797 examples x 64 units)")
    print(f"{'rule':<16} {'merged-pair units: pair split':>32} {'control live units split (>= 2)':>34} {'merged net live units split':>28}")
    for rule_name in ("paper 15/15", "layer rule", "auto", *EXTRA_RULES):
        row = []
        for name in ("merged", "control"):
            a = acts[name]
            if rule_name == "paper 15/15":
                params = cv.Params()
            elif rule_name == "layer rule":
                params, _ = layer_thresholds(a, params=cv.Params())
            else:
                params = EXTRA_RULES.get(rule_name, cv.Params(distance_threshold="auto"))
            _, scores = top_examples(a, params.top, neurons=np.arange(a.shape[1]))
            live = np.flatnonzero(live_mask(scores))
            null = cv.layer_null(a, params=params) if params.null == "layer" else None
            split = sum(cv.disentangle(a, neuron=int(u), params=params, layer_null=null).n_concepts >= 2 for u in live)
            if name == "merged":
                units = merged_pair_units(a, digits, params)
                row.append(f"{sum(r['split'] for r in units)} of {len(units)}")
                merged_split = f"{split} of {len(live)}"
            else:
                row.append(f"{split} of {len(live)}")
        print(f"{rule_name:<16} {row[0]:>32} {row[1]:>34} {merged_split:>28}")


def _within(x: np.ndarray, labels: np.ndarray) -> float:
    return float(sum(((x[labels == c] - x[labels == c].mean(0)) ** 2).sum() for c in np.unique(labels)))


def _ward_cut(x: np.ndarray, k: int) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster, linkage

    return fcluster(linkage(x, "ward"), k, "maxclust")


def gap_count(x: np.ndarray, *, k_max: int = 6, refs: int = 10, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    z = centred @ vt.T
    log_w = np.log([_within(x, _ward_cut(x, k)) for k in range(1, k_max + 1)])
    ref = np.array([[np.log(_within(r, _ward_cut(r, k))) for k in range(1, k_max + 1)]
                    for r in (rng.uniform(z.min(0), z.max(0), size=z.shape) for _ in range(refs))])
    gap, s = ref.mean(0) - log_w, ref.std(0) * np.sqrt(1 + 1 / refs)
    return next((k + 1 for k in range(k_max - 1) if gap[k] >= gap[k + 1] - s[k + 1]), k_max)


def subsample_stability_count(x: np.ndarray, *, k_max: int = 6, pairs: int = 10, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    n, best = len(x), (1, 0.0)
    for k in range(2, k_max + 1):
        scores = []
        for _ in range(pairs):
            a, b = (np.sort(rng.choice(n, int(0.8 * n), replace=False)) for _ in range(2))
            la, lb = dict(zip(a, _ward_cut(x[a], k))), dict(zip(b, _ward_cut(x[b], k)))
            both = np.intersect1d(a, b)
            scores.append(adjusted_rand_score([la[i] for i in both], [lb[i] for i in both]))
        if np.mean(scores) > best[1]:
            best = (k, float(np.mean(scores)))
    return best[0] if best[1] >= 0.9 else 1


def alternatives_part(n_neurons: int) -> None:
    from scipy.cluster.hierarchy import linkage

    from conceptvec.core.auto import auto_clusters, unit_rows

    def auto_raw(x: np.ndarray) -> int:
        return auto_clusters(x, linkage(x, "ward"), significance=0.01, min_cluster_size=5, seed=0)[0]

    def auto_unit(x: np.ndarray) -> int:
        u = unit_rows(x)
        return auto_clusters(u, linkage(u, "ward"), significance=0.01, min_cluster_size=5, seed=0)[0]

    criteria = {"gap (unit rows)": lambda x: gap_count(unit_rows(x)),
                "subsample stability (unit rows)": lambda x: subsample_stability_count(unit_rows(x)),
                "auto's test on raw rows": auto_raw, "auto": auto_unit}
    print(f"\ncriteria studied (C from ward's tree of each planted neuron's top 100; {n_neurons} neurons, scale 1)")
    print(f"{'layer':<34} {'criterion':<33} {'exact':>7} {'one-if-1':>9} {'ms/neuron':>10}")
    for width, strength, noise in ((256, (0.5, 1.5), 0.35), (1024, (0.5, 1.5), 0.35), (512, (0.2, 2.0), 0.35),
                                   (512, (0.5, 1.5), 1.0)):
        layer = planted_layer(width, n_neurons=n_neurons, strength=strength, noise=noise, seed=width)
        single = layer.n_facets == 1
        for name, count in criteria.items():
            start = time.perf_counter()
            got = np.array([count(layer.acts[layer.owner == j].astype(np.float64)) for j in range(n_neurons)])
            ms = 1000 * (time.perf_counter() - start) / n_neurons
            print(f"{f'{width} wide, strength {strength[0]:g}-{strength[1]:g}, noise {noise:g}':<34} {name:<33} {np.mean(got == layer.n_facets):>7.1%} "
                  f"{np.mean(got[single] == 1):>9.1%} {ms:>10.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", default="256,512,1024,2048")
    ap.add_argument("--neurons", type=int, default=40)
    ap.add_argument("--no-digits", action="store_true")
    ap.add_argument("--alternatives", action="store_true", help="also the criteria studied before auto was chosen")
    ap.add_argument("--layer-null", action="store_true", help="also auto with Params(null='layer')")
    args = ap.parse_args()
    if args.layer_null:
        EXTRA_RULES["auto, layer null"] = LAYER_NULL
    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, conceptvec {cv.__version__}; "
          f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    start = time.perf_counter()
    warnings.simplefilter("ignore")  # the paper's thresholds are off these layers' scale, which is the point
    with threadpool_limits(1):
        planted_part([int(w) for w in args.widths.split(",")], args.neurons)
        if not args.no_digits:
            digits_part()
        if args.alternatives:
            alternatives_part(args.neurons)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
