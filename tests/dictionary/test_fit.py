"""cv.fit_dictionary: facets of a planted layer recovered, quality in closed form, files, resume, streaming, errors."""

import numpy as np
import pytest

from conceptvec.core.planted import planted_layer
from conceptvec.dictionary import checkpoint as checkpoint_module
from conceptvec.dictionary.fit import fit_dictionary
from conceptvec.dictionary.model import Dictionary
from conceptvec.dictionary.quality import codes_step, measure_quality
from conceptvec.errors import ConceptvecError


def facet_directions(p):
    rows = []
    for j in range(len(p.n_facets)):
        for f in range(p.n_facets[j]):
            m = p.acts[(p.owner == j) & (p.facet == f)].mean(0)
            rows.append(m / np.linalg.norm(m))
    return np.array(rows)


@pytest.fixture(scope="module")
def planted():
    return planted_layer(32, n_neurons=6, n_background=300, seed=1)


def test_dictionary_learning_recovers_planted_facets(planted):
    dic = fit_dictionary(planted.acts, n_atoms=32, method="dictionary_learning", k=4, epochs=6, batch_size=256, progress=False)
    best = (facet_directions(planted) @ dic.atoms().T).max(axis=1)
    assert (best >= 0.85).all() and (best >= 0.9).mean() >= 0.75
    assert dic.quality["explained_variance"] > 0.8
    assert dic.quality["mean_l0"] <= 4


@pytest.mark.slow
def test_topk_sae_codes_are_k_sparse_and_reconstruct(planted):
    dic = fit_dictionary(planted.acts, n_atoms=16, method="topk_sae", k=3, epochs=8, lr=1e-2, batch_size=128, progress=False)
    z = dic.encode(planted.acts[:50])
    assert z.shape == (50, 16) and ((z != 0).sum(axis=1) <= 3).all() and (z >= 0).all()
    # The quality pass (torch encoder) and the saved numpy encoder agree.
    ev = measure_quality(planted.acts, codes_step(dic), rows=300)["explained_variance"]
    assert ev == pytest.approx(dic.quality["explained_variance"], abs=1e-3)
    assert ev > 0.5


def test_quality_in_closed_form():
    x = np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 1.0], [2.0, 0.0, 0.0]])
    eye = np.eye(3)
    full = Dictionary(decoder=np.vstack([eye, np.ones((1, 3))]), bias=np.zeros(3), method="checkpoint", config={"k": None},
                      encoder=np.hstack([eye, -np.ones((3, 1))]), encoder_bias=np.zeros(4))
    q = measure_quality(x, codes_step(full), rows=2)
    assert q["explained_variance"] == pytest.approx(1.0)
    assert q["mean_l0"] == pytest.approx(5 / 3) and q["dead_atoms"] == 1
    # Keeping only the largest code: residual is what is dropped.
    top1 = Dictionary(decoder=eye, bias=np.zeros(3), method="checkpoint", config={"k": 1}, encoder=eye, encoder_bias=np.zeros(3))
    q1 = measure_quality(x, codes_step(top1), rows=3)
    sst = ((x - x.mean(0)) ** 2).sum()
    assert q1["explained_variance"] == pytest.approx(1 - (1 + 1) / sst)


def test_save_load_and_checkpoint_formats(tmp_path, planted):
    dic = fit_dictionary(planted.acts, n_atoms=16, method="topk_sae", k=2, epochs=1, batch_size=256, progress=False, out=tmp_path / "d")
    back = Dictionary.load(tmp_path / "d")
    assert back.method == "topk_sae" and back.config["k"] == 2 and back.quality == dic.quality
    assert back.provenance["versions"]["torch"]
    assert set(back.provenance["seconds"]) == {"scale", "train", "quality"}  # each pass timed apart
    np.testing.assert_allclose(back.encode(planted.acts[:20]), dic.encode(planted.acts[:20]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConceptvecError, match="already exists"):
        fit_dictionary(planted.acts, n_atoms=16, epochs=1, progress=False, out=tmp_path / "d")
    # An SAELens checkpoint: W_dec (d_sae, d_in), b_dec, W_enc (d_in, d_sae), b_enc.
    from safetensors.numpy import save_file

    save_file({"W_dec": dic.decoder, "b_dec": dic.bias, "W_enc": dic.encoder, "b_enc": dic.encoder_bias}, str(tmp_path / "sae.safetensors"))
    ext = Dictionary.from_checkpoint(tmp_path / "sae.safetensors", n_units=32, k=2)
    np.testing.assert_allclose(ext.encode(planted.acts[:20]), dic.encode(planted.acts[:20]), rtol=1e-5, atol=1e-5)
    # A PyTorch Linear decoder, (d_in, d_sae), without an encoder: OMP codes.
    save_file({"decoder.weight": np.ascontiguousarray(dic.decoder.T), "decoder.bias": dic.bias}, str(tmp_path / "lin.safetensors"))
    lin = Dictionary.from_checkpoint(tmp_path / "lin.safetensors", n_units=32, k=2)
    np.testing.assert_allclose(lin.decoder, dic.decoder)
    assert ((lin.encode(planted.acts[:5]) != 0).sum(axis=1) <= 2).all()
    save_file({"something": np.zeros(3, dtype=np.float32)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ConceptvecError, match="decoder"):
        Dictionary.from_checkpoint(tmp_path / "bad.safetensors")
    with pytest.raises(ConceptvecError, match="unpickles"):
        Dictionary.from_checkpoint(tmp_path / "sae.pt")


@pytest.mark.parametrize("method", ["topk_sae", "nmf"])
def test_resume_after_interruption_equals_uninterrupted(tmp_path, planted, method, monkeypatch):
    kw = dict(n_atoms=12, method=method, k=2, epochs=3, batch_size=200, block_rows=300, progress=False, seed=3)
    whole = fit_dictionary(planted.acts, out=tmp_path / "whole", **kw)
    original = checkpoint_module.Checkpoint.write

    def write_then_stop(self, epochs_done, arrays):
        original(self, epochs_done, arrays)
        if epochs_done == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.Checkpoint, "write", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        fit_dictionary(planted.acts, out=tmp_path / "cut", **kw)
    assert not (tmp_path / "cut").exists() and (tmp_path / "cut.partial" / "checkpoint.safetensors").is_file()
    monkeypatch.setattr(checkpoint_module.Checkpoint, "write", original)
    # another array of the same shape does not resume this checkpoint
    other = fit_dictionary(planted.acts[::-1].copy(), out=tmp_path / "other", **kw)
    assert not np.allclose(other.decoder, whole.decoder)
    resumed = fit_dictionary(planted.acts, out=tmp_path / "cut", **kw)
    assert not (tmp_path / "cut.partial").exists()
    if method == "topk_sae":  # the optimiser's state is checkpointed too: the same numbers
        np.testing.assert_allclose(resumed.decoder, whole.decoder, rtol=1e-5, atol=1e-6)
    else:  # scikit-learn's running statistics restart from the checkpointed atoms
        assert resumed.quality["explained_variance"] == pytest.approx(whole.quality["explained_variance"], abs=0.1)


class CountingMatrix:
    """A matrix that records how many rows each read asks for."""

    def __init__(self, a):
        self.a, self.shape, self.dtype, self.ndim, self.reads = a, a.shape, a.dtype, 2, []

    def __getitem__(self, key):
        out = self.a[key]
        self.reads.append(len(out))
        return out


def test_streams_in_blocks_and_is_seeded(planted):
    m = CountingMatrix(planted.acts)
    a = fit_dictionary(m, n_atoms=8, k=2, epochs=2, block_rows=200, batch_size=100, progress=False, seed=5)
    assert max(m.reads) <= 200 and len(m.reads) > 2 * len(planted.acts) // 200
    b = fit_dictionary(planted.acts, n_atoms=8, k=2, epochs=2, block_rows=200, batch_size=100, progress=False, seed=5)
    np.testing.assert_array_equal(a.decoder, b.decoder)
    c = fit_dictionary(planted.acts, n_atoms=8, k=2, epochs=2, block_rows=200, batch_size=100, progress=False, seed=6)
    assert not np.allclose(a.decoder, c.decoder)


def test_shuffled_baseline_keeps_each_unit_values(planted):
    from conceptvec.dictionary.blocks import read_block

    block = read_block(planted.acts, 0, 300, shuffle=True, seed=0)
    np.testing.assert_array_equal(np.sort(block, axis=0), np.sort(planted.acts[:300], axis=0))
    assert not np.array_equal(block, planted.acts[:300])


def test_bad_input():
    with pytest.raises(ConceptvecError, match="non-negative"):
        fit_dictionary(-np.ones((20, 4), dtype=np.float32), n_atoms=2, method="nmf", progress=False)
    with pytest.raises(ConceptvecError, match="method must be one of"):
        fit_dictionary(np.ones((20, 4)), method="pca", progress=False)
    with pytest.raises(ConceptvecError, match="n_atoms"):
        fit_dictionary(np.ones((20, 4)), n_atoms=0, progress=False)
    with pytest.raises(ConceptvecError, match="NaN"):
        fit_dictionary(np.full((20, 4), np.nan), n_atoms=2, progress=False)
