"""Extraction throughput: ``cv.extract`` against a plain notebook loop, on the same model, layer and images.

The plain loop is what a researcher writes in a notebook: images decoded and transformed in the main
process, batch by batch; the full forward under ``torch.no_grad``; a hook keeping the layer's whole
feature map as float64; the spatial mean taken at the end. ``cv.extract`` stops the forward at the
layer, pools in the hook, runs under ``torch.inference_mode`` with ``channels_last`` and a DataLoader,
and writes resumable chunks. Both run in this one process on the same JPEG files, written first
(synthetic images, ImageNet-like sizes, so JPEG decoding is part of the time).

Usage::

    python benchmarks/bench_extract.py                       # CPU: Inception V3 Mixed_7b, 96 images
    python benchmarks/bench_extract.py --images 20000 --batch-size 256 --workers 16 --gpu   # on a GPU: also the GPU path
    python benchmarks/bench_extract.py --store-scale         # also write and read a 1.28M x 2048 float16 store

Prints images/s of both, their ratio, the largest difference between the two results, and the
machine. Nothing printed is estimated: every number is measured in the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

import conceptvec as cv
from conceptvec.nn.data import image_files
from conceptvec.nn.models import find_layer, load_model


def write_jpegs(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` JPEGs of ImageNet-like sizes in 10 class folders; smooth noise so they compress like photos."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = rng.integers(300, 500), rng.integers(350, 500)
        small = rng.integers(0, 255, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((int(w), int(h)), Image.BILINEAR)
        folder = root / f"class_{i % 10:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:06d}.jpg", quality=90)
    return root


def plain_loop(loaded, layer: str, root: Path, batch_size: int) -> tuple[np.ndarray, float]:
    """The notebook: full forward, a hook keeping the full float64 map, mean afterwards."""
    module = loaded.module
    files = image_files(root)
    maps = []
    handle = find_layer(module, layer).register_forward_hook(lambda m, i, o: maps.append(o.detach().numpy().astype(np.float64)))
    start = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(files), batch_size):
            batch = [loaded.transform(Image.open(root / p).convert("RGB")) for p in files.paths[s : s + batch_size]]
            module(torch.stack(batch))
    pooled = np.concatenate([m.mean(axis=(2, 3)) for m in maps])
    seconds = time.perf_counter() - start
    handle.remove()
    return pooled, seconds


def ours(loaded, layer: str, root: Path, out: Path, batch_size: int, workers: int, device: str,
         autocast: bool, dtype: str = "float32") -> tuple[np.ndarray, float]:
    # The loaded module and its transform: model loading is outside both timings.
    start = time.perf_counter()
    store = cv.extract(loaded.module, layer=layer, data=root, out=out, transform=loaded.transform, batch_size=batch_size, workers=workers,
                       device=device, autocast=autocast, dtype=dtype, progress=False)
    seconds = time.perf_counter() - start
    return np.asarray(store.activations, dtype=np.float64), seconds


def store_scale(directory: Path, n: int = 1_281_167, units: int = 2048, chunk: int = 4096) -> None:
    """Write and read an ImageNet-sized float16 store through the resumable writer; report time and peak memory."""
    from conceptvec.storage.store import StoreWriter

    rng = np.random.default_rng(0)
    block = rng.normal(size=(chunk, units)).astype(np.float16)
    start = time.perf_counter()
    with StoreWriter(directory / "big", fingerprint={"benchmark": "store scale"}, dtype="float16") as w:
        for k, s in enumerate(range(0, n, chunk)):
            rows = block[: min(chunk, n - s)]
            w.write_chunk(k, s, s + len(rows), rows)
        w.finish({"id": [str(i) for i in range(n)]}, {"layer": "synthetic"})
    written = time.perf_counter() - start
    rss_write = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    store = cv.ActivationStore.open(directory / "big")
    start = time.perf_counter()
    acts = store.activations
    col_means = np.zeros(units)
    for s in range(0, n, 65536):
        col_means += acts[s : s + 65536].astype(np.float32).sum(axis=0)
    read = time.perf_counter() - start
    # ru_maxrss counts the memory-mapped file pages read, which the kernel drops under pressure
    # (page cache), so the reading figure is bounded by the file's size, not by the machine's RAM.
    size = (directory / "big" / "activations.npy").stat().st_size / 2**30
    print(f"store scale: {n:,} x {units} float16 ({size:.2f} GiB) written in {written:.1f} s (peak RSS {rss_write:.2f} GiB), "
          f"read through once in {read:.1f} s (peak RSS of the process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB)")
    shutil.rmtree(directory / "big")


def gpu_path(loaded, layer: str, root: Path, batch_size: int, workers: int, cpu_rows: np.ndarray) -> None:
    """The GPU path (conceptvec.nn.gpu): JPEGs decoded and preprocessed on the GPU, bf16, channels-last, pinned
    buffers; end to end, beside the model's forward alone on synthetic tensors already on the GPU (the bound)."""
    from conceptvec.nn.gpu import pooled_jpegs

    files = image_files(root)
    crop = loaded.input_shape[-1]
    resize = round(crop / 0.875) if crop != 299 else 342  # torchvision's preset for these weights (the authors': 299)
    run = lambda: pooled_jpegs(loaded.module, layer, root, files.paths, resize=resize, crop=crop,  # noqa: E731
                               batch_size=batch_size, loaders=max(workers, 1), device="cuda")
    run()  # warm-up: cuDNN autotuning, nvJPEG handles
    torch.cuda.synchronize()
    start = time.perf_counter()
    rows = run()
    torch.cuda.synchronize()
    t_path = time.perf_counter() - start
    from conceptvec.nn.hooks import layer_runner

    x = torch.randn(batch_size, 3, crop, crop, device="cuda").contiguous(memory_format=torch.channels_last)
    module = loaded.module.to("cuda").to(memory_format=torch.channels_last)
    n_batches = max(1, len(files) // batch_size)
    with layer_runner(module, layer, "avg") as forward, torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        forward(x)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(n_batches):
            forward(x)
        torch.cuda.synchronize()
    t_bound = (time.perf_counter() - start) / (n_batches * batch_size)
    diff = np.abs(rows - cpu_rows).max() / max(np.abs(cpu_rows).max(), 1e-12)
    print(f"GPU path (nvJPEG decode, resize/normalise on GPU, bf16, channels-last, pinned; {max(workers, 1)} reading processes): "
          f"{len(files) / t_path:.0f} images/s end to end; forward alone on synthetic tensors (the bound): "
          f"{1 / t_bound:.0f} images/s; goal >= 3,000 images/s end to end; largest difference to the CPU store, relative: {diff:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torchvision:inception_v3")
    parser.add_argument("--weights", default="none")
    parser.add_argument("--layer", default="Mixed_7b")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="cv.extract's workers: this process and workers - 1 DataLoader processes")
    parser.add_argument("--gpu", action="store_true", help="also time cv.extract on CUDA with float16 autocast, and the GPU "
                        "path (decoding and preprocessing on the GPU, bf16) beside the forward alone (the bound)")
    parser.add_argument("--store-scale", action="store_true", help="also write and read a 1.28M x 2048 float16 store")
    parser.add_argument("--only-store-scale", action="store_true", help="run the store-scale part alone (its memory unmixed with the models')")
    parser.add_argument("--tmp", default=None, help="where to write the images and stores (default: a temporary folder)")
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), torchvision {torchvision.__version__}, conceptvec {cv.__version__}, "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}; load average {os.getloadavg()[0]:.1f}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_extract-", dir=args.tmp))
    try:
        if args.only_store_scale:
            store_scale(tmp)
            return
        start = time.perf_counter()
        root = write_jpegs(tmp / "images", args.images)
        print(f"wrote {args.images} JPEGs (300-500 px sides, 10 classes) in {time.perf_counter() - start:.1f} s")
        what = f"{args.model} {args.layer}, {args.images} images, batch {args.batch_size}"
        loaded = load_model(args.model, args.weights)
        warm = write_jpegs(tmp / "warm", 4, seed=1)
        # warm-up of both on a few images, so that neither timing pays for first-call set-up
        plain_loop(loaded, args.layer, warm, 4)
        ours(loaded, args.layer, warm, tmp / "warm-store", 4, 0, "cpu", False)
        loaded.module.to(memory_format=torch.contiguous_format)  # the plain loop as a notebook has it

        base, t_base = plain_loop(loaded, args.layer, root, args.batch_size)
        print(f"plain loop (full forward, hook keeps full float64 maps, mean after): {args.images / t_base:.2f} images/s ({t_base:.1f} s)")
        mine, t_mine = ours(loaded, args.layer, root, tmp / "store", args.batch_size, args.workers, "cpu", False)
        print(f"cv.extract (cpu, {args.workers} workers, stop at layer, channels_last, inference_mode): "
              f"{args.images / t_mine:.2f} images/s ({t_mine:.1f} s)")
        print(f"ratio cv.extract / plain loop: {t_base / t_mine:.2f}x on {what}")
        if args.workers:
            # the same without DataLoader workers: what stopping at the layer and the memory format alone give
            _, t_zero = ours(loaded, args.layer, root, tmp / "store-0", args.batch_size, 0, "cpu", False)
            print(f"cv.extract (cpu, 0 workers): {args.images / t_zero:.2f} images/s ({t_zero:.1f} s); "
                  f"ratio to plain loop {t_base / t_zero:.2f}x")
        diff = np.abs(base - mine).max() / max(np.abs(base).max(), 1e-12)
        print(f"largest difference between the two results, relative to the largest activation: {diff:.2e}")
        load = os.getloadavg()[0]
        print(f"load average after: {load:.1f}")

        if args.gpu:
            if not torch.cuda.is_available():
                print("--gpu asked for, but torch sees no CUDA GPU: GPU throughput not measured")
            else:
                gpu, t_gpu = ours(loaded, args.layer, root, tmp / "store-gpu", args.batch_size, args.workers,
                                  "cuda", True, dtype="float16")
                print(f"cv.extract (cuda, float16 autocast, {args.workers} workers, JPEG decoding included): "
                      f"{args.images / t_gpu:.1f} images/s ({t_gpu:.1f} s) on {torch.cuda.get_device_name(0)}")
                gpu_path(loaded, args.layer, root, args.batch_size, args.workers, mine)
        if args.store_scale:
            store_scale(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
