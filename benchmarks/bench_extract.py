"""Extraction throughput: ``cv.extract`` against a plain notebook loop, on the same model, layer and images.

The plain loop is what a researcher writes in a notebook: images decoded and transformed in the main
process, batch by batch; the full forward under ``torch.no_grad``; a hook keeping the layer's whole
feature map as float64; the spatial mean taken at the end. ``cv.extract`` stops the forward at the
layer, pools in the hook, runs under ``torch.inference_mode`` with ``channels_last`` and a DataLoader,
and writes resumable chunks. Both run in this one process on the same JPEG files, written first
(synthetic images, ImageNet-like sizes, so JPEG decoding is part of the time).

Usage::

    python benchmarks/bench_extract.py                       # CPU: Inception V3 Mixed_7b, 96 images
    python benchmarks/bench_extract.py --images 20000 --cpu-images 256 --batch-size 256 --workers 16 --gpu
                                                             # on a GPU: also cv.extract's device path (decode=device)
    python benchmarks/bench_extract.py --store-scale         # also write and read a 1.28M x 2048 float16 store

``--gpu`` times ``cv.extract(..., decode="device")``, the very code a user's extraction runs, beside
``decode="cpu"`` on the same GPU and the model's forward alone on synthetic tensors (the bound);
``benchmarks/gpu_check.py`` runs it with the sizes of the issue's goal.

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
from conceptvec.sources.images import image_files
from conceptvec.models.layers import find_layer
from conceptvec.models.load import load_model


def write_jpegs(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` JPEGs of ImageNet-like sizes in 10 class folders; smooth noise so they compress like photos.

    Image ``i`` depends on ``(seed, i)`` alone, so the first ``m`` images of a set of ``n`` are a set of ``m``;
    many are written by as many processes as there are CPUs.
    """
    for c in range(min(n, 10)):
        (root / f"class_{c:02d}").mkdir(parents=True, exist_ok=True)
    parts = [range(s, min(s + 500, n)) for s in range(0, n, 500)]
    if len(parts) > 1 and (os.cpu_count() or 1) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
            list(pool.map(write_some, [root] * len(parts), parts, [seed] * len(parts)))
    else:
        for part in parts:
            write_some(root, part, seed)
    return root


def write_some(root: Path, indices: range, seed: int) -> None:
    for i in indices:
        rng = np.random.default_rng((seed, i))
        h, w = rng.integers(300, 500), rng.integers(350, 500)
        small = rng.integers(0, 255, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        Image.fromarray(small).resize((int(w), int(h)), Image.BILINEAR).save(root / f"class_{i % 10:02d}" / f"{i:06d}.jpg", quality=90)


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
    # The loaded module and its transform: model loading is outside both timings. Decoding on the CPU, as the plain loop.
    start = time.perf_counter()
    store = cv.extract(loaded.module, layer=layer, data=root, out=out, transform=loaded.transform, batch_size=batch_size, workers=workers,
                       device=device, autocast=autocast, dtype=dtype, decode="cpu", progress=False)
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


def device_path(loaded, layer: str, root: Path, warm: Path, tmp: Path, batch_size: int, workers: int, device: str,
                cpu_store) -> None:
    """cv.extract's device path (decode="device": JPEGs decoded and preprocessed on the device, bf16 autocast on CUDA,
    channels-last, pinned buffers) end to end, beside the model's forward alone on synthetic tensors already on the
    device (the bound) and cv.extract decoding on the CPU (decode="cpu") on the same device."""
    from conceptvec.models.hooks import layer_runner

    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    n = len(image_files(root))
    kw = dict(transform=loaded.transform, batch_size=batch_size, workers=workers, device=device, autocast=cuda,
              autocast_dtype="bfloat16", progress=False)
    cv.extract(loaded.module, layer=layer, data=warm, out=tmp / "warm-device", decode="device", **kw)  # cuDNN, nvJPEG set-up
    sync()
    start = time.perf_counter()
    store = cv.extract(loaded.module, layer=layer, data=root, out=tmp / "store-device", decode="device", **kw)
    sync()
    t_device = time.perf_counter() - start
    start = time.perf_counter()
    cv.extract(loaded.module, layer=layer, data=root, out=tmp / "store-device-cpu-decode", decode="cpu", **kw)
    sync()
    t_cpu_decode = time.perf_counter() - start

    crop = loaded.input_shape[-1]
    x = torch.randn(batch_size, 3, crop, crop, device=device).contiguous(memory_format=torch.channels_last)
    module = loaded.module.to(device).to(memory_format=torch.channels_last)
    n_batches = max(1, n // batch_size)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    with layer_runner(module, layer, "avg") as forward, torch.inference_mode(), amp:
        forward(x)
        sync()
        start = time.perf_counter()
        for _ in range(n_batches):
            forward(x)
        sync()
    t_bound = (time.perf_counter() - start) / (n_batches * batch_size)
    decoding = store.metadata["decode"]
    print(f"cv.extract device path on {device} (decode=device: {decoding['decoder']} batched decode, resize/normalise on the "
          f"device, {'bf16 autocast, pinned buffers, ' if cuda else ''}channels-last; {workers} workers reading bytes): "
          f"{n / t_device:.1f} images/s end to end ({t_device:.1f} s for {n} images)")
    print(f"cv.extract on {device} decoding on the CPU (decode=cpu, {workers} workers): {n / t_cpu_decode:.1f} images/s; "
          f"device path / CPU decoding: {t_cpu_decode / t_device:.2f}x")
    print(f"forward alone on synthetic tensors on {device} (the bound): {1 / t_bound:.1f} images/s; end to end reaches "
          f"{(n / t_device) * t_bound:.0%} of it; goal on one H100: >= 3,000 images/s end to end")
    ids, position = cpu_store.ids.tolist(), {i: k for k, i in enumerate(store.ids.tolist())}
    order = [position[i] for i in ids]
    assert order == sorted(order), "the device path's store orders the images otherwise than the CPU store"
    rows = np.asarray(store.activations[order], dtype=np.float64)
    reference = np.asarray(cpu_store.activations, dtype=np.float64)
    diff = np.abs(rows - reference).max() / max(np.abs(reference).max(), 1e-12)
    print(f"device path against the CPU store (float32, PIL decoding) on its {len(ids)} images: same order; largest "
          f"difference relative to the largest activation {diff:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torchvision:inception_v3")
    parser.add_argument("--weights", default="none")
    parser.add_argument("--layer", default="Mixed_7b")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="cv.extract's workers: this process and workers - 1 DataLoader processes")
    parser.add_argument("--cpu-images", type=int, default=None, help="run the CPU comparison on this many images only "
                        "(default: --images); the device path runs on all")
    parser.add_argument("--gpu", action="store_true", help="also time cv.extract's device path (decode=device: decoding and "
                        "preprocessing on the GPU, bf16) beside decoding on the CPU and the forward alone (the bound)")
    parser.add_argument("--gpu-device", default="cuda", help="the device of --gpu (cpu runs the same path on the CPU: a check "
                        "that it runs, not a GPU figure)")
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
        n_cpu = args.images if args.cpu_images is None else min(args.cpu_images, args.images)
        # The first n_cpu images of the same seed: the same files (by name and content) as in the full set.
        cpu_root = root if n_cpu == args.images else write_jpegs(tmp / "cpu-images", n_cpu)
        what = f"{args.model} {args.layer}, {n_cpu} images, batch {args.batch_size}"
        loaded = load_model(args.model, args.weights)
        warm = write_jpegs(tmp / "warm", 4, seed=1)
        # warm-up of both on a few images, so that neither timing pays for first-call set-up
        plain_loop(loaded, args.layer, warm, 4)
        ours(loaded, args.layer, warm, tmp / "warm-store", 4, 0, "cpu", False)
        loaded.module.to(memory_format=torch.contiguous_format)  # the plain loop as a notebook has it

        base, t_base = plain_loop(loaded, args.layer, cpu_root, args.batch_size)
        print(f"plain loop (full forward, hook keeps full float64 maps, mean after): {n_cpu / t_base:.2f} images/s ({t_base:.1f} s)")
        mine, t_mine = ours(loaded, args.layer, cpu_root, tmp / "store", args.batch_size, args.workers, "cpu", False)
        print(f"cv.extract (cpu, {args.workers} workers, stop at layer, channels_last, inference_mode): "
              f"{n_cpu / t_mine:.2f} images/s ({t_mine:.1f} s)")
        print(f"ratio cv.extract / plain loop: {t_base / t_mine:.2f}x on {what}")
        if args.workers:
            # the same without DataLoader workers: what stopping at the layer and the memory format alone give
            _, t_zero = ours(loaded, args.layer, cpu_root, tmp / "store-0", args.batch_size, 0, "cpu", False)
            print(f"cv.extract (cpu, 0 workers): {n_cpu / t_zero:.2f} images/s ({t_zero:.1f} s); "
                  f"ratio to plain loop {t_base / t_zero:.2f}x")
        diff = np.abs(base - mine).max() / max(np.abs(base).max(), 1e-12)
        print(f"largest difference between the two results, relative to the largest activation: {diff:.2e}")
        load = os.getloadavg()[0]
        print(f"load average after: {load:.1f}")

        if args.gpu:
            if args.gpu_device.startswith("cuda") and not torch.cuda.is_available():
                print("--gpu asked for, but torch sees no CUDA GPU: GPU throughput not measured")
            else:
                device_path(loaded, args.layer, root, warm, tmp, args.batch_size, args.workers, args.gpu_device,
                            cv.ActivationStore.open(tmp / "store"))
        if args.store_scale:
            store_scale(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
