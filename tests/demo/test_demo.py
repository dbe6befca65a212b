import re
import tomllib
from collections import Counter
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
import torch

import conceptvec as cv
from conceptvec.demo.demo import control_comparison, run_demo
from conceptvec.models.digits import (WEIGHTS_FILE, DigitsCNN, TrainConfig, are_merged, load_digits_cnn, save_digits_cnn,
                                  shipped_digits_dir, training_results)
from conceptvec.storage.atomic import read_json
from conceptvec.storage.provenance import file_digest

ROOT = Path(__file__).resolve().parents[2]
RETRAIN_EPOCHS = 20  # enough for units that mix a merged pair; a few seconds on one thread


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    return run_demo(out, progress=False, report=False)


@pytest.fixture(scope="module")
def retrained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("retrained") / "run"
    return run_demo(out, retrain=True, epochs=RETRAIN_EPOCHS, progress=False, report=False)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_demo_end_to_end(demo_run):
    r = demo_run
    assert r.store.shape == (1797, 64) and r.store.metadata["layer"] == "block3"
    cs = cv.ConceptSet.load(r.out / f"neuron_{r.neuron}")
    np.testing.assert_array_equal(cs.concept_vectors, r.concept_set.concept_vectors)
    # the shown neuron mixes a merged pair of digits among its top examples, by construction of the rule
    (a, _), (b, nb) = Counter(r.store.labels[cs.top_indices].tolist()).most_common(2)
    assert are_merged(a, b) and nb >= 10
    # the thresholds are auto's, recorded with the result
    assert cs.params.distance_threshold == cs.provenance["thresholds"]["distance_threshold"] == "auto" and cs.split_tests
    assert cs.provenance["activations"]["model"]["name"] == "digits"
    # each concept's evidence is saved with the set: the split's test and the digits as class labels support both
    assert [r["supported_by"] for r in cs.evidence] == [["split", "labels"]] * cs.n_concepts
    summary = read_json(r.out / "demo.json")
    assert summary["status"] == "complete"
    assert summary["neuron"] == r.neuron and summary["n_merged_pair_units"] == len(r.merged_units) > 0
    assert summary["params"] == cs.params.to_dict() and summary["thresholds"]["significance"] == cs.params.significance
    makeup = read_json(r.out / f"neuron_{r.neuron}" / "digit_makeup.json")
    assert sum(makeup["top_examples"].values()) == 100
    assert sum(sum(c.values()) for c in makeup["concepts"]) + sum(makeup["removed"].values()) == 100
    assert [p.name for p in r.figures] == ["top_activating.png", "concepts.png", "projecting.png", "cosine.png"]
    assert all(p.stat().st_size > 10_000 for p in r.figures)


@pytest.mark.slow
def test_demo_records_the_shipped_weights_by_content(demo_run):
    shipped = shipped_digits_dir() / WEIGHTS_FILE
    digest = file_digest(shipped)
    summary = read_json(demo_run.out / "demo.json")
    assert summary["weights"]["source"] == "shipped" and not (demo_run.out / "model").exists()  # nothing trained
    assert summary["weights"]["sha256"] == digest["sha256"] == demo_run.weights["sha256"]
    assert summary["model"]["weights_sha256"] == digest["sha256"] and summary["model"]["weights_size"] == digest["size"]
    assert demo_run.store.metadata["model"]["weights_sha256"] == digest["sha256"]
    assert training_results(shipped_digits_dir())["weights"] == digest  # the record shipped beside the file


@pytest.mark.slow
def test_shipped_weights_give_the_readme_numbers(demo_run):
    # The numbers README.md prints under "See it work" (test_readme_output_is_the_demo_output checks the text itself;
    # benchmarks/regen_demo.py regenerates README's block and pictures when the method's answer changes).
    r, cs = demo_run, demo_run.concept_set
    assert f"{r.test_accuracy:.1%}" == "95.5%"
    assert r.params.distance_threshold == r.params.outlier_threshold == "auto"
    assert len(r.merged_units) == 16 and sum(u["split"] for u in r.merged_units) == 2
    assert r.neuron == 29
    assert (cs.n_agglomerative, cs.n_concepts, int(cs.outliers.sum()), int((~cs.kept).sum())) == (2, 2, 0, 0)
    makeup = read_json(r.out / "neuron_29" / "digit_makeup.json")
    assert makeup["top_examples"] == {"7": 47, "2": 47, "5": 2, "9": 2, "3": 2}
    assert makeup["concepts"] == [{"2": 47, "3": 1}, {"7": 47, "5": 2, "9": 2, "3": 1}]


def pair_separation(acts: np.ndarray, digits: np.ndarray, unit: int, pair: list[int], params: cv.Params) -> float:
    """Adjusted Rand index of k-means with 2 clusters (unit-length top examples of the pair's two digits) to the pair."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from conceptvec.core.auto import unit_rows

    cs = cv.disentangle(acts, neuron=unit, params=params)
    top = digits[cs.top_indices]
    keep = np.isin(top, pair)
    rows = unit_rows(cs.top_activations[keep])
    groups = KMeans(n_clusters=2, n_init=10, random_state=0).fit_predict(rows)
    return float(adjusted_rand_score(top[keep], groups))


@pytest.mark.slow
def test_merged_units_split_by_the_method_separate_their_pair(demo_run):
    # The planted evidence, as a calibrated test gives it: a unit is split only where its merged pair separates
    # (k-means with 2 clusters on the pair's examples recovers the two digits: ARI >= 0.5, as in 6 of the 16 units,
    # 8 22 24 29 44 52; docs/thresholds.md, "What it does not promise"): no unit whose pair does not separate is split.
    acts, digits = np.asarray(demo_run.store.activations, dtype=np.float64), demo_run.store.labels
    split = [u for u in demo_run.merged_units if u["split"]]
    assert split
    for u in split:
        assert pair_separation(acts, digits, u["neuron"], u["pair"], demo_run.params) >= 0.5, u["neuron"]


@pytest.mark.slow
def test_demo_reuses_its_store(demo_run):
    store_file = demo_run.out / "store" / "activations.npy"
    before = store_file.stat().st_mtime_ns
    again = run_demo(demo_run.out, progress=False, report=False)
    assert store_file.stat().st_mtime_ns == before and again.weights["sha256"] == demo_run.weights["sha256"]
    assert again.neuron == demo_run.neuron
    np.testing.assert_array_equal(again.concept_set.labels, demo_run.concept_set.labels)


@pytest.mark.slow
def test_demo_runs_on_one_thread_and_restores_the_setting(tmp_path, monkeypatch):
    from threadpoolctl import threadpool_info

    import conceptvec.demo.demo as demo

    seen = {}

    def spy(acts, *args, **kwargs):  # the method runs scikit-learn's OpenMP k-means on every unit
        seen["torch"] = torch.get_num_threads()
        seen["pools"] = {p["user_api"]: p["num_threads"] for p in threadpool_info()}
        return real(acts, *args, **kwargs)

    real = demo.merged_pair_units
    monkeypatch.setattr(demo, "merged_pair_units", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_demo(tmp_path / "run", progress=False, report=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen["torch"] == 1 and seen["pools"] and set(seen["pools"].values()) == {1}, seen


@pytest.mark.slow
def test_demo_refuses_other_settings_before_changing_anything(demo_run):
    before = snapshot(demo_run.out)
    with pytest.raises(cv.ConceptvecError, match=r"holds the demo run of the shipped weights .* --out"):
        run_demo(demo_run.out, retrain=True, epochs=RETRAIN_EPOCHS, progress=False, report=False)
    with pytest.raises(cv.ConceptvecError, match=r"method seed 0, not of .* method seed 1.*--out \S+-seed-1\)"):
        run_demo(demo_run.out, seed=1, progress=False, report=False)
    assert snapshot(demo_run.out) == before and not (demo_run.out / "model").exists()


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(cv.ConceptvecError, match="holds no demo run"):
        run_demo(tmp_path, progress=False, report=False)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine"


def test_epochs_apply_only_when_retraining(tmp_path):
    with pytest.raises(cv.ConceptvecError, match="--retrain"):
        run_demo(tmp_path / "run", epochs=20, progress=False, report=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_retrain_trains_into_the_run_and_reuses_it(retrained_run):
    r = retrained_run
    model_dir = r.out / "model"
    record = training_results(model_dir)
    assert r.weights["source"] == "retrained" and not r.weights["reused"]
    assert record["train"]["epochs"] == RETRAIN_EPOCHS and record["weights"] == file_digest(model_dir / WEIGHTS_FILE)
    assert r.store.metadata["model"]["weights_sha256"] == record["weights"]["sha256"] == r.weights["sha256"]
    assert record["trained_on"]["torch_threads"] == 1
    before = snapshot(model_dir)
    again = run_demo(r.out, retrain=True, epochs=RETRAIN_EPOCHS, progress=False, report=False)
    assert again.weights["reused"] and snapshot(model_dir) == before and again.neuron == r.neuron
    # Other training settings: refused before the model (or anything else) is touched.
    everything = snapshot(r.out)
    with pytest.raises(cv.ConceptvecError, match=r"retrained here \(20 epochs.*not of weights retrained here \(21 epochs.*--out"):
        run_demo(r.out, retrain=True, epochs=RETRAIN_EPOCHS + 1, progress=False, report=False)
    assert snapshot(r.out) == everything


@pytest.mark.slow
def test_retrained_weights_replaced_at_the_same_path_are_not_reused(retrained_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(retrained_run.out, out)
    model_dir, store_dir = out / "model", out / "store"
    old_acts = np.array(cv.ActivationStore.open(store_dir).activations)
    # As if trained again elsewhere (other CPU, other weights), saved with its own record, at the same path.
    model = load_digits_cnn(model_dir)
    with torch.no_grad():
        model.block3[0].bias += 0.05
    record = training_results(model_dir)
    config = TrainConfig(**record["train"])
    save_digits_cnn(model, model_dir, config, {"test_accuracy_merged_classes": record["test_accuracy_merged_classes"]}, overwrite=True)
    new_sha = file_digest(model_dir / WEIGHTS_FILE)["sha256"]
    assert new_sha != retrained_run.weights["sha256"]

    again = run_demo(out, retrain=True, epochs=RETRAIN_EPOCHS, progress=False, report=False)
    store = cv.ActivationStore.open(store_dir)
    assert store.metadata["model"]["weights_sha256"] == new_sha == read_json(out / "demo.json")["weights"]["sha256"]
    assert not np.array_equal(np.asarray(store.activations), old_acts)  # extracted again, not reused
    assert again.weights["sha256"] == new_sha and (out / f"neuron_{again.neuron}").exists()

    # A file that its training did not write is refused, and the store is left as it was.
    (model_dir / WEIGHTS_FILE).write_bytes((shipped_digits_dir() / WEIGHTS_FILE).read_bytes())
    before = snapshot(out)
    with pytest.raises(cv.ConceptvecError, match="not the file its training wrote"):
        run_demo(out, retrain=True, epochs=RETRAIN_EPOCHS, progress=False, report=False)
    assert snapshot(out) == before


def test_shipped_weights_are_checked_against_their_record(tmp_path, monkeypatch):
    import shutil

    import conceptvec.models.digits as digits

    copy = tmp_path / "digits-merged"
    shutil.copytree(shipped_digits_dir(), copy)
    state = {k: v.clone() for k, v in load_digits_cnn(copy).state_dict().items()}
    state["head.2.bias"] += 1.0
    from safetensors.torch import save_file

    save_file(state, str(copy / WEIGHTS_FILE))
    monkeypatch.setattr(digits, "shipped_digits_dir", lambda *, merged=True: copy)
    with pytest.raises(cv.ConceptvecError, match="do not match the digest"):
        digits.load_shipped_digits_cnn()


def test_shipped_weights_are_package_data():
    # Every shipped file is matched by a package-data glob, so that wheels and sdists carry it.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["conceptvec"]
    package = ROOT / "src" / "conceptvec"
    files = [p.relative_to(package).as_posix() for p in (package / "models" / "weights").rglob("*") if p.is_file()]
    assert sorted(Path(f).name for f in files) == ["digits_cnn.json", "digits_cnn.json", "digits_cnn.safetensors", "digits_cnn.safetensors"]
    assert [f for f in files if not any(fnmatch(f, g) for g in globs)] == []
    for merged, classes in ((True, 5), (False, 10)):
        model = load_digits_cnn(shipped_digits_dir(merged=merged))
        assert isinstance(model, DigitsCNN) and model.head[2].out_features == classes


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
    from conceptvec.models.digits import cached_digits_cnn

    model, directory, _ = cached_digits_cnn(tmp_path / "c", TrainConfig(epochs=1, merged=False))
    assert model.head[2].out_features == 10
    assert "test_accuracy_digits" in read_json(directory / "digits_cnn.json")
    assert load_digits_cnn(directory).head[2].out_features == 10


@pytest.mark.slow
def test_control_comparison_with_the_shipped_networks(demo_run):
    rows = control_comparison(demo_run.out, progress=False)
    assert rows["merged"]["weights"]["source"] == rows["control"]["weights"]["source"] == "shipped"
    assert (rows["merged"]["classes"], rows["control"]["classes"]) == (5, 10)
    # README's --control table
    assert [f"{rows[n]['test_accuracy']:.1%}" for n in ("merged", "control")] == ["95.5%", "98.3%"]
    assert [(rows[n]["mixing"], rows[n]["mixing_a_merged_pair"]) for n in ("merged", "control")] == [(59, 16), (51, 1)]
    assert read_json(demo_run.out / "control.json")["control"]["weights"]["sha256"] == file_digest(
        shipped_digits_dir(merged=False) / WEIGHTS_FILE)["sha256"]


def readme_blocks() -> tuple[list[str], list[str]]:
    """The demo's printed output in README.md ("See it work"), and the lines of its --control table."""
    text = (ROOT / "README.md").read_text()
    demo = [line.rstrip() for line in re.search(r"```\n\$ conceptvec demo --out conceptvec-demo\n(.*?)```", text, re.S).group(1).splitlines()]
    control = re.search(r"```\n(\s*┃\s+network.*?)```", text, re.S).group(1).splitlines()
    return demo, [line.strip() for line in control if line.strip()]


@pytest.mark.slow
def test_readme_output_is_the_demo_output(tmp_path, monkeypatch):
    # README's command as written, in a fresh folder; its printed lines are the README's, character for character.
    from typer.testing import CliRunner

    from conceptvec.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--out", "conceptvec-demo", "--control"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    printed = [line.rstrip() for line in result.stdout.splitlines()]
    demo, control = readme_blocks()
    first = printed.index(demo[0])  # after the progress bars
    assert printed[first : first + len(demo)] == demo
    stripped = [line.strip() for line in printed]
    assert all(line in stripped for line in control[:-1]), control
    assert any(line.startswith(control[-1]) for line in stripped), control[-1]
    assert (tmp_path / "conceptvec-demo" / "report" / "neuron_29.html").exists()
    assert "report conceptvec-demo/report/index.html" in printed
