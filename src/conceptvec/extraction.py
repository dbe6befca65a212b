"""Pooled activations of one layer over a dataset, written to an ActivationStore.

The forward pass stops at the layer (a hook pools the output and raises), runs under
``torch.inference_mode`` in batches, and only the pooled vectors leave the hook.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rich.console import Console

from ._progress import progress_bar
from .data import ImageFiles, image_files, open_image
from .errors import ConceptvecError, StoreError
from .models import LoadedModel, find_layer, load_model
from .store import ActivationStore, StoreWriter

_stderr = Console(stderr=True)

POOLS = {
    "avg": "global average over space (N, C, H, W) or over tokens (N, T, D)",
    "max": "global max over space or tokens",
    "cls": "first token of (N, T, D) outputs",
}


def pool_output(out: torch.Tensor, pool: str = "avg") -> torch.Tensor:
    """(N, C, H, W) or (N, T, D) layer output to (N, units); (N, D) passes through."""
    if pool not in POOLS:
        raise ConceptvecError(f"unknown pooling {pool!r}; valid: {', '.join(POOLS)}.")
    if out.ndim == 2:
        return out
    if out.ndim == 4:
        if pool == "cls":
            raise ConceptvecError("pool='cls' needs a (N, tokens, dim) output; this layer gives (N, C, H, W) maps. Use 'avg' or 'max'.")
        return out.mean(dim=(2, 3)) if pool == "avg" else out.amax(dim=(2, 3))
    if out.ndim == 3:
        return {"avg": lambda t: t.mean(dim=1), "max": lambda t: t.amax(dim=1), "cls": lambda t: t[:, 0]}[pool](out)
    raise ConceptvecError(f"cannot pool a layer output of shape {tuple(out.shape)}; expected 2, 3 or 4 dimensions.")


class _StopForward(Exception):
    """Raised by the hook once the layer's output is captured: nothing after the layer runs."""


@contextlib.contextmanager
def capture_layer(layer: nn.Module, pool: str = "avg") -> Iterator[dict[str, torch.Tensor]]:
    """Hook ``layer`` for the block's duration: each forward stores the pooled output and stops."""
    captured: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        if isinstance(output, (tuple, list)):
            output = output[0]
        captured["pooled"] = pool_output(output.detach(), pool).float().cpu()
        raise _StopForward

    handle = layer.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def forward_to_layer(model: nn.Module, x: torch.Tensor, captured: dict[str, torch.Tensor]) -> torch.Tensor:
    """Run ``model`` on ``x`` up to the hooked layer and return its pooled output."""
    try:
        model(x)
    except _StopForward:
        pass
    if "pooled" not in captured:
        raise ConceptvecError("the forward pass finished without reaching the layer; is the layer used by forward()?")
    return captured.pop("pooled")


class _ImageDataset(Dataset):
    def __init__(self, files: ImageFiles, transform):
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        image = open_image(self.files.root / self.files.paths[i])
        if image is None:
            return None, i
        return self.transform(image), i


def _collate(batch):
    ok = [(x, i) for x, i in batch if x is not None]
    bad = [i for x, i in batch if x is None]
    xs = torch.stack([x for x, _ in ok]) if ok else None
    return xs, [i for _, i in ok], bad


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConceptvecError(f"device must be auto, cpu or cuda, got {device!r}.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConceptvecError("device 'cuda' asked for, but torch sees no CUDA GPU; use --device cpu.")
    return torch.device(device)


def extract(
    model: str | nn.Module,
    layer: str,
    data: str | os.PathLike,
    out: str | os.PathLike,
    weights: str | None = None,
    per_class: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    workers: int = 0,
    device: str = "cpu",
    dtype: str = "float32",
    pool: str = "avg",
    overwrite: bool = False,
    progress: bool = True,
) -> ActivationStore:
    """Pool ``layer`` of ``model`` over ``data`` into an ActivationStore at ``out``.

    Parameters
    ----------
    model : a spec (``digits``, ``torchvision:NAME``) or an nn.Module
    layer : the module name as the model names it (``block3``, ``layer4.1``, ``Mixed_7b``)
    data : ``digits`` (scikit-learn's bundled digits), an image folder (class sub-folders or flat),
        or a text file listing image paths
    per_class, seed : sample this many images per class with this seed (the paper: 130)
    """
    if pool not in POOLS:
        raise ConceptvecError(f"unknown pooling {pool!r}; valid: {', '.join(POOLS)}.")
    if batch_size < 1:
        raise ConceptvecError(f"batch_size must be >= 1, got {batch_size}.")
    loaded = load_model(model, weights)
    target = find_layer(loaded.module, layer)
    dev = _resolve_device(device)
    data_desc, examples, batches, n = _prepare_data(loaded, data, per_class, seed, batch_size, workers)
    metadata = {
        "model": loaded.describe(), "layer": layer, "pooling": pool, "data": data_desc,
        "preprocessing": loaded.preprocessing, "device": str(dev),
    }
    out = Path(out)
    existing = _existing_store(out, metadata, overwrite)
    if existing is not None:
        if progress:
            _stderr.print(f"{out} is already complete for this model, layer and data; reusing it.")
        return existing

    module = loaded.module.to(dev)
    skipped: list[int] = []
    written = 0
    with StoreWriter(out, n, _n_units(module, target, loaded, batches, pool, dev), dtype=dtype, overwrite=overwrite) as writer, \
            capture_layer(target, pool) as captured, torch.inference_mode(), \
            progress_bar("img", disable=not progress) as bar:
        task = bar.add_task(f"extract {layer}", total=n)
        kept: list[int] = []
        for xs, idx, bad in batches():
            skipped += bad
            if xs is not None:
                pooled = forward_to_layer(module, xs.to(dev, non_blocking=True), captured)
                writer.write(written, pooled.numpy())
                written += len(idx)
                kept += idx
            bar.advance(task, len(idx) + len(bad))
        # Unreadable files are listed, not fatal; the store holds the readable ones in data order.
        metadata["skipped"] = {"count": len(skipped), "sources": [examples["source"][i] for i in sorted(skipped)]}
        examples = {k: [v[i] for i in kept] for k, v in examples.items()}
        writer.finish(examples, metadata, n_rows=written)
    return ActivationStore.open(out)


def _n_units(module: nn.Module, target: nn.Module, loaded: LoadedModel, batches, pool: str, dev: torch.device) -> int:
    # One example through the network tells the layer's width before the store is allocated.
    for xs, _, _ in batches():
        if xs is not None:
            with capture_layer(target, pool) as captured, torch.inference_mode():
                return int(forward_to_layer(module, xs[:1].to(dev), captured).shape[1])
    raise ConceptvecError("no readable examples in the data; every file failed to load.")


def _prepare_data(loaded: LoadedModel, data: Any, per_class: int | None, seed: int, batch_size: int, workers: int):
    if isinstance(data, str) and data == "digits":
        from .digits import digits_examples, preprocess_digits
        from .data import load_digits_images

        if loaded.name != "digits":
            raise ConceptvecError("data 'digits' is prepared for the bundled digits model (--model digits); give an image folder for other models.")
        images, labels = load_digits_images()
        examples = digits_examples()
        keep = np.arange(len(labels))
        if per_class is not None:
            rng = np.random.default_rng(seed)
            keep = np.sort(np.concatenate([
                rng.choice(np.flatnonzero(labels == c), size=min(per_class, int(np.sum(labels == c))), replace=False)
                for c in np.unique(labels)
            ]))
            examples = {k: [v[i] for i in keep] for k, v in examples.items()}
        x = preprocess_digits(images[keep])

        def batches():
            for s in range(0, len(x), batch_size):
                yield x[s : s + batch_size], list(range(s, min(s + batch_size, len(x)))), []

        desc = {"kind": "sklearn-digits", "n_examples": int(len(keep)), "per_class": per_class, "seed": seed}
        return desc, examples, batches, len(keep)

    if loaded.transform is None:
        raise ConceptvecError(f"model {loaded.name} has no image preprocessing of its own; use a model spec such as torchvision:NAME with image folders.")
    files = image_files(data, per_class=per_class, seed=seed)
    ds = _ImageDataset(files, loaded.transform)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=_collate, shuffle=False)
    examples = {
        "id": list(files.paths),
        "label": list(files.labels),
        "label_name": [files.classes[c] if c >= 0 else "" for c in files.labels],
        "source": list(files.paths),
    }
    desc = files.describe()

    def batches():
        yield from loader

    return desc, examples, batches, len(files)


def _existing_store(out: Path, metadata: dict[str, Any], overwrite: bool) -> ActivationStore | None:
    if not out.exists() or overwrite:
        return None
    store = ActivationStore.open(out)
    differs = [k for k in ("model", "layer", "pooling", "data") if _comparable(store.metadata.get(k)) != _comparable(metadata.get(k))]
    if differs:
        details = "; ".join(f"{k}: store has {_comparable(store.metadata.get(k))!r}, asked {_comparable(metadata.get(k))!r}" for k in differs)
        raise StoreError(f"{out} already holds a different extraction ({details}). Use another --out or --overwrite.")
    return store


def _comparable(value: Any) -> Any:
    # Compare as the metadata file stores it (tuples become lists, paths strings).
    return json.loads(json.dumps(value, default=str))
