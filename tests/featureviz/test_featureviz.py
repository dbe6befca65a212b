"""Feature visualisation: the objective rises, an independent hook agrees, seeds, batch vs separate runs, errors, CLI.

Kept tiny for 2 CPU cores: the digits CNN at 16 px and a random-weight resnet18 at 64 px, 30-60 steps.
"""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.cli import app
from conceptvec.models.digits import TrainConfig, cached_digits_cnn, load_digits_cnn
from conceptvec.featureviz import FeatureVisualisation, neuron_directions
from conceptvec.models.layers import find_layer
from conceptvec.models.load import load_model


# one torch thread for this module's tests, restored after (the fixture is in tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits_weights(tmp_path_factory):
    _, directory, _ = cached_digits_cnn(tmp_path_factory.mktemp("model"), TrainConfig(epochs=10))
    return str(directory)


@pytest.fixture(scope="module")
def resnet():
    return load_model("torchvision:resnet18", "none")


def layer_mean(module, layer, x):
    """Spatially averaged output of ``layer`` on ``x``: a full forward with the test's own hook."""
    seen = {}
    handle = find_layer(module, layer).register_forward_hook(lambda m, i, o: seen.__setitem__("out", o.detach()))
    try:
        with torch.inference_mode():
            module(x)
    finally:
        handle.remove()
    return seen["out"].mean(dim=(2, 3)).numpy()


def live_units(module, layer, shape, n=3):
    """Units that respond to random images (a ReLU unit that is zero everywhere has no gradient)."""
    x = torch.rand(8, *shape, generator=torch.Generator().manual_seed(0))
    return np.argsort(layer_mean(module, layer, x).mean(0))[::-1][:n].copy()


def rises(history, factor):
    start, end = history[:3].mean(0), history[-3:].mean(0)
    return np.all(end > start + factor * np.abs(start) + 1e-3), start, end


@pytest.mark.slow
def test_objective_rises_on_digits_cnn(digits_weights):
    module = load_digits_cnn(digits_weights)
    units = live_units(module, "block3", (1, 16, 16))
    fv = cv.feature_visualisation("digits", "block3", np.eye(64)[units], steps=60, size=16, weights=digits_weights, progress=False)
    assert isinstance(fv, FeatureVisualisation)
    assert fv.images.shape == (3, 16, 16, 3) and fv.images.dtype == np.float32
    assert fv.images.min() >= 0 and fv.images.max() <= 1
    # A grey model is optimised in one channel and returned as grey RGB.
    assert fv.channels == 1 and np.array_equal(fv.images[..., 0], fv.images[..., 2])
    assert fv.history.shape == (60, 3) and fv.steps_done == [60, 60, 60]
    ok, start, end = rises(fv.history, 0.75)
    assert ok, (start, end)
    # An independent hook on the returned images gives the reported objective.
    x = torch.as_tensor(fv.images[..., :1]).permute(0, 3, 1, 2)
    projections = layer_mean(module, "block3", x)[np.arange(3), units]
    np.testing.assert_allclose(projections, fv.objective, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_objective_rises_on_random_resnet_and_beats_random_images(resnet):
    units = [0, 2]
    fv = cv.feature_visualisation(resnet, "layer2", np.eye(128)[units], steps=150, size=64, seed=3, progress=False)
    assert fv.images.shape == (2, 64, 64, 3) and fv.channels == 3
    assert fv.normalisation == {"mean": pytest.approx([0.485, 0.456, 0.406]), "std": pytest.approx([0.229, 0.224, 0.225])}
    ok, start, end = rises(fv.history, 3.0)
    assert ok, (start, end)
    mean, std = (torch.tensor(fv.normalisation[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    norm = lambda im: (torch.as_tensor(im).permute(0, 3, 1, 2) - mean) / std
    optimised = layer_mean(resnet.module, "layer2", norm(fv.images))[np.arange(2), units]
    np.testing.assert_allclose(optimised, fv.objective, rtol=1e-4, atol=1e-5)
    # Uniform noise is a strong stimulus for random filters; the optimised images are still far above it.
    noise = np.random.default_rng(0).random((16, 64, 64, 3), dtype=np.float32)
    baseline = layer_mean(resnet.module, "layer2", norm(noise))[:, units]
    assert np.all(optimised > baseline.mean(0) + 10 * baseline.std(0)), (optimised, baseline.mean(0), baseline.std(0))
    assert np.all(optimised > 1.5 * baseline.max(0))


@pytest.mark.slow
def test_same_seed_same_image_other_seed_other_image(digits_weights):
    model = load_model("digits", digits_weights)
    d = np.eye(64)[:2] + 0.1
    a = cv.feature_visualisation(model, "block3", d, steps=10, size=16, seed=5, progress=False)
    b = cv.feature_visualisation(model, "block3", d, steps=10, size=16, seed=5, progress=False)
    c = cv.feature_visualisation(model, "block3", d, steps=10, size=16, seed=6, progress=False)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.history, b.history)
    assert not np.allclose(a.images, c.images, atol=1e-3)
    assert a.seeds == [5, 6] and c.seeds == [6, 7]


# float32 convolutions batched or alone use different blockings (oneDNN); differences of a few ulp
# grow over the Adam steps but stay far below one grey level (1/255 = 0.004).
BATCH_ATOL = 1e-3


@pytest.mark.slow
def test_batch_equals_separate_runs(digits_weights):
    model = load_model("digits", digits_weights)
    cs_like = np.abs(np.random.default_rng(1).normal(size=(2, 64)))
    directions = np.concatenate([np.eye(64)[[7]], cs_like])
    together = cv.feature_visualisation(model, "block3", directions, steps=30, size=16, seed=11, progress=False)
    one_by_one = cv.feature_visualisation(model, "block3", directions, steps=30, size=16, seed=11, batch=False, progress=False)
    np.testing.assert_allclose(together.images, one_by_one.images, atol=BATCH_ATOL)
    for i in range(3):
        alone = cv.feature_visualisation(model, "block3", directions[i : i + 1], steps=30, size=16, seed=11 + i, progress=False)
        np.testing.assert_allclose(together.images[i], alone.images[0], atol=BATCH_ATOL)
        np.testing.assert_allclose(together.history[:, i], alone.history[:, 0], rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_batch_equals_separate_runs_on_resnet(resnet):
    d = np.abs(np.random.default_rng(2).normal(size=(2, 64)))
    together = cv.feature_visualisation(resnet, "layer1", d, steps=15, size=48, seed=0, progress=False)
    alone = cv.feature_visualisation(resnet, "layer1", d[1:], steps=15, size=48, seed=1, progress=False)
    np.testing.assert_allclose(together.images[1], alone.images[0], atol=BATCH_ATOL)


@pytest.mark.slow
def test_hooks_removed_and_model_state_restored(digits_weights):
    module = load_digits_cnn(digits_weights).train()
    flags = [p.requires_grad for p in module.parameters()]
    cv.feature_visualisation(module, "block2", np.eye(32)[:1], steps=3, size=16, progress=False)
    assert all(not m._forward_hooks for m in module.modules())
    assert [p.requires_grad for p in module.parameters()] == flags and module.training
    with pytest.raises(cv.ConceptvecError, match="directions have 64 units"):
        cv.feature_visualisation(module, "block2", np.eye(64)[:1], steps=3, size=16, progress=False)
    assert all(not m._forward_hooks for m in module.modules())


@pytest.mark.slow
def test_bare_module_with_transform_and_cosine_objective(digits_weights):
    module = load_digits_cnn(digits_weights)
    calls = []

    def transform(x):
        calls.append(tuple(x.shape))
        return x * 0.9

    fv = cv.feature_visualisation(module, "block3", np.ones((1, 64)), steps=5, size=16, transform=transform,
                                  objective="cosine", transforms="none", progress=False)
    assert calls[0] == (1, 1, 16, 16) and len(calls) == 6  # 5 steps and the final evaluation
    assert -1 <= fv.objective[0] <= 1 and fv.describe()["transform"] == "given by the caller"


@pytest.mark.slow
def test_ctrl_c_keeps_the_images_so_far(digits_weights):
    module = load_digits_cnn(digits_weights)
    calls = {"n": 0}

    def interrupt_at_step_7(x):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return x

    fv = cv.feature_visualisation(module, "block3", np.eye(64)[:2], steps=50, size=16, transform=interrupt_at_step_7, progress=False)
    assert fv.interrupted and fv.steps_done == [6, 6] and fv.history.shape == (6, 2)
    assert np.all(np.isfinite(fv.images)) and np.all(np.isfinite(fv.objective))
    assert fv.describe()["partial"] is True


@pytest.mark.slow
@pytest.mark.parametrize("kwargs, match", [
    (dict(layer="blok3"), "invalid layer 'blok3'"),
    (dict(directions=np.ones((2, 10))), "directions have 10 units but layer 'block3' has 64"),
    (dict(directions=np.zeros((1, 64))), "all zeros"),
    (dict(directions=np.ones((2, 2, 64))), r"must be a \(k, n_units\) array"),
    (dict(directions=np.full((1, 64), np.nan)), "NaN"),
    (dict(objective="dot"), r"objective must be one of projection, cosine \(--objective\), got 'dot'"),
    (dict(transforms="lucid"), "transforms must be one of standard, none"),
    (dict(steps=0), "steps must be >= 1, got 0"),
    (dict(size=4), "size must be >= 8, got 4"),
    (dict(channels=2), "channels must be 1"),
])
def test_bad_arguments(digits_weights, kwargs, match):
    args = dict(model="digits", layer="block3", directions=np.eye(64)[:1], steps=2, size=16, weights=digits_weights, progress=False)
    args.update(kwargs)
    with pytest.raises(cv.ConceptvecError, match=match):
        cv.feature_visualisation(**args)


def test_neuron_directions():
    d = neuron_directions(4, 2, np.array([[0.5, 0.5, 0.5, 0.5]]))
    assert d.tolist() == [[0, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]]
    with pytest.raises(cv.ConceptvecError, match="outside the layer's 0..3"):
        neuron_directions(4, 4)


@pytest.mark.slow
def test_cli_featureviz_writes_images_and_parameters(tmp_path, digits_weights):
    run = tmp_path / "run"
    store = cv.extract("digits", layer="block3", data="digits", out=run / "store", weights=digits_weights, progress=False)
    neuron = int(np.argmax(store.activations[:].mean(0)))
    cs = cv.disentangle(store, neuron=neuron)
    cs.save(run / f"neuron_{neuron}")
    runner = CliRunner()
    done = runner.invoke(app, ["featureviz", str(run), "--neuron", str(neuron), "--steps", "12", "--seed", "4"])
    assert done.exit_code == 0, done.output
    out = run / f"neuron_{neuron}" / "featureviz"
    names = ["neuron"] + [f"concept_{j}" for j in range(cs.n_concepts)]
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.png" for n in names] + ["featureviz.json", ".conceptvec-manifest.json"])
    meta = json.loads((out / "featureviz.json").read_text())
    assert meta["params"]["steps"] == 12 and meta["params"]["size"] == 16 and meta["seeds"][0] == 4
    assert meta["layer"] == "block3" and meta["model"]["name"] == "digits" and meta["neuron"] == neuron
    assert meta["partial"] is False and len(meta["objective"]) == len(names) and len(meta["history"]) == 12
    from PIL import Image

    assert Image.open(out / "neuron.png").size == (16, 16)
    again = runner.invoke(app, ["featureviz", str(run), "--neuron", str(neuron), "--steps", "2"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    missing = runner.invoke(app, ["featureviz", str(run), "--neuron", "63" if neuron != 63 else "62", "--steps", "2"])
    assert missing.exit_code == 2 and "no ConceptSet of neuron" in missing.output


def _store_with_model(path, model_meta, preprocessing):
    from conftest import planted

    acts, _ = planted(n_examples=120, n_units=24)
    examples = {"id": [str(i) for i in range(120)], "label": [0] * 120, "label_name": [""] * 120, "source": [""] * 120}
    meta = {"model": model_meta, "layer": "blocks.6", "preprocessing": preprocessing, "data": {"kind": "image-files"}}
    store = cv.ActivationStore.create(path / "store", acts, examples=examples, metadata=meta)
    cv.disentangle(store, neuron=3, params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=40.0)).save(path / "neuron_3")


def test_featureviz_reloads_the_model_as_it_was_extracted(tmp_path, monkeypatch):
    """The key map and the mean / std / size overrides of extraction are applied again when featureviz reloads the model."""
    import conceptvec.featureviz.run as fvrun

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    calls = []

    class Loaded(Exception):
        pass

    def fake_load_model(*args, **kwargs):
        calls.append((args, kwargs))
        raise Loaded

    monkeypatch.setattr(fvrun, "load_model", fake_load_model)
    _store_with_model(tmp_path / "a", {"name": "timm:efficientnet_lite0", "weights": str(weights), "key_map": "order"},
                      {"overrides": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "size": 240}})
    with pytest.raises(Loaded):
        fvrun.run_featureviz(tmp_path / "a", neuron=3, steps=2, progress=False)
    assert calls[-1] == (("timm:efficientnet_lite0", str(weights)),
                         {"key_map": "order", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "size": 240})
    _store_with_model(tmp_path / "b", {"name": "torchvision:resnet18", "weights": "none"}, {"transform": "..."})
    with pytest.raises(Loaded):
        fvrun.run_featureviz(tmp_path / "b", neuron=3, steps=2, progress=False)
    assert calls[-1] == (("torchvision:resnet18", "none"), {})
    _store_with_model(tmp_path / "c", {"name": "timm:x", "weights": str(weights), "key_map": "explicit mapping of 3 keys"}, {})
    with pytest.raises(cv.ConceptvecError, match="key map 'explicit mapping of 3 keys'.*cv.feature_visualisation"):
        fvrun.run_featureviz(tmp_path / "c", neuron=3, steps=2, progress=False)


@pytest.mark.slow
def test_report_shows_featureviz_beside_fig_3(tmp_path):
    from conftest import planted

    from conceptvec.featureviz import FeatureVizParams
    from conceptvec.report.html import write_report

    acts, _ = planted()
    examples = {"id": [f"d{i}" for i in range(len(acts))], "label": [0] * len(acts), "label_name": ["0"] * len(acts),
                "source": [f"sklearn-digits:{i}" for i in range(len(acts))]}
    store = cv.ActivationStore.create(tmp_path / "store", acts, examples=examples,
                                      metadata={"model": {"name": "digits"}, "layer": "block3", "data": {"kind": "sklearn-digits"}})
    cs = cv.disentangle(store, neuron=3, params=cv.Params(distance_threshold=10.0, outlier_threshold=40.0))
    cs.save(tmp_path / "neuron_3")
    k = 1 + cs.n_concepts
    images = np.random.default_rng(0).random((k, 16, 16, 3)).astype(np.float32)
    fv = FeatureVisualisation(images=images, objective=np.arange(k, dtype=float), history=np.zeros((2, k)),
                              directions=np.eye(24)[:k], params=FeatureVizParams(steps=2, size=16), seeds=list(range(k)),
                              model={"name": "digits"}, layer="block3", channels=1, normalisation=None, steps_done=[2] * k)
    fv.save(tmp_path / "neuron_3" / "featureviz", names=["neuron"] + [f"concept_{j}" for j in range(cs.n_concepts)])
    # A hostile entry in the JSON is neither copied nor shown.
    meta_file = tmp_path / "neuron_3" / "featureviz" / "featureviz.json"
    meta = json.loads(meta_file.read_text())
    meta["images"].append("../../store/metadata.json")
    meta_file.write_text(json.dumps(meta))
    index = write_report(tmp_path, umap=False)
    page = (index.parent / "neuron_3.html").read_text()
    assert page.index('id="projecting"') < page.index('id="featureviz"') < page.index('id="projecting_cosine"')
    for name in ["neuron"] + [f"concept_{j}" for j in range(cs.n_concepts)]:
        assert f'src="assets/neuron_3/featureviz_{name}.png"' in page
        assert (index.parent / "assets" / "neuron_3" / f"featureviz_{name}.png").read_bytes() == \
            (tmp_path / "neuron_3" / "featureviz" / f"{name}.png").read_bytes()
    assert "metadata.json" not in page.split('id="featureviz"')[1].split("</section>")[0]
    assert "objective 1" in page and "2 Adam steps at 16 px" in page


@pytest.mark.slow
def test_model_layout_and_device_restored(resnet):
    weights = {k: v.clone() for k, v in resnet.module.state_dict().items()}
    cv.feature_visualisation(resnet, "layer1", np.eye(64)[:1], steps=2, size=32, progress=False)
    assert all(p.is_contiguous() for p in resnet.module.parameters())
    assert all(torch.equal(v, resnet.module.state_dict()[k]) for k, v in weights.items())


# --- the private fast copy: batch norm folded, 1x1 convolutions on oneDNN -------------------------

def layer_and_input_grad(module, layer, x, direction):
    """The layer's output on ``x`` and the gradient of its projection on ``direction`` w.r.t. ``x``."""
    from conceptvec.models.hooks import forward_to_layer
    from conceptvec.featureviz import layer_output

    x = x.clone().requires_grad_(True)
    with layer_output(find_layer(module, layer)) as captured:
        out = forward_to_layer(module, x, captured)
    (out.mean(dim=(2, 3)) @ direction).sum().backward()
    return out.detach(), x.grad


def user_model_snapshot(module):
    return ({k: v.clone() for k, v in module.state_dict().items()}, [type(m) for m in module.modules()],
            [m.training for m in module.modules()], [p.requires_grad for p in module.parameters()])


def assert_user_model_unchanged(module, snapshot):
    state, types, modes, flags = snapshot
    assert [type(m) for m in module.modules()] == types and [m.training for m in module.modules()] == modes
    assert [p.requires_grad for p in module.parameters()] == flags
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in state.items())
    assert all(p.is_contiguous() for p in module.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


@pytest.mark.parametrize("layer", ["layer2", "layer3.1", "layer2.0.conv1", "layer2.0.bn1", "layer2.0.downsample.0"])
def test_fast_copy_computes_the_same_layer_output_and_gradient(layer):
    from conceptvec.featureviz.fast import Conv1x1, fast_copy

    module = load_model("torchvision:resnet18", "none").module
    # Non-trivial batch-norm statistics, as trained weights have (fresh ones are the identity).
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            for t in (m.weight, m.bias, m.running_mean):
                t.data = torch.randn(t.shape, generator=g) * 0.5
            m.running_var.data = torch.rand(m.running_var.shape, generator=g) + 0.5
    module.train()  # the copy is in eval mode whatever the caller's mode
    snapshot = user_model_snapshot(module)
    net = fast_copy(module, layer, torch.device("cpu"))
    assert_user_model_unchanged(module, snapshot)
    assert all(not p.requires_grad for p in net.parameters()) and not net.training
    norms = [n for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # resnet18: 20 batch norms, each after its own convolution. Only a pair that the layer's boundary
    # separates stays (a hook on the convolution must see its unnormalised output).
    assert norms == (["layer2.0.bn1"] if layer in ("layer2.0.conv1", "layer2.0.bn1") else
                     ["layer2.0.downsample.1"] if layer == "layer2.0.downsample.0" else [])
    assert sum(isinstance(m, Conv1x1) for m in net.modules()) == 3  # resnet18's strided 1x1 downsamples

    x = torch.rand(2, 3, 45, 45, generator=g)  # odd: a stride-2 1x1 convolution skips the last row
    reference = module.eval()
    direction = torch.randn(layer_mean(reference, layer, x).shape[1], generator=g)
    want, want_grad = layer_and_input_grad(reference, layer, x, direction)
    got, got_grad = layer_and_input_grad(net, layer, x.contiguous(memory_format=torch.channels_last), direction)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-4, atol=1e-4 * float(want_grad.abs().max()))


@pytest.mark.parametrize("stride, channels_last", [(1, True), (2, True), (2, False), (3, True)])
def test_onednn_1x1_convolution_and_its_input_gradient(stride, channels_last):
    from conceptvec.featureviz.fast import Conv1x1

    g = torch.Generator().manual_seed(stride)
    conv = torch.nn.Conv2d(24, 40, 1, stride=stride, bias=True).requires_grad_(False)
    fast = Conv1x1(conv)
    x = torch.randn(2, 24, 13, 11, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    upstream = torch.randn(conv(x).shape, generator=g)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    want, got = conv(a), fast(b)
    (want * upstream).sum().backward()
    (got * upstream).sum().backward()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-5)


def test_fast_copy_leaves_hooked_and_untraceable_models_unfolded():
    from conceptvec.featureviz.fast import conv_bn_pairs, fast_copy

    module = load_model("torchvision:resnet18", "none").module
    handle = module.layer1[0].bn1.register_forward_hook(lambda m, i, o: None)
    try:
        pairs = conv_bn_pairs(module, "layer2")
    finally:
        handle.remove()
    assert len(pairs) == 19 and ("layer1.0.conv1", "layer1.0.bn1") not in pairs

    class Branchy(torch.nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.sum() > 0 else self.conv(x)

    branchy = Branchy().eval()
    assert conv_bn_pairs(branchy, "bn") == []
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(fast_copy(branchy, "bn", torch.device("cpu"))(x), branchy(x))


@pytest.mark.slow
def test_fast_copy_gives_the_images_of_the_plain_model(resnet, monkeypatch):
    from conceptvec.featureviz import fast

    d = np.abs(np.random.default_rng(4).normal(size=(2, 128)))
    run = lambda steps: cv.feature_visualisation(resnet, "layer2", d, steps=steps, size=48, seed=2, progress=False)
    fast_1, fast_20 = run(1), run(20)
    monkeypatch.setattr(fast, "SPEEDUPS", frozenset())
    plain_1, plain_20 = run(1), run(20)
    # One step: the same update up to float rounding (folded weights round differently).
    np.testing.assert_allclose(fast_1.images, plain_1.images, atol=1e-5)
    np.testing.assert_allclose(fast_1.objective, plain_1.objective, rtol=1e-5)
    # Over many steps Adam's normalised update amplifies rounding differences in near-zero
    # gradients, as between a batch and separate runs: the objective stays within 0.5% (0.15% measured).
    np.testing.assert_allclose(fast_20.history, plain_20.history, rtol=5e-3)
    np.testing.assert_allclose(fast_20.objective, plain_20.objective, rtol=5e-3)
