"""The pipeline on a text store: disentangle, scan, thresholds, the report's snippets, the study's form, featureviz refused."""

import re

import numpy as np
import pytest

import conceptvec as cv
from conceptvec.errors import ConceptvecError
from conceptvec.report.examples import TextSnippets, examples_for_store, token_text

from conftest import SENTENCES

TEXTS = SENTENCES * 3 + ["Beware of <script>alert('x')</script> & friends."]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, tiny_gpt2):
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("text-run")
    (root / "c.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    store = cv.extract(model=f"hf:{tiny_gpt2}", layer="transformer.h.1.mlp.act", data=root / "c.txt", out=root / "run" / "store",
                       examples="tokens", progress=False)
    return root / "run", store


def test_method_scan_and_thresholds_run_on_token_rows(text_run):
    from conceptvec.core.sweep import threshold_sweep
    from conceptvec import layer_thresholds

    run, store = text_run
    params, _ = layer_thresholds(store.activations, params=cv.Params(top=30, min_cluster_size=3))
    cs = cv.disentangle(store, neuron=3, params=params)
    assert len(cs.top_indices) == 30 and cs.n_concepts >= 1
    cs.save(run / "neuron_3")
    scan = cv.scan_layer(store, params=params, neurons="0-7", workers=1, progress=False)
    assert scan[3].n_concepts == cs.n_concepts
    sweep = threshold_sweep(store, params=params, neurons="0-7")
    assert len(sweep.units) + len(sweep.not_live) == 8 and sweep.to_dict()["n_live"] == len(sweep.units)


def test_snippets_are_centred_on_the_token_shaded_and_escaped(text_run):
    run, store = text_run
    snippets = examples_for_store(store)
    assert isinstance(snippets, TextSnippets)
    ex = store.examples.to_pydict()
    docs = store.documents.column("text").to_pylist()
    i = next(k for k in range(store.n_examples) if "<" in docs[ex["document"][k]][ex["start"][k]:ex["end"][k]])
    pieces, strengths, centre = snippets.focus(5).pieces(i)
    document = docs[ex["document"][i]]
    assert "".join(pieces) in document and pieces[centre] == document[ex["start"][i]:ex["end"][i]]
    own = store.activations[i, 5]
    assert strengths[centre] == pytest.approx(float(own))
    page = snippets.focus(5).html(i, run)
    assert "<script" not in page and "<mark>" in page and "rgba(255,140,0," in page
    import html

    assert html.unescape(re.sub(r"<[^>]+>", "", page)) == "".join(pieces)  # the text, every character escaped
    assert "\u0120" not in page  # byte-level BPE's space marker never shows
    assert "<mark>" in snippets.marked_html(i) and "rgba" not in snippets.marked_html(i)
    assert token_text("\u0120cat") == " cat" and token_text("##ing") == "ing"


@pytest.mark.slow
def test_the_report_shows_text_snippets(text_run):
    run, store = text_run
    from conceptvec.report import write_report

    index = write_report(run, neurons=[3], umap=False)
    page = (index.parent / "neuron_3.html").read_text()
    assert page.count('class="snippet"') >= 30 and 'class="tok"' in page
    assert "<script>alert" not in page


def test_the_study_shows_snippets_with_the_token_marked(text_run, tmp_path):
    from conceptvec import make_study

    run, store = text_run
    make_study(run / "neuron_3", tmp_path / "study", neurons="3", seed=0, intruder_questions=2, label_questions=0,
               free_labels=0, images=3, pool=10)
    form = (tmp_path / "study" / "form.html").read_text()
    assert form.count("<mark>") >= 3 and "<script>alert" not in form
    assert not re.search(r"c\.txt:\d", form)  # no example id in the form


def test_featureviz_refuses_a_language_model(tiny_gpt2):
    with pytest.raises(ConceptvecError, match="nothing continuous to optimise.*token snippets"):
        cv.feature_visualisation(f"hf:{tiny_gpt2}", "transformer.h.0", np.ones((1, 32)), steps=1)


def test_document_rows_show_the_text_unshaded(tmp_path, tiny_bert, corpus):
    store = cv.extract(model=f"hf:{tiny_bert}", layer="encoder.layer.1", data=corpus, out=tmp_path / "d", progress=False)
    snippets = examples_for_store(store).focus(2)
    assert snippets.pieces(0) == ([SENTENCES[0]], None, None)
    assert snippets.caption(0) == "corpus.txt:1"


def test_atlas_of_a_token_store_shades_each_snippet_by_its_neuron(text_run, tmp_path):
    import json

    from conceptvec.report.atlas.build import neuron_file

    run, store = text_run
    params = cv.Params(top=30, min_cluster_size=3, distance_threshold="auto", outlier_threshold="auto")
    scan = cv.scan_layer(store, params=params, neurons="0-7", workers=1, progress=False, out=tmp_path / "run" / "scan")
    index = cv.write_atlas(tmp_path / "run", progress=False, map_method="pca")
    text = (index.parent / "data" / neuron_file(5)).read_text()
    data = json.loads(text[text.index(",") + 1:].strip().rstrip(";").rstrip(")"))
    snippets = examples_for_store(store).focus(5)
    for i, _, _, (pieces, centre), _ in data["top"][:5]:
        expected, strengths, own = snippets.pieces(i)
        assert [p for p, _ in pieces] == expected and centre == own
        shades = [s for _, s in pieces if s >= 0]
        assert max(shades) == 1.0 and min(shades) >= 0.0  # shaded by neuron 5, the strongest token full
    assert len(data["top"]) == 30 and scan.neurons[5] == 5
