"""The device path of extraction: JPEGs decoded, resized, cropped and normalised on the GPU.

On a GPU the CPU's JPEG decoding limits extraction long before the model does (Inception V3 to
``Mixed_7b`` runs thousands of images a second on an H100; one core decodes about a hundred). On this
path DataLoader workers only read the files' bytes (into pinned host memory on CUDA); the device
decodes a batch of them at once (``torchvision.io.decode_jpeg`` on a list, nvJPEG on CUDA), resizes
each image's shorter side with antialiasing, centre-crops, stacks and normalises, and the model gets a
channels-last batch (under autocast when asked). ``cv.extract(..., decode="auto" | "cpu" | "device")``
chooses it (``choose_decoding``); ``runner.run_chunks`` runs it in the very chunks and batches of the
CPU path, so it resumes as that does.

The same functions run on CPU tensors (``decode="device"`` with ``device="cpu"``), so their
agreement with the PIL path is tested without a GPU (``tests/nn/test_gpu.py``). Files that are not
JPEGs (PNG, ...) are decoded on the CPU by PIL and then preprocessed with the rest; a JPEG the device
cannot decode is tried with PIL before it counts as unreadable.

JPEGs are decoded by TorchCodec when it is installed (``pip install torchcodec``; 0.16 and later decode
batches on CUDA), else by torchvision's ``decode_jpeg``, which 0.29 deprecates in favour of TorchCodec
(it still works; its warning is silenced here).
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConceptvecError, ConceptvecWarning
from ..sources.images import ImageFiles, open_image

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
JPEG_MAGIC = b"\xff\xd8\xff"
INTERPOLATIONS = ("bilinear", "bicubic")


@dataclass(frozen=True)
class DevicePreprocessing:
    """``Resize(resize)`` (shorter side, antialiased), ``CenterCrop(crop)``, ``ToTensor()``, ``Normalize(mean, std)``."""

    resize: int
    crop: tuple[int, int]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"

    def describe(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def __call__(self, images: list[torch.Tensor], channels_last: bool = True) -> torch.Tensor:
        return preprocess(images, resize=self.resize, crop=self.crop, mean=self.mean, std=self.std,
                          interpolation=self.interpolation, channels_last=channels_last)


def device_preprocessing(transform: Any) -> tuple[DevicePreprocessing | None, str]:
    """``transform`` as a DevicePreprocessing, or None and why the device cannot reproduce it.

    Recognised: torchvision's weights presets (``ImageClassification``), and a ``Compose`` of exactly
    ``Resize`` (one size: the shorter side), ``CenterCrop``, ``ToTensor`` (or timm's ``MaybeToTensor``),
    ``Normalize``, with bilinear or bicubic interpolation (what torchvision, timm and the paper use).
    """
    name = type(transform).__name__
    if name == "ImageClassification" and hasattr(transform, "resize_size"):  # torchvision.transforms._presets
        if len(transform.resize_size) != 1 or transform.antialias is False:
            return None, f"its resize {transform.resize_size} is not one shorter side, antialiased"
        steps = dict(size=transform.resize_size, crop=transform.crop_size, interpolation=transform.interpolation,
                     mean=transform.mean, std=transform.std)
    elif name == "Compose":
        kinds = [type(t).__name__ for t in transform.transforms]
        if kinds not in (["Resize", "CenterCrop", "ToTensor", "Normalize"], ["Resize", "CenterCrop", "MaybeToTensor", "Normalize"]):
            return None, f"its steps {kinds} are not Resize, CenterCrop, ToTensor, Normalize"
        resize, crop, _, norm = transform.transforms
        if getattr(resize, "max_size", None) is not None or getattr(resize, "antialias", True) is False:
            return None, "its Resize has max_size or no antialiasing"
        steps = dict(size=resize.size, crop=crop.size, interpolation=resize.interpolation, mean=norm.mean, std=norm.std)
    else:
        return None, f"its transform {name} is not a resize, centre crop and normalisation the device path knows"
    size = [steps["size"]] if isinstance(steps["size"], int) else list(steps["size"])
    if len(size) != 1:
        return None, f"its resize to {size} is not to one shorter side"
    interpolation = getattr(steps["interpolation"], "value", str(steps["interpolation"])).lower()
    if interpolation not in INTERPOLATIONS:
        return None, f"its {interpolation} interpolation is not one of {', '.join(INTERPOLATIONS)}"
    crop = [steps["crop"]] * 2 if isinstance(steps["crop"], int) else list(steps["crop"]) * (2 if len(steps["crop"]) == 1 else 1)
    return DevicePreprocessing(int(size[0]), (int(crop[0]), int(crop[1])), tuple(round(float(v), 7) for v in steps["mean"]),
                               tuple(round(float(v), 7) for v in steps["std"]), interpolation), ""


class EncodedImages(Dataset):
    """``(image, i)`` of image files: a JPEG as its raw bytes (1-D uint8, decoded later on the device), any other
    image decoded here by PIL as (3, H, W) uint8, or None when unreadable (as ``runner.ImageDataset``)."""

    def __init__(self, files: ImageFiles, background: str = "white"):
        self.files, self.background = files, background

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int]:
        path = Path(self.files.root) / self.files.paths[i]
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError:
            return None, i
        if data[:3].tobytes() == JPEG_MAGIC:
            return torch.from_numpy(data), i
        image = open_image(path, self.background)
        return (None if image is None else pil_tensor(image)), i


def pil_tensor(image) -> torch.Tensor:
    """A PIL RGB image as a (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def collate_encoded(batch: list[tuple[torch.Tensor | None, int]]):
    """(list of readable images, their indices, indices of unreadable ones): the bytes differ in length, so no stacking."""
    return [x for x, _ in batch if x is not None], [i for x, i in batch if x is not None], [i for x, i in batch if x is None]


@functools.lru_cache(maxsize=1)
def jpeg_decoder() -> tuple[str, Callable[..., list[torch.Tensor]]]:
    """(name and version, batch decoder): TorchCodec's ``decode_jpeg`` when it is installed and loads, else torchvision's.

    Both take a list of encoded JPEGs and decode it in one nvJPEG call on CUDA; on CPU both are libjpeg-turbo,
    PIL's decoder (tested equal pixel for pixel). TorchCodec is optional: its PyPI wheel brings nvJPEG and needs
    a CUDA build of torch, which is why it is tried rather than required.
    """
    try:
        import torchcodec
        from torchcodec.decoders import decode_jpeg

        return f"torchcodec {torchcodec.__version__}", lambda encoded, device: decode_jpeg(encoded, mode="RGB", device=device)
    except Exception:  # noqa: BLE001 - absent, or its libraries do not load against this torch: torchvision's decoder
        import torchvision
        from torchvision.io import ImageReadMode, decode_jpeg

        def torchvision_decode(encoded, device):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29's notice that TorchCodec supersedes it
                warnings.simplefilter("ignore", UserWarning)  # its note on CUDA batches of differing sizes
                return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)

        return f"torchvision {torchvision.__version__}", torchvision_decode


def decode_jpegs(encoded: list[torch.Tensor], device: str | torch.device) -> list[torch.Tensor]:
    """Decode a batch of JPEGs at once on ``device`` (nvJPEG on CUDA): a list of (3, H, W) uint8 RGB tensors."""
    return list(jpeg_decoder()[1](list(encoded), device))


def decode_one(encoded: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """One JPEG on ``device``, else by PIL on the CPU (CMYK or what nvJPEG refuses), else None (unreadable)."""
    try:
        return decode_jpegs([encoded], device)[0]
    except RuntimeError:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(encoded.cpu().numpy().tobytes())) as im:
                return pil_tensor(im.convert("RGB")).to(device)
        except (OSError, UnidentifiedImageError, ValueError):
            return None


class DeviceBatches:
    """The device path as ``runner.run_chunks`` takes it: the dataset, its collate, and a batch to the model's input."""

    def __init__(self, files: ImageFiles, steps: DevicePreprocessing, background: str = "white"):
        self.dataset, self.steps, self.collate = EncodedImages(files, background), steps, collate_encoded

    def inputs(self, images: list[torch.Tensor], dev: torch.device, channels_last: bool) -> tuple[torch.Tensor | None, list[int]]:
        """(the preprocessed batch on ``dev``, positions in ``images`` that could not be decoded)."""
        decoded: list[torch.Tensor | None] = [None] * len(images)
        jpegs = [k for k, x in enumerate(images) if x.ndim == 1]
        # Preprocessing in float32 whatever autocast the model runs under: it is the CPU path's arithmetic.
        with torch.autocast(dev.type, enabled=False):
            if jpegs:
                out: Sequence[torch.Tensor | None]
                try:
                    out = decode_jpegs([images[k] for k in jpegs], dev)
                except RuntimeError:  # one bad file fails the batch: decode them one by one
                    out = [decode_one(images[k], dev) for k in jpegs]
                for k, image in zip(jpegs, out):
                    decoded[k] = image
            for k, x in enumerate(images):
                if x.ndim == 3:
                    decoded[k] = x.to(dev, non_blocking=True)
            bad = [k for k, x in enumerate(decoded) if x is None]
            ok = [x for x in decoded if x is not None]
            return (self.steps(ok, channels_last=channels_last) if ok else None), bad


@dataclass
class Decoding:
    """What ``choose_decoding`` decided: where images are decoded, and the device path's batches when there."""

    asked: str
    used: str
    batches: DeviceBatches | None = None
    not_jpeg: int = 0

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"asked": self.asked, "used": self.used}
        if self.batches is not None:
            out.update(preprocessing=self.batches.steps.describe(), files_not_jpeg=self.not_jpeg, decoder=jpeg_decoder()[0])
        return out


def choose_decoding(decode: str, *, transform: Any, name: str, dataset: Any, dev: torch.device, engine: str) -> Decoding:
    """Where to decode and preprocess: ``decode`` (``auto``, ``cpu``, ``device``) against what the data and model allow.

    ``auto`` takes the device path on CUDA when it can, and says in one warning line why not when it cannot;
    ``device`` that cannot be honoured is refused, naming the fix.
    """
    if decode == "cpu" or (decode == "auto" and dev.type != "cuda"):
        return Decoding(decode, "cpu")
    files = getattr(dataset, "files", None)
    steps, why = device_preprocessing(transform) if files is not None else (None, "")
    if engine != "local":
        why = f"--engine {engine} decodes on its actors' CPUs"
    elif files is None:
        why = "the data is not image files (a prepared Dataset or the bundled digits)"
    elif steps is not None and not any(str(p).lower().endswith(JPEG_SUFFIXES) for p in files.paths):
        why, steps = "none of the files is a JPEG", None
    else:
        why = f"it cannot reproduce {name}'s preprocessing: {why}" if steps is None else ""
    if why or files is None or steps is None:  # why is set whenever files or steps is None
        if decode == "device":
            raise ConceptvecError(f"decode='device' (--decode device) is not possible here: {why}. Use --decode cpu (or auto).")
        warnings.warn(f"decoding images on the CPU although the device is {dev}: {why} (--decode cpu says so and silences this).",
                      ConceptvecWarning, stacklevel=3)
        return Decoding(decode, "cpu")
    others = [p for p in files.paths if not str(p).lower().endswith(JPEG_SUFFIXES)]
    if others:
        warnings.warn(f"{len(others)} of {len(files)} files are not JPEGs (e.g. {others[0]}): decoded on the CPU, then "
                      f"preprocessed on {dev} with the rest.", ConceptvecWarning, stacklevel=3)
    return Decoding(decode, "device", DeviceBatches(files, steps, getattr(dataset, "background", "white")), len(others))


def preprocess(images: list[torch.Tensor], *, resize: int, crop: int | Sequence[int], mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD, interpolation: str = "bilinear", channels_last: bool = True) -> torch.Tensor:
    """``Resize(resize)``, ``CenterCrop(crop)``, ``ToTensor()``, ``Normalize(mean, std)`` on uint8 (3, H, W) tensors.

    Runs where the images are (GPU or CPU). Returns a float32 (N, 3, crop, crop) batch, channels-last if asked.
    """
    from torchvision.transforms.v2 import functional as F

    h, w = (crop, crop) if isinstance(crop, int) else tuple(crop)
    mode = F.InterpolationMode(interpolation)
    out = torch.empty((len(images), 3, h, w), dtype=torch.float32, device=images[0].device)
    for k, image in enumerate(images):
        # Antialiased on uint8, as PIL's Resize does; the shorter side to `resize`.
        image = F.resize(image, [resize], interpolation=mode, antialias=True)
        out[k] = F.center_crop(image, [h, w]).float()
    m = torch.tensor(mean, device=out.device).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, device=out.device).view(1, 3, 1, 1) * 255.0
    out = (out - m) / s
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out
