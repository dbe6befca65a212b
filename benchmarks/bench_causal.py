"""Benchmark: cv.causal_effects for all concepts of one neuron of the demo's digits CNN, over 1797 examples.

In one run, on one torch thread:

1. makes the demo run (shipped weights, all 1797 digits, the demo's neuron) in a temporary folder;
2. times ``cv.causal_effects`` (every concept, the neuron and random directions as branches of one batch,
   the layers below ``block3`` run once per batch): the random group is all 1797 examples;
3. times the same with ``share=False`` (branches batched, but the input repeated: the layers below run
   once per branch);
4. as the baseline, times each intervention as its own full forward (``cv.intervene`` around
   ``model(x)``, one unedited forward per group), checks the changes of the target logit agree, and
   prints the ratios.

Usage: python benchmarks/bench_causal.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import conceptvec as cv  # noqa: E402
from conceptvec.demo.demo import run_demo  # noqa: E402
from conceptvec.sources.digits import load_digits_images  # noqa: E402
from conceptvec.models.digits import merged_class, preprocess_digits  # noqa: E402
from conceptvec.models.load import load_model  # noqa: E402


def separate_forwards(loaded, eff, cs, x, targets, batch_size):
    """Each intervention as its own full forward: the mean change of the target logit per (intervention, group)."""
    from conceptvec.causal.effects import random_directions

    module = loaded.module
    n_units = cs.n_units
    concepts = cs.concept_vectors / np.linalg.norm(cs.concept_vectors, axis=1, keepdims=True)
    neuron = np.eye(n_units)[cs.neuron]
    directions = {f"concept {j}": v for j, v in enumerate(concepts)}
    directions["neuron"] = neuron
    for r, v in enumerate(random_directions(eff.params["n_random"], n_units, eff.params["seed"])):
        directions[f"random {r}"] = v
    rng = np.random.default_rng(eff.params["seed"])
    groups = {f"concept {j}": cs.members(j) for j in range(cs.n_concepts)}
    groups["random"] = np.sort(rng.choice(len(x), size=eff.params["random_examples"], replace=False))
    out = {}
    with torch.inference_mode():
        for g, idx in groups.items():
            t = torch.as_tensor(targets[idx])
            base = torch.cat([module(x[idx[s:s + batch_size]]) for s in range(0, len(idx), batch_size)])
            for name, v in directions.items():
                with cv.intervene(module, "block3", v):
                    edited = torch.cat([module(x[idx[s:s + batch_size]]) for s in range(0, len(idx), batch_size)])
                out[(name, g)] = float((edited - base).gather(1, t[:, None]).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        demo = run_demo(tmp, progress=False, report=False)
        cs = demo.concept_set
        loaded = load_model("digits", demo.store.metadata["model"]["weights"])
    images, digits = load_digits_images()
    x = preprocess_digits(images)
    targets = merged_class(digits)
    kw = dict(data=x, random_examples=len(x), targets=targets, alphas=(), batch_size=128)
    print(f"neuron {cs.neuron}: {cs.n_concepts} concepts; groups: {[len(cs.members(j)) for j in range(cs.n_concepts)]} members "
          f"and {len(x)} random examples; {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    cv.causal_effects(loaded, "block3", cs, **kw)  # warm-up
    timings = {}
    for label, extra in (("shared", {"share": True}), ("repeated input", {"share": False})):
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            eff = cv.causal_effects(loaded, "block3", cs, **kw, **extra)
            best = min(best, time.perf_counter() - t)
        timings[label] = best
    n_interventions = len(eff.concepts) + 1 + len(eff.randoms)
    best = float("inf")
    for _ in range(args.repeat):
        t = time.perf_counter()
        baseline = separate_forwards(loaded, eff, cs, x, targets, 128)
        best = min(best, time.perf_counter() - t)
    timings["one full forward per intervention"] = best
    diff = max(abs(eff.value(i, g) - v) for (i, g), v in baseline.items())
    print(f"{n_interventions} interventions x {len(eff.groups)} groups; best of {args.repeat}:")
    for label, s in timings.items():
        print(f"  {label:36s} {s:7.3f} s")
    print(f"ratio: one forward per intervention / shared = {timings['one full forward per intervention'] / timings['shared']:.2f}x; "
          f"repeated input / shared = {timings['repeated input'] / timings['shared']:.2f}x")
    print(f"largest difference of the mean target-logit change against the baseline: {diff:.2e}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
