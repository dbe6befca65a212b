"""`conceptvec demo`: the paper's method on a real trained CNN, offline, in seconds.

It loads the digits CNN shipped with conceptvec, whose output classes merge pairs of digits (or,
with ``retrain``, trains one: seeded training still gives other weights on other CPUs and thread
counts), extracts its ``block3`` layer over all 1797 digits, and disentangles the unit that mixes a merged
pair most evenly among its top examples with ``distance_threshold="auto"`` (``core.auto``): the paper's
15 is a height on Inception V3's scale, and auto's significance test means the same on this layer.

A demo folder holds one run of one setting (which weights, which seed), recorded in ``demo.json``
before anything else is written there. Run again with the same setting, the demo reuses its model
and store and rewrites its own results; with another setting, or in a folder it did not make, it
refuses before changing anything.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ..scan.disentangle import disentangle
from ..scan.evidence import concept_evidence
from ..scan.layer import scan_layer
from ..core.params import Params
from ..core.streaming import top_k_desc
from ..errors import ConceptvecError
from ..models.digits import (CONFIG_FILE, DEFAULT_LAYER, WEIGHTS_FILE, TrainConfig, are_merged, load_digits_cnn,
                         load_shipped_digits_cnn, recorded_accuracy, save_digits_cnn, shipped_digits_dir,
                         train_digits_cnn, training_results)
from ..progress import progress_bar
from ..storage.atomic import atomic_directory, output_path, read_json, record_written, refuse_existing, write_json
from ..storage.conceptset import ConceptSet
from ..storage.provenance import environment, file_digest
from ..storage.rundir import RunDir
from ..storage.store import METADATA_FILE as STORE_FILE
from ..storage.store import ActivationStore
from .runs import auto_params, remove_own_neuron
from .threads import one_thread

MIN_SECOND_DIGIT = 10  # a unit "mixes" a pair when the second digit has at least this many of its top examples
DEMO_FILE = "demo.json"
CONTROL_FILE = "control.json"
_stderr = Console(stderr=True)


@dataclass
class DemoResult:
    out: Path
    store: ActivationStore
    concept_set: ConceptSet
    neuron: int
    params: Params
    merged_units: list[dict[str, Any]]
    figures: list[Path]
    report: Path | None
    weights: dict[str, Any]  # which weights: "source" shipped or retrained, "sha256", "reused", training settings
    test_accuracy: float
    atlas: Path | None = None  # the layer atlas of the scan of every unit (with the report)


def digit_makeup(digits: np.ndarray) -> dict[int, int]:
    """Counts of each digit, most common first."""
    return dict(Counter(np.asarray(digits).tolist()).most_common())


def merged_pair_units(acts: np.ndarray, digits: np.ndarray, params: Params) -> list[dict[str, Any]]:
    """Units whose two most common digits among the top examples are a merged pair, with the method's result on each."""
    rows = []
    for unit in range(acts.shape[1]):
        cs = disentangle(acts, neuron=unit, params=params)
        (a, na), (b, nb) = (Counter(digits[cs.top_indices].tolist()).most_common(2) + [(-1, 0)])[:2]
        if not (are_merged(a, b) and nb >= MIN_SECOND_DIGIT):
            continue
        majorities = [Counter(digits[cs.members(j)].tolist()).most_common(1)[0][0] for j in range(cs.n_concepts)]
        rows.append({
            "neuron": unit, "pair": [a, b], "top_counts": [na, nb], "n_agglomerative": cs.n_agglomerative,
            "n_concepts": cs.n_concepts,
            "concept_makeup": [digit_makeup(digits[cs.members(j)]) for j in range(cs.n_concepts)],
            # Split: each digit of the pair is the majority of at least one concept.
            "split": bool(a in majorities and b in majorities),
        })
    return rows


def mixing_counts(acts: np.ndarray, digits: np.ndarray, params: Params) -> dict[str, int]:
    """Units whose second most common digit among their top examples has at least MIN_SECOND_DIGIT of
    them ("mixing"), and how many of those mix a merged pair."""
    mixing = merged = 0
    for unit in range(acts.shape[1]):
        top = top_k_desc(acts[:, unit], params.top)
        (a, _), (b, nb) = (Counter(digits[top].tolist()).most_common(2) + [(-1, 0)])[:2]
        if nb >= MIN_SECOND_DIGIT:
            mixing += 1
            merged += are_merged(a, b)
    return {"units": int(acts.shape[1]), "mixing": mixing, "mixing_a_merged_pair": merged}


def run_demo(out: str | os.PathLike[str] = "conceptvec-demo", *, retrain: bool = False, epochs: int | None = None,
             seed: int = 0, progress: bool = True, report: bool = True) -> DemoResult:
    """Run the demo into ``out`` with the shipped weights, or with ``retrain`` a CNN trained here.

    ``epochs`` (default 120, as the shipped weights) and ``seed`` set the training with ``retrain``;
    ``seed`` also seeds the method's k-means. Run again with the same settings, the model and store
    in ``out`` are reused; ``out`` holding another setting's run, or anything but a demo run, is
    refused before anything is written.
    """
    from ..extraction.pipeline import extract

    seed = Params(seed=seed).seed  # checked before the folder is claimed and the layer extracted
    run = RunDir(output_path(out, what="demo"))
    config = _train_config(retrain=retrain, epochs=epochs, seed=seed)
    with one_thread():
        previous = _claim(run.path, _run_key(config, retrain=retrain, seed=seed))
        _, weights = _network(run.model, config, retrain=retrain, progress=progress)
        stale = _own_store_is_stale(run, previous, weights)
        if stale and progress:
            _stderr.print(f"the weights changed since {run.store} was extracted (now sha256 {weights['sha256'][:12]}...); "
                          f"extracting again", highlight=False, soft_wrap=True)
        # On the CPU whatever the machine has: a GPU's kernels would give other last bits than the README's run.
        store = extract("digits", layer=DEFAULT_LAYER, data="digits", out=run.store, weights=weights["path"],
                        device="cpu", overwrite=stale, progress=progress)
        acts = np.asarray(store.activations, dtype=np.float64)
        digits = store.labels

        params, rule = auto_params(seed=seed)
        units = merged_pair_units(acts, digits, params)
        if not units:
            raise ConceptvecError("no unit of the trained CNN mixes a merged pair of digits: the planted polysemanticity did "
                                  "not form. Train longer (--epochs, default 120) or use the shipped weights (no --retrain).")
        chosen = max(units, key=lambda r: (r["top_counts"][1] / r["top_counts"][0], -r["neuron"]))
        neuron = chosen["neuron"]
        cs = disentangle(store, neuron=neuron, params=params)
        cs.provenance["thresholds"] = rule
        cs.provenance["chosen_because"] = (
            f"it mixes its merged pair most evenly among its top {params.top} ({chosen['pair'][0]}: "
            f"{chosen['top_counts'][0]}, {chosen['pair'][1]}: {chosen['top_counts'][1]}) of the {len(units)} units "
            f"whose two most common digits there are a merged pair"
        )
        concept_evidence(cs, labels=store)  # each concept's verdict, saved with the set (the printed table shows it)
        remove_own_neuron(run, previous, keep=neuron)
        cs_dir = cs.save(run.neuron(neuron), overwrite=True)
        write_json(cs_dir / "digit_makeup.json", {
            "neuron": neuron,
            "top_examples": digit_makeup(digits[cs.top_indices]),
            "concepts": [digit_makeup(digits[cs.members(j)]) for j in range(cs.n_concepts)],
            "removed": digit_makeup(digits[cs.top_indices[~cs.kept]]),
        })
        record_written(cs_dir, "digit_makeup.json")  # part of the demo's ConceptSet: a rerun may replace it
        figures = _figures(cs, store, run.figures)
        report_path = atlas_path = None
        if report:
            # every unit of the layer scanned with the same parameters, for the report's layer table and the atlas
            scan_layer(store, params=params, out=run.scan, workers=1, progress=progress)
            report_path = _report(run.path, neuron)
            atlas_path = _atlas(run.path, progress=progress, seed=seed)
        accuracy = weights["test_accuracy"]
        write_json(run.path / DEMO_FILE, {
            "status": "complete", "run": _run_key(config, retrain=retrain, seed=seed), "weights": weights,
            "model": store.metadata["model"], "layer": store.metadata["layer"], "data": store.metadata["data"],
            "test_accuracy_merged_classes": accuracy, "params": params.to_dict(), "thresholds": rule, "neuron": neuron,
            "chosen_because": cs.provenance["chosen_because"], "merged_pair_units": units,
            "n_merged_pair_units": len(units), "n_split": sum(r["split"] for r in units), **environment(),
        })
    return DemoResult(run.path, store, cs, neuron, params, units, figures, report_path, weights, accuracy, atlas_path)


def control_comparison(out: str | os.PathLike[str], *, retrain: bool = False, epochs: int | None = None, seed: int = 0,
                       progress: bool = True) -> dict[str, Any]:
    """The planted network against a 10-class control trained the same way, counted by the same rule.

    By chance 5 of the 45 pairs of digits are merged pairs; the control shows how often a unit mixes
    one without being pushed to. Both networks are the shipped ones, or with ``retrain`` trained in
    ``out`` (``model/``, ``control-model/``) with ``epochs`` and ``seed``.
    """
    import torch

    from ..models.digits import preprocess_digits
    from ..sources.digits import load_digits_images
    from ..models.hooks import capture_layer, forward_to_layer

    run = RunDir(out)
    merged_config = _train_config(retrain=retrain, epochs=epochs, seed=seed)
    images, digits = load_digits_images()
    x = preprocess_digits(images)
    rows: dict[str, Any] = {}
    with one_thread():
        _claim(run.path, _run_key(merged_config, retrain=retrain, seed=seed))
        for name, merged in (("merged", True), ("control", False)):
            config = TrainConfig(**{**asdict(merged_config), "merged": merged})
            model, weights = _network(run.model if merged else run.control_model, config, retrain=retrain, progress=progress)
            with capture_layer(model.block3) as captured, torch.inference_mode():
                acts = forward_to_layer(model, x, captured).numpy().astype(np.float64)
            params = Params(distance_threshold="auto", seed=seed)
            rows[name] = {"classes": 5 if merged else 10, "test_accuracy": weights["test_accuracy"], "weights": weights,
                          **mixing_counts(acts, digits, params)}
    rows["chance_share_of_merged_pairs"] = 5 / 45
    write_json(run.path / CONTROL_FILE, {**rows, "rule": f"mixing: second digit has >= {MIN_SECOND_DIGIT} of the top {Params().top}",
                                         **environment()})
    return rows


def _train_config(*, retrain: bool, epochs: int | None, seed: int) -> TrainConfig:
    if not retrain:
        if epochs is not None:
            raise ConceptvecError(f"epochs={epochs} applies only when retraining (--retrain); the shipped weights were trained "
                                  f"with {TrainConfig().epochs}. Add --retrain to train with other settings.")
        return TrainConfig()
    return TrainConfig(epochs=TrainConfig().epochs if epochs is None else epochs, seed=seed)


def _run_key(config: TrainConfig, *, retrain: bool, seed: int) -> dict[str, Any]:
    """What makes two demo runs the same setting: the weights (shipped ones by content, retrained by their training) and the seed."""
    if retrain:
        weights = {"source": "retrained", "train": asdict(config)}
    else:
        weights = {"source": "shipped", "sha256": training_results(shipped_digits_dir())["weights"]["sha256"]}
    return json.loads(json.dumps({"weights": weights, "seed": seed}))


def _describe_key(key: Any) -> str:
    weights = key.get("weights") if isinstance(key, dict) else None
    if not isinstance(weights, dict):
        return "another version or setting of the demo"
    if weights.get("source") == "shipped":
        what = f"the shipped weights (sha256 {str(weights.get('sha256'))[:12]}...)"
    else:
        train = weights.get("train") or {}
        what = f"weights retrained here ({train.get('epochs')} epochs, seed {train.get('seed')})"
    return f"{what}, method seed {key.get('seed')}"


def _suggested_out(out: Path, key: dict[str, Any]) -> str:
    parts = []
    if key["weights"]["source"] == "retrained":
        parts.append(f"retrained-{key['weights']['train']['epochs']}-epochs")
    if key["seed"] != 0:
        parts.append(f"seed-{key['seed']}")
    return f"{out}-{'-'.join(parts) or 'shipped'}"


def _claim(out: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The demo's earlier record in ``out`` when it is a run of the same setting (None for a new or empty folder,
    which gets a record now); anything else is refused before it is changed."""
    record = out / DEMO_FILE
    if record.is_file():
        previous = read_json(record)
        if previous.get("run") != key:
            raise ConceptvecError(
                f"{out} holds the demo run of {_describe_key(previous.get('run'))}, not of {_describe_key(key)}, and the demo "
                f"replaces only its own run of the same settings; nothing was changed. Choose another --out (e.g. --out "
                f"{_suggested_out(out, key)})."
            )
        return previous
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConceptvecError(f"{out} is not empty and holds no demo run (no {DEMO_FILE}); the demo writes only into a new or "
                              f"empty folder or its own earlier run. Choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    write_json(record, {"status": "running", "run": key})
    return None


def _network(folder: Path, config: TrainConfig, *, retrain: bool, progress: bool):
    """The digits CNN and a record of its weights: the shipped one, or one trained into ``folder`` (reused
    there when an earlier run trained it with the same settings and its file is the one training wrote)."""
    if not retrain:
        model, directory, record = load_shipped_digits_cnn(merged=config.merged)
        return model, _weights_record("shipped", directory, record, reused=False)
    reused = (folder / CONFIG_FILE).is_file()
    if reused:
        record = training_results(folder)
        if record.get("train") != asdict(config):
            raise ConceptvecError(f"{folder} holds a model trained with other settings ({record.get('train')}); the demo does "
                                  f"not replace it. Choose another --out.")
        if file_digest(folder / WEIGHTS_FILE) != record.get("weights"):
            raise ConceptvecError(f"{folder / WEIGHTS_FILE} is not the file its training wrote (size or sha256 differs from "
                                  f"{folder / CONFIG_FILE}); the demo does not replace it. Delete {folder} to train again.")
        model = load_digits_cnn(folder)
    else:
        refuse_existing(folder, what="model")  # before minutes of training, not after
        with progress_bar("epoch", disable=not progress, transient=True) as bar:
            task = bar.add_task("train the digits CNN", total=config.epochs)
            model, results = train_digits_cnn(config, progress=lambda done, total: bar.update(task, completed=done))
        save_digits_cnn(model, folder, config, results)
        record = training_results(folder)
    return model, _weights_record("retrained", folder, record, reused=reused)


def _weights_record(source: str, folder: Path, record: dict[str, Any], *, reused: bool) -> dict[str, Any]:
    return {"source": source, "path": str(folder / WEIGHTS_FILE), **record["weights"], "reused": reused,
            "train": record["train"], "test_accuracy": recorded_accuracy(record), "trained_on": record.get("trained_on")}


def _own_store_is_stale(run: RunDir, previous: dict[str, Any] | None, weights: dict[str, Any]) -> bool:
    """Whether ``run.store`` is the store this demo folder's earlier run extracted, from weights other than these."""
    if not previous or not isinstance(previous.get("model"), dict) or not (run.store / STORE_FILE).is_file():
        return False
    extracted = read_json(run.store / STORE_FILE).get("model")
    return extracted == previous["model"] and extracted.get("weights_sha256") != weights["sha256"]


def _figures(cs: ConceptSet, store: ActivationStore, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from ..report import figures
    from ..report.examples import ImageExamples

    examples = ImageExamples.from_store(store)
    made = {
        "top_activating.png": figures.top_activating_grid(cs, examples),
        "concepts.png": figures.concept_groups_grid(cs, examples),
        "projecting.png": figures.projecting_grid(cs, store.activations, examples),
        # This layer is all-positive with a large common component, so projection favours high-norm
        # examples; the cosine ranking shows each concept's direction apart from norm.
        "cosine.png": figures.projecting_grid(cs, store.activations, examples, rank="cosine"),
    }
    # As one output with its manifest: a rerun replaces these figures, never a file the user put beside them.
    with atomic_directory(folder, overwrite=True, what="demo figures") as tmp:
        for name, fig in made.items():
            fig.savefig(tmp / name, dpi=110, bbox_inches="tight")
            plt.close(fig)
    return [folder / name for name in made]


def _report(out: Path, neuron: int) -> Path:
    from ..report.html import write_report

    return write_report(out, neurons=[neuron])


def _atlas(out: Path, *, progress: bool, seed: int) -> Path:
    from ..report.atlas import write_atlas

    return write_atlas(out, progress=progress, seed=seed)
