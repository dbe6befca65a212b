"""A study's parameters (:class:`StudyConfig`) and the user's labels for its agree questions (:func:`read_labels`)."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.params import whole_number
from ..errors import ConceptvecError

# --rank: the pool each image comes from; "centred": cosine of each example's difference from the layer's mean activation
RANKINGS = {"projection": "maximally projecting", "cosine": "most cosine-similar", "centred": "most cosine-similar once the layer's mean is subtracted"}


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
        'projection' (the paper's maximally projecting examples), 'cosine' (most cosine-similar) or
        'centred' (most cosine-similar once the layer's mean activation is subtracted from every example).
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
        if 0 < self.label_questions < self.free_labels:  # 0 label questions: none, free or not
            raise ConceptvecError(f"free_labels ({self.free_labels}) is more than label_questions ({self.label_questions}): the "
                                  f"free-label questions are some of the label questions. Lower --free-labels or raise "
                                  f"--label-questions.")
        if self.images > 25:  # an intruder question's options are named a-z
            raise ConceptvecError(f"images must be between 1 and 25 per question, got {self.images}.")
        if self.pool < self.images:
            raise ConceptvecError(f"pool ({self.pool}) must hold at least the {self.images} images drawn per question.")
        if self.rank not in RANKINGS:
            raise ConceptvecError(f"rank must be one of {', '.join(RANKINGS)}, got {self.rank!r}.")


def read_labels(path: str | os.PathLike) -> dict[str, str]:
    """A labels file: JSON {"NEURON:CONCEPT": "label", ...} or CSV with columns neuron, concept, label.

    Returns
    -------
    dict
        "NEURON:CONCEPT" (numbers without leading zeros) -> the label, stripped.
    """
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
