"""A study's parameters (:class:`StudyConfig`) and the user's labels for its agree questions (:func:`read_labels`)."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.options import at_least, check_fields, documented, one_of, option, whole_number
from ..errors import ConceptvecError

# --rank: the pool each image comes from; "centred": cosine of each example's difference from the layer's mean activation
RANKINGS = {"projection": "maximally projecting", "cosine": "most cosine-similar", "centred": "most cosine-similar once the layer's mean is subtracted"}


@documented
@dataclass(frozen=True)
class StudyConfig:
    """How a study is drawn; saved in study.json so the same config and run give the same form. Each field is
    declared once (``core.options.option``); ``conceptvec study make`` takes the same options."""

    seed: int = option(0, "Random seed of the draw, recorded in study.json.", check=at_least(0))
    intruder_questions: int = option(4, "Pick-the-intruder questions (paper: 4).", check=lambda name, value: whole_number(
        name, value, 0, 1000, why="each is a question a person answers; the paper asks 4"))
    label_questions: int = option(6, "Understandability questions (paper: 6), free labels first.", check=lambda name, value:
                                  whole_number(name, value, 0, 1000, why="each is a question a person answers; the paper asks 6"))
    free_labels: int = option(
        2, "Of the label questions, how many ask for a free-text label (paper: 2); the rest ask to agree with a given "
        "label.", check=at_least(0))
    images: int = option(4, "Examples of the concept shown per question (an intruder question adds one).", check=at_least(1))
    pool: int = option(20, "Images are drawn from each concept's this many maximally projecting examples.", check=at_least(1))
    rank: str = option(
        "projection", "projection (the paper's maximally projecting examples), cosine, or centred (cosine once the "
        "layer's mean is subtracted).", check=one_of(tuple(RANKINGS)))

    def __post_init__(self) -> None:
        check_fields(self)
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


def read_labels(path: str | os.PathLike[str]) -> dict[str, str]:
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
