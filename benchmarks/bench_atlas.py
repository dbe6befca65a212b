"""Benchmark: the layer atlas of a 2,048-neuron scan and of a 10,000-direction scan, written and opened in Chromium.

In one run:

1. makes a synthetic scan of ``--neurons`` neurons (default 2,048, the paper's Mixed_7b width) over a store of
   ``--examples`` digit images: each neuron's top 100 examples, a real ward tree of them, 1-6 concepts drawn from
   the authors' histogram (about 4,232 concepts for 2,048 neurons), concept vectors of which some point the same way
   across neurons, and maximally projecting examples;
2. times ``cv.shared_concepts`` and ``cv.write_atlas`` (the map as ``--map`` says, default ``auto``: UMAP up to 50,000
   concepts), and measures the atlas on disk;
3. opens the atlas from file:// in headless Chromium: time until the overview is interactive (the page marks
   itself ready), a sort and a search (in-page, ``ATLAS.timings.refresh``), a neuron page (script load and render,
   ``ATLAS.timings.neuron``), each the median of 5;
4. the same for ``--directions`` directions (default 10,000; 768 units, a language model's width; the same map
   method, and the shared concepts' baseline with 2 draws, which the size goal does not depend on).

5. shared concepts on ``--planted`` planted layers (``core.planted.planted_shared_layer``, seeds 0..): the adjusted
   Rand index of the groups against the planted sharing, and on 100 sets of random directions of the first layer
   (Gaussian with its activations' mean and covariance) how many gave any group.

The baseline of each goal is the issue's number (2 min, 300 MB, 1 GB, 2 s, 100 ms, 300 ms; ARI 0.9, 95 %).

Usage: python benchmarks/bench_atlas.py [--neurons 2048] [--directions 10000] [--examples 10000] [--planted 10] [--map auto|umap|pca]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.cluster.hierarchy import fcluster, linkage  # noqa: E402

import conceptvec as cv  # noqa: E402
from conceptvec.core.reference import PAPER_HISTOGRAM  # noqa: E402
from conceptvec.sources.digits import load_digits_images  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def synthetic_store(root: Path, n_examples: int, n_units: int, seed: int) -> cv.ActivationStore:
    """Digit images (repeated past 1,797) with random activations: the atlas reads their ids, labels and images."""
    _, digits = load_digits_images()
    rng = np.random.default_rng(seed)
    acts = np.abs(rng.normal(size=(n_examples, n_units))).astype(np.float32)
    k = np.arange(n_examples) % len(digits)
    return cv.ActivationStore.create(root / "store", acts, metadata={"model": {"name": "synthetic"}, "layer": "synthetic",
                                                                      "data": {"kind": "sklearn-digits"}},
                                     examples={"id": [f"d{i}" for i in range(n_examples)], "label": digits[k].tolist(),
                                               "label_name": [f"digit {d}" for d in digits[k]],
                                               "source": [f"sklearn-digits:{j}" for j in k]})


def synthetic_scan(store: cv.ActivationStore, m: int, *, kind: str, seed: int, top: int = 100) -> cv.ScanResult:
    """A scan of m neurons (or directions) with real ward trees and the authors' distribution of concepts per neuron."""
    rng = np.random.default_rng(seed)
    n, d = store.shape
    share = np.array([PAPER_HISTOGRAM[k] for k in range(1, 7)], float)
    counts = rng.choice(np.arange(1, 7), size=m, p=share / share.sum())
    tops, scores, links, labels, vectors = [], [], [], [], []
    shared_dirs = np.abs(rng.normal(size=(max(1, m // 20), d)))  # one concept in twenty is one of these, seen by several neurons
    for i in range(m):
        k = int(counts[i])
        centres = rng.normal(scale=4.0, size=(k, 4))
        x = centres[rng.integers(0, k, size=top)] + rng.normal(size=(top, 4))
        z = linkage(x, "ward")
        lab = fcluster(z, k, "maxclust") - 1
        k = int(lab.max() + 1)
        counts[i] = k
        tops.append(rng.choice(n, size=top, replace=False))
        scores.append(np.sort(rng.uniform(1, 5, size=top))[::-1])
        links.append(z)
        labels.append(lab)
        v = np.abs(rng.normal(size=(k, d)))
        pick = rng.random(k) < 0.05
        v[pick] = shared_dirs[rng.integers(0, len(shared_dirs), size=int(pick.sum()))] + 0.05 * rng.normal(size=(int(pick.sum()), d))
        vectors.append(v / np.linalg.norm(v, axis=1, keepdims=True))
    cv_all = np.vstack(vectors).astype(np.float32)
    total = len(cv_all)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    labels = np.array(labels)
    return cv.ScanResult(
        neurons=np.arange(m), top_indices=np.array(tops), top_scores=np.array(scores), linkage=np.array(links),
        n_agglomerative=counts.copy(), kmeans_labels=labels.copy(), centroid_sq_distances=rng.uniform(0, 1, size=(m, top)),
        labels=labels, concept_vectors=cv_all, concept_offsets=offsets, kmeans_cluster_ids=np.concatenate([np.arange(c) for c in counts]),
        params=cv.Params(distance_threshold="auto", outlier_threshold="auto"), kind=kind,
        projecting={"indices": rng.integers(0, n, size=(total, top)), "projections": np.sort(rng.uniform(0, 5, size=(total, top)))[:, ::-1],
                    "cosine": rng.uniform(0, 1, size=(total, top))},
        provenance={"activations": {"store": str(store.path)}},
    )


def disk_mb(path: Path) -> float:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()[0]) / 1e6


def browser_timings(index: Path, n_rows: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    url = index.resolve().as_uri()
    out: dict[str, list[float]] = {"interactive": [], "sort": [], "search": [], "neuron": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        errors: list[str] = []
        for r in range(5):
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']")
            # from the start of navigation until the overview is drawn and its handlers set
            out["interactive"].append(page.evaluate("ATLAS.readyAt"))
            page.click(".thead div[data-col='concepts']")
            out["sort"].append(page.evaluate("ATLAS.timings.refresh"))
            page.fill("#search", "digit 3")
            out["search"].append(page.evaluate("ATLAS.timings.refresh"))
            page.goto(url + f"#n/{(r * 397) % n_rows}")
            page.wait_for_selector("#concepts")
            out["neuron"].append(page.evaluate("ATLAS.timings.neuron"))
            page.close()
        browser.close()
    if errors:
        raise RuntimeError(f"errors in the page: {errors}")
    return {k: statistics.median(v) for k, v in out.items()}


def case(root: Path, m: int, *, n_units: int, n_examples: int, kind: str, map_method: str, null_draws: int, seed: int) -> None:
    store = synthetic_store(root, n_examples, n_units, seed)
    t = time.perf_counter()
    scan = synthetic_scan(store, m, kind=kind, seed=seed)
    made = time.perf_counter() - t
    t = time.perf_counter()
    shared = cv.shared_concepts(scan, null_draws=null_draws, seed=seed, progress=False)
    t_shared = time.perf_counter() - t
    t = time.perf_counter()
    index = cv.write_atlas(scan, out=root / "atlas", shared=shared, map_method=map_method, progress=False, seed=seed)
    t_atlas = time.perf_counter() - t
    size = disk_mb(root / "atlas")
    print(f"{m} {kind} x {n_units} units, {len(scan.concept_vectors)} concepts, {n_examples} examples "
          f"(synthetic scan made in {made:.1f} s)")
    print(f"  shared concepts ({null_draws} baseline draws): {t_shared:.1f} s, {len(shared)} groups at cosine > {shared.level:.3f}")
    method = json.loads((root / "atlas" / "atlas.json").read_text())["map"]
    print(f"  atlas written in {t_atlas:.1f} s (map {map_method}: {method}); with the shared concepts {t_shared + t_atlas:.1f} s; "
          f"{size:.0f} MB on disk ({len(list((root / 'atlas' / 'sprites').glob('*.jpg')))} sprite sheets)")
    if Path(CHROMIUM).exists():
        b = browser_timings(index, m)
        print(f"  Chromium (median of 5): interactive {b['interactive']:.0f} ms after navigation; sort {b['sort']:.1f} ms; "
              f"search {b['search']:.1f} ms; neuron page {b['neuron']:.0f} ms")


def planted_check(n_layers: int) -> None:
    from sklearn.metrics import adjusted_rand_score

    from conceptvec.core.planted import planted_shared_layer
    from conceptvec.core.shared import shared_groups

    params = cv.Params(distance_threshold="auto", outlier_threshold="auto")
    scores = []
    for seed in range(n_layers):
        layer = planted_shared_layer(96, seed=seed)
        scan = cv.scan_layer(layer.acts, params=params, neurons=list(range(24)), workers=1, progress=False)
        owner = np.repeat(scan.neurons, scan.n_concepts)
        found = shared_groups(scan.concept_vectors, owner, null_draws=0, seed=seed)
        truth = []
        for i in range(len(scan.neurons)):
            for j in range(int(scan.n_concepts[i])):
                f = layer.facet[scan.top_indices[i][scan.labels[i] == j]]
                g = int(np.bincount(f[f >= 0]).argmax())
                truth.append(g if g in layer.shared else -1 - len(truth))
        predicted = np.where(found.group >= 0, found.group, -1 - np.arange(len(owner)))
        scores.append(adjusted_rand_score(truth, predicted))
    layer = planted_shared_layer(96, seed=0)
    acts = layer.acts.astype(np.float64)
    mean, factor = acts.mean(axis=0), np.linalg.cholesky(np.cov(acts.T) + 1e-9 * np.eye(acts.shape[1]))
    owner = np.repeat(np.arange(24), 3)
    rng = np.random.default_rng(1)
    runs = 100
    hits = sum(shared_groups(mean + rng.normal(size=(len(owner), len(mean))) @ factor.T, owner, null_draws=0, seed=r).n_groups > 0
               for r in range(runs))
    print(f"shared concepts on {n_layers} planted layers (24 neurons, 6 facets shared by 2-3 neurons): adjusted Rand index "
          f"min {min(scores):.3f}, median {statistics.median(scores):.3f} (goal >= 0.9); random directions of the layer "
          f"gave a group in {hits} of {runs} runs (goal <= 5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neurons", type=int, default=2048)
    parser.add_argument("--directions", type=int, default=10_000)
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--planted", type=int, default=10)
    parser.add_argument("--map", default="auto", choices=["auto", "umap", "pca"], help="the atlas map of both cases")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
          f"conceptvec {cv.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        case(Path(tmp) / "neurons", args.neurons, n_units=2048, n_examples=args.examples, kind="neurons", map_method=args.map,
             null_draws=10, seed=args.seed)
    if args.directions:
        with tempfile.TemporaryDirectory() as tmp:
            case(Path(tmp) / "directions", args.directions, n_units=768, n_examples=args.examples, kind="file:random",
                 map_method=args.map, null_draws=2, seed=args.seed)
    if args.planted:
        planted_check(args.planted)


if __name__ == "__main__":
    main()
