"""Making a study (:func:`make_study`, ``conceptvec study make``) and reading one back (:class:`Study`).

A study is a folder::

    form.html    what participants open: one self-contained page (images embedded, opens from file://,
                 sends nothing anywhere) that records a participant id and exports a CSV of answers
    key.json     the answer key, a mapping from question id to
                 {"type": "intruder" | "label" | "agree", "options": [...], "answer": ..., ...}
    study.json   parameters, seed, source run and its provenance, checksums of form and key

The key never goes to participants: the form holds no answer (options are shuffled by the seed and
named a, b, c, ...; no example id, class name, neuron or concept appears in it). How questions are
drawn is told in :mod:`conceptvec.study.questions`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.selection import parse_neurons
from ..errors import ConceptvecError, StoreError
from ..scan.result import SCAN_FILE, ScanResult
from ..storage.atomic import MANIFEST_FILE, atomic_directory, input_path, read_json, refuse_existing, write_json
from ..storage.conceptset import METADATA_FILE as CONCEPTSET_FILE
from ..storage.conceptset import ConceptSet
from ..storage.provenance import environment
from ..storage.rundir import RunDir
from ..storage.store import ActivationStore
from .config import StudyConfig, read_labels
from .form import examples_of, render_form
from .questions import QUESTION_TYPES, Concept, draw_questions

FORM_FILE = "form.html"
KEY_FILE = "key.json"
STUDY_FILE = "study.json"
FORMAT = "conceptvec.HumanEvalStudy/1"


def make_study(
    run: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    neurons: Any = None,
    config: StudyConfig | None = None,
    labels: str | os.PathLike[str] | dict[str, str] | None = None,
    overwrite: bool = False,
    **kwargs: Any,
) -> Study:
    """Draw a study from a run's concepts and write form.html, key.json and study.json to ``out``.

    Parameters
    ----------
    run : a scan directory, a ConceptSet directory, or a run directory holding ``scan/`` or ConceptSets
    out : the study folder to write; an existing non-empty one needs ``overwrite``
    neurons : None (the first 8 of the run, as the paper), a list, or text such as "0-7"
    config : the settings; keyword arguments other than those named here set its fields (seed=, pool=, ...)
    labels : a labels file (see :func:`read_labels`) or a dict "NEURON:CONCEPT" -> label for the
        agree questions; by default the most common class name among each concept's members

    The same run, settings and seed give the same form.html and key.json, byte for byte.
    """
    fields = set(StudyConfig.__dataclass_fields__)
    if set(kwargs) - fields:
        raise ConceptvecError(f"unknown study setting(s) {sorted(set(kwargs) - fields)}; the settings are {sorted(fields)}.")
    config = StudyConfig(**{**(asdict(config) if config else {}), **kwargs})
    # Raters' answers and their scores, kept in the study folder, survive --overwrite untouched (carried over).
    keep = [p.name for p in Path(out).iterdir() if p.name not in (FORM_FILE, KEY_FILE, STUDY_FILE, MANIFEST_FILE)] \
        if overwrite and Path(out).is_dir() and not Path(out).is_symlink() else []
    refuse_existing(out, overwrite=overwrite, what="study", marker=STUDY_FILE, protect=[run], keep=keep)
    all_neurons, store, source = _load_run(input_path(run, what="make_study", fix="a scan, a ConceptSet, or a run folder"))
    selected = _select_neurons(all_neurons, neurons)
    not_live = [n["neuron"] for n in selected if not n["live"]]
    concepts = [
        Concept(neuron=n["neuron"], index=j, vector=np.asarray(n["vectors"][j], dtype=np.float64),
                members=np.asarray(n["members"][j]), n_concepts_of_neuron=len(n["vectors"]))
        for n in selected if n["live"] for j in range(len(n["vectors"]))
    ]
    if not concepts:
        raise ConceptvecError(
            f"neurons {[n['neuron'] for n in selected]} have no concepts to ask about"
            + (f" (not live: {not_live})" if not_live else "") + "; choose other neurons with --neurons."
        )
    label_map = read_labels(labels) if isinstance(labels, (str, os.PathLike)) else dict(labels or {})
    examples = examples_of(store)
    questions = {f"q{number:02d}": q for number, q in
                 enumerate(draw_questions(concepts, config=config, labels=label_map, store=store), start=1)}
    key = {qid: q.key_entry(store.ids) for qid, q in questions.items()}
    study_id = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    form = render_form(study_id, questions=list(questions.items()), examples=examples)
    key_text = json.dumps(key, indent=2) + "\n"
    meta = {
        "format": FORMAT,
        "study_id": study_id,
        "config": asdict(config),
        "neurons": [n["neuron"] for n in selected],
        "not_live_left_out": not_live,
        "labels_file": str(labels) if isinstance(labels, (str, os.PathLike)) else ("given" if labels else None),
        "questions": {qid: {"type": q["type"], "neuron": q["neuron"], "concept": q["concept"]} for qid, q in key.items()},
        "source": source,
        "store": str(store.path),
        "checksums": {FORM_FILE: _sha256(form.encode()), KEY_FILE: _sha256(key_text.encode())},
        **environment(),
    }
    with atomic_directory(out, overwrite=overwrite, what="study", marker=STUDY_FILE, protect=[run, store.path],
                          keep=keep) as tmp:
        (tmp / FORM_FILE).write_text(form, encoding="utf-8")
        (tmp / KEY_FILE).write_text(key_text, encoding="utf-8")
        write_json(tmp / STUDY_FILE, meta)
    return Study.load(out)


def _load_run(run: Path) -> tuple[list[dict[str, Any]], ActivationStore, dict[str, Any]]:
    """Per neuron: {neuron, live, vectors, members}; the store; a description of the run.

    ``run`` is a scan directory, a ConceptSet directory, or a run directory holding ``scan/`` or
    ConceptSet folders (``neuron_N/``) and ``store/``.
    """
    run = Path(run)
    if not run.exists():
        raise ConceptvecError(f"{run} does not exist; give a scan directory, a ConceptSet, or a run directory holding them.")
    folder = RunDir(run)
    scan_dir = run if (run / SCAN_FILE).exists() else folder.scan if (folder.scan / SCAN_FILE).exists() else None
    if scan_dir is not None:
        scan = ScanResult.load(scan_dir)
        if scan.kind != "neurons":
            raise ConceptvecError(f"{scan_dir} scanned directions ({scan.kind}), not neurons; humaneval asks about neurons' concepts.")
        neurons = [{"neuron": int(n), "live": bool(scan.live[i]), "vectors": scan.concepts_of(n),
                    "members": [scan.top_indices[i][scan.labels[i] == j] for j in range(scan.n_concepts[i])]}
                   for i, n in enumerate(scan.neurons)]
        store = folder.open_store([scan.store_path] if scan.store_path else [])
        return neurons, store, {"kind": "scan", "path": str(scan_dir), "params": scan.params.to_dict(),
                                "provenance": scan.provenance}
    if (run / CONCEPTSET_FILE).exists():
        sets = {run.name: run}
        base = run.parent
    else:
        sets = folder.conceptsets()
        base = run
        if not sets:
            raise StoreError(
                f"{run} holds no scan (scan.json, or scan/scan.json) and no ConceptSet; make one with "
                "`conceptvec scan` or `conceptvec disentangle`."
            )
    loaded = [ConceptSet.load(p) for p in sets.values()]
    if any(cs.neuron is None for cs in loaded):
        names = [name for name, cs in zip(sets, loaded) if cs.neuron is None]
        raise ConceptvecError(f"ConceptSet(s) {names} start from a direction, not a neuron; humaneval asks about neurons' concepts.")
    store = RunDir(base).open_store(loaded)
    numbered = [(cs.neuron, cs) for cs in loaded if cs.neuron is not None]  # every one (checked above)
    neurons = [{"neuron": int(neuron), "live": cs.is_live, "vectors": cs.concept_vectors,
                "members": [cs.members(j) for j in range(cs.n_concepts)]} for neuron, cs in sorted(numbered, key=lambda p: p[0])]
    return neurons, store, {"kind": "conceptsets", "path": str(run), "sets": sorted(sets),
                            "params": loaded[0].params.to_dict(), "provenance": loaded[0].provenance}


def _select_neurons(neurons: list[dict[str, Any]], wanted: Any) -> list[dict[str, Any]]:
    available = [n["neuron"] for n in neurons]
    if wanted is None:
        return neurons[:8]  # the paper: concepts from the first 8 neurons
    chosen = parse_neurons(wanted, None)  # bounds are checked below, against what the run holds
    missing = sorted(set(chosen.tolist()) - set(available))
    if missing:
        shown = f"{available[0]}-{available[-1]}" if len(available) > 1 else str(available[0])
        raise ConceptvecError(f"neuron(s) {missing[:10]} are not in this run (it holds {len(available)} neuron(s), {shown}); "
                              "scan them first or choose others with --neurons.")
    keep = set(chosen.tolist())
    return [n for n in neurons if n["neuron"] in keep]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Study:
    """A study folder: its answer key (question id -> entry) and metadata."""

    path: Path
    key: dict[str, dict[str, Any]]
    meta: dict[str, Any]

    @property
    def study_id(self) -> str:
        return str(self.meta["study_id"])

    def questions(self, kind: str | None = None) -> list[str]:
        """Question ids in form order, optionally only those of one type."""
        return [q for q, e in self.key.items() if kind is None or e["type"] == kind]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Study":
        """Read a study; its key must be the one made with it (checksum in study.json)."""
        path = input_path(path, what="Study.load", fix="the folder `conceptvec study make --out` wrote")
        meta_file, key_file = path / STUDY_FILE, path / KEY_FILE
        if not meta_file.exists():
            raise StoreError(f"no study at {path} ({STUDY_FILE} not found); make one with `conceptvec study make`.")
        meta = read_json(meta_file)
        if meta.get("format") != FORMAT:
            raise StoreError(f"{meta_file} is not a humaneval study (format {meta.get('format')!r}, expected {FORMAT!r}).")
        if not key_file.exists():
            raise StoreError(f"{key_file} is missing: the study's answer key is needed to score it.")
        data = key_file.read_bytes()
        try:
            key = json.loads(data)
        except json.JSONDecodeError as e:
            raise StoreError(f"{key_file} is not valid JSON ({e}).") from None
        if _sha256(data) != meta.get("checksums", {}).get(KEY_FILE) or not isinstance(key, dict) or list(key) != list(meta.get("questions", {})):
            raise StoreError(
                f"{key_file} does not match study {meta.get('study_id')} in {meta_file} (its checksum or questions differ: "
                "it was edited or belongs to another study). Put back the key made with this study, or make a new study."
            )
        for qid, entry in key.items():
            if entry.get("type") not in QUESTION_TYPES:
                raise StoreError(f"{key_file}: question {qid} has unknown type {entry.get('type')!r}.")
        return cls(path=path, key=key, meta=meta)
