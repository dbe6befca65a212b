"""Ray's overhead: the same extraction and scan locally and on a local Ray cluster of several workers, in one run.

1. Extraction: ``cv.extract`` of a torchvision model's layer over synthetic JPEGs (ImageNet-like sizes,
   written first), locally (this process runs the model with ``workers - 1`` DataLoader processes
   decoding) and with ``engine="ray"`` (``workers`` actors, each loading the model and decoding its own
   images, one torch thread each). The two stores are compared byte for byte.
2. Scan: ``cv.scan_layer`` of a store of planted activations, locally (``LocalEngine``, ``workers``
   processes) and with ``engine="ray"`` (Ray tasks); the results are compared bit for bit.

The Ray cluster (``ray.init(num_cpus=workers)``) is started once, before both, and its start-up is
printed apart: a cluster is started once and serves many runs. Each Ray timing includes what a run
pays on a running cluster (actors loading the model, tasks scheduled, rows gathered).

A run has a fixed cost (Ray: actors start and load the model; local: DataLoader processes start),
measured as the same run on 4 images, and a rate once running. Then a projection, stated as such:
the time at 8 and 64 workers, for the paper's 128,117 images and a 2,048-neuron layer, is
``fixed + work / (W x per-worker rate)``, which assumes every worker as fast as one here and no
other limit (storage, network, the driver's gathering). Nothing else printed is estimated.

Usage: python benchmarks/bench_ray.py [--workers 2] [--images 480] [--model torchvision:resnet18 --layer layer4]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import torch

import conceptvec as cv
from conceptvec.scan.engine import LocalEngine
from conceptvec.scan.ray_engine import RayEngine

sys.path.insert(0, str(Path(__file__).parent))
from bench_extract import write_jpegs  # noqa: E402 - the same synthetic JPEGs as the extraction benchmark
from bench_scan import planted_activations  # noqa: E402

PAPER_IMAGES = 128_117


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    out = function(*args, **kwargs)
    return out, time.perf_counter() - start


def projection(unit: str, items: int, fixed: float, rate_per_worker: float) -> None:
    """Time of ``items`` at 8 and 64 workers from a run's fixed cost and the measured rate of one worker."""
    for w in (8, 64):
        print(f"  PROJECTION (not measured), {w} workers: {items:,} {unit} in {fixed + items / (w * rate_per_worker):.3g} s "
              f"(fixed {fixed:.2g} s + {items:,} at {w} x {rate_per_worker:.1f} {unit}/s), assuming each worker as fast as one here")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=480)
    parser.add_argument("--model", default="torchvision:resnet18")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--scan-examples", type=int, default=20_000)
    parser.add_argument("--scan-units", type=int, default=256)
    args = parser.parse_args()
    w = args.workers
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads here, 1 in each Ray actor), "
          f"ray {ray.__version__}, conceptvec {cv.__version__}; load average {os.getloadavg()[0]:.2f}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray-"))
    try:
        root, t = timed(write_jpegs, tmp / "images", args.images)
        print(f"wrote {args.images} JPEGs in {t:.1f} s")
        _, t_start = timed(ray.init, num_cpus=w, include_dashboard=False, log_to_driver=False)
        print(f"Ray cluster of {w} CPUs started in {t_start:.1f} s (once; not in the timings below)")

        what = f"{args.model} {args.layer}, {args.images} images, batch {args.batch_size}"
        options = dict(layer=args.layer, weights="none", batch_size=args.batch_size, device="cpu", progress=False)
        tiny = write_jpegs(tmp / "tiny-images", 4, seed=1)
        cv.extract(args.model, data=tiny, out=tmp / "warm", **options)  # this process's first-call set-up, outside the timings
        # A run's fixed cost, the same run on 4 images: local (DataLoader start) and Ray (actors start, load the model).
        _, f_local = timed(cv.extract, args.model, data=tiny, out=tmp / "tiny-local", workers=w, **options)
        _, f_ray = timed(cv.extract, args.model, data=tiny, out=tmp / "tiny-ray", workers=w, engine="ray", **options)
        local, t_local = timed(cv.extract, args.model, data=root, out=tmp / "local", workers=w, **options)
        print(f"extract local ({w} workers: this process + {w - 1} DataLoader): {args.images / t_local:.2f} images/s "
              f"({t_local:.1f} s; the same on 4 images: {f_local:.1f} s)")
        on_ray, t_ray = timed(cv.extract, args.model, data=root, out=tmp / "ray", workers=w, engine="ray", **options)
        print(f"extract on Ray ({w} actors): {args.images / t_ray:.2f} images/s ({t_ray:.1f} s; the same on 4 images: {f_ray:.1f} s)")
        same = all((local.path / f).read_bytes() == (on_ray.path / f).read_bytes() for f in ("activations.npy", "examples.parquet"))
        steady_local, steady_ray = args.images / max(t_local - f_local, 1e-9), args.images / max(t_ray - f_ray, 1e-9)
        print(f"ratio Ray / local: {t_ray / t_local:.2f}x in total (goal <= 1.3x), {steady_local / steady_ray:.2f}x once running "
              f"({steady_ray:.1f} against {steady_local:.1f} images/s, the 4-image runs subtracted) on {what}; "
              f"stores byte-identical: {same}")
        projection("images", PAPER_IMAGES, f_ray, steady_ray / w)

        acts, _ = planted_activations(n_examples=args.scan_examples, n_units=args.scan_units, n_classes=100)
        store = cv.ActivationStore.create(tmp / "scan-store", acts)
        params = cv.Params()
        scan_what = f"{args.scan_units} neurons of a {args.scan_examples:,} x {args.scan_units} store, Params() defaults"
        for warm in (LocalEngine(workers=w), RayEngine(workers=w)):  # worker processes started and their imports done
            cv.scan_layer(store, params=params, neurons=list(range(4 * w)), engine=warm, projecting=False, progress=False)
        base, t_scan_local = timed(cv.scan_layer, store, params=params, engine=LocalEngine(workers=w), projecting=False, progress=False)
        print(f"scan local ({w} processes): {args.scan_units / t_scan_local:.1f} neurons/s ({t_scan_local:.1f} s)")
        mine, t_scan_ray = timed(cv.scan_layer, store, params=params, engine=RayEngine(workers=w), projecting=False, progress=False)
        print(f"scan on Ray ({w} workers): {args.scan_units / t_scan_ray:.1f} neurons/s ({t_scan_ray:.1f} s)")
        equal = all(np.array_equal(getattr(base, k), getattr(mine, k)) for k in ("top_indices", "linkage", "labels", "concept_vectors"))
        print(f"ratio Ray / local: {t_scan_ray / t_scan_local:.2f}x (goal <= 1.3x) on {scan_what}; results bit for bit equal: {equal}")
        # The top examples (one pass over A in this process) are the fixed cost, the same for both engines.
        from conceptvec.core.streaming import top_examples

        _, t_top = timed(top_examples, store.activations, params.top)
        projection("neurons", 2048, t_top, args.scan_units / max(t_scan_ray - t_top, 1e-9) / w)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
