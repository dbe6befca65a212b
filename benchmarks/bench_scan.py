"""Benchmark: the whole-layer scan against the authors' per-neuron procedure, at the paper's scale.

Generates (does not store) 128,000 x 2,048 float32 pooled activations with planted polysemantic
neurons: 1,000 classes of 128 examples; neuron j fires (value 3) for m_j of the classes, m_j in
1-4, so its top 100 examples hold m_j planted concepts. Then, in one run:

1. the authors' procedure as they wrote it in ``scripts/neuron_method.py`` (lomahony/sw-interpretability),
   per neuron: argsort of the full column, scikit-learn AgglomerativeClustering(distance_threshold=15,
   ward) and KMeans(C, random_state=0, n_init=5, max_iter=1000), outlier and small-cluster removal in
   Python loops, concept vectors, then every example projected on every concept vector in a Python
   loop (dot product and cosine) and argsorted for the maximally projecting examples. Figures, UMAP and
   file output are left out (they would only add to the authors' time). Run on a sample of neurons.
2. ``cv.scan_layer`` on the same neurons, and on the whole layer (all 2,048), timed separately from
   the maximally projecting examples of all the layer's concepts.
3. agreement: identical concept counts and matched concept vectors with cosine >= 0.9999, neuron by
   neuron; and the recovered counts against the planted ones.

4. a small layer (30,000 x 160, ``--small-only`` runs just this): the authors' procedure on every
   neuron against ``cv.scan_layer`` with its defaults (as ``conceptvec scan`` runs it), maximally
   projecting examples included on both sides; a scan this small runs in the calling process.

Usage: python benchmarks/bench_scan.py [--sample 8] [--workers 2] [--no-projecting] [--small-only]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import conceptvec as cv
from conceptvec import authors_procedure
from conceptvec.scan.engine import default_workers
from conceptvec.scan.layer import projecting_and_cosine

N_EXAMPLES, N_UNITS, N_CLASSES = 128_000, 2048, 1000


def planted_activations(seed: int = 0, n_examples: int = N_EXAMPLES, n_units: int = N_UNITS,
                        n_classes: int = N_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """(activations float32 (n_examples, n_units), planted concepts per neuron (n_units,))."""
    N_EXAMPLES, N_UNITS, N_CLASSES = n_examples, n_units, n_classes  # noqa: N806 - the module's names, resized
    rng = np.random.default_rng(seed)
    m = rng.choice([1, 2, 3, 4], size=N_UNITS, p=[0.3, 0.35, 0.25, 0.1])
    prototypes = np.zeros((N_CLASSES, N_UNITS), dtype=np.float32)
    for j in range(N_UNITS):
        prototypes[rng.choice(N_CLASSES, m[j], replace=False), j] = 3.0
    classes = rng.permutation(np.repeat(np.arange(N_CLASSES), N_EXAMPLES // N_CLASSES))
    acts = np.empty((N_EXAMPLES, N_UNITS), dtype=np.float32)
    for start in range(0, N_EXAMPLES, 8192):
        c = classes[start : start + 8192]
        block = rng.standard_normal((len(c), N_UNITS), dtype=np.float32)
        block *= 0.05
        block += rng.uniform(0.8, 1.2, size=(len(c), 1)).astype(np.float32) * prototypes[c]
        np.maximum(block, 0, out=block)  # ReLU'd, like pooled Inception activations
        acts[start : start + len(c)] = block
    return acts, m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=int, default=8, help="neurons run with the authors' procedure")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--no-projecting", action="store_true", help="skip the maximally projecting examples of all concepts")
    parser.add_argument("--small-only", action="store_true", help="only the small layer (30,000 x 160)")
    args = parser.parse_args()
    if args.small_only:
        print(f"machine: {os.cpu_count()} CPUs; conceptvec {cv.__version__}; "
              f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        small_layer()
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return

    print(f"machine: {os.cpu_count()} CPUs, {args.workers} workers; conceptvec {cv.__version__}; "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    t = time.perf_counter()
    acts, planted = planted_activations()
    print(f"generated {acts.shape[0]:,} x {acts.shape[1]:,} float32 activations ({acts.nbytes / 2**30:.2f} GiB) "
          f"in {time.perf_counter() - t:.1f} s; planted concepts per neuron: "
          f"{ {int(k): int(v) for k, v in zip(*np.unique(planted, return_counts=True))} }")
    params = cv.Params()  # the paper's: top 100, distance and outlier thresholds 15
    sample = np.random.default_rng(1).choice(N_UNITS, args.sample, replace=False)
    sample.sort()

    # 1. The authors' procedure on the sample.
    t = time.perf_counter()
    theirs = {int(j): authors_procedure(acts, int(j), project_all=True) for j in sample}
    t_theirs = time.perf_counter() - t
    print(f"authors' procedure: {len(sample)} neurons in {t_theirs:.1f} s = {t_theirs / len(sample):.2f} s per neuron")

    # 2a. Ours on the same neurons (with the maximally projecting examples, as theirs has them).
    t = time.perf_counter()
    ours_sample = cv.scan_layer(acts, params=params, neurons=sample, workers=args.workers, progress=False)
    t_sample = time.perf_counter() - t
    print(f"scan_layer, same {len(sample)} neurons (incl. maximally projecting examples, worker start-up): {t_sample:.2f} s")

    # 2b. Ours on the whole layer: steps 1-4, then the maximally projecting examples of all concepts.
    t = time.perf_counter()
    layer = cv.scan_layer(acts, params=params, workers=args.workers, projecting=False, progress=False)
    t_layer = time.perf_counter() - t
    per_neuron = t_layer / N_UNITS
    print(f"scan_layer, whole layer ({N_UNITS} neurons, steps 1-4): {t_layer:.2f} s = {1000 * per_neuron:.1f} ms per neuron")
    if not args.no_projecting:
        t = time.perf_counter()
        idx, _, _ = projecting_and_cosine(acts, layer.concept_vectors, top=params.top)
        t_proj = time.perf_counter() - t
        print(f"maximally projecting examples of all {len(layer.concept_vectors)} concepts (one streamed A @ V.T, float64): {t_proj:.2f} s")

    print(f"speed-up per neuron, authors' / whole-layer scan: {t_theirs / len(sample) / per_neuron:.0f}x")

    # 2c. The same whole layer with distance_threshold="auto" (issue 14: within 3x of the fixed threshold).
    t = time.perf_counter()
    auto = cv.scan_layer(acts, params=cv.Params(distance_threshold="auto"), workers=args.workers, projecting=False,
                         progress=False)
    t_auto = time.perf_counter() - t
    print(f"scan_layer, whole layer with distance_threshold='auto' (steps 1-4): {t_auto:.2f} s = "
          f"{1000 * t_auto / N_UNITS:.1f} ms per neuron; auto / fixed: {t_auto / t_layer:.2f}x (steps 1-4)"
          + ("" if args.no_projecting else f", {(t_auto + t_proj) / (t_layer + t_proj):.2f}x with the maximally projecting "
             f"examples that `conceptvec scan` adds"))
    print(f"auto: concepts per neuron equal to the planted ones for {int(np.sum(auto.n_concepts == planted))}/{N_UNITS} neurons "
          f"(fixed 15: {int(np.sum(layer.n_concepts == planted))})")

    # 3. Agreement on the sample.
    same_counts, min_cos, same_top, same_proj = 0, 1.0, 0, 0
    for i, j in enumerate(sample):
        a, ours = theirs[int(j)], layer[int(j)]
        if a["C"] == ours.n_agglomerative and len(a["concept_vectors"]) == ours.n_concepts:
            same_counts += 1
            if ours.n_concepts:
                min_cos = min(min_cos, float(np.min(np.sum(a["concept_vectors"] * ours.concept_vectors, axis=1))))
        else:
            min_cos = float("nan")
        same_top += np.array_equal(a["top_ims"], ours.top_indices)
        s_i = ours_sample.position(int(j))
        mine = ours_sample.projecting["indices"][ours_sample.concept_offsets[s_i] : ours_sample.concept_offsets[s_i + 1]]
        same_proj += len(mine) == len(a["top_projs"]) and all(np.array_equal(x, y) for x, y in zip(a["top_projs"], mine))
    print(f"agreement on {len(sample)} neurons: identical C and concept counts {same_counts}/{len(sample)}; "
          f"same top-100 examples {same_top}/{len(sample)}; same maximally projecting examples {same_proj}/{len(sample)}; "
          f"min cosine of concept vectors {min_cos:.12f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"whole layer: concepts per neuron equal to the planted ones for {int(np.sum(layer.n_concepts == planted))}/{N_UNITS} neurons; "
          f"share with 2 or more concepts {layer.summary()['share_with_2_or_more_concepts']:.3f} (planted {np.mean(planted >= 2):.3f})")
    small_layer()


def small_layer() -> None:
    """The authors' procedure and scan_layer's defaults on every neuron of a 30,000 x 160 layer."""
    acts, _ = planted_activations(seed=2, n_examples=30_000, n_units=160, n_classes=250)
    params = cv.Params()
    t = time.perf_counter()
    theirs = [authors_procedure(acts, j, project_all=True) for j in range(acts.shape[1])]
    t_theirs = time.perf_counter() - t
    t = time.perf_counter()
    ours = cv.scan_layer(acts, params=params, progress=False)  # workers=None: as `conceptvec scan` runs it
    t_ours = time.perf_counter() - t
    same = sum(a["C"] == ours.n_agglomerative[j] and len(a["concept_vectors"]) == ours.n_concepts[j]
               for j, a in enumerate(theirs))
    print(f"small layer {acts.shape[0]:,} x {acts.shape[1]}: authors' procedure {t_theirs:.2f} s, scan_layer (defaults, "
          f"incl. maximally projecting) {t_ours:.2f} s, ratio {t_theirs / t_ours:.1f}x; identical C and concept counts "
          f"{same}/{acts.shape[1]}")


if __name__ == "__main__":
    main()
