"""The model over the data: datasets of examples, batches that never cross a chunk, one forward per batch to the layer.

``prepare_data`` turns what the user gave (``digits``, image files, a torch Dataset) into the planned
examples and a Dataset yielding ``(tensor or None, index)``; ``run_chunks`` runs the model to the
layer batch by batch under ``torch.inference_mode`` and writes every complete chunk of pooled vectors.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ConceptvecError
from ..progress import progress_bar
from ..sources.images import ImageFiles, count_transparent, image_files, open_image, sample_per_class
from ..models.hooks import layer_runner, layers_runner
from ..models.layers import LoadedModel


class ImageDataset(Dataset):
    def __init__(self, files: ImageFiles, transform, background: str = "white"):
        self.files, self.transform, self.background = files, transform, background

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        image = open_image(self.files.root / self.files.paths[i], self.background)
        if image is None:
            return None, i
        return self.transform(image), i


class TensorRows(Dataset):
    """Rows of an already prepared batch tensor (the bundled digits)."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], i


class PreparedDataset(Dataset):
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


def collate(batch):
    """(stacked tensors, their indices, indices of unreadable examples) of a batch of (tensor or None, index)."""
    ok = [(x, i) for x, i in batch if x is not None]
    bad = [i for x, i in batch if x is None]
    xs = torch.stack([x for x, _ in ok]) if ok else None
    return xs, [i for _, i in ok], bad


def run_chunks(module: torch.nn.Module, *, layer: str | list[str], pool: str, dataset: Any, todo: list[tuple[int, int, int]],
               writer: Any, n: int, finished: int, device: torch.device, batch_size: int, workers: int, autocast: bool,
               channels_last: bool, progress: bool, device_batches: Any = None, autocast_dtype: str = "float16",
               layer_widths: list[int] | None = None) -> None:
    """Pool ``layer`` over the chunks ``todo`` ((index, start, stop) of example rows) and write each complete chunk.

    The keywords are those of ``ray_images.run_chunks_ray`` (the Ray engine's runner), with the model already loaded
    and ``device`` resolved; ``autocast`` is whether autocast runs (CUDA only). ``device_batches``
    (``gpu.DeviceBatches``) replaces ``dataset``: files read as bytes, decoded and preprocessed on ``device``; the
    chunks, batches and writes are the same. Several layers (a list) are pooled side by side, ``layer_widths`` filled
    with each one's width.
    """
    batches = planned_batches(todo, batch_size)
    cuda = device.type == "cuda"
    # workers as the glossary counts them, this process included: it runs the model while workers - 1
    # DataLoader processes read and decode examples (0 or 1: this process does both).
    loaders = workers - 1 if workers > 1 else 0
    if device_batches is not None:
        dataset, collate_fn = device_batches.dataset, device_batches.collate
    else:
        collate_fn = collate
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=loaders, collate_fn=collate_fn, pin_memory=cuda,
                        prefetch_factor=4 if loaders else None)
    module = on_device(module, device, channels_last)
    amp = autocast_context(autocast, autocast_dtype)
    pending = iter(todo)
    index, start, stop = next(pending, (None, 0, 0))
    pooled: list[torch.Tensor] = []
    skipped: list[int] = []
    # Several layers: one forward per batch, their pooled outputs side by side (extraction.layers splits them).
    runner = (layers_runner(module, list(layer), pool, widths=layer_widths) if isinstance(layer, (list, tuple))
              else layer_runner(module, layer, pool))
    name = layer if isinstance(layer, str) else ", ".join(layer)
    with runner as run, torch.inference_mode(), amp, progress_bar("img", disable=not progress) as bar:
        task = bar.add_task(f"extract {name}", total=n, completed=finished)
        for xs, idx, bad in loader:
            if device_batches is not None:
                xs, failed = device_batches.inputs(xs, device, channels_last)
                bad = bad + [idx[k] for k in failed]
                idx = [i for k, i in enumerate(idx) if k not in failed]
            skipped += bad
            if xs is not None:
                pooled.append(forward(run, xs, device, channels_last))
            bar.advance(task, len(idx) + len(bad))
            if max(idx + bad) == stop - 1:
                # One device-to-host copy per chunk; only this chunk's vectors are held in memory.
                rows = torch.cat(pooled).cpu().numpy() if pooled else np.zeros((0, 0), np.float32)
                writer.write_chunk(index, start, stop, rows, skipped)
                pooled, skipped = [], []
                index, start, stop = next(pending, (None, 0, 0))


def on_device(module: torch.nn.Module, dev: torch.device, channels_last: bool) -> torch.nn.Module:
    """The model on ``dev``, in channels-last memory format when asked (faster convolutions)."""
    module = module.to(dev)
    return module.to(memory_format=torch.channels_last) if channels_last else module


def autocast_context(use_autocast: bool, dtype: str = "float16"):
    """Autocast on CUDA in ``dtype`` (``float16`` or ``bfloat16``), or nothing."""
    return torch.autocast("cuda", dtype=getattr(torch, dtype)) if use_autocast else contextlib.nullcontext()


def forward(run, xs: torch.Tensor, dev: torch.device, channels_last: bool) -> torch.Tensor:
    """The pooled layer output of one batch ``xs`` (``run`` from ``hooks.layer_runner``), on ``dev``."""
    xs = xs.to(dev, non_blocking=True)
    if channels_last and xs.ndim == 4:
        xs = xs.contiguous(memory_format=torch.channels_last)
    return run(xs)


def planned_batches(todo, batch_size: int) -> list[list[int]]:
    """The batches of example indices of the chunks ``todo``; a batch never crosses a chunk boundary, so a resumed
    run, or one spread over workers, computes the very batches of an uninterrupted one."""
    return [list(range(b, min(b + batch_size, stop))) for _, start, stop in todo for b in range(start, stop, batch_size)]


def prepare_data(loaded: LoadedModel, data: Any, per_class: int | None, seed: int, class_index, *, background: str = "white"):
    """(description, planned examples, Dataset yielding (tensor or None, i), preprocessing used)."""
    if isinstance(data, Dataset):
        return prepare_dataset(loaded, data, per_class, seed)
    if isinstance(data, str) and data == "digits":
        from ..sources.digits import load_digits_images
        from ..models.digits import preprocess_digits
        from ..sources.digits import digits_examples

        if loaded.name != "digits":
            raise ConceptvecError("data 'digits' is prepared for the bundled digits model (--model digits); give an image folder for other models.")
        images, labels = load_digits_images()
        examples = digits_examples()
        keep = np.arange(len(labels)) if per_class is None else np.asarray(sample_per_class(labels, per_class, seed))
        examples = {k: [v[i] for i in keep] for k, v in examples.items()}
        desc = {"kind": "sklearn-digits", "n_examples": int(len(keep)), "per_class": per_class, "seed": seed}
        return desc, examples, TensorRows(preprocess_digits(images[keep])), loaded.preprocessing

    if loaded.transform is None:
        raise ConceptvecError(
            f"model {loaded.name} has no image preprocessing of its own; pass transform= (a callable from a PIL image to a "
            f"tensor), a torch Dataset of prepared tensors as data, or a model spec such as torchvision:NAME."
        )
    # ImageFiles chosen by the caller (e.g. every 10th of a list) are taken as they are.
    files = data if isinstance(data, ImageFiles) else image_files(data, per_class=per_class, seed=seed, class_index=class_index)
    examples = {
        "id": list(files.paths),
        "label": list(files.labels),
        "label_name": [files.classes[c] if c >= 0 else "" for c in files.labels],
        "source": list(files.paths),
    }
    # The background changes the rows of transparent images, so it is part of what the store is of.
    desc = {**files.describe(), "examples_sha256": examples_digest(examples), "files_sha256": files_state_digest(files),
            "background": background, "n_transparent": count_transparent(files)}
    return desc, examples, ImageDataset(files, loaded.transform, background), loaded.preprocessing


def prepare_dataset(loaded: LoadedModel, data: Dataset, per_class: int | None, seed: int):
    n = len(data)  # type: ignore[arg-type]
    labels = dataset_labels(data, n)
    keep = list(range(n))
    if per_class is not None:
        if labels is None:
            raise ConceptvecError("per_class needs labels; give the Dataset a .targets attribute (as torchvision datasets have).")
        keep = sample_per_class(labels, per_class, seed)
    examples: dict[str, list[Any]] = {
        "id": [f"dataset-{i}" for i in keep],
        "label": [int(labels[i]) if labels is not None else -1 for i in keep],
        "label_name": [str(int(labels[i])) if labels is not None else "" for i in keep],
        "source": [f"dataset:{i}" for i in keep],
    }
    desc = {"kind": "torch-dataset", "type": f"{type(data).__module__}.{type(data).__qualname__}", "n_examples": len(keep),
            "per_class": per_class, "seed": seed, "examples_sha256": examples_digest(examples), **dataset_contents(data)}
    return desc, examples, PreparedDataset(data, keep), {"note": "a Dataset of prepared tensors: no preprocessing applied"}


def dataset_contents(data: Any) -> dict[str, str]:
    """What identifies a Dataset's items by content, for the store's fingerprint: the sha256 of a TensorDataset's
    tensors (in memory: cheap and complete); any other Dataset's items are read only while extracting, so it is
    told apart by its type and length alone, and the store says so (``items``)."""
    import hashlib

    tensors = getattr(data, "tensors", None)
    if isinstance(tensors, (tuple, list)) and tensors and all(isinstance(t, torch.Tensor) for t in tensors):
        h = hashlib.sha256()
        for t in tensors:
            h.update(str((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return {"tensors_sha256": h.hexdigest()}
    return {"items": "not checked: a Dataset other than a TensorDataset is told apart by its type and length"}


def dataset_labels(data: Dataset, n: int) -> np.ndarray | None:
    labels = getattr(data, "targets", None)
    if labels is None and isinstance(data, torch.utils.data.TensorDataset) and len(data.tensors) > 1:
        labels = data.tensors[1]
    if labels is None:
        return None
    labels = np.asarray(labels.tolist() if isinstance(labels, torch.Tensor) else labels)
    return labels if labels.shape == (n,) else None


def files_state_digest(files: ImageFiles) -> str:
    """A digest of every image file's size and modification time (ns): an image rewritten at the same path makes other data.

    One ``stat`` per file, not a read of every image: checking that a finished store is complete stays cheap on a
    large folder. A rewrite that keeps both the size and the modification time (``touch -r``) is not seen.
    """
    h = hashlib.sha256()
    for path in files.paths:
        full = files.root / path  # as ImageDataset opens it (an absolute path stays itself)
        try:
            st = full.stat()
            h.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:  # unreadable files are skipped at extraction and listed; their absence is part of the data
            h.update(f"{path}\t-\n".encode())
    return h.hexdigest()


def examples_digest(examples: dict[str, list[Any]]) -> str:
    # Same folder name, different files: the ids and labels tell a changed dataset apart.
    h = hashlib.sha256()
    for i, label in zip(examples["id"], examples["label"]):
        h.update(f"{i}\t{label}\n".encode())
    return h.hexdigest()
