"""`conceptvec demo`: the paper's method on a real trained CNN, offline, in a couple of minutes.

It trains (or reuses) the bundled digits CNN whose output classes merge pairs of digits, extracts
its ``block3`` layer over all 1797 digits, sets the two thresholds by a layer-wide rule, and
disentangles the unit that mixes a merged pair most evenly among its top examples.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..storage.atomic import read_json, write_json
from ..storage.provenance import environment
from ..storage.conceptset import ConceptSet
from ..nn.digits import CONFIG_FILE, DEFAULT_LAYER, TrainConfig, are_merged, cached_digits_cnn
from ..core.method import disentangle
from ..core.streaming import top_k_desc
from ..core.params import Params
from ..storage.store import ActivationStore
from ..core.thresholds import layer_thresholds

MIN_SECOND_DIGIT = 10  # a unit "mixes" a pair when the second digit has at least this many of its top examples


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
    reused_model: bool
    test_accuracy: float


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


def control_comparison(out: str | os.PathLike, epochs: int = 120, seed: int = 0) -> dict[str, Any]:
    """The planted network against a 10-class control trained the same way, counted by the same rule.

    By chance 5 of the 45 pairs of digits are merged pairs; the control shows how often a unit mixes
    one without being pushed to.
    """
    import torch

    from ..nn.digits import load_digits_images, preprocess_digits
    from ..nn.hooks import capture_layer, forward_to_layer

    images, digits = load_digits_images()
    x = preprocess_digits(images)
    rows = {}
    for name, merged in (("merged", True), ("control", False)):
        config = TrainConfig(epochs=epochs, seed=seed, merged=merged)
        model, directory, _ = cached_digits_cnn(Path(out) / ("model" if merged else "control-model"), config)
        with capture_layer(model.block3) as captured, torch.inference_mode():
            acts = forward_to_layer(model, x, captured).numpy().astype(np.float64)
        params, _ = layer_thresholds(acts, params=Params(seed=seed))
        info = read_json(directory / CONFIG_FILE)
        accuracy = info.get("test_accuracy_merged_classes", info.get("test_accuracy_digits"))
        rows[name] = {"classes": 5 if merged else 10, "test_accuracy": accuracy, **mixing_counts(acts, digits, params)}
    rows["chance_share_of_merged_pairs"] = 5 / 45
    write_json(Path(out) / "control.json", {**rows, "rule": f"mixing: second digit has >= {MIN_SECOND_DIGIT} of the top {Params().top}", **environment()})
    return rows


def run_demo(out: str | os.PathLike = "conceptvec-demo", epochs: int = 120, seed: int = 0, progress: bool = True, report: bool = True) -> DemoResult:
    """Run the demo into ``out``; what exists there already (model, store) is reused."""
    from ..nn.extraction import extract

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _, model_dir, reused_model = cached_digits_cnn(out / "model", TrainConfig(epochs=epochs, seed=seed))
    training = read_json(model_dir / CONFIG_FILE)
    store = extract("digits", layer=DEFAULT_LAYER, data="digits", out=out / "store", weights=str(model_dir), progress=progress)
    acts = np.asarray(store.activations, dtype=np.float64)
    digits = store.labels

    params, rule = layer_thresholds(acts, params=Params(seed=seed), progress=progress)
    units = merged_pair_units(acts, digits, params)
    if not units:
        raise RuntimeError("no unit of the trained CNN mixes a merged pair of digits; the planted polysemanticity did not form")
    chosen = max(units, key=lambda r: (r["top_counts"][1] / r["top_counts"][0], -r["neuron"]))
    neuron = chosen["neuron"]
    cs = disentangle(store, neuron=neuron, params=params)
    cs.provenance["thresholds"] = rule
    cs.provenance["chosen_because"] = (
        f"it mixes its merged pair most evenly among its top {params.top} ({chosen['pair'][0]}: "
        f"{chosen['top_counts'][0]}, {chosen['pair'][1]}: {chosen['top_counts'][1]}) of the {len(units)} units "
        f"whose two most common digits there are a merged pair"
    )
    cs_dir = cs.save(out / f"neuron_{neuron}", overwrite=True)
    write_json(cs_dir / "digit_makeup.json", {
        "neuron": neuron,
        "top_examples": digit_makeup(digits[cs.top_indices]),
        "concepts": [digit_makeup(digits[cs.members(j)]) for j in range(cs.n_concepts)],
        "removed": digit_makeup(digits[cs.top_indices[~cs.kept]]),
    })
    write_json(out / "demo.json", {
        "model": store.metadata["model"], "layer": store.metadata["layer"], "data": store.metadata["data"],
        "reused_model": reused_model, "test_accuracy_merged_classes": training["test_accuracy_merged_classes"], "params": params.to_dict(), "thresholds": rule, "neuron": neuron,
        "chosen_because": cs.provenance["chosen_because"], "merged_pair_units": units,
        "n_merged_pair_units": len(units), "n_split": sum(r["split"] for r in units), **environment(),
    })
    figures = _figures(cs, store, out / "figures")
    report_path = _report(out) if report else None
    return DemoResult(out, store, cs, neuron, params, units, figures, report_path, reused_model,
                      training["test_accuracy_merged_classes"])


def _figures(cs: ConceptSet, store: ActivationStore, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    from ..report import figures
    from ..report.examples import ImageExamples

    folder.mkdir(parents=True, exist_ok=True)
    examples = ImageExamples.from_store(store)
    made = {
        "top_activating.png": figures.top_activating_grid(cs, examples),
        "concepts.png": figures.concept_groups_grid(cs, examples),
        "projecting.png": figures.projecting_grid(cs, store.activations, examples),
        # This layer is all-positive with a large common component, so projection favours high-norm
        # examples; the cosine ranking shows each concept's direction apart from norm.
        "cosine.png": figures.projecting_grid(cs, store.activations, examples, rank="cosine"),
    }
    paths = []
    for name, fig in made.items():
        path = folder / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        paths.append(path)
    return paths


def _report(out: Path) -> Path:
    from ..report.html import write_report

    return write_report(out)
