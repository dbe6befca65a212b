"""cv.causal_effects: closed forms on a model whose layer output is the planted activations, sharing the
layers below agrees with repeating the input, the saved result reads back, LM and encoder tasks, refusals."""

import numpy as np
import pytest
import torch
from torch import nn

import conceptvec as cv
from conceptvec.storage.causal_effects import CausalEffects
from conftest import planted


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class Planted(nn.Module):
    """layer(x) = x (the store's activations are the layer's output), logits = W relu(layer) + b."""

    def __init__(self, w):
        super().__init__()
        self.layer = nn.Linear(w.shape[1], w.shape[1])
        self.head = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.layer.weight.copy_(torch.eye(w.shape[1]))
            self.layer.bias.zero_()
            self.head.weight.copy_(torch.as_tensor(w))
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.layer(x))


@pytest.fixture(scope="module")
def setting():
    acts, groups = planted()
    cs = cv.disentangle(acts, neuron=3, params=cv.Params(top=60, distance_threshold=8.0, outlier_threshold=50.0))
    assert cs.n_concepts == 2
    # class 0 reads concept 0's own units, class 1 concept 1's: a readout that uses exactly known directions
    w = np.zeros((3, acts.shape[1]))
    w[0, 0:8] = 1.0
    w[1, 12:20] = 1.0
    w[2, 21] = 1.0
    torch.manual_seed(0)
    return acts.astype(np.float32), cs, Planted(w).double().float()


def test_ablation_effects_match_the_closed_form(setting):
    acts, cs, model = setting
    eff = cv.causal_effects(model, "layer", cs, data=acts, n_random=4, random_examples=100, seed=1)
    w = model.head.weight.detach().double().numpy()
    base = acts @ w.T
    for j in range(cs.n_concepts):
        v = cs.concept_vectors[j] / np.linalg.norm(cs.concept_vectors[j])
        for g in range(cs.n_concepts):
            idx = cs.members(g)
            pred = base[idx].argmax(1)
            change = -(acts[idx] @ v)[:, None] * (w @ v)[None]  # logits' - logits
            expected = change[np.arange(len(idx)), pred].mean()
            assert eff.value(f"concept {j}", f"concept {g}") == pytest.approx(expected, abs=1e-3)
    # the neuron (unit 3) is read by no class: ablating it changes nothing
    assert eff.value("neuron", "concept 0") == pytest.approx(0.0, abs=1e-5)
    assert eff.value("neuron", "concept 0", "kl") == pytest.approx(0.0, abs=1e-6)
    sel = {r["concept"]: r for r in eff.selectivity()}
    assert sel["concept 0"]["more_than_other_concepts"] and sel["concept 1"]["more_than_other_concepts"]
    assert sel["concept 0"]["more_than_random_directions"] and sel["concept 1"]["more_than_random_directions"]
    assert len(eff.randoms) == 4 and eff.params["seed"] == 1 and eff.params["random_examples"] == 100


def test_steering_curve_is_the_closed_form(setting):
    acts, cs, model = setting
    eff = cv.causal_effects(model, "layer", cs, data=torch.as_tensor(acts), n_random=1, random_examples=10, alphas=(-1, 0, 2))
    v = cs.concept_vectors[0] / np.linalg.norm(cs.concept_vectors[0])
    members = acts[cs.members(0)].astype(np.float64)
    scale = float((cs.top_activations[cs.labels == 0] @ v).mean())
    rows = [r for r in eff.steering if r["concept"] == "concept 0"]
    assert [r["alpha"] for r in rows] == [-1.0, 0.0, 2.0]
    for r in rows:
        assert r["projection"] == pytest.approx((members @ v).mean() + r["alpha"] * scale, rel=1e-4, abs=1e-4)
        assert r["neuron_activation"] == pytest.approx(members[:, 3].mean() + r["alpha"] * scale * v[3], rel=1e-4, abs=1e-4)


def test_shared_and_repeated_forwards_agree_and_save_round_trips(setting, tmp_path):
    acts, cs, model = setting
    kw = dict(data=acts, n_random=2, random_examples=50, alphas=(0.5,), batch_size=16)
    shared = cv.causal_effects(model, "layer", cs, share=True, **kw)
    repeated = cv.causal_effects(model, "layer", cs, share=False, **kw)
    auto = cv.causal_effects(model, "layer", cs, **kw)
    assert auto.params["shared_layers_below"] is True
    for a, b in zip(shared.effects, repeated.effects):
        assert a["intervention"] == b["intervention"] and a["group"] == b["group"]
        np.testing.assert_allclose([a[k] for k in ("d_logit", "d_prob", "kl", "flip")], [b[k] for k in ("d_logit", "d_prob", "kl", "flip")], atol=1e-5)
    shared.save(tmp_path / "causal")
    back = CausalEffects.load(tmp_path / "causal")
    assert back.selectivity() == shared.selectivity() and back.params == shared.params
    rows, groups, values = back.matrix()
    assert rows[-1] == "random (mean)" and groups == ["concept 0", "concept 1", "random"] and values.shape == (4, 3)
    with pytest.raises(cv.ConceptvecError, match="already exists"):
        shared.save(tmp_path / "causal")


def test_mean_mode_uses_the_reference_mean(setting):
    acts, cs, model = setting
    eff = cv.causal_effects(model, "layer", cs, data=acts, mode="mean", mean=acts, n_random=1, random_examples=20, alphas=())
    w = model.head.weight.detach().double().numpy()
    v = cs.concept_vectors[1] / np.linalg.norm(cs.concept_vectors[1])
    idx = cs.members(1)
    pred = (acts[idx] @ w.T).argmax(1)
    change = -((acts[idx] @ v) - acts.mean(0) @ v)[:, None] * (w @ v)[None]
    assert eff.value("concept 1", "concept 1") == pytest.approx(change[np.arange(len(idx)), pred].mean(), abs=1e-3)


@pytest.mark.slow
def test_causal_lm_and_encoder_tasks():
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    ids = torch.randint(0, 40, (30, 6), generator=torch.Generator().manual_seed(0))
    acts = np.abs(np.random.default_rng(0).normal(size=(30, 16)))
    cs = cv.disentangle(acts, neuron=2, params=cv.Params(top=20, min_cluster_size=2, distance_threshold=3.0, outlier_threshold=50.0))
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=8, n_embd=16, n_layer=2, n_head=2)).eval()
    eff = cv.causal_effects(gpt, "transformer.h.0", cs, data=ids, n_random=1, random_examples=8, alphas=(1.0,))
    assert eff.params["task"] == "causal-lm"
    assert all(np.isfinite(r["d_loss"]) and np.isnan(r["cos_change"]) for r in eff.effects)
    bert = BertModel(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)).eval()
    eff = cv.causal_effects(bert, "encoder.layer.0", cs, data=ids, n_random=1, random_examples=8)
    assert eff.params["task"] == "embed" and eff.steering == []
    assert all(r["cos_change"] >= -1e-6 and np.isnan(r["d_logit"]) for r in eff.effects)
    assert max(r["cos_change"] for r in eff.effects) > 0


def test_bad_input(setting):
    acts, cs, model = setting
    with pytest.raises(cv.ConceptvecError, match="unknown mode 'steer'"):
        cv.causal_effects(model, "layer", cs, data=acts, mode="steer")
    with pytest.raises(cv.ConceptvecError, match="give the inputs of every example of its store"):
        cv.causal_effects(model, "layer", cs, data=acts[:50])
    with pytest.raises(cv.ConceptvecError, match="alphas must be finite"):
        cv.causal_effects(model, "layer", cs, data=acts, alphas=(float("inf"),))


def test_a_layer_inside_a_skip_connection_falls_back_to_repeating_the_input():
    from conceptvec.models.load import load_model

    module = load_model("torchvision:resnet18", "none").module
    x = torch.rand(24, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    acts = np.abs(np.random.default_rng(0).normal(size=(24, 128)))
    cs = cv.disentangle(acts, neuron=5, params=cv.Params(top=12, min_cluster_size=2, distance_threshold=12.0, outlier_threshold=500.0))
    eff = cv.causal_effects(module, "layer2.0.conv1", cs, data=x, n_random=1, random_examples=6, alphas=(), batch_size=8)
    # the block adds its input (computed below the layer) to the edited branch: the layers below cannot be shared
    assert eff.params["shared_layers_below"] is False
    v = cs.concept_vectors[0] / np.linalg.norm(cs.concept_vectors[0])
    idx = torch.as_tensor(cs.members(0))
    with torch.no_grad():
        base = module(x[idx])
        with cv.intervene(module, "layer2.0.conv1", v):
            edited = module(x[idx])
    expected = (edited - base).gather(1, base.argmax(1, keepdim=True)).mean()
    assert eff.value("concept 0", "concept 0") == pytest.approx(float(expected), abs=1e-4)


def test_centred_directions_are_the_members_mean_minus_the_layer_mean(setting):
    acts, cs, model = setting
    centre = acts.mean(0)
    eff = cv.causal_effects(model, "layer", cs, data=acts, centre=centre, n_random=1, random_examples=20, alphas=())
    w = model.head.weight.detach().double().numpy()
    v = cs.top_activations[cs.labels == 0].mean(0) - centre
    v /= np.linalg.norm(v)
    idx = cs.members(0)
    pred = (acts[idx] @ w.T).argmax(1)
    change = -(acts[idx] @ v)[:, None] * (w @ v)[None]
    assert eff.value("concept 0", "concept 0") == pytest.approx(change[np.arange(len(idx)), pred].mean(), abs=1e-3)
    assert eff.params["directions"].startswith("centred")
    with pytest.raises(cv.ConceptvecError, match="centre must be the layer's mean activation"):
        cv.causal_effects(model, "layer", cs, data=acts, centre=1.0)
