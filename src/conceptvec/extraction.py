"""Pooled activations of one layer over a dataset, written to an ActivationStore.

The forward pass stops at the layer (a hook pools the output and raises; TorchScript graphs are cut
after it), runs under ``torch.inference_mode`` in batches from a DataLoader, and only the pooled
vectors leave the hook. Chunks of pooled vectors are written as they complete, so a run resumes
after any interruption and never holds more than one chunk in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rich.console import Console

from ._progress import progress_bar
from .data import ImageFiles, image_files, open_image, sample_per_class
from .errors import ConceptvecError, StoreError
from .models import LoadedModel, find_layer, is_script, load_model, script_to_layer
from .store import ActivationStore, StoreWriter, remove_leftovers

CHUNK_SIZE = 4096  # examples per resumable chunk: 4096 x 2048 float32 pooled vectors are 32 MiB

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


def _first_tensor(output: Any) -> torch.Tensor:
    # Blocks return tensors, tuples (hidden state first) or transformers' ModelOutput.
    if hasattr(output, "to_tuple"):
        output = output.to_tuple()
    if isinstance(output, (tuple, list)):
        output = output[0]
    return output


@contextlib.contextmanager
def stop_at_layer(layer: nn.Module, keep: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
    """Hook ``layer`` for the block's duration: each forward stores ``keep(output)`` and stops there.

    The only hook of a run; it is removed however the block ends. Run the model with
    :func:`forward_to_layer`.
    """
    captured: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        captured["output"] = keep(_first_tensor(output))
        raise _StopForward

    handle = layer.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def capture_layer(layer: nn.Module, pool: str = "avg", to_cpu: bool = True) -> contextlib.AbstractContextManager[dict[str, torch.Tensor]]:
    """Hook ``layer`` for the block's duration: each forward stores the pooled output and stops.

    The pooled vectors are float32 (pooled in float32 under autocast too); ``to_cpu=False`` leaves them
    on the model's device, so that a GPU loop does not wait for a copy after every batch.
    """

    def pooled(output: torch.Tensor) -> torch.Tensor:
        vectors = pool_output(output.detach().float(), pool)
        return vectors.cpu() if to_cpu else vectors

    return stop_at_layer(layer, pooled)


def forward_to_layer(model: nn.Module, x: torch.Tensor, captured: dict[str, torch.Tensor]) -> torch.Tensor:
    """Run ``model`` on ``x`` up to the layer hooked by :func:`stop_at_layer` and return what the hook kept."""
    try:
        model(x)
    except _StopForward:
        pass
    if "output" not in captured:
        raise ConceptvecError("the forward pass finished without reaching the layer; is the layer used by forward()?")
    return captured.pop("output")


@contextlib.contextmanager
def layer_runner(module: nn.Module, layer: str, pool: str = "avg") -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """A function from a batch to the pooled output of ``layer`` (on the model's device), nothing after it computed.

    Hooks for ordinary modules; a cut graph for TorchScript, which runs no hooks.
    """
    if is_script(module):
        to_layer = script_to_layer(module, layer)
        yield lambda x: pool_output(_first_tensor(to_layer(x)).float(), pool)
        return
    with capture_layer(find_layer(module, layer), pool, to_cpu=False) as captured:
        yield lambda x: forward_to_layer(module, x, captured)


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


class _TensorRows(Dataset):
    """Rows of an already prepared batch tensor (the bundled digits)."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], i


class _Prepared(Dataset):
    """A user's Dataset of prepared tensors; items are tensors or (tensor, label, ...) tuples."""

    def __init__(self, dataset: Dataset, keep: list[int]):
        self.dataset, self.keep = dataset, keep

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, i: int):
        item = self.dataset[self.keep[i]]
        if isinstance(item, (tuple, list)):
            item = item[0]
        if not isinstance(item, torch.Tensor):
            raise ConceptvecError(f"the Dataset's items must be tensors (or tuples starting with one), got {type(item).__name__}.")
        return item, i


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
    data: str | os.PathLike | Dataset,
    out: str | os.PathLike,
    weights: str | None = None,
    per_class: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    workers: int = 0,
    device: str = "auto",
    dtype: str = "float32",
    pool: str = "avg",
    overwrite: bool = False,
    progress: bool = True,
    key_map: str | dict[str, str] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    size: int | None = None,
    class_index: str | os.PathLike | None = None,
    transform: Callable[[Any], torch.Tensor] | None = None,
    autocast: bool = False,
    channels_last: bool | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> ActivationStore:
    """Pool ``layer`` of ``model`` over ``data`` into an ActivationStore at ``out``; resumable.

    The store is written in chunks of ``chunk_size`` examples into ``<out>.partial``. Run again after
    Ctrl-C, a crash or ``kill -9``, the same call keeps the complete chunks and the finished store is
    identical to an uninterrupted run's; on a finished store it does nothing; a store or partial store
    of a different model, layer, pooling or data is refused with what differs.

    Parameters
    ----------
    model : a spec (``digits``, ``torchvision:NAME``, ``timm:NAME``, ``hf:DIR``, ``checkpoint:FILE``) or an nn.Module
    layer : the module name as the model names it (``block3``, ``layer4.1``, ``Mixed_7b``, ``blocks.6``)
    data : ``digits`` (scikit-learn's bundled digits), an image folder (class sub-folders or flat), a
        text file listing image paths, or a torch Dataset of prepared tensors (no preprocessing applied)
    weights, key_map, mean, std, size : see :func:`conceptvec.models.load_model`
    per_class, seed : sample this many examples per class with this seed (the paper: 130)
    class_index : an ImageNet class-index JSON labelling WordNet-id folders with the model's classes
    transform : preprocessing for an nn.Module given with image files (specs bring their own)
    device : ``auto`` (CUDA when available), ``cpu`` or ``cuda``
    dtype : ``float32`` or ``float16`` on disk
    pool : ``avg`` (the paper's global average), ``max``, or ``cls`` (first token)
    autocast : float16 autocast on CUDA (ignored on CPU, as recorded in the metadata)
    channels_last : memory format of 4-D inputs; default: when the model has 2-D convolutions
    """
    if pool not in POOLS:
        raise ConceptvecError(f"unknown pooling {pool!r}; valid: {', '.join(POOLS)}.")
    if batch_size < 1:
        raise ConceptvecError(f"batch_size must be >= 1, got {batch_size}.")
    if chunk_size < 1:
        raise ConceptvecError(f"chunk_size must be >= 1, got {chunk_size}.")
    if workers < 0:
        raise ConceptvecError(f"workers must be >= 0, got {workers}.")
    dev = _resolve_device(device)
    loaded = load_model(model, weights, key_map=key_map, mean=mean, std=std, size=size)
    if transform is not None:
        loaded.transform = transform
        loaded.preprocessing = {"transform": repr(transform), "note": "given to extract()"}
    find_layer(loaded.module, layer)
    data_desc, examples, dataset, preprocessing = _prepare_data(loaded, data, per_class, seed, class_index)
    n = len(dataset)
    use_autocast = bool(autocast and dev.type == "cuda")
    if channels_last is None:
        channels_last = any(isinstance(m, nn.Conv2d) for m in loaded.module.modules()) or is_script(loaded.module)
    metadata = {
        "model": loaded.describe(), "layer": layer, "pooling": pool, "data": data_desc, "preprocessing": preprocessing,
    }
    fingerprint = {**metadata, "chunk_size": int(chunk_size)}
    out = Path(out)
    existing = _existing_store(out, metadata, dtype, overwrite)
    if existing is not None:
        _say(progress, f"{out} is already complete for this model, layer and data; nothing to do.")
        return existing

    metadata.update({
        "device": str(dev), "batch_size": batch_size, "workers": workers, "autocast": use_autocast,
        "channels_last": bool(channels_last), "chunk_size": int(chunk_size),
    })
    if autocast and not use_autocast:
        _say(progress, "autocast applies on CUDA only; running in float32 on the CPU.")
    with StoreWriter(out, fingerprint, dtype=dtype, overwrite=overwrite) as writer:
        done = writer.completed()
        chunks = [(k, start, min(start + chunk_size, n)) for k, start in enumerate(range(0, n, chunk_size))]
        todo = [c for c in chunks if c[0] not in done]
        finished = sum(stop - start for k, start, stop in chunks if k in done)
        if finished:
            _say(progress, f"resuming {out}: {finished} of {n} examples already done.")
        try:
            _run_chunks(loaded.module, layer, pool, dataset, todo, writer, n, finished, dev, batch_size, workers,
                        use_autocast, bool(channels_last), progress)
        except KeyboardInterrupt:
            _say(True, f"interrupted; the complete chunks are kept in {writer.partial}. Run the same command again to resume.")
            raise
        skipped = writer.skipped()
        # Unreadable files are listed, not fatal; the store holds the readable ones in data order.
        metadata["skipped"] = {"count": len(skipped), "sources": [examples["source"][i] for i in skipped]}
        writer.finish(examples, metadata)
    return ActivationStore.open(out)


def _say(progress: bool, message: str) -> None:
    if progress:
        _stderr.print(message, highlight=False, soft_wrap=True)


def _run_chunks(module, layer, pool, dataset, todo, writer, n, finished, dev, batch_size, workers, use_autocast, channels_last, progress):
    # Batches never cross a chunk boundary, so a resumed run computes the very batches of an uninterrupted one.
    batches = [list(range(b, min(b + batch_size, stop))) for _, start, stop in todo for b in range(start, stop, batch_size)]
    cuda = dev.type == "cuda"
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=_collate, pin_memory=cuda,
                        prefetch_factor=4 if workers else None)
    module = module.to(dev)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    amp = torch.autocast("cuda", dtype=torch.float16) if use_autocast else contextlib.nullcontext()
    pending = iter(todo)
    index, start, stop = next(pending, (None, 0, 0))
    pooled: list[torch.Tensor] = []
    skipped: list[int] = []
    with layer_runner(module, layer, pool) as run, torch.inference_mode(), amp, progress_bar("img", disable=not progress) as bar:
        task = bar.add_task(f"extract {layer}", total=n, completed=finished)
        for xs, idx, bad in loader:
            skipped += bad
            if xs is not None:
                xs = xs.to(dev, non_blocking=True)
                if channels_last and xs.ndim == 4:
                    xs = xs.contiguous(memory_format=torch.channels_last)
                pooled.append(run(xs))
            bar.advance(task, len(idx) + len(bad))
            if max(idx + bad) == stop - 1:
                # One device-to-host copy per chunk; only this chunk's vectors are held in memory.
                rows = torch.cat(pooled).cpu().numpy() if pooled else np.zeros((0, 0), np.float32)
                writer.write_chunk(index, start, stop, rows, skipped)
                pooled, skipped = [], []
                index, start, stop = next(pending, (None, 0, 0))


def _prepare_data(loaded: LoadedModel, data: Any, per_class: int | None, seed: int, class_index):
    """(description, planned examples, Dataset yielding (tensor or None, i), preprocessing used)."""
    if isinstance(data, Dataset):
        return _prepare_dataset(loaded, data, per_class, seed)
    if isinstance(data, str) and data == "digits":
        from .digits import digits_examples, preprocess_digits
        from .data import load_digits_images

        if loaded.name != "digits":
            raise ConceptvecError("data 'digits' is prepared for the bundled digits model (--model digits); give an image folder for other models.")
        images, labels = load_digits_images()
        examples = digits_examples()
        keep = np.arange(len(labels)) if per_class is None else np.asarray(sample_per_class(labels, per_class, seed))
        examples = {k: [v[i] for i in keep] for k, v in examples.items()}
        desc = {"kind": "sklearn-digits", "n_examples": int(len(keep)), "per_class": per_class, "seed": seed}
        return desc, examples, _TensorRows(preprocess_digits(images[keep])), loaded.preprocessing

    if loaded.transform is None:
        raise ConceptvecError(
            f"model {loaded.name} has no image preprocessing of its own; pass transform= (a callable from a PIL image to a "
            f"tensor), a torch Dataset of prepared tensors as data, or a model spec such as torchvision:NAME."
        )
    files = image_files(data, per_class=per_class, seed=seed, class_index=class_index)
    examples = {
        "id": list(files.paths),
        "label": list(files.labels),
        "label_name": [files.classes[c] if c >= 0 else "" for c in files.labels],
        "source": list(files.paths),
    }
    desc = {**files.describe(), "examples_sha256": _digest(examples)}
    return desc, examples, _ImageDataset(files, loaded.transform), loaded.preprocessing


def _prepare_dataset(loaded: LoadedModel, data: Dataset, per_class: int | None, seed: int):
    n = len(data)  # type: ignore[arg-type]
    labels = _dataset_labels(data, n)
    keep = list(range(n))
    if per_class is not None:
        if labels is None:
            raise ConceptvecError("per_class needs labels; give the Dataset a .targets attribute (as torchvision datasets have).")
        keep = sample_per_class(labels, per_class, seed)
    examples = {
        "id": [f"dataset-{i}" for i in keep],
        "label": [int(labels[i]) if labels is not None else -1 for i in keep],
        "label_name": [str(int(labels[i])) if labels is not None else "" for i in keep],
        "source": [f"dataset:{i}" for i in keep],
    }
    desc = {"kind": "torch-dataset", "type": f"{type(data).__module__}.{type(data).__qualname__}", "n_examples": len(keep),
            "per_class": per_class, "seed": seed, "examples_sha256": _digest(examples)}
    return desc, examples, _Prepared(data, keep), {"note": "a Dataset of prepared tensors: no preprocessing applied"}


def _dataset_labels(data: Dataset, n: int) -> np.ndarray | None:
    labels = getattr(data, "targets", None)
    if labels is None and isinstance(data, torch.utils.data.TensorDataset) and len(data.tensors) > 1:
        labels = data.tensors[1]
    if labels is None:
        return None
    labels = np.asarray(labels.tolist() if isinstance(labels, torch.Tensor) else labels)
    return labels if labels.shape == (n,) else None


def _digest(examples: dict[str, list]) -> str:
    # Same folder name, different files: the ids and labels tell a changed dataset apart.
    h = hashlib.sha256()
    for i, label in zip(examples["id"], examples["label"]):
        h.update(f"{i}\t{label}\n".encode())
    return h.hexdigest()


def _existing_store(out: Path, metadata: dict[str, Any], dtype: str, overwrite: bool) -> ActivationStore | None:
    if not out.exists() or overwrite:
        return None
    store = ActivationStore.open(out)
    asked = {**metadata, "dtype": dtype}
    differs = [k for k in ("model", "layer", "pooling", "data", "preprocessing", "dtype")
               if _comparable(store.metadata.get(k)) != _comparable(asked.get(k))]
    if differs:
        details = "; ".join(f"{k}: store has {_short(store.metadata.get(k))}, asked {_short(asked.get(k))}" for k in differs)
        raise StoreError(f"{out} already holds a different extraction ({details}). Use another --out or --overwrite.")
    remove_leftovers(out)
    return store


def _comparable(value: Any) -> Any:
    # Compare as the metadata file stores it (tuples become lists, paths strings).
    return json.loads(json.dumps(value, default=str))


def _short(value: Any, limit: int = 160) -> str:
    text = repr(_comparable(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."
