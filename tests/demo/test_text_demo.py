"""The text demo's parts: the docstring corpus, the purity measure and its control, and its refusals."""

import numpy as np
import pytest
from typer.testing import CliRunner

from conceptvec import Params
from conceptvec.cli import app
from conceptvec.demo.text import claim, docstring_sentences, first_sentence, mixing_neurons, purity
from conceptvec.errors import ConceptvecError


def test_docstring_sentences_are_labelled_prose_from_each_module():
    rows = docstring_sentences(("json", "textwrap"))
    assert {r["module"] for r in rows} == {"json", "textwrap"}
    texts = [r["text"] for r in rows]
    assert texts == sorted(set(texts)) and all(20 <= len(t) <= 300 for t in texts)
    assert "Dedent any common leading whitespace from every line in `text`." in texts or any("whitespace" in t for t in texts)
    assert first_sentence("dumps(obj) -> str\n\nMore.") is None
    assert first_sentence("Return the thing. And more text.\n\nDetails.") == "Return the thing."


def test_purity_counts_each_groups_most_common_label():
    labels = np.array([0, 0, 1, 1, 1, 2])
    assert purity(labels, [np.array([0, 1, 2]), np.array([3, 4, 5])]) == pytest.approx(4 / 6)
    assert purity(labels, [np.arange(6)]) == pytest.approx(3 / 6)


def test_a_neuron_mixing_two_labels_is_split_beyond_chance_and_a_pure_one_is_not_mixing():
    rng = np.random.default_rng(0)
    acts = np.abs(rng.normal(0, 0.2, size=(300, 6)))
    labels = rng.integers(2, 5, size=300)
    acts[:20, 0] += 5
    acts[:20, 1] += 4
    labels[:20] = 0
    acts[20:40, 0] += 5
    acts[20:40, 2] += 4
    labels[20:40] = 1
    acts[40:80, 3] += 5
    labels[40:80] = 0
    rows = mixing_neurons(acts, labels, np.array(["a", "b", "c", "d", "e"], dtype=object),
                          Params(top=40, distance_threshold=5.0, outlier_threshold=10.0), seed=0)
    by = {r["neuron"]: r for r in rows}
    assert by[0]["split"] and by[0]["purity"] == 1.0 and by[0]["purity_random_p"] < 0.05
    assert sorted(by[0]["concept_modules"]) == ["a", "b"] and 3 not in by


def test_the_demo_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("keep me")
    with pytest.raises(ConceptvecError, match="holds no text demo run"):
        claim(tmp_path / "x", 0)
    assert (tmp_path / "x" / "mine.txt").read_text() == "keep me"
    result = CliRunner().invoke(app, ["demo", "--text", "--control", "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "belong to the digits demo" in result.output
