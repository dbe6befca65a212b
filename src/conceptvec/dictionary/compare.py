"""Concept vectors beside a dictionary's atoms: a second opinion on each neuron's split; imports no torch.

For one neuron (a ConceptSet) and a Dictionary: the atoms that account for the neuron's top examples (the
share of the examples' code mass each atom carries, and each atom's weight on the neuron's unit), the
concept vectors matched one-to-one to those atoms by cosine (Hungarian matching,
``scipy.optimize.linear_sum_assignment``), and for each concept the share of its members whose strongest
atom (largest code x atom norm) is its matched atom. The same against a baseline dictionary (one fitted on
shuffled activations, ``fit_dictionary(..., shuffle=True)``) or random directions says what agreement
chance gives.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.optimize import linear_sum_assignment

from ..errors import ConceptvecError
from ..progress import progress_bar
from ..storage.atomic import atomic_directory, check_replaceable, file_sha256, read_json, write_json
from ..storage.conceptset import ConceptSet
from .model import Dictionary

AGREE = 0.9  # cosine at which a concept and its atom are said to agree (the goal)
N_CANDIDATES = 8  # atoms shown per neuron: the largest code mass on its top examples
COMPARISON_FILE = "comparison.json"
TABLE_FILE = "comparison.parquet"
NEURON_TABLE_FILE = "comparison_neurons.parquet"
WHAT = "dictionary comparison"
# The files that hold an input's numbers: a scan's, a ConceptSet's or a dictionary's record and arrays (not what other
# commands add beside them, as an atlas's shared concepts beside a scan).
INPUT_FILES = ("scan.json", "concepts.safetensors", "method.safetensors", "conceptset.json", "arrays.safetensors",
               "dictionary.json", "dictionary.safetensors")


@dataclass
class DictionaryComparison:
    """One neuron's concept vectors beside the atoms of a dictionary.

    Attributes
    ----------
    neuron : int or None
    atoms : list of int
        Candidate atoms, by descending code mass on the neuron's top examples (then by weight on its unit).
    code_share : list of float
        Per candidate: its share of the code mass (code x atom norm) on the top examples.
    unit_weight : list of float
        Per candidate: the unit atom's coordinate on the neuron's unit (NaN for a direction).
    matched_atom : list of int
        Per concept: the atom it is matched to (-1 when there are more concepts than candidates).
    cosine : list of float
        Per concept: cosine of the concept vector with its matched atom.
    member_share : list of float
        Per concept: share of its members whose strongest atom is the matched atom.
    example_atom : list of int
        Per top example: its strongest atom (-1 when no atom is active).
    baseline : dict, optional
        ``cosine`` and ``member_share`` against the baseline, and what it was.
    dictionary : dict
        The dictionary's method, number of atoms and k.
    centred : bool
        Whether the cosines are of concept vectors minus the dictionary's bias b (``centre=True``).
    """

    neuron: int | None
    atoms: list[int]
    code_share: list[float]
    unit_weight: list[float]
    matched_atom: list[int]
    cosine: list[float]
    member_share: list[float]
    example_atom: list[int]
    baseline: dict[str, Any] | None = None
    dictionary: dict[str, Any] = field(default_factory=dict)
    centred: bool = False

    @property
    def n_concepts(self) -> int:
        return len(self.matched_atom)

    def agrees(self, *, level: float = AGREE) -> np.ndarray:
        """Per concept: whether its matched atom is at cosine >= ``level``."""
        return np.asarray(self.cosine, dtype=np.float64) >= level

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "DictionaryComparison":
        """The comparison a ``comparison.json`` of one neuron holds (``to_dict``'s fields; others are ignored)."""
        return cls(**{f: record[f] for f in cls.__dataclass_fields__ if f in record})

    def save(self, path: str | os.PathLike, *, overwrite: bool = False, inputs: dict[str, Any] | None = None) -> Path:
        """Write ``comparison.json`` into the directory ``path`` (atomically); ``inputs`` (``comparison_inputs``) is
        recorded so that a rerun on the same inputs can reuse it."""
        with atomic_directory(path, overwrite=overwrite, what=WHAT, marker=COMPARISON_FILE) as tmp:
            write_json(tmp / COMPARISON_FILE, {"format": "conceptvec.DictionaryComparison/1", **self.to_dict(),
                                               **({"inputs": inputs} if inputs is not None else {})})
        return Path(path)


def input_digest(path: str | os.PathLike) -> str:
    """sha256 naming an input's content: a file's bytes, or a folder's ``INPUT_FILES`` (names and bytes)."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for name in INPUT_FILES:
        if (path / name).is_file():
            digest.update(f"{name}:{file_sha256(path / name)};".encode())
    return digest.hexdigest()


def comparison_inputs(concepts: str | os.PathLike, dictionary: str | os.PathLike, *, baseline: str | None = None,
                      k: int | None = None, centre: bool = False, store: str | os.PathLike | None = None) -> dict[str, Any]:
    """What `conceptvec compare-dictionary` compares, by content (``input_digest``) and options: recorded with the
    comparison, so that a rerun with the same inputs and options reuses it instead of computing it again."""
    return {"concepts": input_digest(concepts), "dictionary": input_digest(dictionary),
            "baseline": None if baseline is None else baseline if baseline == "random" else input_digest(baseline),
            "k": k, "centre": bool(centre), "store": None if store is None else input_digest(Path(store) / "metadata.json")}


def earlier_comparison(out: str | os.PathLike, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """The ``comparison.json`` at ``out`` when it was made from ``inputs`` and the folder is as conceptvec wrote it; else None."""
    record = Path(out) / COMPARISON_FILE
    if not record.is_file():
        return None
    saved = read_json(record)
    if not isinstance(saved, dict) or saved.get("inputs") != inputs:
        return None
    try:
        check_replaceable(out, what=WHAT)  # nothing changed or added since
    except ConceptvecError:
        return None
    return saved


def _strength(dictionary: Dictionary, x: np.ndarray) -> np.ndarray:
    """(n, n_atoms): each atom's part of each example, |code| x atom norm (so NMF's unnormalised atoms compare fairly)."""
    return np.abs(dictionary.encode(x)) * np.linalg.norm(dictionary.decoder.astype(np.float64), axis=1)


def _match(cs: ConceptSet, dictionary: Dictionary, strength: np.ndarray, candidates: np.ndarray, *,
           centre: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(matched atom, cosine, member share) per concept, Hungarian matching over ``candidates``."""
    k = cs.n_concepts
    matched, cosine, share = np.full(k, -1), np.full(k, np.nan), np.full(k, np.nan)
    if k == 0 or len(candidates) == 0:
        return matched, cosine, share
    vectors = cs.concept_vectors - dictionary.bias.astype(np.float64) if centre else cs.concept_vectors.astype(np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    cos = vectors @ dictionary.atoms()[candidates].T
    rows, cols = linear_sum_assignment(cos, maximize=True)
    matched[rows], cosine[rows] = candidates[cols], cos[rows, cols]
    strongest = np.where(strength.max(axis=1) > 0, strength.argmax(axis=1), -1)
    for c in range(k):
        members = cs.labels == c
        if members.any() and matched[c] >= 0:
            share[c] = float(np.mean(strongest[members] == matched[c]))
    return matched, cosine, share


def _candidates(cs: ConceptSet, dictionary: Dictionary, strength: np.ndarray, n_candidates: int) -> tuple[np.ndarray, np.ndarray]:
    mass = strength.sum(axis=0)
    total = float(mass.sum())
    by_mass = [int(a) for a in np.argsort(-mass, kind="stable") if mass[a] > 0][:max(n_candidates, cs.n_concepts)]
    if cs.neuron is not None:  # and the atoms that write most onto the neuron's unit
        by_unit = np.argsort(-dictionary.atoms()[:, cs.neuron], kind="stable")[:max(2, n_candidates // 4)]
        by_mass += [int(a) for a in by_unit if a not in by_mass]
    atoms = np.asarray(by_mass, dtype=np.int64)
    return atoms, mass[atoms] / total if total > 0 else np.zeros(len(atoms))


def random_directions(n_atoms: int, n_units: int, *, seed: int = 0, like: Dictionary | None = None) -> Dictionary:
    """A dictionary of ``n_atoms`` random directions (|Gaussian| when ``like``'s atoms are non-negative), coded by OMP
    with ``like``'s k: the agreement chance gives."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n_atoms, n_units))
    if like is not None and (like.decoder >= 0).all():
        d = np.abs(d)
    return Dictionary(decoder=(d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32), bias=np.zeros(n_units, np.float32),
                      method="random", config={"k": (like.k if like is not None else None) or 1, "seed": seed})


def check_inputs(concepts: Any, dictionary: Any, *, want: type, fix: str) -> None:
    """One line for a wrong type given as the concepts or the dictionary (a path, None, a scan for a ConceptSet)."""
    if not isinstance(concepts, want):
        raise ConceptvecError(f"the concepts must be a {want.__name__} ({fix}), got {type(concepts).__name__}.")
    if not isinstance(dictionary, Dictionary):
        raise ConceptvecError(f"dictionary must be a Dictionary, got {type(dictionary).__name__}; read a folder or an SAE "
                              f"checkpoint with cv.Dictionary.from_checkpoint(path) (or fit one with cv.fit_dictionary).")


def resolve_baseline(baseline: Dictionary | str | None, dictionary: Dictionary, *, seed: int = 0) -> Dictionary | None:
    """The baseline dictionary: as given, random directions for ``"random"``, or None."""
    if isinstance(baseline, Dictionary) and baseline.n_units != dictionary.n_units:
        raise ConceptvecError(f"the baseline dictionary has atoms of {baseline.n_units} units and the dictionary {dictionary.n_units}; "
                              f"fit the baseline on the same store (with --shuffle).")
    if baseline is None or isinstance(baseline, Dictionary):
        return baseline
    if isinstance(baseline, str) and baseline == "random":
        return random_directions(dictionary.n_atoms, dictionary.n_units, seed=seed, like=dictionary)
    raise ConceptvecError(f"baseline must be a Dictionary (fitted with shuffle=True), 'random' or None; got {baseline!r}.")


def baseline_name(baseline: Dictionary) -> str:
    return baseline.method + (" (shuffled)" if baseline.config.get("shuffle") else "")


def compare_with_dictionary(concept_set: ConceptSet, dictionary: Dictionary, *, baseline: Dictionary | str | None = None,
                            n_candidates: int = N_CANDIDATES, centre: bool = False, seed: int = 0) -> DictionaryComparison:
    """One neuron's concept vectors beside the atoms of ``dictionary`` (see the module).

    Parameters
    ----------
    concept_set : ConceptSet of a neuron or direction, with top_activations (top, n_units)
    dictionary : Dictionary of the same layer (n_units)
    baseline : a Dictionary fitted on shuffled activations, ``"random"`` (random directions, as many as the atoms), or None
    n_candidates : atoms listed per neuron, by code mass on its top examples (at least one per concept)
    centre : compare concept vectors minus the dictionary's bias b (the mean for dictionary learning, b_dec for an SAE,
        zero for NMF) with the atoms, which describe A - b; else the raw concept vectors (means of raw activations)
    """
    check_inputs(concept_set, dictionary, want=ConceptSet, fix="cv.disentangle(...) or scan[neuron]; a whole scan goes to "
                 "cv.compare_scan_with_dictionary")
    if dictionary.n_units != concept_set.n_units:
        raise ConceptvecError(f"the dictionary has {dictionary.n_units} units and the concept set {concept_set.n_units}; "
                              f"fit the dictionary on the store the concepts came from.")
    strength = _strength(dictionary, concept_set.top_activations)
    atoms, share = _candidates(concept_set, dictionary, strength, n_candidates)
    matched, cosine, member_share = _match(concept_set, dictionary, strength, atoms, centre=centre)
    unit = dictionary.atoms()[atoms, concept_set.neuron] if concept_set.neuron is not None else np.full(len(atoms), np.nan)
    strongest = np.where(strength.max(axis=1) > 0, strength.argmax(axis=1), -1)
    base = None
    baseline = resolve_baseline(baseline, dictionary, seed=seed)
    if baseline is not None:
        b_strength = _strength(baseline, concept_set.top_activations)
        b_atoms, _ = _candidates(concept_set, baseline, b_strength, n_candidates)
        _, b_cos, b_share = _match(concept_set, baseline, b_strength, b_atoms, centre=centre)
        base = {"kind": baseline_name(baseline),
                "cosine": b_cos.tolist(), "member_share": b_share.tolist()}
    return DictionaryComparison(
        neuron=concept_set.neuron, atoms=atoms.tolist(), code_share=share.tolist(), unit_weight=unit.tolist(),
        matched_atom=matched.tolist(), cosine=cosine.tolist(), member_share=member_share.tolist(),
        example_atom=strongest.tolist(), baseline=base,
        dictionary={"method": dictionary.method, "n_atoms": dictionary.n_atoms, "k": dictionary.k}, centred=centre)


@dataclass
class ScanComparison:
    """A whole scan beside a dictionary: one row per concept (``table``) and the layer's summary."""

    table: pa.Table
    summary: dict[str, Any]
    comparisons: dict[int, DictionaryComparison]

    def neuron_table(self, *, level: float = AGREE) -> pa.Table:
        """One row per neuron, the columns to read beside the scan's ``neurons.parquet``: neuron, concepts, whether every
        concept matches an atom at cosine >= ``level`` (and under the baseline), the lowest cosine, the matched atoms."""
        rows = sorted(self.comparisons.items())
        return pa.table({
            "neuron": pa.array([n for n, _ in rows], pa.int64()),
            "concepts": pa.array([c.n_concepts for _, c in rows], pa.int64()),
            "all_concepts_match_an_atom": pa.array([bool(c.agrees(level=level).all()) for _, c in rows], pa.bool_()),
            "baseline_all_match": pa.array([bool(np.all(np.asarray(c.baseline["cosine"]) >= level)) if c.baseline else None
                                            for _, c in rows], pa.bool_()),
            "min_cosine": pa.array([float(np.nanmin(c.cosine)) for _, c in rows], pa.float64()),
            "atoms": pa.array([c.matched_atom for _, c in rows], pa.list_(pa.int64())),
        })

    def save(self, path: str | os.PathLike, *, overwrite: bool = False, inputs: dict[str, Any] | None = None) -> Path:
        """``comparison.json`` (summary and per-neuron comparisons; ``inputs`` as :meth:`DictionaryComparison.save`),
        ``comparison.parquet`` (one row per concept) and ``comparison_neurons.parquet`` (one row per neuron)."""
        with atomic_directory(path, overwrite=overwrite, what=WHAT, marker=COMPARISON_FILE) as tmp:
            pq.write_table(self.table, tmp / TABLE_FILE)
            pq.write_table(self.neuron_table(level=self.summary["level"]), tmp / NEURON_TABLE_FILE)
            write_json(tmp / COMPARISON_FILE, {"format": "conceptvec.ScanDictionaryComparison/1", "summary": self.summary,
                                               "neurons": {str(n): c.to_dict() for n, c in self.comparisons.items()},
                                               **({"inputs": inputs} if inputs is not None else {})})
        return Path(path)


def compare_scan_with_dictionary(scan: Any, dictionary: Dictionary, *, baseline: Dictionary | str | None = None,
                                 level: float = AGREE, n_candidates: int = N_CANDIDATES, centre: bool = False, seed: int = 0,
                                 progress: bool = False) -> ScanComparison:
    """Every scanned neuron with concepts beside the dictionary (``scan``: a ScanResult that can read its activations).

    The summary counts split neurons (two or more concepts) whose concepts each match an atom at cosine >= ``level``,
    and the same against the baseline. ``centre``: as :func:`compare_with_dictionary`.
    """
    if not all(hasattr(scan, name) for name in ("neurons", "n_concepts", "concept_offsets")):  # a ScanResult (scan/ is above us)
        raise ConceptvecError(f"scan must be a ScanResult (cv.scan_layer(...) or cv.ScanResult.load(path)), got "
                              f"{type(scan).__name__}; one neuron's ConceptSet goes to cv.compare_with_dictionary.")
    check_inputs(None, dictionary, want=type(None), fix="")
    columns: dict[str, list[Any]] = {k: [] for k in ("neuron", "concept", "n_concepts", "atom", "cosine", "member_share",
                                                      "baseline_cosine", "baseline_member_share")}
    comparisons: dict[int, DictionaryComparison] = {}
    baseline = resolve_baseline(baseline, dictionary, seed=seed)
    neurons = [int(n) for n, c in zip(scan.neurons, scan.n_concepts) if c > 0]
    with progress_bar("neurons", disable=not progress, transient=True) as bar:
        task = bar.add_task("concepts beside atoms", total=len(neurons))
        for n in neurons:
            comp = compare_with_dictionary(scan[n], dictionary, baseline=baseline, n_candidates=n_candidates, centre=centre,
                                           seed=seed)
            comparisons[n] = comp
            for c in range(comp.n_concepts):
                columns["neuron"].append(n)
                columns["concept"].append(c)
                columns["n_concepts"].append(comp.n_concepts)
                columns["atom"].append(comp.matched_atom[c])
                columns["cosine"].append(comp.cosine[c])
                columns["member_share"].append(comp.member_share[c])
                columns["baseline_cosine"].append(comp.baseline["cosine"][c] if comp.baseline else float("nan"))
                columns["baseline_member_share"].append(comp.baseline["member_share"][c] if comp.baseline else float("nan"))
            bar.advance(task)
    ints = {"neuron", "concept", "n_concepts", "atom"}
    table = pa.table({k: pa.array(v, pa.int64() if k in ints else pa.float64()) for k, v in columns.items()})
    split = [c for c in comparisons.values() if c.n_concepts >= 2]

    def all_match(values: list[list[float]]) -> float:
        return float(np.mean([np.all(np.asarray(v) >= level) for v in values])) if values else float("nan")

    summary = {
        "level": level, "centred": centre, "neurons": len(comparisons), "split_neurons": len(split),
        "split_all_concepts_match": all_match([c.cosine for c in split]),
        "baseline_split_all_concepts_match": all_match([c.baseline["cosine"] for c in split if c.baseline]) if baseline is not None else None,
        "concepts_match": float(np.mean(np.asarray(columns["cosine"]) >= level)) if columns["cosine"] else float("nan"),
        "baseline": None if baseline is None else baseline_name(baseline),
        "dictionary": {"method": dictionary.method, "n_atoms": dictionary.n_atoms, "k": dictionary.k, "quality": dictionary.quality},
    }
    return ScanComparison(table=table, summary=summary, comparisons=comparisons)
