import numpy as np
import pytest
import torch
import torchvision

import conceptvec as cv
from conceptvec.digits import DigitsCNN
from conceptvec.models import find_layer, layer_names, list_layers, load_model


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
    from conceptvec.digits import TrainConfig, cached_digits_cnn

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
