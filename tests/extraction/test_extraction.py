from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import conceptvec as cv
from conceptvec.models.digits import DigitsCNN, TrainConfig, cached_digits_cnn, load_digits_cnn, preprocess_digits
from conceptvec.models.load import load_model
from conceptvec.sources.digits import load_digits_images
from conceptvec.models.hooks import capture_layer, forward_to_layer, pool_output


@pytest.fixture(scope="module")
def digits_weights(tmp_path_factory):
    _, directory, _ = cached_digits_cnn(tmp_path_factory.mktemp("model"), TrainConfig(epochs=2))
    return str(directory)


def test_digits_store_equals_hand_written_hook(tmp_path, digits_weights):
    store = cv.extract("digits", layer="block3", data="digits", out=tmp_path / "s", weights=digits_weights, batch_size=100, progress=False)
    assert store.shape == (1797, 64) and store.metadata["layer"] == "block3" and store.metadata["pooling"] == "avg"
    assert store.metadata["model"]["name"] == "digits" and store.metadata["data"]["kind"] == "sklearn-digits"
    model = load_digits_cnn(digits_weights)
    maps = []
    handle = model.block3.register_forward_hook(lambda m, i, o: maps.append(o))
    images, digits = load_digits_images()
    with torch.no_grad():
        model(preprocess_digits(images))
    handle.remove()
    expected = maps[0].mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(store.activations, expected, rtol=1e-5, atol=1e-6)
    assert store.labels.tolist() == digits.tolist()
    assert store.ids[5] == "digits-0005" and store.sources[5] == "sklearn-digits:5"


def test_forward_stops_at_the_layer_and_hooks_are_removed():
    model = DigitsCNN().eval()
    calls = []
    model.head.register_forward_hook(lambda *a: calls.append(1))
    with capture_layer(model.block2, "avg") as captured, torch.inference_mode():
        pooled = forward_to_layer(model, torch.zeros(3, 1, 16, 16), captured)
    assert pooled.shape == (3, 32) and calls == []
    assert len(model.block2._forward_hooks) == 0
    try:
        with capture_layer(model.block2, "avg"):
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert len(model.block2._forward_hooks) == 0


def test_pool_output():
    x = torch.arange(24.0).reshape(1, 2, 3, 4)
    assert pool_output(x, "avg").tolist() == [[5.5, 17.5]]
    assert pool_output(x, "max").tolist() == [[11.0, 23.0]]
    t = torch.arange(12.0).reshape(1, 3, 4)
    assert pool_output(t, "avg").tolist() == [[4.0, 5.0, 6.0, 7.0]]
    assert pool_output(t, "cls").tolist() == [[0.0, 1.0, 2.0, 3.0]]
    with pytest.raises(cv.ConceptvecError, match="pool='cls' needs"):
        pool_output(x, "cls")
    with pytest.raises(cv.ConceptvecError, match="unknown pooling 'mean'"):
        pool_output(x, "mean")


def test_image_folder_with_corrupt_file(tmp_path):
    root = tmp_path / "data"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 40), (i * 60, 30, 200 if c == "a" else 0)).save(root / c / f"{i}.png")
    (root / "b" / "broken.png").write_bytes(b"not an image")
    store = cv.extract("torchvision:resnet18", layer="layer2", data=root, out=tmp_path / "s", weights="none", batch_size=4, progress=False)
    assert store.shape == (6, 128)
    assert store.metadata["skipped"] == {"count": 1, "sources": ["b/broken.png"]}
    assert store.ids.tolist() == ["a/0.png", "a/1.png", "a/2.png", "b/0.png", "b/1.png", "b/2.png"]
    assert store.label_names.tolist() == ["a"] * 3 + ["b"] * 3
    # the same numbers from a plain full forward with a hook on the layer
    loaded = load_model("torchvision:resnet18", "none")
    maps = []
    loaded.module.layer2.register_forward_hook(lambda m, i, o: maps.append(o.mean(dim=(2, 3))))
    with torch.no_grad():
        loaded.module(torch.stack([loaded.transform(Image.open(root / p).convert("RGB")) for p in store.ids]))
    np.testing.assert_allclose(store.activations, maps[0].numpy(), rtol=1e-4, atol=1e-5)


def test_reuse_and_refuse_mismatch(tmp_path, digits_weights, capsys):
    a = cv.extract("digits", layer="block3", data="digits", out=tmp_path / "s", weights=digits_weights, progress=False)
    mtime = (tmp_path / "s" / "activations.npy").stat().st_mtime_ns
    b = cv.extract("digits", layer="block3", data="digits", out=tmp_path / "s", weights=digits_weights, progress=False)
    assert (tmp_path / "s" / "activations.npy").stat().st_mtime_ns == mtime and b.shape == a.shape
    with pytest.raises(cv.StoreError, match=r"different extraction \(layer: store has 'block3', asked 'block2'\)"):
        cv.extract("digits", layer="block2", data="digits", out=tmp_path / "s", weights=digits_weights, progress=False)


def test_weights_replaced_at_the_same_path_are_another_model(tmp_path, digits_weights):
    import shutil

    from safetensors.torch import save_file

    from conceptvec.storage.provenance import file_digest

    weights = tmp_path / "w.safetensors"
    shutil.copyfile(Path(digits_weights) / "digits_cnn.safetensors", weights)
    a = cv.extract("digits", layer="block3", data="digits", out=tmp_path / "s", weights=str(weights), progress=False)
    assert a.metadata["model"]["weights_sha256"] == file_digest(weights)["sha256"]
    assert a.metadata["model"]["weights_size"] == weights.stat().st_size
    state = {k: v.clone() for k, v in load_digits_cnn(weights).state_dict().items()}
    state["block3.0.bias"] += 0.5
    save_file(state, str(weights))  # same path, same size, other content
    with pytest.raises(cv.StoreError, match=r"model\.weights_sha256: store has '[0-9a-f]{64}', asked '[0-9a-f]{64}'"):
        cv.extract("digits", layer="block3", data="digits", out=tmp_path / "s", weights=str(weights), progress=False)
    b = cv.extract("digits", layer="block3", data="digits", out=tmp_path / "s", weights=str(weights), overwrite=True, progress=False)
    assert b.metadata["model"]["weights_sha256"] == file_digest(weights)["sha256"] != a.metadata["model"]["weights_sha256"]
    assert not np.array_equal(np.asarray(b.activations), np.asarray(a.activations))
    # The same content at another path (a moved folder) is the same model: reused, not refused.
    moved = tmp_path / "moved.safetensors"
    shutil.copyfile(weights, moved)
    mtime = (tmp_path / "s" / "activations.npy").stat().st_mtime_ns
    cv.extract("digits", layer="block3", data="digits", out=tmp_path / "s", weights=str(moved), progress=False)
    assert (tmp_path / "s" / "activations.npy").stat().st_mtime_ns == mtime


def test_per_class_digits(tmp_path, digits_weights):
    s1 = cv.extract("digits", layer="block3", data="digits", out=tmp_path / "a", weights=digits_weights, per_class=7, seed=3, progress=False)
    s2 = cv.extract("digits", layer="block3", data="digits", out=tmp_path / "b", weights=digits_weights, per_class=7, seed=3, progress=False)
    assert s1.n_examples == 70 and s1.ids.tolist() == s2.ids.tolist()
    assert np.bincount(s1.labels).tolist() == [7] * 10


@pytest.mark.parametrize("kwargs, match", [
    (dict(model="digits", layer="block3", data="digits", pool="sum"), "pool must be one of avg, max, cls"),
    (dict(model="digits", layer="block3", data="digits", batch_size=0), "batch_size must be >= 1"),
    (dict(model="digits", layer="block3", data="digits", device="tpu"), "device must be"),
    (dict(model="torchvision:resnet18", layer="layer1", data="digits", weights="none"), "prepared for the bundled digits model"),
])
def test_bad_arguments(tmp_path, digits_weights, kwargs, match):
    kwargs.setdefault("weights", digits_weights)
    with pytest.raises(cv.ConceptvecError, match=match):
        cv.extract(out=tmp_path / "s", progress=False, **kwargs)


TINY_CNN = """
import torch
from torch import nn
from torchvision import transforms as T

def tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3)).eval()

TRANSFORM = T.Compose([T.Resize((24, 24)), T.ToTensor()])
"""
_ns: dict = {}
exec(TINY_CNN, _ns)
tiny_cnn, TRANSFORM = _ns["tiny_cnn"], _ns["TRANSFORM"]


def _image_tree(root, n_per_class=6, broken=("b/broken_1.png",)):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 255, (20 + i, 30, 3), dtype=np.uint8)).save(root / c / f"img_{i}.png")
    for b in broken:
        (root / b).write_bytes(b"\x89PNG but not really")
    return root


def _extract_module(root, out, **kw):
    kw.setdefault("chunk_size", 3)
    return cv.extract(tiny_cnn(), layer="2", data=root, out=out, transform=TRANSFORM, batch_size=2, progress=False, **kw)


@pytest.mark.slow
def test_killed_extraction_resumes_to_the_same_store(tmp_path):
    import subprocess
    import sys

    root = _image_tree(tmp_path / "data")
    reference = _extract_module(root, tmp_path / "ref")
    assert reference.n_examples == 12 and reference.metadata["skipped"]["sources"] == ["b/broken_1.png"]
    # A run SIGKILLed while writing its fourth chunk (its rows on disk, its completion marker not).
    code = TINY_CNN + (
        "import os, signal\n"
        "import conceptvec as cv, conceptvec.storage.store as st\n"
        "calls = []\n"
        "original = st.write_json\n"
        "def write_json(path, obj):\n"
        "    if str(path).endswith('.json') and 'chunks' in str(path):\n"
        "        calls.append(path)\n"
        "        if len(calls) == 4: os.kill(os.getpid(), signal.SIGKILL)\n"
        "    original(path, obj)\n"
        "st.write_json = write_json\n"
        f"cv.extract(tiny_cnn(), layer='2', data={str(root)!r}, out={str(tmp_path / 'run')!r}, transform=TRANSFORM, batch_size=2, "
        "chunk_size=3, progress=False)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert not (tmp_path / "run").exists()
    assert len(list((tmp_path / "run.partial" / "chunks").glob("*.json"))) == 3
    with pytest.raises(cv.StoreError, match="incomplete"):
        cv.ActivationStore.open(tmp_path / "run")
    resumed = _extract_module(root, tmp_path / "run")
    for name in ("activations.npy", "examples.parquet"):
        assert (reference.path / name).read_bytes() == (resumed.path / name).read_bytes()
    drop = ("created", "versions")
    assert {k: v for k, v in resumed.metadata.items() if k not in drop} == {k: v for k, v in reference.metadata.items() if k not in drop}
    assert sorted(p.name for p in resumed.path.iterdir()) == [".conceptvec-manifest.json", "activations.npy", "examples.parquet", "metadata.json"]


def test_complete_store_does_nothing_and_mismatched_resume_is_refused(tmp_path, capsys):
    root = _image_tree(tmp_path / "data", broken=())
    store = _extract_module(root, tmp_path / "s")
    mtime = (store.path / "activations.npy").stat().st_mtime_ns
    cv.extract(tiny_cnn(), layer="2", data=root, out=tmp_path / "s", transform=TRANSFORM, chunk_size=3)
    assert "already complete" in capsys.readouterr().err
    assert (store.path / "activations.npy").stat().st_mtime_ns == mtime
    # a partial store of layer 2 is not finished with layer 3
    from conceptvec.storage.store import StoreWriter

    fingerprint = {k: store.metadata[k] for k in ("model", "layer", "pooling", "data", "preprocessing")}
    StoreWriter(tmp_path / "p", fingerprint={**fingerprint, "chunk_size": 3}).write_chunk(0, 0, 3, np.ones((3, 8)))
    with pytest.raises(cv.StoreError, match=r"part of a different extraction \(layer: partial has '2', asked '3'\)"):
        cv.extract(tiny_cnn(), layer="3", data=root, out=tmp_path / "p", transform=TRANSFORM, chunk_size=3, progress=False)
    (root / "a" / "extra.png").write_bytes((root / "a" / "img_0.png").read_bytes())
    with pytest.raises(cv.StoreError, match=r"different extraction \(.*data\.n_examples: store has 12, asked 13"):
        _extract_module(root, tmp_path / "s")


def test_dataset_of_prepared_tensors_with_per_class(tmp_path):
    x = torch.randn(30, 3, 12, 12)
    y = torch.arange(30) % 3
    ds = torch.utils.data.TensorDataset(x, y)
    store = cv.extract(tiny_cnn(), layer="3", data=ds, out=tmp_path / "s", batch_size=4, chunk_size=5, progress=False, device="cpu")
    model = tiny_cnn()
    with torch.no_grad():
        expected = model[:4](x).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(store.activations, expected, rtol=1e-5, atol=1e-6)
    assert store.labels.tolist() == y.tolist() and store.ids[3] == "dataset-3"
    assert store.metadata["data"]["kind"] == "torch-dataset" and "no preprocessing" in store.metadata["preprocessing"]["note"]
    a = cv.extract(tiny_cnn(), layer="3", data=ds, out=tmp_path / "a", per_class=4, seed=1, progress=False)
    b = cv.extract(tiny_cnn(), layer="3", data=ds, out=tmp_path / "b", per_class=4, seed=1, progress=False)
    assert a.ids.tolist() == b.ids.tolist() and np.bincount(a.labels).tolist() == [4, 4, 4]
    with pytest.raises(cv.ConceptvecError, match=r"per_class needs labels"):
        cv.extract(tiny_cnn(), layer="3", data=torch.utils.data.TensorDataset(x), out=tmp_path / "c", per_class=2, progress=False)


def test_module_with_image_files_needs_a_transform(tmp_path):
    root = _image_tree(tmp_path / "data", broken=())
    with pytest.raises(cv.ConceptvecError, match=r"no image preprocessing of its own; pass transform="):
        cv.extract(tiny_cnn(), layer="2", data=root, out=tmp_path / "s", progress=False)


def test_autocast_is_cuda_only(tmp_path, capsys):
    x = torch.randn(4, 3, 12, 12)
    store = cv.extract(tiny_cnn(), layer="3", data=torch.utils.data.TensorDataset(x), out=tmp_path / "s", autocast=True, device="cpu")
    assert store.metadata["autocast"] is False and "CUDA only" in capsys.readouterr().err


def test_cli_extract_list_resume_and_bad_mean(tmp_path):
    from typer.testing import CliRunner

    from conceptvec.cli import app

    runner = CliRunner()
    listing = runner.invoke(app, ["extract", "--model", "timm:efficientnet_lite0", "--weights", "none", "--layer", "list"],
                            env={"COLUMNS": "200"})
    assert listing.exit_code == 0, listing.output
    assert any("blocks.6 " in ln and "320x7x7" in ln for ln in listing.output.splitlines())
    bad = runner.invoke(app, ["extract", "--model", "timm:efficientnet_lite0", "--layer", "list", "--mean", "half"])
    assert bad.exit_code == 2 and "mean must be three finite numbers, one per colour channel (--mean 0.5,0.5,0.5), got 'half'" in " ".join(bad.output.split())
    root = _image_tree(tmp_path / "data", n_per_class=2, broken=())
    args = ["extract", "--model", "timm:efficientnet_lite0", "--weights", "none", "--layer", "blocks.2", "--data", str(root),
            "--out", str(tmp_path / "s"), "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--size", "64", "--dtype", "float16"]
    run = runner.invoke(app, args)
    assert run.exit_code == 0, run.output
    store = cv.ActivationStore.open(tmp_path / "s")
    assert store.shape == (4, 40) and store.activations.dtype == np.float16
    assert store.metadata["preprocessing"]["overrides"] == {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "size": 64}
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "already complete" in again.output


class Interrupting(torch.utils.data.Dataset):
    """The rows of ``x``, with Ctrl-C (KeyboardInterrupt) when example ``stop_at`` is read."""

    def __init__(self, x, stop_at):
        self.x, self.stop_at = x, stop_at

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if i == self.stop_at:
            raise KeyboardInterrupt
        return self.x[i]


def test_ctrl_c_keeps_complete_chunks_and_resumes(tmp_path, capsys):
    x = torch.randn(20, 3, 12, 12)

    reference = cv.extract(tiny_cnn(), layer="3", data=Interrupting(x, None), out=tmp_path / "ref", batch_size=3, chunk_size=6, progress=False)
    with pytest.raises(KeyboardInterrupt):
        cv.extract(tiny_cnn(), layer="3", data=Interrupting(x, 14), out=tmp_path / "s", batch_size=3, chunk_size=6)
    assert "Run the same command again to resume" in capsys.readouterr().err
    assert len(list((tmp_path / "s.partial" / "chunks").glob("*.json"))) == 2
    resumed = cv.extract(tiny_cnn(), layer="3", data=Interrupting(x, None), out=tmp_path / "s", batch_size=3, chunk_size=6)
    assert "resuming" in capsys.readouterr().err.replace("\n", " ")
    assert (reference.path / "activations.npy").read_bytes() == (resumed.path / "activations.npy").read_bytes()


def test_transparent_icons_are_extracted_as_seen_and_repeated_rows_are_reported(tmp_path, capsys):
    root = tmp_path / "icons"
    root.mkdir()
    for i in range(8):  # eight icons drawn only in alpha (black RGB): one black square each if alpha is dropped
        a = np.zeros((20, 20), np.uint8)
        a[: 2 + 2 * i, : 20 - 2 * i] = 255
        Image.fromarray(np.dstack([np.zeros((20, 20, 3), np.uint8), a]), mode="RGBA").save(root / f"icon_{i}.png")
    store = cv.extract(tiny_cnn(), layer="2", data=root, out=tmp_path / "white", transform=TRANSFORM, chunk_size=3)
    assert "8 of 8 images have transparency; composited on white" in capsys.readouterr().err
    assert store.metadata["data"]["background"] == "white" and store.metadata["data"]["n_transparent"] == 8
    assert store.metadata["duplicates"]["n_distinct"] == 8 and store.metadata["duplicates"]["n_duplicate_rows"] == 0
    # another background is another extraction: refused at the same --out, other rows elsewhere
    with pytest.raises(cv.StoreError, match=r"data\.background: store has 'white', asked 'black'"):
        _extract_module(root, tmp_path / "white", background="black")
    black = _extract_module(root, tmp_path / "black", background="black")
    assert not np.allclose(black.activations, store.activations)
    # the same eight icons with their alpha dropped: identical rows, said at extraction and recorded
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted(root.iterdir()):
        Image.open(p).convert("RGB").save(flat / p.name)
    capsys.readouterr()
    dup = _extract_module(flat, tmp_path / "dup")
    err = " ".join(capsys.readouterr().err.split())
    assert "7 of 8 rows (87.5%) repeat another row exactly: only 1 distinct rows" in err
    assert "8 share one row (icon_0.png, icon_1.png, icon_2.png, icon_3.png ...)" in err
    assert dup.metadata["duplicates"]["n_duplicate_rows"] == 7 and dup.metadata["data"]["n_transparent"] == 0


def test_several_layers_in_one_pass_write_the_single_layer_stores_and_resume(tmp_path, capsys):
    root = _image_tree(tmp_path / "data")  # 12 images and a broken file
    singles = {name: cv.extract(tiny_cnn(), layer=name, data=root, out=tmp_path / f"single_{name}", transform=TRANSFORM,
                                batch_size=2, chunk_size=3, progress=False) for name in ("1", "3")}
    calls = []
    model = tiny_cnn()
    model[0].register_forward_hook(lambda *_: calls.append(1))
    both = cv.extract(model, layer=["3", "1"], data=root, out=tmp_path / "both", transform=TRANSFORM, batch_size=2,
                      chunk_size=3, progress=False)
    # one forward per batch: 5 chunks of 3, 3, 3, 3, 1 files in batches of 2 are 9 batches (two single-layer runs: 18)
    assert list(both) == ["3", "1"] and len(calls) == 9
    drop = ("created", "versions")
    for name, single in singles.items():
        store = both[name]
        assert store.path == tmp_path / "both" / name
        for f in ("activations.npy", "examples.parquet"):
            assert (store.path / f).read_bytes() == (single.path / f).read_bytes(), (name, f)
        assert {k: v for k, v in store.metadata.items() if k not in drop} == {k: v for k, v in single.metadata.items() if k not in drop}
    # a single-layer run of one of them finds it complete
    capsys.readouterr()
    cv.extract(tiny_cnn(), layer="1", data=root, out=tmp_path / "both" / "1", transform=TRANSFORM, batch_size=2, chunk_size=3)
    assert "already complete" in capsys.readouterr().err


def test_several_layers_resume_after_ctrl_c_and_refuse_what_they_cannot(tmp_path):
    x = torch.randn(20, 3, 12, 12)

    kw = dict(layer=["1", "3"], out=tmp_path / "run", batch_size=2, chunk_size=4, progress=False)
    with pytest.raises(KeyboardInterrupt):
        cv.extract(tiny_cnn(), data=Interrupting(x, 9), **kw)
    for name in ("1", "3"):
        assert len(list((tmp_path / "run" / f"{name}.partial" / "chunks").glob("*.json"))) == 2
    resumed = cv.extract(tiny_cnn(), data=Interrupting(x, -1), **kw)
    reference = cv.extract(tiny_cnn(), data=Interrupting(x, -1), **{**kw, "out": tmp_path / "ref"})
    for name in ("1", "3"):
        assert np.array_equal(resumed[name].activations, reference[name].activations)
        assert resumed[name].shape == (20, 8 if name == "1" else 16)
    with pytest.raises(cv.ConceptvecError, match=r"layer '1' is named more than once"):
        cv.extract(tiny_cnn(), data=Interrupting(x, -1), **{**kw, "layer": ["1", "1"]})
    with pytest.raises(cv.ConceptvecError, match=r"invalid layer 'nope'"):
        cv.extract(tiny_cnn(), data=Interrupting(x, -1), **{**kw, "layer": ["1", "nope"], "out": tmp_path / "x"})
    assert not (tmp_path / "x").exists()


def test_cli_extract_takes_the_layer_option_again_for_several_layers(tmp_path):
    from typer.testing import CliRunner

    from conceptvec.cli import app

    root = _image_tree(tmp_path / "data", n_per_class=2, broken=())
    args = ["extract", "--model", "timm:efficientnet_lite0", "--weights", "none", "--layer", "blocks.1", "--layer", "blocks.2",
            "--data", str(root), "--out", str(tmp_path / "run"), "--size", "64"]
    run = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert run.exit_code == 0, run.output
    shapes = {name: cv.ActivationStore.open(tmp_path / "run" / name).shape for name in ("blocks.1", "blocks.2")}
    assert shapes == {"blocks.1": (4, 24), "blocks.2": (4, 40)}
    assert run.output.count("ActivationStore") == 2
