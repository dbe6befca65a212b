"""What the audit's safety costs: finishing a store with its content digest and manifest, and checking it before
``--overwrite`` replaces it, against finishing the same store without them, in one run on the same rows.

``StoreWriter.finish`` now reads the assembled files once more to hash them (``content_sha256`` and
``.conceptvec-manifest.json``); ``--overwrite`` hashes the old store again to prove nothing in it changed.
The baseline is the same ``finish`` with the hashing replaced by a constant (monkeypatched), so the ratio
is the cost of the hashing alone.

Usage::

    python benchmarks/bench_manifest.py                      # 20,000 x 1,024 float32 (80 MB)
    python benchmarks/bench_manifest.py --rows 100000 --units 2048

Prints seconds of each, their ratio and the machine. Every number is measured in the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from conceptvec.storage import atomic, store as store_module
from conceptvec.storage.atomic import check_replaceable
from conceptvec.storage.store import StoreWriter


def finish_store(path: Path, rows: np.ndarray, chunk: int) -> float:
    """Write ``rows`` chunk by chunk, then time ``finish`` alone."""
    with StoreWriter(path, fingerprint={"bench": 1}) as writer:
        for start in range(0, len(rows), chunk):
            writer.write(start, rows[start:start + chunk])
        began = time.perf_counter()
        writer.finish(None, {"model": {"name": "bench"}, "layer": "x"})
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--units", type=int, default=1_024)
    parser.add_argument("--chunk", type=int, default=2_048)
    args = parser.parse_args()
    rows = np.random.default_rng(0).standard_normal((args.rows, args.units)).astype(np.float32)
    root = Path(tempfile.mkdtemp(prefix="bench-manifest-"))
    try:
        with_hash = finish_store(root / "hashed", rows, args.chunk)
        began = time.perf_counter()
        check_replaceable(root / "hashed", what="activation store")
        check = time.perf_counter() - began

        def constant(path):  # the baseline: the same finish, no bytes read for a digest
            return "0" * 64

        real = store_module.file_sha256, atomic.file_sha256
        store_module.file_sha256 = atomic.file_sha256 = constant
        try:
            without = finish_store(root / "plain", rows, args.chunk)
        finally:
            store_module.file_sha256, atomic.file_sha256 = real
        size = (root / "hashed" / "activations.npy").stat().st_size
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"store: {args.rows} x {args.units} float32 ({size / 1e6:.0f} MB of activations), chunks of {args.chunk}")
    print(f"finish with content digest and manifest: {with_hash:.3f} s")
    print(f"finish with the hashing replaced by a constant: {without:.3f} s")
    print(f"ratio: {with_hash / without:.2f}x; hashing adds {with_hash - without:.3f} s "
          f"({size / 1e6 / max(with_hash - without, 1e-9):.0f} MB/s)")
    print(f"check before --overwrite (every file hashed again): {check:.3f} s")


if __name__ == "__main__":
    main()
