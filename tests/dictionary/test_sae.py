"""The TopK SAE: sparse encoder and decoder with the dense textbook form's values and gradients; dead atoms revived."""

import numpy as np
import pytest
import torch

from conceptvec.dictionary.fit import fit_dictionary
from conceptvec.dictionary.sae import TopKSAE


def dense_reconstruction(sae, x):
    pre = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    values, indices = pre.topk(sae.k, dim=1)
    return torch.zeros_like(pre).scatter_(1, indices, values) @ sae.W_dec + sae.b_dec


def test_sparse_forward_and_backward_equal_the_dense_form():
    torch.manual_seed(0)
    sae = TopKSAE(16, 64, 6, seed=0)
    with torch.no_grad():  # negative encoder biases: some of the k largest pre-activations are cut by the ReLU
        sae.b_enc.copy_(torch.linspace(-8.0, 0.5, 64))
        sae.b_dec.normal_()
    x = torch.randn(40, 16)
    x_hat, values, indices = sae(x)
    assert (values == 0).any() and (values > 0).any()
    torch.testing.assert_close(x_hat, dense_reconstruction(sae, x), rtol=1e-5, atol=1e-5)
    ((x_hat - x) ** 2).sum().backward()
    sparse_grads = {name: p.grad.clone() for name, p in sae.named_parameters()}
    sae.zero_grad()
    ((dense_reconstruction(sae, x) - x) ** 2).sum().backward()
    for name, p in sae.named_parameters():
        torch.testing.assert_close(sparse_grads[name], p.grad, rtol=1e-4, atol=1e-4 * float(p.grad.abs().max()))


def test_codes_are_the_k_largest_non_negative():
    sae = TopKSAE(8, 32, 3, seed=1)
    x = torch.randn(10, 8)
    values, indices = sae.encode_topk(x)
    pre = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    assert values.shape == indices.shape == (10, 3) and (values >= 0).all()
    torch.testing.assert_close(values, pre.gather(1, indices))
    assert torch.equal(values.sort(dim=1).values, pre.topk(3, dim=1).values.sort(dim=1).values)


@pytest.mark.parametrize("k", [1, 32])
def test_k_at_or_beyond_the_atoms(k):
    sae = TopKSAE(4, 8, k, seed=0)
    x_hat, values, _ = sae(torch.randn(5, 4))
    assert x_hat.shape == (5, 4) and values.shape == (5, min(k, 8))


def sparse_features(d=32, m=64, n=4000, s=2, seed=0):
    """n examples, each a sum of s of m random unit features (in d < m units) with weights in [1, 2]."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(m, d))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    idx = np.stack([rng.choice(m, size=s, replace=False) for _ in range(n)])
    return np.einsum("ns,nsd->nd", rng.uniform(1, 2, size=(n, s)), f[idx]).astype(np.float32), f


@pytest.mark.slow
def test_auxk_revives_dead_atoms_on_planted_features():
    x, features = sparse_features()
    kw = dict(n_atoms=64, k=2, epochs=20, lr=3e-2, batch_size=256, progress=False, seed=0, dead_after=1000)
    plain = fit_dictionary(x, aux_k=0, **kw)
    aux = fit_dictionary(x, **kw)  # aux_k: half the width
    assert plain.quality["dead_atoms"] >= 6  # plain training leaves atoms dead although 64 features need them
    assert aux.quality["dead_atoms"] <= plain.quality["dead_atoms"] // 2
    recovered = [int(((features @ d.atoms().T).max(axis=1) >= 0.9).sum()) for d in (plain, aux)]
    assert recovered[1] >= recovered[0] + 5
    assert aux.quality["explained_variance"] > plain.quality["explained_variance"] + 0.03
    assert aux.config["aux_k"] is None and aux.config["dead_after"] == 1000
