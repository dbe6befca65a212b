import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from torch import nn

import conceptvec as cv



def two_paths_model(seed: int = 0):
    """below: a 1x1 conv holding its 6 input channels; layer: 4 units, unit 0 = channel 0 + channel 1 (two paths)."""
    torch.manual_seed(seed)
    below = nn.Conv2d(6, 6, 1, bias=False)
    layer = nn.Conv2d(6, 4, 1, bias=False)
    with torch.no_grad():
        below.weight.copy_(torch.eye(6)[:, :, None, None])
        w = torch.zeros(4, 6)
        w[0, 0] = w[0, 1] = 1.0
        w[1:, 2:] = torch.rand(3, 4)
        layer.weight.copy_(w[:, :, None, None])
    return nn.Sequential(below, layer)


def test_attribution_is_gradient_times_input_summed_over_positions():
    model = two_paths_model()
    x = torch.rand(5, 6, 3, 3)
    direction = np.array([0.5, -1.0, 2.0, 0.0])
    got = cv.LayerAttribution(model, layer="1", below="0", inputs=lambda idx: x[torch.as_tensor(idx)])(np.arange(5), direction)
    # closed form for a linear 1x1 layer averaged over positions: (W.T w)_c x mean over positions of h_c
    weight = model[1].weight[:, :, 0, 0].detach().numpy().astype(np.float64)
    expected = (weight.T @ direction)[None, :] * x.mean(dim=(2, 3)).numpy()
    assert got.shape == (5, 6) and np.allclose(got, expected, atol=1e-5)
    with pytest.raises(cv.ConceptvecError, match="below='nope' is not a module"):
        cv.LayerAttribution(model, layer="1", below="nope", inputs=lambda idx: x)


def test_a_below_the_layer_does_not_depend_on_is_named():
    model = two_paths_model()
    x = torch.rand(3, 6, 2, 2)
    backwards = cv.LayerAttribution(model, layer="0", below="1", inputs=lambda idx: x[torch.as_tensor(idx)])
    with pytest.raises(cv.ConceptvecError, match="below='1' does not feed layer='0'"):
        backwards(np.arange(3), np.ones(6))


def test_two_inputs_that_excite_one_neuron_come_apart_only_by_attribution():
    # 120 examples excite unit 0 through channel 0, 120 through channel 1: the layer's activations are alike, the
    # reasons differ. Background examples stay weak.
    rng = np.random.default_rng(0)
    n = 120
    h = rng.uniform(0.0, 0.1, size=(2 * n + 400, 6, 2, 2))
    strength = rng.uniform(1.0, 1.5, size=2 * n)
    h[:n, 0] += strength[:n, None, None]
    h[n:2 * n, 1] += strength[n:, None, None]
    h[:2 * n, 2:] += 0.5 + rng.normal(0, 0.02, size=(2 * n, 4, 2, 2))
    x = torch.tensor(h, dtype=torch.float32)
    model = two_paths_model()
    with torch.no_grad():
        acts = model(x).mean(dim=(2, 3)).numpy().astype(np.float64)
    inputs = lambda idx: x[torch.as_tensor(idx)]  # noqa: E731
    attribution = cv.LayerAttribution(model, layer="1", below="0", inputs=inputs)
    auto = cv.Params(distance_threshold="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        plain = cv.disentangle(acts, neuron=0, params=auto)
        why = cv.disentangle(acts, neuron=0, params=auto.replace(representation="attribution"), attribution=attribution)
    path = (why.top_indices >= n).astype(int)  # which channel made each top example fire
    assert set(path) == {0, 1} and np.array_equal(why.top_indices, plain.top_indices)
    # the activations' clusters (whatever their number) do not follow the paths; the attributions' two do
    kept = plain.labels >= 0
    assert adjusted_rand_score(path[kept], plain.labels[kept]) < 0.1
    assert why.n_concepts == 2
    for j in range(2):
        members = path[why.labels == j]
        assert max(members.mean(), 1 - members.mean()) > 0.95
    assert why.provenance["representation"]["below"] == "0"
    # excitation (the positive part on its leading components) keeps the two reasons apart as well
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        excited = cv.disentangle(acts, neuron=0, params=auto.replace(representation="excitation"), attribution=attribution)
    assert excited.n_concepts == 2 and adjusted_rand_score(path, excited.labels) > 0.9
    assert excited.provenance["representation"]["name"] == "excitation"
    # concept vectors stay directions of the layer: their members' mean activations
    assert why.concept_vectors.shape == (2, 4)
    with pytest.raises(cv.ConceptvecError, match="needs the model"):
        cv.disentangle(acts, neuron=0, params=auto.replace(representation="attribution"))
    with pytest.raises(cv.ConceptvecError, match="a scan clusters the layer's activations"):
        cv.scan_layer(acts, params=auto.replace(representation="attribution"), progress=False)
