"""The human evaluation study of the paper (Sec. 3, App. A.3): intruder and labelling forms, and their scoring.

A study is a folder made by :func:`make_study` (``conceptvec humaneval make``)::

    form.html    what participants open: one self-contained page (images embedded, opens from file://,
                 sends nothing anywhere) that records a participant id and exports a CSV of answers
    key.json     the answer key, a mapping from question id to
                 {"type": "intruder" | "label" | "agree", "options": [...], "answer": ..., ...}
    study.json   parameters, seed, source run and its provenance, checksums of form and key

The key never goes to participants: the form holds no answer (options are shuffled by the seed and
named a, b, c, ...; no example id, class name, neuron or concept appears in it).

Question types, as in the paper:

- ``intruder``: ``images`` examples of one concept and one of another concept (of the same neuron;
  of another neuron's concept when the neuron has one concept, and the key says which); the
  participant picks the odd one out. ``answer`` is the option id of the intruder.
- ``label``: ``images`` examples of one concept; the participant writes a short label (free text).
- ``agree``: ``images`` examples of one concept and a given label; the participant answers yes or
  no. ``answer`` is "yes", the answer that agrees. Labels come from the user's labels file or, by
  default, the most common class name among the concept's members.

Images are drawn with ``numpy.random.default_rng(seed)`` from each concept's ``pool`` maximally
projecting examples (the paper's "random number generator ... each concept's maximally
projecting images"). Examples in the pools of both concepts of an intruder question are left out of
it, so the intruder is never also one of the concept's own maximally projecting examples.

:func:`score_study` (``conceptvec humaneval score``) reads participants' CSVs (``rater,question,answer``)
and gives intruder accuracy with 95 % Wilson intervals and the chance level, the agreement rate,
Fleiss' kappa among raters, and the free-text labels of each concept.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import os
import string
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..storage.atomic import atomic_directory, read_json, refuse_existing, write_json
from ..storage.provenance import environment
from ..storage.conceptset import METADATA_FILE as CONCEPTSET_FILE
from ..storage.conceptset import ConceptSet
from ..errors import ConceptvecError, StoreError
from ..core.metrics import maximally_projecting, most_similar
from ..core.params import whole_number

FORM_FILE = "form.html"
KEY_FILE = "key.json"
STUDY_FILE = "study.json"
SCORE_DIR = "scores"
SCORE_FILE = "scores.json"
SCORE_FIGURE = "scores.png"
FORMAT = "conceptvec.HumanEvalStudy/1"
QUESTION_TYPES = ("intruder", "label", "agree")
AGREE_OPTIONS = ("yes", "no")
CSV_COLUMNS = ("rater", "question", "answer")
RANKINGS = {"projection": "maximally projecting", "cosine": "most cosine-similar"}  # --rank: the pool each image comes from
IMAGE_SIDE = 160  # pixels, longest side of an image in the form


# -- the study's parameters ----------------------------------------------------------------------
@dataclass(frozen=True)
class StudyConfig:
    """How a study is drawn; saved in study.json so the same config and run give the same form.

    intruder_questions, label_questions : int
        As in the paper: 4 intruder questions and 6 understandability questions, of which the first
        ``free_labels`` (paper: 2) ask for a label and the rest ask to agree with a given label.
    images : int
        Examples of the concept shown in each question (an intruder question adds one).
    pool : int
        How many of each concept's maximally projecting examples the images are drawn from.
    rank : str
        'projection' (the paper's maximally projecting examples) or 'cosine' (most cosine-similar).
    """

    seed: int = 0
    intruder_questions: int = 4
    label_questions: int = 6
    free_labels: int = 2
    images: int = 4
    pool: int = 20
    rank: str = "projection"

    def __post_init__(self) -> None:
        for name, low in (("seed", 0), ("intruder_questions", 0), ("label_questions", 0), ("free_labels", 0), ("images", 1), ("pool", 1)):
            object.__setattr__(self, name, whole_number(name, getattr(self, name), low))
        if self.intruder_questions + self.label_questions == 0:
            raise ConceptvecError("a study needs at least one question; set --intruder-questions or --label-questions.")
        if self.images > 25:  # an intruder question's options are named a-z
            raise ConceptvecError(f"images must be between 1 and 25 per question, got {self.images}.")
        if self.pool < self.images:
            raise ConceptvecError(f"pool ({self.pool}) must hold at least the {self.images} images drawn per question.")
        if self.rank not in RANKINGS:
            raise ConceptvecError(f"rank must be one of {', '.join(RANKINGS)}, got {self.rank!r}.")


# -- the concepts of a run -----------------------------------------------------------------------
@dataclass(eq=False)  # compared by identity: the same concept object, not equal arrays
class _Concept:
    neuron: int
    index: int  # concept index within the neuron
    vector: np.ndarray
    members: np.ndarray  # example indices of its cluster members
    n_concepts_of_neuron: int
    pool: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def name(self) -> str:
        return f"{self.neuron}:{self.index}"


def _load_run(run: Path) -> tuple[list[dict[str, Any]], Any, dict[str, Any]]:
    """Per neuron: {neuron, live, vectors, members}; the store; a description of the run.

    ``run`` is a scan directory, a ConceptSet directory, or a run directory holding ``scan/`` or
    ConceptSet folders (``neuron_N/``) and ``store/``.
    """
    from ..report.html import _open_store, find_conceptsets
    from ..scan.result import SCAN_FILE, ScanResult

    run = Path(run)
    if not run.exists():
        raise ConceptvecError(f"{run} does not exist; give a scan directory, a ConceptSet, or a run directory holding them.")
    scan_dir = run if (run / SCAN_FILE).exists() else run / "scan" if (run / "scan" / SCAN_FILE).exists() else None
    if scan_dir is not None:
        scan = ScanResult.load(scan_dir)
        if scan.kind != "neurons":
            raise ConceptvecError(f"{scan_dir} scanned directions ({scan.kind}), not neurons; humaneval asks about neurons' concepts.")
        neurons = [{"neuron": int(n), "live": bool(scan.live[i]), "vectors": scan.concepts_of(n),
                    "members": [scan.top_indices[i][scan.labels[i] == j] for j in range(scan.n_concepts[i])]}
                   for i, n in enumerate(scan.neurons)]
        store = _open_store(run, [scan.store_path] if scan.store_path else [])
        return neurons, store, {"kind": "scan", "path": str(scan_dir), "params": scan.params.to_dict(),
                                "provenance": scan.provenance}
    if (run / CONCEPTSET_FILE).exists():
        sets = {run.name: run}
        base = run.parent
    else:
        sets = find_conceptsets(run)
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
    store = _open_store(base, loaded)
    neurons = [{"neuron": int(cs.neuron), "live": cs.is_live, "vectors": cs.concept_vectors,
                "members": [cs.members(j) for j in range(cs.n_concepts)]} for cs in sorted(loaded, key=lambda c: c.neuron)]
    return neurons, store, {"kind": "conceptsets", "path": str(run), "sets": sorted(sets),
                            "params": loaded[0].params.to_dict(), "provenance": loaded[0].provenance}


def _select_neurons(neurons: list[dict[str, Any]], wanted: Any) -> list[dict[str, Any]]:
    from ..core.selection import parse_neurons

    available = [n["neuron"] for n in neurons]
    if wanted is None:
        return neurons[:8]  # the paper: concepts from the first 8 neurons
    chosen = parse_neurons(wanted, 2**62)  # bounds are checked below, against what the run holds
    missing = sorted(set(chosen.tolist()) - set(available))
    if missing:
        shown = f"{available[0]}-{available[-1]}" if len(available) > 1 else str(available[0])
        raise ConceptvecError(f"neuron(s) {missing[:10]} are not in this run (it holds {len(available)} neuron(s), {shown}); "
                              "scan them first or choose others with --neurons.")
    keep = set(chosen.tolist())
    return [n for n in neurons if n["neuron"] in keep]


def read_labels(path: str | os.PathLike) -> dict[str, str]:
    """A labels file: JSON {"NEURON:CONCEPT": "label", ...} or CSV with columns neuron, concept, label."""
    path = Path(path)
    if not path.exists():
        raise ConceptvecError(f"labels file {path} does not exist.")
    text = path.read_text(encoding="utf-8-sig")
    labels: dict[str, str] = {}
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConceptvecError(f"labels file {path} is not valid JSON ({e}).") from None
        if not isinstance(raw, dict):
            raise ConceptvecError(f'labels file {path} must map "NEURON:CONCEPT" to a label, e.g. {{"35:0": "apples"}}.')
        items = [(k, v, f"key {k!r}") for k, v in raw.items()]
    else:
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or not {"neuron", "concept", "label"} <= set(reader.fieldnames):
            raise ConceptvecError(f"labels file {path} needs a header row with columns neuron,concept,label (or use JSON).")
        items = [(f"{r['neuron']}:{r['concept']}", r["label"], f"row {i}") for i, r in enumerate(reader, start=2)]
    for key, value, where in items:
        parts = str(key).strip().split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ConceptvecError(f"labels file {path}, {where}: name a concept as NEURON:CONCEPT, e.g. 35:0.")
        if not isinstance(value, str) or not value.strip():
            raise ConceptvecError(f"labels file {path}, {where}: the label must be non-empty text.")
        labels[f"{int(parts[0])}:{int(parts[1])}"] = value.strip()
    if not labels:
        raise ConceptvecError(f"labels file {path} names no concept.")
    return labels


# -- making a study ------------------------------------------------------------------------------
def make_study(
    run: str | os.PathLike,
    out: str | os.PathLike,
    neurons: Any = None,
    config: StudyConfig | None = None,
    labels: str | os.PathLike | dict[str, str] | None = None,
    overwrite: bool = False,
    **kwargs: Any,
) -> "Study":
    """Draw a study from a run's concepts and write form.html, key.json and study.json to ``out``.

    ``neurons``: None (the first 8 of the run, as the paper), a list, or text such as "0-7".
    ``labels``: a labels file (see :func:`read_labels`) or a dict "NEURON:CONCEPT" -> label for the
    agree questions; by default the most common class name among each concept's members.
    Keyword arguments other than these set fields of :class:`StudyConfig` (seed=, pool=, ...).
    """
    fields = set(StudyConfig.__dataclass_fields__)
    if set(kwargs) - fields:
        raise ConceptvecError(f"unknown study setting(s) {sorted(set(kwargs) - fields)}; the settings are {sorted(fields)}.")
    config = StudyConfig(**{**(asdict(config) if config else {}), **kwargs})
    refuse_existing(out, overwrite, what="study")
    all_neurons, store, source = _load_run(Path(run))
    selected = _select_neurons(all_neurons, neurons)
    not_live = [n["neuron"] for n in selected if not n["live"]]
    concepts = [
        _Concept(n["neuron"], j, np.asarray(n["vectors"][j], dtype=np.float64), np.asarray(n["members"][j]), len(n["vectors"]))
        for n in selected if n["live"] for j in range(len(n["vectors"]))
    ]
    if not concepts:
        raise ConceptvecError(
            f"neurons {[n['neuron'] for n in selected]} have no concepts to ask about"
            + (f" (not live: {not_live})" if not_live else "") + "; choose other neurons with --neurons."
        )
    label_map = read_labels(labels) if isinstance(labels, (str, os.PathLike)) else dict(labels or {})
    examples = _examples(store)
    _fill_pools(concepts, store.activations, config)
    rng = np.random.default_rng(config.seed)
    questions = _intruder_questions(concepts, config, rng) + _label_questions(concepts, config, rng, label_map, store)
    key = {f"q{number:02d}": {**q, "example_ids": {o: str(store.ids[i]) for o, i in q["examples"].items()}}
           for number, q in enumerate(questions, start=1)}
    study_id = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    form = _form_html(study_id, key, examples)
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
    with atomic_directory(out, overwrite=overwrite, what="study") as tmp:
        (tmp / FORM_FILE).write_text(form, encoding="utf-8")
        (tmp / KEY_FILE).write_text(key_text, encoding="utf-8")
        write_json(tmp / STUDY_FILE, meta)
    return Study.load(out)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fill_pools(concepts: list[_Concept], acts: np.ndarray, config: StudyConfig) -> None:
    vectors = np.stack([c.vector for c in concepts])
    rank = maximally_projecting if config.rank == "projection" else most_similar
    indices, _ = rank(acts, vectors, top=config.pool)  # one pass over the store for every concept
    for c, idx in zip(concepts, indices):
        c.pool = idx


def _cycle(order: list[_Concept], n: int) -> list[_Concept]:
    return [order[i % len(order)] for i in range(n)] if order else []


def _intruder_questions(concepts: list[_Concept], config: StudyConfig, rng: np.random.Generator) -> list[dict[str, Any]]:
    n = config.intruder_questions
    if n == 0:
        return []
    if len(concepts) < 2:
        raise ConceptvecError(
            f"an intruder question needs two concepts, and the selected neurons have {len(concepts)}; add neurons "
            "(--neurons) or set --intruder-questions 0."
        )
    # As the paper: the intruder comes from another concept of the same neuron, so polysemantic
    # neurons' concepts are asked about first; the others take an intruder from another neuron.
    poly = [c for c in concepts if c.n_concepts_of_neuron >= 2]
    mono = [c for c in concepts if c.n_concepts_of_neuron < 2]
    order = [poly[i] for i in rng.permutation(len(poly))] + [mono[i] for i in rng.permutation(len(mono))]
    questions = []
    for concept in _cycle(order, n):
        same = [c for c in concepts if c.neuron == concept.neuron and c.index != concept.index]
        candidates = same or [c for c in concepts if c.neuron != concept.neuron]
        other = candidates[int(rng.integers(len(candidates)))]
        shared = np.intersect1d(concept.pool, other.pool)
        own = concept.pool[~np.isin(concept.pool, shared)]
        theirs = other.pool[~np.isin(other.pool, shared)]
        if len(own) < config.images or len(theirs) < 1:
            raise ConceptvecError(
                f"concepts {concept.name} and {other.name} share {len(shared)} of their {config.pool} {RANKINGS[config.rank]} "
                f"examples, leaving too few to draw {config.images} + 1 distinct images; raise --pool"
                + (" or try --rank cosine." if config.rank == "projection" else ".")
            )
        shown = [int(i) for i in rng.choice(own, size=config.images, replace=False)] + [int(rng.choice(theirs))]
        options, examples = _shuffled(shown, rng)
        intruder_option = options[examples.index(shown[-1])]
        questions.append({
            "type": "intruder",
            "options": options,
            "answer": intruder_option,
            "neuron": concept.neuron,
            "concept": concept.index,
            "intruder": {"neuron": other.neuron, "concept": other.index,
                         "from": "same neuron" if other.neuron == concept.neuron else "another neuron"},
            "examples": dict(zip(options, examples)),
            "shared_pool_examples_left_out": int(len(shared)),
        })
    return questions


def _shuffled(shown: list[int], rng: np.random.Generator) -> tuple[list[str], list[int]]:
    perm = rng.permutation(len(shown))
    return list(string.ascii_lowercase[: len(shown)]), [shown[i] for i in perm]


def _majority_label(concept: _Concept, store: Any) -> tuple[str, str]:
    names = [str(x) for x in store.label_names[np.sort(concept.members)]]
    counts = Counter(name for name in names if name)
    if not counts:
        raise ConceptvecError(
            f"concept {concept.name}'s members have no class names in the store, so no label can be offered; write a "
            'labels file (JSON {"NEURON:CONCEPT": "label"} or CSV neuron,concept,label) and pass --labels.'
        )
    label, count = counts.most_common(1)[0]
    return label, f"most common class among its {len(names)} members ({count} of {len(names)})"


def _label_questions(
    concepts: list[_Concept], config: StudyConfig, rng: np.random.Generator, label_map: dict[str, str], store: Any
) -> list[dict[str, Any]]:
    n_free = min(config.free_labels, config.label_questions)
    n_agree = config.label_questions - n_free
    if config.label_questions == 0:
        return []
    if label_map:
        known = {c.name for c in concepts}
        unknown = sorted(set(label_map) - known)
        if unknown:
            raise ConceptvecError(f"labels file names concept(s) {unknown[:10]} that are not among the study's concepts "
                                  f"({', '.join(sorted(known)[:20])}).")
    order = [concepts[i] for i in rng.permutation(len(concepts))]
    free = _cycle(order, n_free)
    # Agree questions prefer concepts not already labelled freely (a given label would prime the free one)
    # and, with a labels file, only the concepts it labels.
    candidates = [c for c in order if not label_map or c.name in label_map]
    agree_order = [c for c in candidates if c not in free] + [c for c in candidates if c in free]
    if n_agree and not agree_order:
        raise ConceptvecError("no concept can be offered a label for the agree questions; check the labels file.")
    questions = []
    for concept in free:
        shown = [int(i) for i in rng.choice(concept.pool, size=config.images, replace=False)]
        questions.append({"type": "label", "options": [], "answer": None, "neuron": concept.neuron,
                          "concept": concept.index, "examples": {str(k): i for k, i in enumerate(shown)}})
    for concept in _cycle(agree_order, n_agree):
        shown = [int(i) for i in rng.choice(concept.pool, size=config.images, replace=False)]
        if label_map:
            label, source = label_map[concept.name], "labels file"
        else:
            label, source = _majority_label(concept, store)
        questions.append({"type": "agree", "options": list(AGREE_OPTIONS), "answer": "yes", "neuron": concept.neuron,
                          "concept": concept.index, "label": label, "label_source": source,
                          "examples": {str(k): i for k, i in enumerate(shown)}})
    return questions


# -- the form ------------------------------------------------------------------------------------
def _examples(store: Any) -> Any:
    from ..report.examples import ImageExamples, TextExamples, examples_for_store

    examples = examples_for_store(store)
    if not isinstance(examples, (ImageExamples, TextExamples)):
        raise ConceptvecError(f"humaneval shows images or text; this store's examples ({type(examples).__name__}) are neither.")
    return examples


def _example_html(examples: Any, i: int) -> str:
    """The example with nothing that names it: an embedded PNG, or the snippet with its strongest token marked."""
    from ..report.examples import TextExamples

    if isinstance(examples, TextExamples):
        return f'<span class="snippet">{examples.marked_html(i)}</span>'
    buf = io.BytesIO()
    examples.scaled(i, IMAGE_SIDE).save(buf, format="PNG")  # a fresh PNG: no file name or metadata of the original
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}" alt="">'


def _question_html(number: int, total: int, qid: str, q: dict[str, Any], examples: Any) -> str:
    head = f'<section class="question" id="{qid}" data-question="{qid}" data-type="{q["type"]}"><h2>Question {number} of {total}</h2>'
    if q["type"] == "intruder":
        items = "".join(
            f'<label class="option"><input type="radio" name="{qid}" value="{o}">'
            f'{_example_html(examples, q["examples"][o])}<span class="tag">{o}</span></label>'
            for o in q["options"]
        )
        n = len(q["options"]) - 1
        return (f"{head}<p>{n} of these {n + 1} examples share a theme. Which one does not belong?</p>"
                f'<div class="options">{items}</div></section>')
    shown = "".join(f'<div class="example">{_example_html(examples, i)}</div>' for i in q["examples"].values())
    if q["type"] == "label":
        return (f"{head}<p>What do these examples have in common? Give a short label.</p>"
                f'<div class="options">{shown}</div>'
                f'<p><input type="text" class="label" name="{qid}" maxlength="200" placeholder="your label"></p></section>')
    choices = "".join(f'<label class="choice"><input type="radio" name="{qid}" value="{o}"> {o}</label>' for o in AGREE_OPTIONS)
    return (f'{head}<p>Do these examples show <b class="given">{html.escape(q["label"])}</b>?</p>'
            f'<div class="options">{shown}</div><p>{choices}</p></section>')


def _form_html(study_id: str, key: dict[str, dict[str, Any]], examples: Any) -> str:
    total = len(key)
    body = "".join(_question_html(n, total, qid, q, examples) for n, (qid, q) in enumerate(key.items(), start=1))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; form-action 'none'; base-uri 'none'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Study {study_id}</title>
<style>{_FORM_CSS}</style></head>
<body data-study="{study_id}">
<h1>Which examples belong together?</h1>
<p>{total} questions about groups of examples a neural network treats alike. Answer from what you see; there
is no time limit. Your answers stay in this browser until you export them: nothing is sent anywhere.
When you are done, press <b>Export answers</b> and return the CSV file to the person running the study.</p>
<p><label>Participant id <input type="text" id="rater" maxlength="64" autocomplete="off"></label></p>
{body}
<p><button type="button" id="export">Export answers (CSV)</button> <span id="status" role="status"></span></p>
<script>{_FORM_JS}</script>
</body></html>
"""


_FORM_CSS = """
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:1.5rem auto;padding:0 1rem;color:#222}
.question{border-top:1px solid #ccc;padding:.6rem 0 1rem}
h2{font-size:1.05rem;margin:.3rem 0}
.options{display:flex;flex-wrap:wrap;gap:.6rem;align-items:flex-end}
.option,.example{display:flex;flex-direction:column;align-items:center;gap:.2rem}
.option{cursor:pointer;padding:.3rem;border:2px solid transparent;border-radius:6px}
.option:has(input:checked){border-color:#2266cc;background:#eef4ff}
.option img,.example img{width:160px;height:auto;image-rendering:auto;border:1px solid #ddd}
.snippet{display:block;max-width:18rem;font-family:ui-monospace,monospace;font-size:13px;border:1px solid #ddd;padding:.3rem}
mark{background:#ffe08a}
.tag{font-weight:bold}
.choice{margin-right:1.2rem}
input.label{width:24rem;max-width:100%}
#status{margin-left:1rem}
"""

# Answers live in this page (and localStorage, so a reload keeps them) until exported; nothing is sent.
_FORM_JS = r"""
(function(){
  const study = document.body.dataset.study;
  const store = 'humaneval-' + study;
  const fields = () => Array.from(document.querySelectorAll('input[name]'));
  function answers(){
    const out = {};
    for (const el of fields()){
      if (el.type === 'radio' && el.checked) out[el.name] = el.value;
      if (el.type === 'text' && el.value.trim()) out[el.name] = el.value.trim();
    }
    return out;
  }
  function save(){
    try { localStorage.setItem(store, JSON.stringify({rater: document.getElementById('rater').value, answers: answers()})); }
    catch (e) {}
  }
  function restore(){
    let saved = null;
    try { saved = JSON.parse(localStorage.getItem(store) || 'null'); } catch (e) {}
    if (!saved) return;
    document.getElementById('rater').value = saved.rater || '';
    for (const el of fields()){
      const v = (saved.answers || {})[el.name];
      if (v === undefined) continue;
      if (el.type === 'radio') el.checked = el.value === v; else el.value = v;
    }
  }
  function field(s){ s = String(s); return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
  function toCsv(rater, a){
    const rows = ['rater,question,answer'];
    for (const q of Object.keys(a).sort()) rows.push([rater, q, a[q]].map(field).join(','));
    return rows.join('\r\n') + '\r\n';
  }
  document.addEventListener('input', save);
  document.addEventListener('change', save);
  document.getElementById('export').addEventListener('click', function(){
    const status = document.getElementById('status');
    const rater = document.getElementById('rater').value.trim();
    if (!rater){ status.textContent = 'Enter your participant id first.'; document.getElementById('rater').focus(); return; }
    const a = answers();
    const total = document.querySelectorAll('section.question').length;
    const missing = total - Object.keys(a).length;
    const blob = new Blob([toCsv(rater, a)], {type: 'text/csv'});
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = 'answers-' + rater.replace(/[^A-Za-z0-9_-]+/g, '_') + '-' + study + '.csv';
    document.body.appendChild(link); link.click(); link.remove();
    status.textContent = 'Exported ' + Object.keys(a).length + ' answer(s)' + (missing ? '; ' + missing + ' question(s) unanswered.' : '.');
  });
  restore();
})();
"""


# -- a study on disk -----------------------------------------------------------------------------
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
    def load(cls, path: str | os.PathLike) -> "Study":
        """Read a study; its key must be the one made with it (checksum in study.json)."""
        path = Path(path)
        meta_file, key_file = path / STUDY_FILE, path / KEY_FILE
        if not meta_file.exists():
            raise StoreError(f"no study at {path} ({STUDY_FILE} not found); make one with `conceptvec humaneval make`.")
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


# -- answers and scoring -------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    rater: str
    question: str
    answer: str
    where: str  # file and row, for messages


def read_answers(paths: Sequence[str | os.PathLike], study: Study) -> list[Answer]:
    """Rows of participants' CSVs (``rater,question,answer``), checked against the study's key."""
    if not paths:
        raise ConceptvecError("no answer files given; pass the CSVs exported from the form.")
    seen: dict[tuple[str, str], str] = {}
    rows: list[Answer] = []
    ids = list(study.key)
    shown_ids = f"{ids[0]}-{ids[-1]}" if len(ids) > 1 else ids[0]
    for path in map(Path, paths):
        if not path.exists():
            raise ConceptvecError(f"answer file {path} does not exist.")
        text = path.read_text(encoding="utf-8-sig")
        if not text.strip():
            raise ConceptvecError(f"answer file {path} is empty; export it from the form (it starts with the row rater,question,answer).")
        reader = csv.reader(io.StringIO(text, newline=""))
        header = [h.strip().lower() for h in next(reader)]
        if header[:3] != list(CSV_COLUMNS):
            raise ConceptvecError(f"{path}, row 1: expected the header rater,question,answer, got {','.join(header)!r}.")
        n_rows = 0
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path}, row {line}"
            if len(row) < 3:
                raise ConceptvecError(f"{where}: expected 3 fields (rater,question,answer), got {len(row)}.")
            rater, question, answer = row[0].strip(), row[1].strip(), row[2].strip()
            if not rater:
                raise ConceptvecError(f"{where}: the rater is empty.")
            if question not in study.key:
                raise ConceptvecError(f"{where}: question {question!r} is not in study {study.study_id} (its questions are "
                                      f"{shown_ids}); were these answers given on another study's form?")
            if (rater, question) in seen:
                raise ConceptvecError(f"{where}: rater {rater!r} answers question {question} a second time (first at "
                                      f"{seen[rater, question]}); keep one row per rater and question.")
            entry = study.key[question]
            if entry["type"] == "agree":
                answer = answer.lower()
            if not answer:
                raise ConceptvecError(f"{where}: the answer is empty; leave unanswered questions out.")
            if entry["type"] != "label" and answer not in entry["options"]:
                raise ConceptvecError(f"{where}: answer {answer!r} is not an option of question {question} "
                                      f"({', '.join(entry['options'])}).")
            seen[rater, question] = where
            rows.append(Answer(rater, question, answer, where))
            n_rows += 1
        if n_rows == 0:
            raise ConceptvecError(f"answer file {path} has a header but no answers.")
    return rows


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (no continuity correction); (nan, nan) when n = 0."""
    from scipy.stats import binomtest

    if n == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of a table of shape (n_subjects, n_categories): how many raters put each subject in each category.

    Every subject must have the same number of ratings, at least 2. When every rating falls in one
    category the chance agreement is 1 and kappa is undefined (nan).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] == 0:
        raise ConceptvecError("fleiss_kappa needs a (subjects, categories) table with at least one subject.")
    per_subject = counts.sum(axis=1)
    n = per_subject[0]
    if np.any(per_subject != n) or n < 2:
        raise ConceptvecError("fleiss_kappa needs the same number (2 or more) of ratings for every subject.")
    p_j = counts.sum(axis=0) / counts.sum()
    p_i = (np.sum(counts**2, axis=1) - n) / (n * (n - 1))
    p_bar, p_e = p_i.mean(), np.sum(p_j**2)
    if np.isclose(p_e, 1.0):
        return float("nan")
    return float((p_bar - p_e) / (1.0 - p_e))


@dataclass
class StudyScores:
    """The numbers of a scored study; ``to_dict()`` is what ``--json`` prints."""

    study_id: str
    raters: list[str]
    intruder: dict[str, Any]
    agree: dict[str, Any]
    labels: list[dict[str, Any]]
    fleiss_kappa: dict[str, Any]
    unanswered: dict[str, list[str]]

    @property
    def n_raters(self) -> int:
        return len(self.raters)

    @property
    def intruder_accuracy(self) -> float:
        return self.intruder["accuracy"]

    @property
    def agreement_rate(self) -> float:
        return self.agree["rate"]

    def to_dict(self) -> dict[str, Any]:
        """The numbers as plain JSON values; an undefined number (NaN) becomes None (null)."""
        return _json_ready({
            "study_id": self.study_id,
            "n_raters": self.n_raters,
            "raters": self.raters,
            "intruder_accuracy": self.intruder_accuracy,
            "intruder_ci95": self.intruder["ci95"],
            "intruder_chance": self.intruder["chance"],
            "intruder_answers": self.intruder["n"],
            "agreement_rate": self.agreement_rate,
            "agreement_ci95": self.agree["ci95"],
            "agreement_answers": self.agree["n"],
            "fleiss_kappa": self.fleiss_kappa,
            "intruder_questions": self.intruder["questions"],
            "agree_questions": self.agree["questions"],
            "labels": self.labels,
            "unanswered": self.unanswered,
        })

    def plot(self):
        """Intruder accuracy and label agreement per question, with 95 % Wilson intervals; a matplotlib Figure."""
        from matplotlib.figure import Figure

        panels = [(k, v) for k, v in (("intruder", self.intruder), ("agree", self.agree)) if v["questions"]]
        fig = Figure(figsize=(4.5 * max(1, len(panels)), 3.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, max(1, len(panels))))
        for ax, (kind, part) in zip(axes, panels):
            qs = list(part["questions"])
            values = np.array([part["questions"][q]["accuracy" if kind == "intruder" else "rate"] for q in qs], dtype=float)
            ci = np.array([part["questions"][q]["ci95"] for q in qs], dtype=float)
            x = np.arange(len(qs))
            err = np.vstack([values - ci[:, 0], ci[:, 1] - values])
            ax.bar(x, values, color="#4477aa" if kind == "intruder" else "#228833", width=0.7)
            ax.errorbar(x, values, yerr=np.nan_to_num(err), fmt="none", ecolor="#222222", capsize=3, lw=1)
            overall = part["accuracy" if kind == "intruder" else "rate"]
            lo, hi = part["ci95"]
            if kind == "intruder":
                chance = [part["questions"][q]["chance"] for q in qs]
                ax.hlines(chance, x - 0.4, x + 0.4, colors="#cc3311", linestyles="--", label="chance")
                ax.legend(loc="lower right", fontsize=8)
                ax.set_title(f"intruder found: {overall:.0%} [{lo:.0%}, {hi:.0%}]", fontsize=10)
            else:
                ax.set_title(f"agree with the given label: {overall:.0%} [{lo:.0%}, {hi:.0%}]", fontsize=10)
            ax.set_xticks(x, [f"{q}\n{part['questions'][q]['neuron']}:{part['questions'][q]['concept']}" for q in qs], fontsize=8)
            ax.set_xlabel("question, neuron:concept", fontsize=8)
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("share of raters")
        if not panels:
            axes[0].text(0.5, 0.5, "no intruder or agree answers", ha="center", va="center")
            axes[0].set_axis_off()
        fig.suptitle(f"study {self.study_id}: {self.n_raters} rater(s); bars: 95 % Wilson intervals", fontsize=10)
        return fig


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if np.isnan(obj) else float(obj)
    return obj


def score_study(study: str | os.PathLike | Study, answer_files: Sequence[str | os.PathLike]) -> StudyScores:
    """Score participants' answers against the study's key."""
    study = study if isinstance(study, Study) else Study.load(study)
    rows = read_answers(answer_files, study)
    raters = sorted({r.rater for r in rows})
    by_question: dict[str, list[Answer]] = {q: [] for q in study.key}
    for r in rows:
        by_question[r.question].append(r)
    answered = {(r.rater, r.question) for r in rows}
    unanswered = {rater: [q for q in study.key if (rater, q) not in answered] for rater in raters}
    unanswered = {k: v for k, v in unanswered.items() if v}

    def proportion(kind: str) -> dict[str, Any]:
        per_q: dict[str, Any] = {}
        hits = total = 0
        chance_sum = 0.0
        for q in study.questions(kind):
            entry, answers = study.key[q], by_question[q]
            k = sum(a.answer == entry["answer"] for a in answers)
            item = {"n": len(answers), "ci95": list(wilson_interval(k, len(answers))),
                    "neuron": entry["neuron"], "concept": entry["concept"]}
            if kind == "intruder":
                item.update(accuracy=k / len(answers) if answers else float("nan"), chance=1.0 / len(entry["options"]),
                            intruder_from=entry["intruder"]["from"])
                chance_sum += len(answers) / len(entry["options"])
            else:
                item.update(rate=k / len(answers) if answers else float("nan"), label=entry["label"],
                            label_source=entry["label_source"])
            per_q[q] = item
            hits, total = hits + k, total + len(answers)
        out = {"n": total, "correct" if kind == "intruder" else "agreeing": hits,
               "ci95": list(wilson_interval(hits, total)), "questions": per_q}
        out["accuracy" if kind == "intruder" else "rate"] = hits / total if total else float("nan")
        if kind == "intruder":
            out["chance"] = chance_sum / total if total else float("nan")  # expected accuracy of random picks
        return out

    kappas: dict[str, Any] = {}
    for kind in ("intruder", "agree"):
        qs = study.questions(kind)
        complete = [r for r in raters if all((r, q) in answered for q in qs)]
        if not qs or len(complete) < 2:
            kappas[kind] = {"kappa": float("nan"), "raters": len(complete), "questions": len(qs),
                            "note": "needs 2 or more raters who answered every question of this type"}
            continue
        categories = sorted({o for q in qs for o in study.key[q]["options"]})
        table = np.zeros((len(qs), len(categories)))
        for i, q in enumerate(qs):
            for a in by_question[q]:
                if a.rater in complete:
                    table[i, categories.index(a.answer)] += 1
        value = fleiss_kappa(table)
        kappas[kind] = {"kappa": value, "raters": len(complete), "questions": len(qs),
                        **({"note": "undefined: every rating fell in one category"} if np.isnan(value) else {})}

    labels = []
    for q in study.questions("label"):
        entry = study.key[q]
        labels.append({"question": q, "neuron": entry["neuron"], "concept": entry["concept"],
                       "labels": [{"rater": a.rater, "label": a.answer} for a in by_question[q]]})
    return StudyScores(study_id=study.study_id, raters=raters, intruder=proportion("intruder"), agree=proportion("agree"),
                       labels=labels, fleiss_kappa=kappas, unanswered=unanswered)


def write_scores(scores: StudyScores, out: str | os.PathLike, answer_files: Sequence[str | os.PathLike] = ()) -> Path:
    """Write scores.json and scores.png to ``out`` (replaced as a whole)."""
    with atomic_directory(out, overwrite=True, what="scores") as tmp:
        write_json(tmp / SCORE_FILE, {**scores.to_dict(), "answer_files": [str(p) for p in answer_files], **environment()})
        scores.plot().savefig(tmp / SCORE_FIGURE, dpi=120)
    return Path(out)
