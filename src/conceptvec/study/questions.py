"""A study's questions, drawn from a run's concepts as the paper does (Sec. 3, App. A.3).

Question types:

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
it, so the intruder is never also one of the concept's own maximally projecting examples. When the
two pools share so much that too few examples are left (on an all-positive layer, projection ranks
the same high-norm examples first for every concept), both rankings are read further down, a pool
at a time (to ``DEEPEST`` x ``pool``), until each holds enough examples that the other's does not to
the same depth; each side is drawn from its first ``pool`` such examples. The key records how deep
(``drawn_to_rank``) and the study warns which questions did so.
"""

from __future__ import annotations

import string
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..core.metrics import layer_mean, maximally_projecting, most_similar
from ..errors import ConceptvecError, ConceptvecWarning
from ..storage.store import ActivationStore
from .config import RANKINGS, StudyConfig

QUESTION_TYPES = ("intruder", "label", "agree")
DEEPEST = 10  # how far down its ranking, in pools, an intruder question may look for unshared examples
AGREE_OPTIONS = ("yes", "no")


@dataclass(eq=False)  # compared by identity: the same concept object, not equal arrays
class Concept:
    """One concept of a neuron, and the examples its images are drawn from.

    vector : array of shape (n_units,)
    members : array of shape (n_members,), example indices of its cluster members
    pool : array of shape (pool,), its maximally projecting (or most similar) examples, best first
    ranking : array of shape (DEEPEST * pool,) or fewer, the same ranking further down
    """

    neuron: int
    index: int  # concept index within the neuron
    vector: np.ndarray
    members: np.ndarray
    n_concepts_of_neuron: int
    pool: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    ranking: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def name(self) -> str:
        return f"{self.neuron}:{self.index}"


@dataclass(frozen=True)
class Intruder:
    """Where an intruder question's odd example comes from; ``source`` is key.json's ``from``."""

    neuron: int
    concept: int
    source: str  # "same neuron" or "another neuron"

    def to_dict(self) -> dict[str, Any]:
        return {"neuron": self.neuron, "concept": self.concept, "from": self.source}


@dataclass(frozen=True)
class Question:
    """One question of the form; :meth:`key_entry` is its entry in key.json.

    ``examples`` maps what the form shows to store indices: option id -> example for an intruder
    question, position ("0", "1", ...) -> example otherwise, in the order shown.
    """

    type: str
    neuron: int
    concept: int
    examples: dict[str, int]
    options: tuple[str, ...] = ()
    answer: str | None = None
    intruder: Intruder | None = None
    shared_pool_examples_left_out: int = 0
    drawn_to_rank: dict[str, int] | None = None  # set when the pools were too alike: how deep each side was drawn
    label: str | None = None
    label_source: str | None = None

    def key_entry(self, ids: Sequence[Any] | np.ndarray) -> dict[str, Any]:
        """The key's entry, ``ids`` (the store's example ids, one per example) naming the examples shown.

        Its fields and their order are the key's format: a change here changes every study's id.
        """
        entry: dict[str, Any] = {"type": self.type, "options": list(self.options), "answer": self.answer,
                                 "neuron": self.neuron, "concept": self.concept}
        if self.intruder is not None:
            entry["intruder"] = self.intruder.to_dict()
        if self.type == "agree":
            entry.update(label=self.label, label_source=self.label_source)
        entry["examples"] = dict(self.examples)
        if self.type == "intruder":
            entry["shared_pool_examples_left_out"] = self.shared_pool_examples_left_out
            if self.drawn_to_rank is not None:
                entry["drawn_to_rank"] = dict(self.drawn_to_rank)
        entry["example_ids"] = {o: str(ids[i]) for o, i in self.examples.items()}
        return entry


def draw_questions(
    concepts: list[Concept], *, config: StudyConfig, labels: dict[str, str], store: ActivationStore
) -> list[Question]:
    """The intruder questions, then the free-label ones, then the agree ones, drawn with ``config.seed``.

    Fills each concept's ``pool`` from the store's activations, of shape (n_examples, n_units).
    ``labels`` maps "NEURON:CONCEPT" to the label of the agree questions; empty for the most common class.
    """
    _fill_pools(concepts, store.activations, config)
    rng = np.random.default_rng(config.seed)
    return _intruder_questions(concepts, config, rng) + _label_questions(concepts, config, rng, labels, store)


def _fill_pools(concepts: list[Concept], acts: np.ndarray, config: StudyConfig) -> None:
    vectors = np.stack([c.vector for c in concepts])
    top = min(DEEPEST * config.pool, acts.shape[0])
    if config.rank == "projection":
        indices, _ = maximally_projecting(acts, vectors, top=top)  # one pass for every concept
    else:
        indices, _ = most_similar(acts, vectors, top=top, centre=layer_mean(acts) if config.rank == "centred" else None)
    for c, idx in zip(concepts, indices):
        c.ranking = idx
        c.pool = idx[: config.pool]


def _cycle(order: list[Concept], n: int) -> list[Concept]:
    return [order[i % len(order)] for i in range(n)] if order else []


def _intruder_questions(concepts: list[Concept], config: StudyConfig, rng: np.random.Generator) -> list[Question]:
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
    questions: list[Question] = []
    for concept in _cycle(order, n):
        same = [c for c in concepts if c.neuron == concept.neuron and c.index != concept.index]
        candidates = same or [c for c in concepts if c.neuron != concept.neuron]
        other = candidates[int(rng.integers(len(candidates)))]
        shared = np.intersect1d(concept.pool, other.pool)
        own = concept.pool[~np.isin(concept.pool, shared)]
        theirs = other.pool[~np.isin(other.pool, shared)]
        deeper = None
        if len(own) < config.images or len(theirs) < 1:
            own, theirs, depth = _exclusive(concept, other, pool=config.pool, images=config.images)
            if depth is None:
                raise ConceptvecError(
                    f"concepts {concept.name} and {other.name} share {len(shared)} of their {config.pool} {RANKINGS[config.rank]} "
                    f"examples, and even {DEEPEST * config.pool} down their rankings too few others are left to draw "
                    f"{config.images} + 1 distinct images; choose other neurons"
                    + (" or try --rank cosine." if config.rank == "projection" else ".")
                )
            deeper = {"depth": depth}
            warnings.warn(
                f"intruder question {len(questions) + 1}: concepts {concept.name} and {other.name} share {len(shared)} of their "
                f"{config.pool} {RANKINGS[config.rank]} examples, so each side is drawn from examples in its first {depth} "
                f"that are not in the other's first {depth}; the key records it (drawn_to_rank).",
                ConceptvecWarning, stacklevel=4)
        shown = [int(i) for i in rng.choice(own, size=config.images, replace=False)] + [int(rng.choice(theirs))]
        options, examples = _shuffled(shown, rng)
        questions.append(Question(
            type="intruder",
            neuron=concept.neuron,
            concept=concept.index,
            examples=dict(zip(options, examples)),
            options=tuple(options),
            answer=options[examples.index(shown[-1])],
            intruder=Intruder(other.neuron, other.index, "same neuron" if other.neuron == concept.neuron else "another neuron"),
            shared_pool_examples_left_out=int(len(shared)),
            drawn_to_rank=deeper,
        ))
    return questions


def _exclusive(concept: Concept, other: Concept, *, pool: int, images: int) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Each concept's first ``pool`` examples that the other's ranking lacks to the same depth, at the least depth
    (a multiple of ``pool``) that leaves ``images`` of the concept's and one of the other's; depth None when none does."""
    deepest = min(len(concept.ranking), len(other.ranking))
    none = np.empty(0, dtype=np.int64)
    for depth in range(2 * pool, deepest + pool, pool):
        depth = min(depth, deepest)
        mine, theirs = concept.ranking[:depth], other.ranking[:depth]
        own, their = mine[~np.isin(mine, theirs)][:pool], theirs[~np.isin(theirs, mine)][:pool]
        if len(own) >= images and len(their) >= 1:
            return own, their, depth
    return none, none, None


def _shuffled(shown: list[int], rng: np.random.Generator) -> tuple[list[str], list[int]]:
    perm = rng.permutation(len(shown))
    return list(string.ascii_lowercase[: len(shown)]), [shown[i] for i in perm]


def _majority_label(concept: Concept, store: ActivationStore) -> tuple[str, str]:
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
    concepts: list[Concept], config: StudyConfig, rng: np.random.Generator, label_map: dict[str, str], store: ActivationStore
) -> list[Question]:
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
        questions.append(Question(type="label", neuron=concept.neuron, concept=concept.index,
                                  examples={str(k): i for k, i in enumerate(shown)}))
    for concept in _cycle(agree_order, n_agree):
        shown = [int(i) for i in rng.choice(concept.pool, size=config.images, replace=False)]
        if label_map:
            label, source = label_map[concept.name], "labels file"
        else:
            label, source = _majority_label(concept, store)
        questions.append(Question(type="agree", neuron=concept.neuron, concept=concept.index,
                                  examples={str(k): i for k, i in enumerate(shown)}, options=AGREE_OPTIONS,
                                  answer="yes", label=label, label_source=source))
    return questions
