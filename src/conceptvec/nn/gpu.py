"""The GPU path of extraction: JPEGs decoded, resized, cropped and normalised on the GPU, the model in bf16, channels-last.

On a GPU the CPU's JPEG decoding limits extraction long before the model does (Inception V3 to
``Mixed_7b`` runs thousands of images a second on an H100; one core decodes about a hundred). Here
DataLoader workers only read the files' bytes into pinned host memory; the GPU decodes a batch of
them at once (``torchvision.io.decode_jpeg`` on a list, nvJPEG), resizes each image's shorter side
with antialiasing, centre-crops, stacks, normalises and hands the model a channels-last batch under
bf16 autocast. The same functions run on CPU tensors, so their agreement with the PIL path is tested
without a GPU (``tests/nn/test_gpu.py``); their speed on a GPU has not been measured (docs/gpu.md).

torchvision 0.29 deprecates its decoders in favour of TorchCodec; they still work, and the
deprecation warning is silenced here. Moving to TorchCodec is left for when it is pinned beside torch.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .hooks import layer_runner
from .runner import on_device

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class EncodedFiles(Dataset):
    """The raw bytes of image files as 1-D uint8 tensors (decoded later, on the device)."""

    def __init__(self, root: str | Path, paths: Sequence[str]):
        self.root, self.paths = Path(root), list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.fromfile(self.root / self.paths[i], dtype=np.uint8))


def decode_jpegs(encoded: list[torch.Tensor], device: str | torch.device) -> list[torch.Tensor]:
    """Decode a batch of JPEGs at once on ``device`` (nvJPEG on CUDA): a list of (3, H, W) uint8 RGB tensors."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29's notice that TorchCodec supersedes it
        return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)


def preprocess(images: list[torch.Tensor], *, resize: int, crop: int, mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD, channels_last: bool = True) -> torch.Tensor:
    """``Resize(resize)``, ``CenterCrop(crop)``, ``ToTensor()``, ``Normalize(mean, std)`` on uint8 (3, H, W) tensors.

    Runs where the images are (GPU or CPU). Returns a float32 (N, 3, crop, crop) batch, channels-last if asked.
    """
    from torchvision.transforms.v2 import functional as F

    out = torch.empty((len(images), 3, crop, crop), dtype=torch.float32, device=images[0].device)
    for k, image in enumerate(images):
        # Antialiased bilinear on uint8, as PIL's Resize does; the shorter side to `resize`.
        image = F.resize(image, [resize], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
        out[k] = F.center_crop(image, [crop, crop]).float()
    m = torch.tensor(mean, device=out.device).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, device=out.device).view(1, 3, 1, 1) * 255.0
    out = (out - m) / s
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def as_list(batch: list[torch.Tensor]) -> list[torch.Tensor]:
    """DataLoader collate of encoded files: the list as it is (the bytes differ in length)."""
    return batch


def pooled_jpegs(module: torch.nn.Module, layer: str, root: str | Path, paths: Sequence[str], *, resize: int, crop: int,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, batch_size: int = 256,
                 loaders: int = 8, device: str = "cuda", bf16: bool = True, pool: str = "avg") -> np.ndarray:
    """The pooled ``layer`` of ``module`` over JPEG files, decoded and preprocessed on ``device``: (n, units) float32.

    DataLoader processes (``loaders``) read the bytes into pinned memory; decoding, preprocessing and the
    forward pass (bf16 autocast on CUDA, channels-last) run on ``device``; one device-to-host copy per batch.
    """
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    loader = DataLoader(EncodedFiles(root, paths), batch_size=batch_size, num_workers=loaders, collate_fn=as_list,
                        pin_memory=cuda, prefetch_factor=4 if loaders else None, persistent_workers=False)
    module = on_device(module.eval(), dev, channels_last=True)
    amp: Any = torch.autocast("cuda", dtype=torch.bfloat16) if (cuda and bf16) else torch.autocast("cpu", enabled=False)
    rows = []
    with layer_runner(module, layer, pool) as run, torch.inference_mode(), amp:
        for encoded in loader:
            images = decode_jpegs(encoded, dev)
            rows.append(run(preprocess(images, resize=resize, crop=crop, mean=mean, std=std)).float().cpu())
    return torch.cat(rows).numpy() if rows else np.zeros((0, 0), np.float32)
