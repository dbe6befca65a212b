"""`conceptvec causal RUN --neuron N`: model, layer and examples from the run's store; files written; refusals."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.cli import app
from conceptvec.storage.causal_effects import CausalEffects

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    run = cv.RunDir(tmp_path_factory.mktemp("run"))
    store = cv.extract("digits", layer="block3", data="digits", per_class=20, out=run.store, device="cpu", progress=False)
    cv.disentangle(store, neuron=29, params=cv.Params(top=40, distance_threshold=12.0, outlier_threshold=40.0, min_cluster_size=3)).save(run.neuron(29))
    yield run
    torch.set_num_threads(before)


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    return result.exit_code, result.output


def test_causal_writes_effects_with_provenance(run_dir):
    code, out = invoke("causal", run_dir.path, "--neuron", 29, "--random", 2, "--random-examples", 50, "--device", "cpu")
    assert code == 0, out
    assert "random (mean)" in out and "causal effects written to" in out
    eff = CausalEffects.load(run_dir.causal(29))
    cs = cv.ConceptSet.load(run_dir.neuron(29))
    assert eff.concepts == [f"concept {j}" for j in range(cs.n_concepts)] and len(eff.randoms) == 2
    assert eff.params["random_examples"] == 50 and eff.params["task"] == "classify"
    meta = json.loads((run_dir.causal(29) / "causal.json").read_text())
    assert meta["provenance"]["layer"] == "block3" and meta["provenance"]["model"]["name"] == "digits"
    assert meta["provenance"]["store"] and "torch" in json.dumps(meta["provenance"])
    assert len(meta["selectivity"]) == cs.n_concepts
    assert {r["concept"] for r in eff.steering} == set(eff.concepts)
    # the command's numbers are the Python API's on the same inputs
    from conceptvec.causal.effects import store_inputs
    from conceptvec.models.load import load_model

    store = cv.ActivationStore.open(run_dir.store)
    loaded = load_model("digits", store.metadata["model"]["weights"])
    again = cv.causal_effects(loaded, "block3", cs, data=store_inputs(store, loaded), n_random=2, random_examples=50)
    assert again.value("concept 0", "concept 0") == pytest.approx(eff.value("concept 0", "concept 0"), abs=1e-5)
    # a second run refuses to replace it without --overwrite, and replaces it with
    code, out = invoke("causal", run_dir.path, "--neuron", 29, "--device", "cpu")
    assert code == 2 and "already exists" in out and "--overwrite" in out
    code, out = invoke("causal", run_dir.path, "--neuron", 29, "--device", "cpu", "--mode", "mean", "--overwrite")
    assert code == 0, out
    assert CausalEffects.load(run_dir.causal(29)).params["mode"] == "mean"
    code, out = invoke("causal", run_dir.path, "--neuron", 29, "--device", "cpu", "--centred", "--overwrite")
    assert code == 0, out
    assert CausalEffects.load(run_dir.causal(29)).params["directions"].startswith("centred")


def test_causal_refusals(run_dir):
    code, out = invoke("causal", run_dir.path, "--neuron", 3)
    assert code == 2 and "no ConceptSet of neuron 3" in out and "conceptvec disentangle" in out and "Traceback" not in out
    code, out = invoke("causal", run_dir.path, "--neuron", 29, "--mode", "steer", "--overwrite", "--device", "cpu")
    assert code == 2 and "unknown mode 'steer'" in out


def test_causal_on_an_image_folder_store_with_random_weights(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in "ab":
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(8):
            Image.fromarray((rng.random((40, 40, 3)) * 255).astype("uint8")).save(tmp_path / "imgs" / c / f"{i}.png")
    run = cv.RunDir(tmp_path / "run")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store = cv.extract("torchvision:resnet18", layer="layer3", data=tmp_path / "imgs", out=run.store, weights="none", size=32,
                           device="cpu", progress=False)
        cv.disentangle(store, neuron=3, params=cv.Params(top=8, min_cluster_size=2, distance_threshold=5.0, outlier_threshold=500.0)).save(run.neuron(3))
        code, out = invoke("causal", run.path, "--neuron", 3, "--random-examples", 6, "--device", "cpu")
    finally:
        torch.set_num_threads(before)
    assert code == 0, out
    eff = CausalEffects.load(run.causal(3))
    assert eff.provenance["model"]["name"] == "torchvision:resnet18" and eff.params["random_examples"] == 6
    assert np.isfinite(eff.value("concept 0", "concept 0"))
