"""Benchmark: conceptvec's feature visualisation against torch-lucent, same model, layer, direction, steps, size.

In one run:

1. conceptvec ``feature_visualisation`` of one neuron (a basis direction) of ``--layer`` of a
   torchvision model with random weights (torch seed 0, as ``load_model(..., weights="none")``: no
   weights are downloaded), Adam lr 0.05, ``--steps`` steps, ``--size`` pixels, standard transforms.
2. torch-lucent 0.1.8 ``render_vis`` with ``objectives.channel(layer, neuron)`` (the same objective:
   the channel's spatially averaged activation), ``param.image(size)`` (FFT, decorrelated colour),
   its standard transforms, Adam lr 0.05, the same number of steps. Lucent runs in a separate Python
   (``--lucent-python``, a throwaway virtual environment holding torch-lucent next to the same torch
   release) because it is never a dependency of conceptvec; this script re-runs itself there with
   ``--worker lucent``.
3. Both final images are scored by one evaluator in this process: the image (no random transforms)
   normalised with ImageNet statistics, a full forward with a hook on the layer, the neuron's
   spatially averaged activation. Seconds per image are wall-clock of the optimisation alone (model
   construction, imports and a 2-step warm-up excluded), both with the same torch thread count, over
   ``--seeds`` seeds each, alternating conceptvec and Lucent seed by seed so that both meet the same
   load (Lucent seeded through torch's and NumPy's global generators, one process per seed).

Runtime patches, in the Lucent worker process only: torch-lucent 0.1.8 calls ``kornia.get_rotation_matrix2d``
and ``kornia.warp_affine``, which kornia >= 0.6 only has under ``kornia.geometry.transform``; the worker
aliases them. On a machine without CUDA Lucent's ``cuda:0`` device choice resolves to the CPU, so no
other patch is needed.

Usage: python benchmarks/bench_featureviz.py [--model resnet50] [--layer layer3] [--neuron 7]
       [--steps 512] [--size 224] [--threads 1] [--seeds 3] [--batch 3]
       [--lucent-python /tmp/lucentvenv/bin/python] [--out DIR]

Making the Lucent environment (never a dependency of conceptvec)::

    python3 -m venv /tmp/lucentvenv
    /tmp/lucentvenv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/lucentvenv/bin/pip install --no-deps torch-lucent==0.1.8
    /tmp/lucentvenv/bin/pip install kornia tqdm decorator ipython pillow numpy
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def build_model(name: str) -> torch.nn.Module:
    """torchvision ``name`` with random weights drawn after ``torch.manual_seed(0)``: identical in both processes."""
    from torchvision.models import get_model

    torch.manual_seed(0)
    return get_model(name, weights=None).eval()


def fingerprint(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run_lucent(args) -> dict:
    import kornia
    from kornia.geometry import transform as kgt

    # torch-lucent 0.1.8 uses kornia's pre-0.6 top-level names; alias them in this process only.
    for name in ("get_rotation_matrix2d", "warp_affine"):
        if not hasattr(kornia, name):
            setattr(kornia, name, getattr(kgt, name))
    import lucent
    from lucent.optvis import objectives, param, render

    model = build_model(args.model)
    # Untimed warm-up (oneDNN prepares its kernels on the first passes), as for conceptvec.
    render.render_vis(model, objectives.channel(args.layer, args.neuron), param_f=lambda: param.image(args.size),
                      thresholds=(2,), progress=False, show_image=False, show_inline=False)
    seconds, images = [], []
    for seed in [int(v) for v in args.seed_list.split(",")]:
        # Lucent draws its initial spectrum from torch's and its transforms from NumPy's global generators.
        np.random.seed(seed)
        torch.manual_seed(seed)
        start = time.perf_counter()
        out = render.render_vis(
            model, objectives.channel(args.layer, args.neuron), param_f=lambda: param.image(args.size),
            thresholds=(args.steps,), progress=False, show_image=False, show_inline=False,
        )
        seconds.append(time.perf_counter() - start)
        images.append(out[-1][0])
    np.save(args.image_out, np.stack(images))
    return {"seconds": seconds, "fingerprint": fingerprint(model), "lucent": getattr(lucent, "__version__", "?"),
            "kornia": kornia.__version__, "torch": torch.__version__}


def run_ours(args, model: torch.nn.Module, seed: int, k: int = 1, steps: int | None = None) -> tuple[np.ndarray, float]:
    """Images of the neuron (and, with k > 1, of k - 1 random positive directions in the same batch) and the seconds taken."""
    import conceptvec as cv
    from conceptvec.featureviz import neuron_directions

    n_units = layer_width(model, args.layer, args.size)
    directions = neuron_directions(n_units, args.neuron, np.abs(np.random.default_rng(seed).normal(size=(k - 1, n_units))))
    imagenet = lambda x: (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    start = time.perf_counter()
    fv = cv.feature_visualisation(model, args.layer, directions, steps=steps or args.steps, size=args.size, seed=seed,
                                  transform=imagenet, progress=False)
    return fv.images, time.perf_counter() - start


def layer_width(model: torch.nn.Module, layer: str, size: int) -> int:
    from conceptvec.models.hooks import capture_layer, forward_to_layer
    from conceptvec.models.layers import find_layer

    with capture_layer(find_layer(model, layer)) as captured, torch.inference_mode():
        return int(forward_to_layer(model, torch.zeros(1, 3, size, size), captured).shape[1])


def score(model: torch.nn.Module, layer: str, neuron: int, image: np.ndarray) -> float:
    """The neuron's spatially averaged activation on ``image`` (h, w, 3) in [0, 1]: a full forward, its own hook."""
    from conceptvec.models.layers import find_layer

    x = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32).permute(2, 0, 1)[None]
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    seen = {}
    handle = find_layer(model, layer).register_forward_hook(lambda m, i, o: seen.__setitem__("out", o.detach()))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        handle.remove()
    return float(seen["out"][0, neuron].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--layer", default="layer3")
    ap.add_argument("--neuron", type=int, default=7)
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of both (1: on a shared machine 2 OpenMP threads spin against other jobs)")
    ap.add_argument("--seeds", type=int, default=3, help="images per library, seeds 0..N-1")
    ap.add_argument("--batch", type=int, default=0, help="also time conceptvec with the neuron and K-1 other directions in one batch")
    ap.add_argument("--lucent-python", default="/tmp/lucentvenv/bin/python")
    ap.add_argument("--out", default=None, help="Also save both images as PNG here.")
    ap.add_argument("--worker", choices=["lucent"], help=argparse.SUPPRESS)
    ap.add_argument("--image-out", help=argparse.SUPPRESS)
    ap.add_argument("--seed-list", default="0", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.worker == "lucent":
        print(json.dumps(run_lucent(args)))
        return

    import conceptvec as cv

    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} with {args.threads} threads, conceptvec {cv.__version__}; "
          f"load average before {os.getloadavg()[0]:.1f}")
    print(f"model torchvision:{args.model} (random weights, torch seed 0), layer {args.layer}, neuron {args.neuron}, "
          f"{args.steps} steps, {args.size} px, Adam lr 0.05, standard transforms")
    model = build_model(args.model)
    run_ours(args, model, 0, steps=2)  # untimed warm-up, as in the Lucent worker
    # Alternate the two per seed so that both see the same load on a shared machine.
    ours, lucent_seconds, lucent_images, lucent = [], [], [], None
    for seed in range(args.seeds):
        ours.append(run_ours(args, model, seed))
        print(f"seed {seed}: conceptvec {ours[-1][1]:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
        if not Path(args.lucent_python).exists():
            print(f"torch-lucent: not run ({args.lucent_python} does not exist; see the module docstring)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            image_out = Path(tmp) / "lucent.npy"
            cmd = [args.lucent_python, __file__, "--worker", "lucent", "--model", args.model, "--layer", args.layer,
                   "--neuron", str(args.neuron), "--steps", str(args.steps), "--size", str(args.size),
                   "--threads", str(args.threads), "--seed-list", str(seed), "--image-out", str(image_out)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"torch-lucent: failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
                break
            lucent = json.loads(done.stdout.strip().splitlines()[-1])
            lucent_seconds += lucent["seconds"]
            lucent_images.append(np.load(image_out)[0])
        print(f"seed {seed}: torch-lucent {lucent_seconds[-1]:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    if lucent is not None:
        lucent["seconds"] = lucent_seconds
    ours_seconds = [t for _, t in ours]
    ours_scores = [score(model, args.layer, args.neuron, images[0]) for images, _ in ours]
    print(f"conceptvec: {fmt(ours_seconds)} s per image (seeds 0-{args.seeds - 1}: {', '.join(f'{t:.1f}' for t in ours_seconds)})")
    noise = [score(model, args.layer, args.neuron, np.random.default_rng(s).random((args.size, args.size, 3))) for s in range(3)]
    print(f"objective (the neuron's mean activation on the final image, one evaluator): conceptvec {fmt(ours_scores, 3)} "
          f"(per seed {', '.join(f'{v:.3f}' for v in ours_scores)}); uniform-noise images {np.mean(noise):.3f}")
    if lucent is not None:
        lucent_scores = [score(model, args.layer, args.neuron, im) for im in lucent_images]
        same = lucent["fingerprint"] == fingerprint(model)
        print(f"torch-lucent {lucent['lucent']} (kornia {lucent['kornia']}, torch {lucent['torch']}; same weights: {same}): "
              f"{fmt(lucent['seconds'])} s per image (per seed {', '.join(f'{t:.1f}' for t in lucent['seconds'])}), "
              f"objective {fmt(lucent_scores, 3)} (per seed {', '.join(f'{v:.3f}' for v in lucent_scores)})")
        print(f"speed-up per image (mean seconds): {np.mean(lucent['seconds']) / np.mean(ours_seconds):.2f}x; "
              f"mean objective conceptvec / lucent: {np.mean(ours_scores) / np.mean(lucent_scores):.3f}")
        if args.out:
            for i, im in enumerate(lucent_images):
                save_png(im, Path(args.out) / f"lucent_seed{i}.png")
    if args.batch > 1:
        images, seconds = run_ours(args, model, 0, k=args.batch)
        print(f"conceptvec, the neuron and {args.batch - 1} other directions in one batch: {seconds / args.batch:.1f} s per image "
              f"({seconds:.1f} s for {args.batch}); neuron objective {score(model, args.layer, args.neuron, images[0]):.3f}")
    if args.out:
        for i, (images, _) in enumerate(ours):
            save_png(images[0], Path(args.out) / f"conceptvec_seed{i}.png")
    print(f"load average after {os.getloadavg()[0]:.1f}")


def fmt(values, digits: int = 1) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.{digits}f}" + (f" ± {values.std(ddof=1):.{digits}f}" if len(values) > 1 else "")


def save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)


if __name__ == "__main__":
    main()
