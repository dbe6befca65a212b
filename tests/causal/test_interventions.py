"""cv.intervene: closed forms on a hand-built model whose readout uses a known direction, real layers
(digits CNN, resnet18, a tiny GPT-2), hooks removed, nothing of the model changed, refusals."""

import numpy as np
import pytest
import torch
from torch import nn

import conceptvec as cv
from conceptvec.models.digits import DigitsCNN
from conceptvec.causal.interventions import Edits, branch_forward, orthonormal_basis

D, C = 6, 3


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class Readout(nn.Module):
    """features = Linear(4 -> D); logits = c (features . v) + b: the readout uses exactly the direction v."""

    def __init__(self, v, c, conv=False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = conv
        self.features = nn.Conv2d(4, D, 1) if conv else nn.Linear(4, D)
        self.head = nn.Linear(D, C)
        with torch.no_grad():
            self.head.weight.copy_(torch.outer(torch.as_tensor(c), torch.as_tensor(v)).float())
            self.head.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
        self.unused = nn.Linear(D, D)

    def forward(self, x):
        f = self.features(x)
        if self.conv:
            f = f.mean(dim=(2, 3))
        return self.head(f)


@pytest.fixture
def planted():
    rng = np.random.default_rng(0)
    v = rng.normal(size=D)
    v /= np.linalg.norm(v)
    c = np.array([1.5, -2.0, 0.7])
    return v, c


def features(model, x):
    with torch.no_grad():
        f = model.features(x)
        return (f.mean(dim=(2, 3)) if model.conv else f).double().numpy()


@pytest.mark.parametrize("conv", [False, True])
def test_ablate_removes_the_readout_direction_exactly(planted, conv):
    v, c = planted
    model = Readout(v, c, conv)
    x = torch.randn(10, 4, 5, 5) if conv else torch.randn(10, 4)
    f = features(model, x)
    with torch.no_grad(), cv.intervene(model, "features", v, mode="ablate") as state:
        out = model(x).double().numpy()
    assert state["calls"] == 1
    np.testing.assert_allclose(out, np.broadcast_to([0.5, -1.0, 2.0], out.shape), atol=1e-5)
    # several directions: the span is removed, however they are given
    u = np.linalg.qr(np.random.default_rng(1).normal(size=(D, 2)))[0].T
    with torch.no_grad(), cv.intervene(model, "features", [u[0] + u[1], 3 * u[0] - u[1]], mode="ablate"):
        out2 = model(x).double().numpy()
    removed = f - (f @ u.T) @ u
    np.testing.assert_allclose(out2, removed @ model.head.weight.double().detach().numpy().T + [0.5, -1.0, 2.0], atol=1e-5)


@pytest.mark.parametrize("conv", [False, True])
def test_steer_shifts_logits_by_alpha_times_readout_weight(planted, conv):
    v, c = planted
    model = Readout(v, c, conv)
    x = torch.randn(7, 4, 3, 3) if conv else torch.randn(7, 4)
    with torch.no_grad():
        base = model(x).double().numpy()
        with cv.intervene(model, "features", 2 * v, mode="steer", alpha=-1.7):  # directions are normalised
            out = model(x).double().numpy()
    np.testing.assert_allclose(out - base, np.broadcast_to(-1.7 * c, out.shape), atol=1e-5)


def test_mean_ablation_leaves_examples_at_the_reference_mean(planted):
    v, c = planted
    model = Readout(v, c)
    x = torch.randn(20, 4)
    f = features(model, x)
    reference = f[:10]
    m = float(reference.mean(0) @ v)
    with torch.no_grad():
        base = model(x).double().numpy()
        with cv.intervene(model, "features", v, mode="mean", mean=reference):
            out = model(x).double().numpy()
        with cv.intervene(model, "features", v, mode="mean", mean=m):
            same = model(x).double().numpy()
    np.testing.assert_allclose(out, same, atol=1e-6)
    np.testing.assert_allclose(out - base, -((f @ v) - m)[:, None] * c, atol=1e-5)
    # examples whose projection is the reference mean are unchanged (the reference: examples 3 and 4, equal)
    with torch.no_grad():
        x2 = x.clone()
        x2[4] = x2[3]
        f2 = features(model, x2)
        base2 = model(x2)
        with cv.intervene(model, "features", v, mode="mean", mean=f2[[3, 4]]):
            out2 = model(x2)
    torch.testing.assert_close(out2[[3, 4]], base2[[3, 4]], atol=1e-5, rtol=0)
    assert (out2[0] - base2[0]).abs().max() > 1e-3

def test_orthogonal_directions_change_nothing(planted):
    v, c = planted
    model = Readout(v, c)
    u = np.random.default_rng(2).normal(size=(3, D))
    u -= (u @ v)[:, None] * v
    x = torch.randn(5, 4)
    with torch.no_grad():
        base = model(x)
        with cv.intervene(model, "features", u, mode="ablate"):
            ablated = model(x)
        with cv.intervene(model, "features", u, mode="steer", alpha=[5.0, -3.0, 2.0]):
            steered = model(x)
    torch.testing.assert_close(ablated, base, atol=1e-5, rtol=0)
    torch.testing.assert_close(steered, base, atol=1e-5, rtol=0)


def test_hooks_removed_and_model_untouched_after_exit_and_error(planted):
    v, c = planted
    model = Readout(v, c).eval()
    model.head.train()
    state = {k: t.clone() for k, t in model.state_dict().items()}
    x = torch.randn(4, 4)
    base = model(x).detach()
    with pytest.raises(RuntimeError, match="boom"):
        with cv.intervene(model, "features", v):
            model(x)
            raise RuntimeError("boom")
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    with cv.intervene(model, "features", v, mode="steer", alpha=1.0):
        model(x)
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert not model.training and model.head.training and not model.features.training
    for k, t in model.state_dict().items():
        assert torch.equal(t, state[k])
    torch.testing.assert_close(model(x).detach(), base)


def test_bad_input_names_the_fix(planted):
    v, c = planted
    model = Readout(v, c)
    x = torch.randn(2, 4)
    with pytest.raises(cv.ConceptvecError, match="give vectors of length 6"):
        with cv.intervene(model, "features", np.ones(5)):
            model(x)
    with pytest.raises(cv.ConceptvecError, match="zero vectors"):
        with cv.intervene(model, "features", np.zeros(D)):
            pass
    with pytest.raises(cv.ConceptvecError, match="alpha must be finite"):
        with cv.intervene(model, "features", v, mode="steer", alpha=float("nan")):
            pass
    with pytest.raises(cv.ConceptvecError, match="needs alpha"):
        with cv.intervene(model, "features", v, mode="steer"):
            pass
    with pytest.raises(cv.ConceptvecError, match="unknown mode 'erase'; valid: ablate, mean, steer"):
        with cv.intervene(model, "features", v, mode="erase"):
            pass
    with pytest.raises(cv.ConceptvecError, match="mode='mean' needs mean"):
        with cv.intervene(model, "features", v, mode="mean"):
            pass
    with pytest.raises(cv.ConceptvecError, match="did not run in the model's forward pass.*on the path to the output"):
        with cv.intervene(model, "unused", v):
            model(x)
    with pytest.raises(cv.ConceptvecError, match="invalid layer 'featurs'"):
        with cv.intervene(model, "featurs", v):
            pass
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_torchscript_is_refused_clearly():
    scripted = torch.jit.script(DigitsCNN())
    with pytest.raises(cv.ConceptvecError, match="TorchScript models run no Python hooks.*load the model's Python class"):
        with cv.intervene(scripted, "block3", np.ones(64)):
            pass


def test_gram_schmidt_basis():
    d = np.array([[1.0, 0, 0], [1.0, 1, 0], [2.0, 1, 0]])
    q = orthonormal_basis(d / np.linalg.norm(d, axis=1, keepdims=True))
    assert q.shape == (2, 3)
    np.testing.assert_allclose(q @ q.T, np.eye(2), atol=1e-12)


def pooled(module, layer, x):
    seen = {}
    h = dict(module.named_modules())[layer].register_forward_hook(lambda m, i, o: seen.__setitem__("o", o))
    try:
        module(x)
    finally:
        h.remove()
    return seen["o"].mean(dim=(2, 3)).double().numpy()


@pytest.mark.parametrize("which", ["digits", "resnet"])
def test_conv_maps_move_the_pooled_activation_exactly(which):
    from conceptvec.models.load import load_model

    if which == "digits":
        torch.manual_seed(0)
        module, layer, x = DigitsCNN().eval(), "block3", torch.rand(3, 1, 16, 16)
    else:
        module, layer, x = load_model("torchvision:resnet18", "none").module, "layer3", torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        p = pooled(module, layer, x)
        v = np.random.default_rng(0).normal(size=p.shape[1])
        v /= np.linalg.norm(v)
        with cv.intervene(module, layer, v, mode="ablate"):
            ablated = pooled(module, layer, x)
        with cv.intervene(module, layer, v, mode="steer", alpha=3.0):
            steered = pooled(module, layer, x)
    np.testing.assert_allclose(ablated, p - np.outer(p @ v, v), atol=1e-4)
    np.testing.assert_allclose(steered, p + 3.0 * v, atol=1e-4)
    assert np.abs(ablated @ v).max() < 1e-4


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    return GPT2LMHeadModel(config).eval()


def test_gpt2_block_every_token_or_given_positions():
    model = tiny_gpt2()
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    v = np.random.default_rng(0).normal(size=16)
    v /= np.linalg.norm(v)
    seen = {}
    model.transformer.h[1].register_forward_pre_hook(lambda m, a, kw: seen.__setitem__("h", (a[0] if a else kw["hidden_states"]).clone()),
                                                     with_kwargs=True)
    with torch.no_grad():
        model(ids)
        base = seen["h"].double().numpy()
        with cv.intervene(model, "transformer.h.0", v, mode="ablate"):
            logits = model(ids).logits
        everywhere = seen["h"].double().numpy()
        with cv.intervene(model, "transformer.h.0", v, mode="steer", alpha=2.0, positions=[3]):
            model(ids)
        at_3 = seen["h"].double().numpy()
    np.testing.assert_allclose(everywhere, base - (base @ v)[..., None] * v, atol=1e-4)
    expected = base.copy()
    expected[:, 3] += 2.0 * v
    np.testing.assert_allclose(at_3, expected, atol=1e-4)
    assert torch.isfinite(logits).all()
    model.transformer.h[1]._forward_pre_hooks.clear()


def test_branches_share_the_layers_below_when_they_can():
    torch.manual_seed(0)
    module = DigitsCNN().eval()
    x = torch.rand(4, 1, 16, 16)
    rng = np.random.default_rng(0)
    vs = rng.normal(size=(3, 64))
    vs /= np.linalg.norm(vs, axis=1, keepdims=True)
    edits = Edits(np.vstack([np.zeros(64), vs]), np.array([0.0, 1, 1, 0]), np.array([0.0, 0, 0, 2.5]))
    layer = module.block3
    with torch.no_grad():
        shared = branch_forward(module, layer, "block3", x, edits, share=True)
        repeated = branch_forward(module, layer, "block3", x, edits, share=False)
        torch.testing.assert_close(shared, repeated, atol=1e-5, rtol=0)
        torch.testing.assert_close(shared[:4], module(x), atol=1e-5, rtol=0)
        with cv.intervene(module, "block3", vs[1]):
            torch.testing.assert_close(shared[8:12], module(x), atol=1e-5, rtol=0)
        with cv.intervene(module, "block3", vs[2], mode="steer", alpha=2.5):
            torch.testing.assert_close(shared[12:], module(x), atol=1e-5, rtol=0)
