"""The device path of extraction (decoding and preprocessing on the device), checked on CPU tensors against the PIL path.

No GPU here: ``decode="device"`` with ``device="cpu"`` runs the same code (decode_jpeg on CPU tensors), and the
device path's store must equal the PIL path's in ids, order and labels, its rows within a stated tolerance.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.errors import ConceptvecError, ConceptvecWarning
from conceptvec.sources.images import image_files
from conceptvec.extraction.gpu import (IMAGENET_MEAN, IMAGENET_STD, DevicePreprocessing, EncodedImages, choose_decoding, decode_jpegs,
                               device_preprocessing, jpeg_decoder, preprocess)
from conceptvec.extraction.runner import ImageDataset

# One grey level of rounding in the antialiased resize, at most two where a small image is enlarged, divided by the
# smallest std: the largest input difference between the two paths after normalisation.
INPUT_TOLERANCE = 2.001 / 255 / min(IMAGENET_STD)


def jpegs(root, sizes=((333, 250), (400, 500), (299, 299), (120, 180), (64, 90))):
    """Smooth random JPEGs (they compress like photos) of odd sizes, portrait and landscape."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i, (h, w) in enumerate(sizes):
        small = rng.integers(0, 255, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.BILINEAR).save(root / f"{i}.jpg", quality=90)
    return [f"{i}.jpg" for i in range(len(sizes))]


def image_tree(root, n_per_class=5, png=()):
    """Two class folders of smooth random JPEGs (the names in ``png`` saved as PNG instead)."""
    rng = np.random.default_rng(1)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            h, w = 60 + 7 * i, 80 - 3 * i
            small = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
            image = Image.fromarray(small).resize((w, h), Image.BILINEAR)
            name = f"{c}/img_{i}"
            image.save(root / f"{name}.png") if name in png else image.save(root / f"{name}.jpg", quality=90)
    return root


def pil_path(size: int, crop: int) -> T.Compose:
    return T.Compose([T.Resize(size), T.CenterCrop(crop), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU()).eval()


def extract(root, out, decode, **kw):
    kw = {"batch_size": 3, "chunk_size": 4, "device": "cpu", "progress": False, **kw}
    return cv.extract(tiny_cnn(), layer="3", data=root, out=out, transform=pil_path(48, 40), decode=decode, **kw)


def assert_same_store(device_store, cpu_store):
    """Same ids, order, labels and skipped files; rows within what one grey level of the input makes of them."""
    for column in ("id", "label", "label_name", "source"):
        assert device_store.examples.column(column).to_pylist() == cpu_store.examples.column(column).to_pylist()
    assert device_store.metadata["skipped"] == cpu_store.metadata["skipped"]
    a, b = np.asarray(device_store.activations), np.asarray(cpu_store.activations)
    assert a.shape == b.shape
    # pooled over the layer: a grey level here and there moves a row by far less than the largest activation
    np.testing.assert_allclose(a, b, atol=2e-3 * np.abs(b).max(), rtol=0)


def test_decoding_and_preprocessing_match_the_pil_path(tmp_path):
    paths = jpegs(tmp_path / "im")
    files = EncodedImages(image_files(tmp_path / "im"))
    images = decode_jpegs([files[i][0] for i in range(len(files))], "cpu")
    for image, p in zip(images, paths):  # the same libjpeg decoding as PIL's
        assert torch.equal(image, torch.from_numpy(np.array(Image.open(tmp_path / "im" / p).convert("RGB"))).permute(2, 0, 1))
    ours = preprocess(images, resize=299, crop=299)
    assert ours.shape == (5, 3, 299, 299) and ours.is_contiguous(memory_format=torch.channels_last)
    reference = torch.stack([pil_path(299, 299)(Image.open(tmp_path / "im" / p).convert("RGB")) for p in paths])
    diff = (ours - reference).abs()
    # Antialiased resizing rounds to whole grey levels differently here and there: at most one level, rarely.
    assert diff.max() <= 1.001 / 255 / min(IMAGENET_STD) and diff.mean() < 1e-4


def test_bicubic_resizing_matches_pil_within_two_grey_levels(tmp_path):
    paths = jpegs(tmp_path / "im")
    t = T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(200), T.ToTensor(),
                   T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    steps, why = device_preprocessing(t)
    assert steps == DevicePreprocessing(224, (200, 200), IMAGENET_MEAN, IMAGENET_STD, "bicubic") and why == ""
    files = EncodedImages(image_files(tmp_path / "im"))
    ours = steps(decode_jpegs([files[i][0] for i in range(len(files))], "cpu"))
    reference = torch.stack([t(Image.open(tmp_path / "im" / p).convert("RGB")) for p in paths])
    assert (ours - reference).abs().max() <= INPUT_TOLERANCE


def test_the_preprocessings_the_device_path_reproduces_and_those_it_does_not():
    from conceptvec.models.load import load_model

    steps, _ = device_preprocessing(load_model("torchvision:resnet18", "none").transform)  # torchvision's weights preset
    assert steps == DevicePreprocessing(256, (224, 224), IMAGENET_MEAN, IMAGENET_STD, "bilinear")
    steps, _ = device_preprocessing(T.Compose([T.Resize(299), T.CenterCrop(299), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]))
    assert steps == DevicePreprocessing(299, (299, 299))  # the paper's
    for transform, says in (
        (T.Compose([T.Resize((24, 24)), T.ToTensor()]), "steps"),
        (T.Compose([T.Resize((32, 40)), T.CenterCrop(24), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)]), "one shorter side"),
        (T.Compose([T.Resize(32, interpolation=T.InterpolationMode.NEAREST), T.CenterCrop(24), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)]), "nearest"),
        (lambda image: image, "function"),
    ):
        steps, why = device_preprocessing(transform)
        assert steps is None and says in why


def test_device_store_equals_the_pil_store(tmp_path):
    root = image_tree(tmp_path / "data")
    cpu = extract(root, tmp_path / "cpu", "cpu")
    device = extract(root, tmp_path / "device", "device")
    assert_same_store(device, cpu)
    assert device.n_examples == 10 and device.labels.tolist() == [0] * 5 + [1] * 5
    assert device.metadata["decode"] == {"asked": "device", "used": "device", "files_not_jpeg": 0, "decoder": jpeg_decoder()[0],
                                         "preprocessing": {"resize": 48, "crop": [40, 40], "mean": list(IMAGENET_MEAN),
                                                           "std": list(IMAGENET_STD), "interpolation": "bilinear"}}
    assert cpu.metadata["decode"] == {"asked": "cpu", "used": "cpu"}
    # On a CPU device, auto is the CPU path, silently.
    auto = extract(root, tmp_path / "auto", "auto")
    assert auto.metadata["decode"]["used"] == "cpu" and np.array_equal(auto.activations, cpu.activations)


def test_device_path_with_reading_workers(tmp_path):
    root = image_tree(tmp_path / "data")
    one = extract(root, tmp_path / "one", "device")
    workers = extract(root, tmp_path / "workers", "device", workers=3)
    assert np.array_equal(one.activations, workers.activations) and one.ids.tolist() == workers.ids.tolist()


def test_a_png_among_the_jpegs_goes_through_the_fallback_and_a_broken_file_is_skipped(tmp_path):
    root = image_tree(tmp_path / "data", png=("dog/img_2",))
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff" + bytes(200))  # a JPEG's start, then nothing decodable
    cpu = extract(root, tmp_path / "cpu", "cpu")
    with pytest.warns(ConceptvecWarning, match=r"1 of 11 files are not JPEGs \(e.g. dog/img_2.png\): decoded on the CPU"):
        device = extract(root, tmp_path / "device", "device")
    assert_same_store(device, cpu)
    assert device.metadata["skipped"]["sources"] == ["cat/broken.jpg"] and device.metadata["decode"]["files_not_jpeg"] == 1
    assert "dog/img_2.png" in device.ids.tolist()


def test_an_interrupted_device_run_resumes_to_the_same_store(tmp_path, monkeypatch):
    from conceptvec.storage.store import StoreWriter

    root = image_tree(tmp_path / "data")
    reference = extract(root, tmp_path / "ref", "device")
    original, written = StoreWriter.write_chunk, []

    def interrupted(self, *args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(args[0])
        original(self, *args, **kwargs)

    monkeypatch.setattr(StoreWriter, "write_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract(root, tmp_path / "run", "device")
    monkeypatch.setattr(StoreWriter, "write_chunk", original)
    assert len(list((tmp_path / "run.partial" / "chunks").glob("*.json"))) == 2
    # The CPU path does not continue the device path's partial store: their rows differ in the last digits.
    with pytest.raises(cv.StoreError, match="decode"):
        extract(root, tmp_path / "run", "cpu")
    resumed = extract(root, tmp_path / "run", "device")
    assert (resumed.path / "activations.npy").read_bytes() == (reference.path / "activations.npy").read_bytes()
    assert resumed.ids.tolist() == reference.ids.tolist()


def test_decode_refusals_name_the_fix(tmp_path):
    with pytest.raises(ConceptvecError, match=r"decode must be one of auto, cpu, device \(--decode\), got 'gpu'"):
        cv.ExtractConfig(decode="gpu")
    with pytest.raises(ConceptvecError, match=r"autocast_dtype must be one of float16, bfloat16"):
        cv.ExtractConfig(autocast_dtype="int8")
    x = torch.rand(6, 3, 40, 40)
    with pytest.raises(ConceptvecError, match=r"not image files.*Use --decode cpu"):
        cv.extract(tiny_cnn(), layer="3", data=torch.utils.data.TensorDataset(x), out=tmp_path / "s", decode="device",
                   device="cpu", progress=False)
    root = image_tree(tmp_path / "data")
    with pytest.raises(ConceptvecError, match=r"cannot reproduce .*preprocessing.*Use --decode cpu"):
        cv.extract(tiny_cnn(), layer="3", data=root, out=tmp_path / "s", transform=T.Compose([T.Resize((24, 24)), T.ToTensor()]),
                   decode="device", device="cpu", progress=False)
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.partial").exists()


def test_auto_on_cuda_takes_the_device_path_or_says_why_not(tmp_path):
    # The choice alone (no GPU needed): CUDA with JPEGs and a known preprocessing takes the device path.
    root = image_tree(tmp_path / "data")
    files = image_files(root)
    cuda = torch.device("cuda")
    chosen = choose_decoding("auto", transform=pil_path(48, 40), name="m", dataset=ImageDataset(files, None), dev=cuda, engine="local")
    assert chosen.used == "device" and chosen.batches is not None
    unknown = T.Compose([T.Resize((24, 24)), T.ToTensor()])
    with pytest.warns(ConceptvecWarning, match=r"decoding images on the CPU although the device is cuda: it cannot reproduce m's"):
        chosen = choose_decoding("auto", transform=unknown, name="m", dataset=ImageDataset(files, None), dev=cuda, engine="local")
    assert chosen.used == "cpu"
    with pytest.warns(ConceptvecWarning, match="--engine ray decodes on its actors' CPUs"):
        assert choose_decoding("auto", transform=pil_path(48, 40), name="m", dataset=ImageDataset(files, None), dev=cuda,
                               engine="ray").used == "cpu"


def test_cli_decode_option(tmp_path):
    from conceptvec.cli import app

    root = image_tree(tmp_path / "data")
    base = ["extract", "--model", "torchvision:resnet18", "--weights", "none", "--layer", "layer1", "--data", str(root),
            "--device", "cpu", "--batch-size", "4"]
    bad = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "bad"), "--decode", "gpu"])
    assert bad.exit_code == 2 and "decode must be one of auto, cpu, device (--decode), got 'gpu'" in " ".join(bad.output.split())
    assert len(bad.output.strip().splitlines()) == 1
    good = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "s"), "--decode", "device"])
    assert good.exit_code == 0, good.output
    store = cv.ActivationStore.open(tmp_path / "s")
    assert store.metadata["decode"]["used"] == "device" and store.metadata["decode"]["preprocessing"]["resize"] == 256


def test_torchvision_decoder_when_torchcodec_is_absent_and_torchcodec_when_present(tmp_path):
    paths = jpegs(tmp_path / "im")
    encoded = [EncodedImages(image_files(tmp_path / "im"))[i][0] for i in range(len(paths))]
    try:
        import torchcodec.decoders  # noqa: F401
        present = True
    except Exception:  # noqa: BLE001 - absent, or not loadable against this torch
        present = False
    name = jpeg_decoder()[0]
    assert name.startswith("torchcodec " if present else "torchvision ")
    if present:  # the same pixels as torchvision's decoder (both libjpeg-turbo on CPU)
        from torchvision.io import ImageReadMode, decode_jpeg

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            theirs = decode_jpeg(encoded, mode=ImageReadMode.RGB)
        assert all(torch.equal(a, b) for a, b in zip(decode_jpegs(encoded, "cpu"), theirs))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on the project's CI machines)")
def test_gpu_path_equals_cpu_path(tmp_path):  # pragma: no cover - run where a GPU is
    root = image_tree(tmp_path / "data")
    cpu = extract(root, tmp_path / "cpu", "cpu")
    gpu = extract(root, tmp_path / "gpu", "device", device="cuda")
    # nvJPEG's IDCT and the GPU's resize differ from libjpeg's in the last grey level or two
    assert_same_store(gpu, cpu)
