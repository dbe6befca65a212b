"""The audit of issue 24 (item 7), continued on what came after the first round: dictionaries and SAE checkpoints,
the atlas, several layers in one pass, text corpora, --background, thresholds' workers, causal's controls. Each case
is a known answer: one line naming the problem and the fix (exit status 2, ConceptvecError in Python), files byte for
byte as before, or the right result. docs/audit.md lists the cases and what each got."""

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

import conceptvec as cv
from conftest import one_line_error, planted
from conftest import run_cli as run

FIXED = ["--top", "60", "--distance-threshold", "10"]


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def run_dir(tmp_path):
    """RUN/store (an array store: no examples to show) and RUN/scan of neurons 0-3."""
    acts, _ = planted()
    store = cv.ActivationStore.create(tmp_path / "run" / "store", acts.astype(np.float32), metadata={"model": {"name": "m"}, "layer": "l"})
    cv.scan_layer(store, neurons="0-3", params=cv.Params(top=60, distance_threshold=10.0), out=tmp_path / "run" / "scan", progress=False)
    return tmp_path / "run"


# -- dictionaries and SAE checkpoints: wrong shapes, no atoms, non-finite values ---------------------------------
def _checkpoint(path, decoder, **more):
    save_file({"W_dec": np.asarray(decoder, dtype=np.float32), **more}, str(path))
    return path


def _nan_atom():
    d = np.random.default_rng(0).random((16, 24))
    d[3, 4] = np.nan
    return d


CHECKPOINTS = {
    "no atoms": (np.zeros((0, 24)), {}, "the decoder has no atoms"),
    "a NaN atom": (_nan_atom(), {}, "the decoder holds NaN or inf values (rows [3])"),
    "an inf bias": (np.ones((4, 24)), {"b_dec": np.full(24, np.inf, np.float32)}, "the bias holds NaN or inf"),
    "wrong width": (np.ones((4, 7)), {}, "does not fit a layer of 24 units"),
}


@pytest.mark.parametrize("case", list(CHECKPOINTS))
def test_a_damaged_checkpoint_is_one_line_in_scan_and_compare(run_dir, tmp_path, case):
    decoder, more, fragment = CHECKPOINTS[case]
    ckpt = _checkpoint(tmp_path / "sae.safetensors", decoder, **more)
    one_line_error(*run("scan", run_dir / "store", "--directions", f"dictionary:{ckpt}", *FIXED, "--out", tmp_path / "s"), fragment)
    if case != "wrong width":  # compare reads the checkpoint without the layer's width; the concepts' width is checked after
        one_line_error(*run("compare-dictionary", run_dir / "scan", ckpt, "--out", tmp_path / "c"), fragment)
    assert not (tmp_path / "s").exists() and not (tmp_path / "c").exists()


def test_compare_dictionary_refuses_what_it_cannot_use(run_dir, tmp_path):
    dic = tmp_path / "dic"
    cv.fit_dictionary(cv.ActivationStore.open(run_dir / "store"), n_atoms=8, k=2, epochs=1, out=dic, progress=False)
    ckpt = _checkpoint(tmp_path / "sae.safetensors", np.random.default_rng(0).random((8, 24)))
    cases = [
        (["--baseline", "bogus"], "--baseline must be 'random' or a dictionary"),
        (["--k", "0"], "k (--k) must be a whole number >= 1"),
    ]
    for extra, fragment in cases:
        one_line_error(*run("compare-dictionary", run_dir / "scan", ckpt, "--out", tmp_path / "c", *extra), fragment)
    one_line_error(*run("compare-dictionary", run_dir / "scan", dic, "--k", "3", "--out", tmp_path / "c"), "fitted with k=2")
    # a store with fewer rows than the scan's (its top example indices point past it): refused, not an IndexError
    other = cv.ActivationStore.create(tmp_path / "other", np.abs(np.random.default_rng(1).normal(size=(300, 24))).astype(np.float32))
    one_line_error(*run("compare-dictionary", run_dir / "scan", dic, "--store", other.path, "--out", tmp_path / "c"),
                   "computed from another activation store")
    with pytest.raises(cv.ConceptvecError, match=r"shape \(400, 24\), not \(300, 24\)"):
        cv.ScanResult.load(run_dir / "scan", acts=np.asarray(other.activations))
    assert not (tmp_path / "c").exists()


def test_fit_dictionary_refuses_unbounded_sizes_and_signed_nmf(tmp_path):
    acts = np.abs(np.random.default_rng(0).normal(size=(300, 24))).astype(np.float32)
    with pytest.raises(cv.ConceptvecError, match=r"needs about .* GiB .* give fewer atoms \(--n-atoms\)"):
        cv.fit_dictionary(acts, n_atoms=10**9, progress=False)
    with pytest.raises(cv.ConceptvecError, match="epochs must be at most 10000"):
        cv.fit_dictionary(acts, epochs=10**9, progress=False)
    acts[250:, 3] = -1.0  # signed only past the first block: found while fitting, said as the first block's would be
    with pytest.raises(cv.ConceptvecError, match="NMF needs non-negative activations"):
        cv.fit_dictionary(acts, method="nmf", n_atoms=4, epochs=1, block_rows=50, progress=False)


def test_directions_of_huge_values_are_directions(tmp_path):
    acts, _ = planted()
    v = np.random.default_rng(0).normal(size=(2, 24))
    np.save(tmp_path / "big.npy", v * 1e200)  # its norm overflows float64; the direction does not
    big = cv.scan_layer(acts, directions=str(tmp_path / "big.npy"), params=cv.Params(top=60), progress=False)
    small = cv.scan_layer(acts, directions=v, params=cv.Params(top=60), progress=False)
    np.testing.assert_allclose(big.directions, small.directions)
    np.testing.assert_array_equal(big.top_indices, small.top_indices)


# -- the atlas, the report and shared concepts --------------------------------------------------------------------
def test_atlas_and_report_of_an_array_store_say_it_has_no_examples(run_dir):
    for command in ("atlas", "report"):
        one_line_error(*run(command, run_dir, "--out", run_dir / command), "records no examples to show")
        assert not (run_dir / command).exists()
    one_line_error(*run("atlas", run_dir, "--seed", "-1"), "seed (--seed) must be >= 0")


def test_shared_concepts_saved_into_a_scan_are_its_own_and_never_replace_a_users_file(run_dir, tmp_path):
    scan_dir = run_dir / "scan"
    found = cv.shared_concepts(cv.ScanResult.load(scan_dir), progress=False)
    found.save(scan_dir)
    # recorded in the scan's manifest: the scan's own --overwrite replaces them (it used to refuse them as foreign)
    code, output = run("scan", run_dir / "store", "--neurons", "0-3", *FIXED, "--out", scan_dir, "--overwrite")
    assert code == 0, output
    (scan_dir / "shared_concepts.json").write_text('{"mine": true}')
    before = snapshot(scan_dir)
    with pytest.raises(cv.ConceptvecError, match="holds shared_concepts.json, which conceptvec did not write there"):
        found.save(scan_dir)
    assert snapshot(scan_dir) == before
    with pytest.raises(cv.ConceptvecError, match="seed must be >= 0"):
        cv.shared_concepts(cv.ScanResult.load(scan_dir), seed=-1, progress=False)


# -- workers, thresholds -------------------------------------------------------------------------------------------
def test_workers_past_the_machine_are_refused_before_any_process_starts(run_dir, tmp_path):
    from conceptvec.engines.registry import MAX_WORKERS_PER_CPU, local_cpus

    many = MAX_WORKERS_PER_CPU * local_cpus() + 1
    for args in (["thresholds", run_dir / "store", "--neurons", "0-1", "--grid", "3"],
                 ["scan", run_dir / "store", "--neurons", "0-1", "--out", tmp_path / "s"]):
        one_line_error(*run(*args, *FIXED, "--workers", many), f"workers must be at most {many - 1}")
    # thresholds offers only the sweep's options: --representation, --fdr, --null could only be refused there (--fdr
    # and --null asked for --distance-threshold auto, which thresholds refuses); the sweep itself still refuses them
    for option, value in (("--representation", "attribution"), ("--fdr", "0.05"), ("--null", "layer"), ("--evidence-fdr", "0.1")):
        code, output = run("thresholds", run_dir / "store", "--neurons", "0-1", *FIXED, option, value)
        assert code == 2 and "No such option" in output and "Traceback" not in output, output
    from conceptvec.scan.sweep import sweep_layer

    with pytest.raises(cv.ConceptvecError, match="needs the model for every neuron"):
        sweep_layer(planted()[0], params=cv.Params(top=60, distance_threshold=10.0, representation="attribution"), workers=1)

    acts, _ = planted()  # more workers than neurons: as many processes as neurons, the same sweep
    one = sweep_layer(acts, params=cv.Params(top=60, distance_threshold=10.0), workers=1, neurons="0-1", n_grid=3)
    two = sweep_layer(acts, params=cv.Params(top=60, distance_threshold=10.0), workers=3, neurons="0-1", n_grid=3)
    assert one.to_dict() == two.to_dict()


# -- causal: its controls are bounded, its seed checked -------------------------------------------------------------
def test_causal_controls_and_seed_are_checked_before_the_work():
    import torch
    from torch import nn

    acts, _ = planted()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 3)).eval()
    cs = cv.disentangle(acts, neuron=3, params=cv.Params(top=60))
    data = torch.as_tensor(acts, dtype=torch.float32)
    for kwargs, fragment in [(dict(n_random=10**9), r"n_random \(--random\) must be at most 1000"),
                             (dict(seed=-1), r"seed \(--seed\) must be >= 0"),
                             (dict(random_examples=0), r"random_examples \(--random-examples\) must be >= 1"),
                             (dict(batch_size=2.5), "batch_size must be a whole number")]:
        with pytest.raises(cv.ConceptvecError, match=fragment):
            cv.causal_effects(model, "1", cs, data=data, progress=False, **kwargs)


# -- extraction: outputs, backgrounds, text limits ------------------------------------------------------------------
def test_extract_outputs_and_backgrounds_are_checked(run_dir, tmp_path):
    (tmp_path / "afile").write_text("mine")
    one_line_error(*run("extract", "--model", "digits", "--layer", "block2", "--layer", "block3", "--data", "digits",
                        "--out", tmp_path / "afile"), "is a file, not a folder")
    assert (tmp_path / "afile").read_text() == "mine"
    before = snapshot(run_dir / "store")
    one_line_error(*run("extract", "--model", "digits", "--layer", "block2", "--layer", "block3", "--data", "digits",
                        "--per-class", "2", "--out", run_dir / "store"), "is an output of conceptvec")
    assert snapshot(run_dir / "store") == before and not any(p.is_dir() for p in (run_dir / "store").iterdir())
    from conceptvec.sources.images import check_background

    with pytest.raises(cv.ConceptvecError, match="must be an opaque colour"):
        check_background("background", "#ff000080")
    assert check_background("background", "#ff0000ff") == "#ff0000ff"


def test_text_extraction_refuses_image_options_and_limits_past_the_model(tiny_bert, corpus, tmp_path):
    kw = dict(model=f"hf:{tiny_bert}", layer="encoder.layer.0", data=corpus, out=tmp_path / "s", progress=False)
    with pytest.raises(cv.ConceptvecError, match="--background composites transparent images"):
        cv.extract(**kw, background="black")
    with pytest.raises(cv.ConceptvecError, match=r"--max-tokens 100000 is more than .* it has 64 positions; give --max-tokens 64"):
        cv.extract(**kw, max_tokens=100000)
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.partial").exists()
    assert cv.extract(**kw, max_tokens=64).n_examples == 8  # the model's own limit is fine


# -- refusals that advise --overwrite only where it would help; reproduce's claim; torch's own messages -------------
def test_a_folder_overwrite_would_not_replace_is_refused_with_the_real_reason(run_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    for out, fragment in ((mine, "holds other files, not a scan written by conceptvec"),
                          (run_dir / "store", "holds an activation store, not a scan")):
        code, output = run("scan", run_dir / "store", "--neurons", "0-1", *FIXED, "--out", out)
        one_line_error(code, output, fragment)
        assert "pass --overwrite" not in output
    code, output = run("scan", run_dir / "store", "--neurons", "0-3", *FIXED, "--out", run_dir / "scan", "--workers", "1")
    assert code == 0, output  # the same scan at its own folder: reused, not refused


def test_a_weights_file_torch_cannot_read_safely_is_one_line_without_torchs_advice(tmp_path):
    from conceptvec.demo.reproduce import REPRODUCE_FILE

    from PIL import Image

    (tmp_path / "w.pth").write_bytes(b"x")  # not a torch file
    (tmp_path / "train" / "n01").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "n01" / "a.JPEG")
    args = ["reproduce", "--imagenet", tmp_path / "train", "--out", tmp_path / "r"]
    code, output = run(*args, "--weights", tmp_path / "w.pth")
    one_line_error(code, output, "as a state dict of tensors", "weights_only=True")
    assert "weights_only` set to `False" not in output and "Re-running" not in output
    # the failed run claimed nothing but its own record: the corrected weights may use the same folder
    (tmp_path / "w2.pth").write_bytes(b"y")
    one_line_error(*run(*args, "--weights", tmp_path / "w2.pth"), "as a state dict of tensors")
    assert '"w2.pth"' in (tmp_path / "r" / REPRODUCE_FILE).read_text().replace(str(tmp_path) + "/", '"')
    one_line_error(*run(*args, "--weights", tmp_path / "w.pth", "--batch-size", "0", "--out", tmp_path / "r2"), "batch_size")
    assert not (tmp_path / "r2").exists()  # refused before anything was recorded
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / REPRODUCE_FILE).write_text('{"mine": 1}')
    one_line_error(*run(*args[:-1], tmp_path / "theirs", "--weights", tmp_path / "w.pth"), "that conceptvec did not write")
    assert (tmp_path / "theirs" / REPRODUCE_FILE).read_text() == '{"mine": 1}'


def test_an_answer_file_with_a_huge_field_is_one_line(tmp_path):
    from types import SimpleNamespace

    from conceptvec.study.answers import read_answers

    study = SimpleNamespace(key={"q01": {"type": "label", "options": []}}, study_id="s")
    big = tmp_path / "answers.csv"
    big.write_text("rater,question,answer\nr1,q01," + "x" * 200_000 + "\n")
    with pytest.raises(cv.ConceptvecError, match="is not a CSV the form exports"):
        read_answers([big], study=study)


# -- the Python API with wrong types and out-of-range values: one ConceptvecError each ------------------------------
def _api_cases():
    acts, _ = planted()
    cs = cv.disentangle(acts, neuron=3, params=cv.Params(top=60))
    dic = cv.fit_dictionary(acts, n_atoms=8, k=2, epochs=1, progress=False)
    scan = cv.scan_layer(acts, neurons="0-3", params=cv.Params(top=60, distance_threshold=10.0), progress=False)
    return {
        "compare: None as dictionary": (lambda: cv.compare_with_dictionary(cs, None), "dictionary must be a Dictionary"),
        "compare: a path as dictionary": (lambda: cv.compare_with_dictionary(cs, "dic"), "Dictionary.from_checkpoint"),
        "compare: a scan as the concepts": (lambda: cv.compare_with_dictionary(scan, dic), "compare_scan_with_dictionary"),
        "compare: None as the concepts": (lambda: cv.compare_with_dictionary(None, dic), "must be a ConceptSet"),
        "compare a scan: a ConceptSet": (lambda: cv.compare_scan_with_dictionary(cs, dic), "scan must be a ScanResult"),
        "shared: None": (lambda: cv.shared_concepts(None), "needs a ScanResult"),
        "shared: a ConceptSet": (lambda: cv.shared_concepts(cs), "needs a ScanResult"),
        "shared: null_draws 10**9": (lambda: cv.shared_concepts(scan, null_draws=10**9, progress=False), "at most 1000"),
        "write_atlas(None)": (lambda: cv.write_atlas(None), "write_atlas needs a path"),
        "ConceptSet.load(None)": (lambda: cv.ConceptSet.load(None), "ConceptSet.load needs a path"),
        "ScanResult.load(None)": (lambda: cv.ScanResult.load(None), "ScanResult.load needs a path"),
        "scan.concepts_of(None)": (lambda: scan.concepts_of(None), "neuron must be a whole number"),
        "layer_thresholds(None)": (lambda: cv.layer_thresholds(None), "ActivationStore.open"),
        "fit_dictionary(out=3)": (lambda: cv.fit_dictionary(acts, out=3, progress=False), "needs a folder"),
        "fit_dictionary of one row": (lambda: cv.fit_dictionary(np.ones((1, 5)), progress=False), "at least 2"),
        "Params(seed=2**70)": (lambda: cv.Params(seed=2**70), "32-bit seeds"),
        "Params(n_init=10**9)": (lambda: cv.Params(n_init=10**9), "n_init must be at most 1000"),
        "Params(max_iter=10**12)": (lambda: cv.Params(max_iter=10**12), "max_iter must be at most"),
        "ActivationStore.create(metadata=3)": (lambda: cv.ActivationStore.create("unused", np.ones((3, 3)), metadata=3),
                                               "metadata must be a dict"),
    }


def test_python_api_wrong_types_raise_one_conceptvec_error():
    for case, (call, fragment) in _api_cases().items():
        with pytest.raises(cv.ConceptvecError, match=fragment):
            call()
        # (a loop, not parametrised: the fitted dictionary and scan are made once)
        assert case


def test_a_store_never_holds_infinities_its_dtype_made(tmp_path):
    with pytest.raises(cv.ConceptvecError, match=r"activations reach 1e\+200, beyond the float32 store's range"):
        cv.ActivationStore.create(tmp_path / "s", np.full((3, 3), 1e200))
    with pytest.raises(cv.ConceptvecError, match=r"beyond the float16 store's range .*--dtype float32"):
        cv.ActivationStore.create(tmp_path / "s", np.full((3, 3), 1e5), dtype="float16")
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.partial").exists()
    with pytest.raises(cv.ConceptvecError, match="cannot write a object into JSON"):
        cv.ActivationStore.create(tmp_path / "m", np.ones((3, 3)), metadata={"x": object()})
    ok = cv.ActivationStore.create(tmp_path / "ok", np.full((3, 3), 6e4), dtype="float16")  # within float16: kept
    assert np.isfinite(ok.activations).all()


def test_demo_seed_and_epochs_are_checked_before_the_folder_is_claimed(tmp_path):
    for args in (["--seed", "-1"], ["--text", "--seed", "-1"]):
        one_line_error(*run("demo", *args, "--out", tmp_path / "d"), "seed must be >= 0")
        assert not (tmp_path / "d").exists()  # nothing claimed, nothing extracted: another seed may use the folder
    one_line_error(*run("demo", "--retrain", "--epochs", "100000000", "--out", tmp_path / "d"), "epochs (--epochs) must be at most 10000")
    (tmp_path / "afile").write_text("mine")
    one_line_error(*run("demo", "--text", "--out", tmp_path / "afile"), "is a file, not a folder")


def test_causal_demo_out_never_replaces_a_users_file(tmp_path):
    from conceptvec.cli.causal import check_result_file

    mine = tmp_path / "notes.json"
    mine.write_text("my notes")
    with pytest.raises(cv.ConceptvecError, match="is not an earlier causal-demo result"):
        check_result_file(mine)
    with pytest.raises(cv.ConceptvecError, match="is a folder"):
        check_result_file(tmp_path)
    earlier = tmp_path / "result.json"
    earlier.write_text('{"run": "r", "mode": "ablate", "target": "t", "n_split_units": 1, "units": []}')
    check_result_file(earlier)  # its own earlier result: replaced
    check_result_file(tmp_path / "new.json")
    code, output = run("causal-demo", tmp_path / "no-demo", "--out", mine)
    one_line_error(code, output, "is not an earlier causal-demo result")
    assert mine.read_text() == "my notes"


def test_preprocessing_overrides_are_refused_where_they_would_be_ignored(tmp_path):
    from conceptvec.models.load import load_model

    with pytest.raises(cv.ConceptvecError, match=r"--mean, --size set an image model's preprocessing .* digits CNN has its own"):
        load_model("digits", mean=(0.5, 0.5, 0.5), size=64)
    with pytest.raises(cv.ConceptvecError, match="--key-map .* without --weights FILE it would be ignored"):
        load_model("timm:efficientnet_lite0", "none", key_map="order")
    (tmp_path / "notes.json").write_text('{"mine": 1}')
    with pytest.raises(cv.ConceptvecError, match="is not the digits CNN's weights"):
        load_model("digits", str(tmp_path / "notes.json"))


def test_feature_visualisation_steps_and_size_are_bounded():
    from conceptvec.featureviz.params import FeatureVizParams

    with pytest.raises(cv.ConceptvecError, match="steps must be at most 100000"):
        FeatureVizParams(steps=10**9)
    with pytest.raises(cv.ConceptvecError, match="size must be at most 4096"):
        FeatureVizParams(size=100_000)
    assert FeatureVizParams(steps=512, size=224).size == 224


def test_a_tensor_dataset_is_fingerprinted_by_content_and_another_dataset_says_it_is_not(tmp_path, capsys):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    x = torch.randn(6, 3, 8, 8)
    kw = dict(layer="1", out=tmp_path / "s", batch_size=3, progress=False)
    cv.extract(model, data=torch.utils.data.TensorDataset(x), **kw)
    again = torch.utils.data.TensorDataset(x.clone())
    assert cv.extract(model, data=again, **kw).n_examples == 6  # the same contents: reused
    with pytest.raises(cv.ConceptvecError, match=r"already holds a different extraction \(data.tensors_sha256"):
        cv.extract(model, data=torch.utils.data.TensorDataset(x * 2), **kw)  # same type and length, other items

    class Rows(torch.utils.data.Dataset):
        def __init__(self, t):
            self.t = t

        def __len__(self):
            return len(self.t)

        def __getitem__(self, i):
            return self.t[i]

    kw["out"] = tmp_path / "r"
    cv.extract(model, data=Rows(x), **kw)
    capsys.readouterr()
    cv.extract(model, data=Rows(x * 2), **kw)  # cannot be told apart without reading it: said, not silent
    assert "its items are not compared: pass --overwrite if they changed" in " ".join(capsys.readouterr().err.split())


def test_causal_and_featureviz_of_a_text_run_say_what_they_cannot_do(tiny_bert, corpus, tmp_path):
    run_dir = tmp_path / "run"
    store = cv.extract(model=f"hf:{tiny_bert}", layer="encoder.layer.0", data=corpus, out=run_dir / "store", progress=False)
    cv.disentangle(store, neuron=3, params=cv.Params(top=5, distance_threshold=10.0, min_cluster_size=1)).save(run_dir / "neuron_3")
    # the hf: folder brings its own weights: reloading it no longer fails on "pass no --weights" (which the user never did)
    one_line_error(*run("featureviz", run_dir, "--neuron", "3", "--steps", "2"), "is a language model")
    one_line_error(*run("causal", run_dir, "--neuron", "3"), "no preprocessing of its own")


def test_interventions_and_causal_effects_take_wrong_types_in_one_line():
    import torch
    from torch import nn

    acts, _ = planted()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 3)).eval()
    cs = cv.disentangle(acts, neuron=3, params=cv.Params(top=60))
    x = torch.as_tensor(acts[:4], dtype=torch.float32)
    for kwargs, fragment in [(dict(directions="v"), "must be an array of numbers"),
                             (dict(directions=[[1.0] * 24, [1.0]]), "must be an array of numbers"),
                             (dict(directions=cs), r"cs.concept_vectors"),
                             (dict(directions=np.ones((1, 24)), mode="steer", alpha=1e308), "beyond float32's range")]:
        with pytest.raises(cv.ConceptvecError, match=fragment):
            with cv.intervene(model, "1", **kwargs):
                model(x)
    with cv.intervene(model, "1", np.ones((1, 24)) * 1e200):  # a direction of 1e200s is the direction of ones
        big = model(x)
    with cv.intervene(model, "1", np.ones((1, 24))):
        assert torch.allclose(big, model(x))
    data = torch.as_tensor(acts, dtype=torch.float32)
    with pytest.raises(cv.ConceptvecError, match="concept_set must be a ConceptSet"):
        cv.causal_effects(model, "1", "run/neuron_3", data=data, progress=False)
    with pytest.raises(cv.ConceptvecError, match="data holds NaN or inf"):
        cv.causal_effects(model, "1", cs, data=torch.full_like(data, float("nan")), progress=False)


def test_study_and_feature_visualisation_take_wrong_types_in_one_line(tmp_path):
    from conceptvec.featureviz.objectives import check_directions

    with pytest.raises(cv.ConceptvecError, match="must be a \\(k, n_units\\) array of numbers, got str"):
        check_directions("v")
    np.testing.assert_allclose(check_directions(np.ones((1, 4)) * 1e200), np.ones((1, 4)))  # 1e200s: the direction of ones
    with pytest.raises(cv.ConceptvecError, match="make_study needs a path"):
        cv.make_study(None, tmp_path / "s")
    with pytest.raises(cv.ConceptvecError, match="Study.load needs a path"):
        cv.score_study(None, ["a.csv"])
    with pytest.raises(cv.ConceptvecError, match="intruder_questions must be at most 1000"):
        cv.StudyConfig(intruder_questions=10**9)


# -- the third round's leftovers (docs/audit.md, third table) --------------------------------------------------------
def test_a_refused_several_layer_extraction_leaves_nothing_and_an_empty_folder_is_written_into(tmp_path):
    (tmp_path / "out" / "block3").mkdir(parents=True)
    (tmp_path / "out" / "block3" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    layers = ["--model", "digits", "--layer", "block2", "--layer", "block3", "--data", "digits"]
    # before: refused after block2's writer had made out/block2.partial (left empty), as "not an activation store ...
    # give the folder that `conceptvec extract --out` wrote" (advice for an input)
    one_line_error(*run("extract", *layers, "--out", tmp_path / "out"), "holds other files, not an activation store")
    assert snapshot(tmp_path) == before and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["block3"]
    # an existing empty folder is written into, as by every other command (before: "is not an activation store")
    (tmp_path / "empty").mkdir()
    code, output = run("extract", "--model", "digits", "--layer", "block3", "--data", "digits", "--out", tmp_path / "empty")
    assert code == 0, output
    assert cv.ActivationStore.open(tmp_path / "empty").n_examples == 1797


def test_refusals_of_commands_without_overwrite_do_not_advise_it(tmp_path):
    from conceptvec.demo.text import run_text_demo
    from conceptvec.storage.atomic import check_replaceable, write_manifest

    # the text demo's earlier run, whose scan the user replaced with one of other settings
    run_dir = tmp_path / "run"
    (run_dir / "scan").mkdir(parents=True)
    (run_dir / "text_demo.json").write_text(json.dumps({"status": "complete", "seed": 0, "threshold_setting": "auto",
                                                        "params": cv.Params(top=50).to_dict()}))
    (run_dir / "scan" / "scan.json").write_text(json.dumps({"call": {"params": cv.Params(top=20).to_dict()}}))
    before = snapshot(run_dir)
    with pytest.raises(cv.ConceptvecError) as caught:  # before the extraction; before: after it, advising --overwrite
        run_text_demo(run_dir, progress=False)
    assert "holds a scan the demo did not write" in str(caught.value) and "--overwrite" not in str(caught.value)
    assert snapshot(run_dir) == before
    # the atlas replaces its own earlier atlas without a flag: a user's file in it is refused without naming one
    atlas = tmp_path / "atlas"
    atlas.mkdir()
    (atlas / "atlas.json").write_text("{}")
    write_manifest(atlas, what="atlas")
    (atlas / "mine.txt").write_text("notes")
    with pytest.raises(cv.ConceptvecError, match=r"did not write or that changed since \(mine.txt\); replacing it would") as caught:
        check_replaceable(atlas, what="atlas")
    assert "--overwrite" not in str(caught.value)
    with pytest.raises(cv.ConceptvecError, match="holds an atlas, not an activation store; conceptvec replaces only an earlier"):
        check_replaceable(atlas, what="activation store")


def test_a_layer_null_on_rows_that_repeat_says_so_and_leaves_nothing(tmp_path):
    store = cv.ActivationStore.create(tmp_path / "zero", np.zeros((50, 4), np.float32))
    auto = ["--top", "10", "--distance-threshold", "auto", "--null", "layer"]
    # before: "... the layer null needs more: lower min_cluster_size" (which cannot help), and SCAN.partial left behind
    one_line_error(*run("scan", store.path, *auto, "--out", tmp_path / "scan"),
                   "hold 1 distinct rows: the layer's rows repeat (check the data), or leave --null layer out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zero"]
    few = cv.ActivationStore.create(tmp_path / "few", np.random.default_rng(0).random((5, 4)).astype(np.float32))
    one_line_error(*run("scan", few.path, "--top", "5", *auto[2:], "--out", tmp_path / "scan"), "lower min_cluster_size")


def test_the_sae_options_are_refused_with_methods_that_ignore_them(tmp_path):
    store = cv.ActivationStore.create(tmp_path / "store", np.abs(np.random.default_rng(0).normal(size=(60, 6))).astype(np.float32))
    # before: accepted and recorded in dictionary.json, never applied
    one_line_error(*run("dictionary", store.path, "--method", "nmf", "--aux-k", "4", "--lr", "0.1", "--out", tmp_path / "d"),
                   "lr (--lr), aux_k (--aux-k) are for method topk_sae only; nmf would ignore them")
    with pytest.raises(cv.ConceptvecError, match="dead_after .* is for method topk_sae only; dictionary_learning would ignore it"):
        cv.fit_dictionary(store, method="dictionary_learning", dead_after=5, progress=False)
    assert not (tmp_path / "d").exists()
    assert cv.DictionaryConfig(method="nmf", lr=1e-3).method == "nmf"  # the default, given: nothing is ignored
