from collections import Counter

import numpy as np
import pytest

import conceptvec as cv
from conceptvec.storage.atomic import read_json
from conceptvec.demo.demo import run_demo
from conceptvec.nn.digits import are_merged


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, epochs=20, progress=False, report=False)


def test_demo_end_to_end(demo_run):
    r = demo_run
    assert r.store.shape == (1797, 64) and r.store.metadata["layer"] == "block3"
    cs = cv.ConceptSet.load(r.out / f"neuron_{r.neuron}")
    np.testing.assert_array_equal(cs.concept_vectors, r.concept_set.concept_vectors)
    # the shown neuron mixes a merged pair of digits among its top examples, by construction of the rule
    (a, _), (b, nb) = Counter(r.store.labels[cs.top_indices].tolist()).most_common(2)
    assert are_merged(a, b) and nb >= 10
    # the thresholds are the layer rule's, recorded with the result
    assert cs.params.distance_threshold == pytest.approx(cs.provenance["thresholds"]["distance_threshold"])
    assert cs.provenance["activations"]["model"]["name"] == "digits"
    summary = read_json(r.out / "demo.json")
    assert summary["neuron"] == r.neuron and summary["n_merged_pair_units"] == len(r.merged_units) > 0
    assert summary["params"] == cs.params.to_dict() and "percentile" in summary["thresholds"]["rule"]
    makeup = read_json(r.out / f"neuron_{r.neuron}" / "digit_makeup.json")
    assert sum(makeup["top_examples"].values()) == 100
    assert sum(sum(c.values()) for c in makeup["concepts"]) + sum(makeup["removed"].values()) == 100
    assert [p.name for p in r.figures] == ["top_activating.png", "concepts.png", "projecting.png", "cosine.png"]
    assert all(p.stat().st_size > 10_000 for p in r.figures)


def test_merged_units_are_split_by_the_method(demo_run):
    # The planted evidence: most units mixing a merged pair get a concept for each digit of the pair.
    split = sum(u["split"] for u in demo_run.merged_units)
    assert split >= len(demo_run.merged_units) / 2


def test_demo_reuses_model_and_store(demo_run):
    store_file = demo_run.out / "store" / "activations.npy"
    before = store_file.stat().st_mtime_ns
    again = run_demo(demo_run.out, epochs=20, progress=False, report=False)
    assert again.reused_model and store_file.stat().st_mtime_ns == before
    assert again.neuron == demo_run.neuron
    np.testing.assert_array_equal(again.concept_set.labels, demo_run.concept_set.labels)


def test_mixing_counts_by_hand():
    from conceptvec.demo.demo import mixing_counts

    digits = np.array([0] * 20 + [5] * 12 + [1] * 20 + [2] * 12)
    acts = np.zeros((64, 3))
    acts[:32, 0] = np.arange(32, 0, -1)        # top 32: 0s and 5s, a merged pair
    acts[32:, 1] = np.arange(32, 0, -1)        # top 32: 1s and 2s, not merged
    acts[:20, 2] = 2.0 + np.arange(20)          # twenty 0s, nine 1s, then ties at zero: three 5s
    acts[32:41, 2] = 1.0                        # (second digit has 9 < 10: not mixing)
    counts = mixing_counts(acts, digits, cv.Params(top=32))
    assert counts == {"units": 3, "mixing": 2, "mixing_a_merged_pair": 1}


def test_control_network_trains_on_ten_classes(tmp_path):
    from conceptvec.nn.digits import TrainConfig, cached_digits_cnn, load_digits_cnn

    model, directory, _ = cached_digits_cnn(tmp_path / "c", TrainConfig(epochs=1, merged=False))
    assert model.head[2].out_features == 10
    assert "test_accuracy_digits" in read_json(directory / "digits_cnn.json")
    assert load_digits_cnn(directory).head[2].out_features == 10


def test_demo_command_prints_summary_and_writes_report(demo_run):
    from typer.testing import CliRunner

    from conceptvec.cli import app

    result = CliRunner().invoke(app, ["demo", "--out", str(demo_run.out), "--epochs", "20"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"neuron {demo_run.neuron} chosen because" in result.output and "reused" in result.output
    assert f"report {demo_run.out / 'report' / 'index.html'}" in result.output
    assert (demo_run.out / "report" / f"neuron_{demo_run.neuron}.html").exists()
