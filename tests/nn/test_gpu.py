"""The GPU path's decoding and preprocessing, checked on CPU tensors against the PIL path (no GPU here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

import conceptvec as cv
from conceptvec.nn.gpu import IMAGENET_MEAN, IMAGENET_STD, EncodedFiles, decode_jpegs, pooled_jpegs, preprocess


def jpegs(root, sizes=((333, 250), (400, 500), (299, 299), (120, 180), (64, 90))):
    """Smooth random JPEGs (they compress like photos) of odd sizes, portrait and landscape."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i, (h, w) in enumerate(sizes):
        small = rng.integers(0, 255, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.BILINEAR).save(root / f"{i}.jpg", quality=90)
    return [f"{i}.jpg" for i in range(len(sizes))]


def pil_path(size: int, crop: int) -> T.Compose:
    return T.Compose([T.Resize(size), T.CenterCrop(crop), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def test_decoding_and_preprocessing_match_the_pil_path(tmp_path):
    paths = jpegs(tmp_path / "im")
    files = EncodedFiles(tmp_path / "im", paths)
    images = decode_jpegs([files[i] for i in range(len(files))], "cpu")
    for image, p in zip(images, paths):  # the same libjpeg decoding as PIL's
        assert torch.equal(image, torch.from_numpy(np.array(Image.open(tmp_path / "im" / p).convert("RGB"))).permute(2, 0, 1))
    ours = preprocess(images, resize=299, crop=299)
    assert ours.shape == (5, 3, 299, 299) and ours.is_contiguous(memory_format=torch.channels_last)
    reference = torch.stack([pil_path(299, 299)(Image.open(tmp_path / "im" / p).convert("RGB")) for p in paths])
    diff = (ours - reference).abs()
    # Antialiased resizing rounds to whole grey levels differently here and there: at most one level, rarely.
    assert diff.max() <= 1.001 / 255 / min(IMAGENET_STD) and diff.mean() < 1e-4


def test_pooled_jpegs_on_cpu_equal_extract(tmp_path):
    paths = jpegs(tmp_path / "im")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU()).eval()
    ours = pooled_jpegs(model, "3", tmp_path / "im", paths, resize=64, crop=56, batch_size=2, loaders=0, device="cpu")
    store = cv.extract(model, layer="3", data=tmp_path / "im", out=tmp_path / "s", transform=pil_path(64, 56), batch_size=2,
                       device="cpu", progress=False)
    assert store.ids.tolist() == paths
    np.testing.assert_allclose(ours, store.activations, atol=2e-3, rtol=1e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on the project's CI machines)")
def test_gpu_path_equals_cpu_path(tmp_path):  # pragma: no cover - run where a GPU is
    paths = jpegs(tmp_path / "im")
    files = EncodedFiles(tmp_path / "im", paths)
    encoded = [files[i] for i in range(len(files))]
    cpu = preprocess(decode_jpegs(encoded, "cpu"), resize=299, crop=299)
    gpu = preprocess(decode_jpegs(encoded, "cuda"), resize=299, crop=299).cpu()
    # nvJPEG's IDCT and the GPU's resize differ from libjpeg's in the last grey level or two
    assert (gpu - cpu).abs().mean() < 0.02
