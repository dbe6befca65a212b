import numpy as np
import pytest
import torch
from PIL import Image

import conceptvec as cv
from conceptvec.digits import DigitsCNN, TrainConfig, cached_digits_cnn, preprocess_digits
from conceptvec.data import load_digits_images
from conceptvec.extraction import capture_layer, forward_to_layer, pool_output


@pytest.fixture(scope="module")
def digits_weights(tmp_path_factory):
    _, directory, _ = cached_digits_cnn(tmp_path_factory.mktemp("model"), TrainConfig(epochs=2))
    return str(directory)


def test_digits_store_equals_hand_written_hook(tmp_path, digits_weights):
    store = cv.extract("digits", "block3", "digits", tmp_path / "s", weights=digits_weights, batch_size=100, progress=False)
    assert store.shape == (1797, 64) and store.metadata["layer"] == "block3" and store.metadata["pooling"] == "avg"
    assert store.metadata["model"]["name"] == "digits" and store.metadata["data"]["kind"] == "sklearn-digits"
    model = cv.digits.load_digits_cnn(digits_weights)
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
    store = cv.extract("torchvision:resnet18", "layer2", root, tmp_path / "s", weights="none", batch_size=4, progress=False)
    assert store.shape == (6, 128)
    assert store.metadata["skipped"] == {"count": 1, "sources": ["b/broken.png"]}
    assert store.ids.tolist() == ["a/0.png", "a/1.png", "a/2.png", "b/0.png", "b/1.png", "b/2.png"]
    assert store.label_names.tolist() == ["a"] * 3 + ["b"] * 3
    # the same numbers from a plain full forward with a hook on the layer
    loaded = cv.models.load_model("torchvision:resnet18", "none")
    maps = []
    loaded.module.layer2.register_forward_hook(lambda m, i, o: maps.append(o.mean(dim=(2, 3))))
    with torch.no_grad():
        loaded.module(torch.stack([loaded.transform(Image.open(root / p).convert("RGB")) for p in store.ids]))
    np.testing.assert_allclose(store.activations, maps[0].numpy(), rtol=1e-4, atol=1e-5)


def test_reuse_and_refuse_mismatch(tmp_path, digits_weights, capsys):
    a = cv.extract("digits", "block3", "digits", tmp_path / "s", weights=digits_weights, progress=False)
    mtime = (tmp_path / "s" / "activations.npy").stat().st_mtime_ns
    b = cv.extract("digits", "block3", "digits", tmp_path / "s", weights=digits_weights, progress=False)
    assert (tmp_path / "s" / "activations.npy").stat().st_mtime_ns == mtime and b.shape == a.shape
    with pytest.raises(cv.StoreError, match=r"different extraction \(layer: store has 'block3', asked 'block2'\)"):
        cv.extract("digits", "block2", "digits", tmp_path / "s", weights=digits_weights, progress=False)


def test_per_class_digits(tmp_path, digits_weights):
    s1 = cv.extract("digits", "block3", "digits", tmp_path / "a", weights=digits_weights, per_class=7, seed=3, progress=False)
    s2 = cv.extract("digits", "block3", "digits", tmp_path / "b", weights=digits_weights, per_class=7, seed=3, progress=False)
    assert s1.n_examples == 70 and s1.ids.tolist() == s2.ids.tolist()
    assert np.bincount(s1.labels).tolist() == [7] * 10


@pytest.mark.parametrize("kwargs, match", [
    (dict(model="digits", layer="block3", data="digits", pool="sum"), "unknown pooling"),
    (dict(model="digits", layer="block3", data="digits", batch_size=0), "batch_size must be >= 1"),
    (dict(model="digits", layer="block3", data="digits", device="tpu"), "device must be"),
    (dict(model="torchvision:resnet18", layer="layer1", data="digits", weights="none"), "prepared for the bundled digits model"),
])
def test_bad_arguments(tmp_path, digits_weights, kwargs, match):
    kwargs.setdefault("weights", digits_weights)
    with pytest.raises(cv.ConceptvecError, match=match):
        cv.extract(out=tmp_path / "s", progress=False, **kwargs)
