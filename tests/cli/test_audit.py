"""The audit of issue 24 (item 7), case by case: nothing a command did not write is changed, no code runs that the
user did not choose, no stale result, no traceback, no unbounded input. Each case is a known answer: the files
are byte for byte as before, the exit status is 2 with one line naming the problem and the fix. docs/audit.md
lists the cases and what each got."""

import json

import numpy as np
import pytest

import conceptvec as cv
from conceptvec.storage.atomic import MANIFEST_FILE, read_manifest
from conceptvec.storage.store import StoreWriter
from conftest import one_line_error, planted
from conftest import run_cli as run

PARAMS = ["--top", "60", "--distance-threshold", "10", "--outlier-threshold", "30"]
NEURONS = {"disentangle": ["--neuron", "3"], "scan": ["--neurons", "0-1"], "thresholds": ["--neurons", "0", "--grid", "3"]}
MARKER = {"disentangle": "conceptset.json", "scan": "scan.json", "thresholds": "thresholds.json"}




def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def store(tmp_path):
    acts, _ = planted()
    return cv.ActivationStore.create(tmp_path / "store", acts.astype(np.float32), metadata={"model": {"name": "m"}, "layer": "l"})


# -- data loss: a marker file never makes a folder ours --------------------------------------------------------
@pytest.mark.parametrize("content", ["{}", '{"format": "conceptvec.ConceptSet/1"}'])
@pytest.mark.parametrize("command", ["disentangle", "scan", "thresholds"])
def test_a_marker_file_alone_does_not_make_a_folder_replaceable(store, tmp_path, command, content):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / MARKER[command]).write_text(content)
    (mine / "thesis.tex").write_text("years of work")
    before = snapshot(mine)
    one_line_error(*run(command, store.path, *NEURONS[command], *PARAMS, "--out", mine, "--overwrite"),
                   f"{MANIFEST_FILE}", "Move the folder away")
    assert snapshot(mine) == before


@pytest.mark.parametrize("command", ["disentangle", "scan", "thresholds"])
def test_overwrite_replaces_an_earlier_output_and_refuses_files_put_into_it(store, tmp_path, command):
    out = tmp_path / "out"
    assert run(command, store.path, *NEURONS[command], *PARAMS, "--out", out)[0] == 0
    assert read_manifest(out)["files"]  # what it wrote, with digests
    code, output = run(command, store.path, *NEURONS[command], *PARAMS, "--out", out, "--overwrite")
    assert code == 0, output  # an unchanged earlier output is replaced
    (out / "notes.md").write_text("mine")
    before = snapshot(out)
    one_line_error(*run(command, store.path, *NEURONS[command], *PARAMS, "--out", out, "--overwrite"), "notes.md",
                   "Move them out")
    assert snapshot(out) == before
    # an edited file of the output is the user's now: refused too
    (out / "notes.md").unlink()
    edited = out / MARKER[command]
    edited.write_text(edited.read_text() + " ")
    before = snapshot(out)
    one_line_error(*run(command, store.path, *NEURONS[command], *PARAMS, "--out", out, "--overwrite"), MARKER[command])
    assert snapshot(out) == before


def test_an_output_of_another_kind_is_not_replaced(store, tmp_path):
    out = tmp_path / "out"
    assert run("disentangle", store.path, *NEURONS["disentangle"], *PARAMS, "--out", out)[0] == 0
    before = snapshot(out)
    one_line_error(*run("scan", store.path, *NEURONS["scan"], *PARAMS, "--out", out, "--overwrite"), "holds a ConceptSet, not a scan")
    assert snapshot(out) == before


def test_store_overwrite_replaces_only_a_store_it_wrote(store, tmp_path):
    acts = np.asarray(store.activations)
    with pytest.raises(cv.ConceptvecError, match="holds files this activation store did not write.*notes.txt"):
        (store.path / "notes.txt").write_text("mine")
        cv.ActivationStore.create(store.path, acts, overwrite=True)
    assert (store.path / "notes.txt").read_text() == "mine"
    (store.path / "notes.txt").unlink()
    again = cv.ActivationStore.create(store.path, acts * 2, overwrite=True)
    np.testing.assert_array_equal(again.activations, acts * 2)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "metadata.json").write_text("{}")
    (fake / "data.csv").write_text("1,2")
    with pytest.raises(cv.ConceptvecError, match="not a activation store written by conceptvec|not an? activation store"):
        cv.ActivationStore.create(fake, acts, overwrite=True)
    assert (fake / "data.csv").read_text() == "1,2"


def test_a_partial_store_holding_other_files_is_not_deleted(tmp_path):
    partial = tmp_path / "s.partial"
    partial.mkdir()
    (partial / "mine.txt").write_text("mine")
    with pytest.raises(cv.ConceptvecError, match="not a partial activation store.*mine.txt"):
        cv.ActivationStore.create(tmp_path / "s", np.ones((5, 2)), overwrite=True)
    assert (partial / "mine.txt").read_text() == "mine"


def test_a_scan_progress_folder_holding_other_files_is_not_deleted(store, tmp_path):
    partial = tmp_path / "out.partial"
    partial.mkdir()
    (partial / "state.json").write_text("{}")
    (partial / "mine.txt").write_text("mine")
    one_line_error(*run("scan", store.path, *NEURONS["scan"], *PARAMS, "--out", tmp_path / "out"), "mine.txt")
    assert (partial / "mine.txt").read_text() == "mine"


def test_store_content_digest_is_recorded_once_and_tells_stores_apart(store, tmp_path):
    digest = store.content_sha256
    assert len(digest) == 64 and read_manifest(store.path)["files"]["activations.npy"]["sha256"]
    acts = np.asarray(store.activations).copy()
    same = cv.ActivationStore.create(tmp_path / "same", acts)
    acts[7, 3] += 1e-3
    other = cv.ActivationStore.create(tmp_path / "other", acts)
    assert same.content_sha256 == digest and other.content_sha256 != digest


# -- code execution ---------------------------------------------------------------------------------------------
@pytest.mark.slow  # loads torch and transformers
def test_a_model_folder_with_its_own_code_is_refused_and_never_run(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    ran = tmp_path / "ran"
    (folder / "modeling_evil.py").write_text(f"open({str(ran)!r}, 'w').write('ran')\n")
    (folder / "config.json").write_text(json.dumps({"model_type": "evil", "architectures": ["EvilModel"],
                                                    "auto_map": {"AutoConfig": "modeling_evil.EvilConfig",
                                                                 "AutoModel": "modeling_evil.EvilModel"}}))
    (folder / "preprocessor_config.json").write_text("{}")
    data = tmp_path / "data"
    data.mkdir()
    one_line_error(*run("extract", "--model", f"hf:{folder}", "--layer", "x", "--data", data, "--out", tmp_path / "s"),
                   "ships its own code", "modeling_evil.py", "cv.extract(model=module")
    assert not ran.exists()
    from conceptvec.models.language import refuse_custom_code

    # a model in the cache (no folder to look into): transformers, told trust_remote_code=False, fails; said the same way
    with pytest.raises(cv.ConceptvecError, match="needs its own code to load, which conceptvec never runs"):
        refuse_custom_code("org/model", ValueError("The repository org/model contains custom code ... trust_remote_code=True"))
    refuse_custom_code("org/model", ValueError("some other failure"))  # left to the caller's message


# -- stale results ---------------------------------------------------------------------------------------------
def test_a_scan_is_not_reused_after_its_store_is_extracted_again(store, tmp_path):
    out = tmp_path / "scan"
    assert cv.scan_layer(store, neurons="0-1", params=cv.Params(top=60), out=out).reused is False
    assert cv.scan_layer(cv.ActivationStore.open(store.path), neurons="0-1", params=cv.Params(top=60), out=out).reused
    acts = np.asarray(store.activations).copy()
    acts[17, 0] += 1.0  # one value, in a row the old fingerprint (rows 0, n/2, n-1) never saw
    again = cv.ActivationStore.create(store.path, acts, metadata=store.metadata, overwrite=True)
    assert again.store_id != store.store_id
    with pytest.raises(cv.ConceptvecError, match="holds a different scan"):
        cv.scan_layer(again, neurons="0-1", params=cv.Params(top=60), out=out)


def test_an_array_scan_is_fingerprinted_by_every_value(tmp_path):
    acts, _ = planted()
    out = tmp_path / "scan"
    cv.scan_layer(acts, neurons="0-1", params=cv.Params(top=60), out=out)
    changed = acts.copy()
    changed[17, 5] += 1.0  # a row in no sample
    with pytest.raises(cv.ConceptvecError, match="holds a different scan"):
        cv.scan_layer(changed, neurons="0-1", params=cv.Params(top=60), out=out)


# -- tracebacks from Python become one line with the fix ----------------------------------------------------------
ACTS, _ = planted()
PYTHON_CASES = {
    "ragged activations": (lambda: cv.disentangle([[1.0, 2.0], [3.0]], neuron=0), "rectangular"),
    "ragged activations, scan": (lambda: cv.scan_layer([[1.0, 2.0], [3.0]]), "rectangular"),
    "a string as activations": (lambda: cv.disentangle("acts.npy", neuron=0), "ActivationStore.open"),
    "None as activations": (lambda: cv.disentangle(None, neuron=0), "ActivationStore.open"),
    "a path as vectors' activations": (lambda: cv.most_similar("store", np.ones((1, 24))), "ActivationStore.open"),
    "ragged vectors": (lambda: cv.maximally_projecting(ACTS, [[1.0] * 24, [1.0]]), "rectangular"),
    "a string as vectors": (lambda: cv.most_similar(ACTS, "concepts"), "must be an array"),
    "vectors of the wrong length": (lambda: cv.most_similar(ACTS, np.ones((2, 5))), "length 24"),
    "ActivationStore.open(None)": (lambda: cv.ActivationStore.open(None), "path of a store folder"),
    "ActivationStore.open(3)": (lambda: cv.ActivationStore.open(3), "path of a store folder"),
    "activations of 1e200": (lambda: cv.disentangle(ACTS * 1e200, neuron=3, params=cv.Params(top=60)), "rescale them"),
    "activations of 1e200, scan": (lambda: cv.scan_layer(ACTS * 1e200, neurons="0-1"), "rescale them"),
    "a huge neuron range": (lambda: cv.scan_layer(ACTS, neurons="0-100000000000000000000"), "out of bounds"),
    "a huge neuron": (lambda: cv.disentangle(ACTS, neuron=10**30), "out of range"),
}


@pytest.mark.parametrize("case", list(PYTHON_CASES))
def test_python_bad_inputs_raise_one_conceptvec_error(case):
    call, fragment = PYTHON_CASES[case]
    with pytest.raises(cv.ConceptvecError, match=fragment):
        call()


def test_scan_out_an_existing_file_is_refused(tmp_path):
    (tmp_path / "f.txt").write_text("mine")
    with pytest.raises(cv.ConceptvecError, match="is a file, not a folder"):
        cv.scan_layer(ACTS, neurons="0-1", params=cv.Params(top=60), out=tmp_path / "f.txt")
    assert (tmp_path / "f.txt").read_text() == "mine"


# -- unbounded or ignored inputs --------------------------------------------------------------------------------
def test_unbounded_counts_are_refused_before_any_work(store, tmp_path):
    one_line_error(*run("thresholds", store.path, "--grid", "100000000", *PARAMS), "--grid", "at most 1000")
    one_line_error(*run("scan", store.path, "--stability", "1000000000", *PARAMS, "--out", tmp_path / "scan"),
                   "stability must be at most 1000")
    assert not (tmp_path / "scan").exists()
    one_line_error(*run("disentangle", store.path, "--neuron", "3", "--stability", "1000000000", *PARAMS,
                        "--out", tmp_path / "cs"), "stability must be at most 1000")
    assert not (tmp_path / "cs").exists()
    with pytest.raises(cv.ConceptvecError, match="runs must be at most 1000"):
        from conceptvec.core.stability import concept_stability
        concept_stability(np.ones((10, 3)), np.zeros(10, int), params=cv.Params(top=10), runs=10**9)


def test_significance_with_a_fixed_threshold_is_warned_not_ignored(store, tmp_path):
    with pytest.warns(cv.ConceptvecWarning, match="significance 0.05 is not used with a fixed distance_threshold"):
        cv.Params(significance=0.05)
    code, output = run("disentangle", store.path, "--neuron", "3", "--significance", "0.05", *PARAMS, "--out", tmp_path / "cs")
    assert code == 0 and "warning: significance 0.05 is not used" in " ".join(output.split()), output


def test_reproduce_every_and_demo_epochs_must_be_positive(tmp_path):
    from conceptvec.demo.reproduce import every_nth_image
    from conceptvec.models.digits import TrainConfig

    for every in (-1, 0):
        with pytest.raises(cv.ConceptvecError, match="every"):
            every_nth_image(tmp_path, every)
    one_line_error(*run("reproduce", "--imagenet", tmp_path, "--weights", tmp_path / "w.pth", "--every", "-1",
                        "--out", tmp_path / "r"), "every (--every) must be >= 1")
    assert not (tmp_path / "r").exists()
    with pytest.raises(cv.ConceptvecError, match="epochs"):
        TrainConfig(epochs=0)


def test_image_links_out_of_the_data_folder_are_refused(tmp_path):
    from PIL import Image

    from conceptvec.sources.images import image_files

    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (4, 4)).save(outside / "secret.png")
    data = tmp_path / "data"
    (data / "cats").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(data / "cats" / "a.png")
    (data / "cats" / "b.png").symlink_to(data / "cats" / "a.png")  # a link inside the folder is fine
    assert image_files(data).paths == ["cats/a.png", "cats/b.png"]
    (data / "cats" / "elsewhere").symlink_to(outside)
    with pytest.raises(cv.ConceptvecError, match="links that lead out of it.*cats/elsewhere"):
        image_files(data)
    (data / "cats" / "elsewhere").unlink()
    (data / "dogs").symlink_to(outside)  # a class folder that is a link out
    with pytest.raises(cv.ConceptvecError, match="links that lead out of it.*dogs"):
        image_files(data)


def test_a_binary_txt_is_not_a_corpus(tmp_path):
    from conceptvec.sources.text import read_corpus

    binary = tmp_path / "program.txt"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)) * 4)
    with pytest.raises(cv.ConceptvecError, match="binary file"):
        read_corpus(binary)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("a real document")
    (folder / "b.txt").write_bytes(b"abc\x00def")
    corpus = read_corpus(folder)
    assert corpus.ids == ["a.txt"] and corpus.skipped == [{"id": "b.txt", "reason": "binary data (a NUL byte)"}]


# -- stale inputs: fingerprints by content ----------------------------------------------------------------------
def test_an_image_rewritten_at_the_same_path_is_other_data(tmp_path):
    import os

    from PIL import Image

    from conceptvec.extraction.runner import files_state_digest
    from conceptvec.sources.images import image_files

    Image.new("RGB", (4, 4), "red").save(tmp_path / "a.png")
    before = files_state_digest(image_files(tmp_path))
    assert files_state_digest(image_files(tmp_path)) == before
    st = (tmp_path / "a.png").stat()
    Image.new("RGB", (4, 4), "blue").save(tmp_path / "a.png")  # same size on disk, new bytes
    os.utime(tmp_path / "a.png", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert files_state_digest(image_files(tmp_path)) != before


def test_a_corpus_line_edited_to_the_same_token_count_is_other_data(tiny_bert, tmp_path):
    from conceptvec.extraction.textrun import plan_text
    from conceptvec.models.load import load_model
    from conceptvec.sources.text import read_corpus

    model = load_model(f"hf:{tiny_bert}")
    digests = []
    for text in ("the cat sat\nthe dog ran\n", "the cat sat\nthe dog sat\n"):
        (tmp_path / "c.txt").write_text(text)
        plan = plan_text(model, read_corpus(tmp_path / "c.txt"), examples="documents", max_tokens=16,
                         keep_special_tokens=False, chunk_size=8)
        digests.append(plan.digest())
    assert digests[0] != digests[1]


# -- vague messages ------------------------------------------------------------------------------------------------
def test_a_full_disk_inside_a_library_is_said_as_a_full_disk(store, tmp_path, monkeypatch):
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')

    monkeypatch.setattr("conceptvec.storage.conceptset.save_file", full)
    code, output = run("disentangle", store.path, "--neuron", "3", *PARAMS, "--out", tmp_path / "cs")
    one_line_error(code, output, "No space left on device", "free some space")
    assert "bug" not in output and not (tmp_path / "cs").exists()
    with pytest.raises(OSError, match="No space left"):  # from Python: the OSError it is, not the library's own type
        cv.disentangle(store, neuron=3, params=cv.Params(top=60)).save(tmp_path / "cs")


def test_causal_effects_bad_data_and_targets_are_one_line(tmp_path):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 3)).eval()
    data = torch.as_tensor(ACTS, dtype=torch.float32)
    cs = cv.disentangle(ACTS, neuron=3, params=cv.Params(top=60))
    cases = [
        (dict(data=None), "data must hold the model's inputs"),
        (dict(data=data, targets=np.full(len(data), 0.5)), "whole class indices"),
        (dict(data=data, targets=np.full(len(data), -1)), "class indices from 0"),
        (dict(data=data, targets=np.full(len(data), 7)), "the model gives 3 logits"),
        (dict(data=data, alphas=[1e308]), "alphas must be finite and at most"),
        (dict(data=data, alphas=["strong"]), "alphas must be numbers"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(cv.ConceptvecError, match=fragment):
            cv.causal_effects(model, "1", cs, random_examples=5, n_random=1, progress=False, **kwargs)



def test_causal_refuses_a_conceptset_of_another_store(tmp_path):
    from conceptvec.causal.effects import run_causal

    acts, _ = planted()
    meta = {"model": {"name": "digits"}, "layer": "block3"}
    other = cv.ActivationStore.create(tmp_path / "other", acts.astype(np.float32), metadata=meta)
    cv.ActivationStore.create(tmp_path / "run" / "store", (acts * 2).astype(np.float32), metadata=meta)
    cv.disentangle(other, neuron=3, params=cv.Params(top=60)).save(tmp_path / "run" / "neuron_3")
    with pytest.raises(cv.ConceptvecError, match="computed from another activation store"):
        run_causal(tmp_path / "run", neuron=3, device="cpu", progress=False)
    assert not (tmp_path / "run" / "neuron_3" / "causal").exists()



# -- the commands added since the last audit, with inputs out of their range: one line, exit 2 ------------------
CLI_CASES = [
    (["thresholds", "{store}", "--neurons", "99999", *PARAMS], "out of bounds"),
    (["thresholds", "{store}", "--grid", "1", *PARAMS], "at most 1000"),
    (["thresholds", "{store}", "--neurons", "0", "--distance-threshold", "auto"], "give the fixed one"),
    (["scan", "{store}", "--engine", "bogus", *PARAMS, "--out", "{tmp}/s"], "unknown engine"),
    (["scan", "{store}", "--workers", "-3", *PARAMS, "--out", "{tmp}/s"], "workers must be"),
    (["scan", "{store}", "--directions", "svd:100000", *PARAMS, "--out", "{tmp}/s"], "svd:K needs"),
    (["scan", "{store}", "--directions", "{store}/metadata.json", *PARAMS, "--out", "{tmp}/s"], ".npy or .safetensors"),
    (["causal", "{tmp}/nothing", "--neuron", "3"], "no ConceptSet of neuron 3"),
    (["causal", "{tmp}", "--neuron", "-1"], "whole number >= 0"),
    (["featureviz", "{tmp}", "--neuron", "3"], "no ConceptSet of neuron 3"),
    (["reproduce", "--imagenet", "{tmp}/nope", "--weights", "{tmp}/nope.pth", "--out", "{tmp}/r"], "is not a file"),
    (["demo", "--text", "--retrain", "--out", "{tmp}/d"], "belong to the digits demo"),
    (["demo", "--epochs", "0", "--retrain", "--out", "{tmp}/d"], "epochs (--epochs) must be >= 1"),
    (["disentangle", "{store}", "--neuron", "3", "--top", "1000000", "--out", "{tmp}/c"], "larger than the number of examples"),
    (["report", "{tmp}/nothing"], "does not exist"),
]


@pytest.mark.parametrize("case", range(len(CLI_CASES)))
def test_commands_out_of_range_say_one_line(store, tmp_path, case):
    args, fragment = CLI_CASES[case]
    filled = [a.format(store=store.path, tmp=tmp_path) for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    one_line_error(*run(*filled), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing was written


def test_max_tokens_below_the_special_tokens_is_refused_not_recorded(tiny_bert, corpus, tmp_path):
    with pytest.raises(cv.ConceptvecError, match=r"--max-tokens 1 leaves no room for text.*adds 2 special.*--max-tokens 3"):
        cv.extract(model=f"hf:{tiny_bert}", layer="encoder.layer.0", data=corpus, out=tmp_path / "s", max_tokens=1, progress=False)
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.partial").exists()
    store = cv.extract(model=f"hf:{tiny_bert}", layer="encoder.layer.0", data=corpus, out=tmp_path / "s", max_tokens=3,
                       examples="tokens", keep_special_tokens=True, progress=False)
    assert max(np.bincount(store.examples.column("document").to_numpy())) <= 3  # the limit is applied, not only recorded


def test_a_partial_store_refusal_names_the_entry_that_differs(tmp_path):
    long = {"root": "/data/" + "x" * 300, "files_sha256": "a" * 64}
    with pytest.raises(KeyboardInterrupt):
        with StoreWriter(tmp_path / "s", fingerprint={"data": long}) as writer:
            writer.write(0, np.ones((2, 3)))
            raise KeyboardInterrupt
    with pytest.raises(cv.StoreError, match=r"data.files_sha256: partial has 'a{64}', asked 'b{64}'"):
        StoreWriter(tmp_path / "s", fingerprint={"data": {**long, "files_sha256": "b" * 64}})
