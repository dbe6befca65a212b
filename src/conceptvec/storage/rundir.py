"""A run folder: where one layer's store, scan, ConceptSets, figures and feature visualisations live.

``RunDir`` is the only place that spells out a run folder's layout; every stage that reads or
writes one (demo, report, feature visualisation, study, command line) asks it for paths::

    RUN/
      store/                  ActivationStore (conceptvec extract --out RUN/store)
      scan/                   ScanResult (conceptvec scan RUN/store --out RUN/scan)
      neuron_<n>/             ConceptSet of neuron n (conceptvec disentangle ... --out RUN/neuron_<n>)
        featureviz/           feature visualisations of the neuron and its concepts
        causal/               causal effects of ablating its concepts (conceptvec causal RUN --neuron n)
      <name>/                 any other ConceptSet (a direction's), found by its conceptset.json
      report/                 the HTML report
      figures/, model/, control-model/, demo.json, control.json   written by `conceptvec demo`
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import ConceptvecError, StoreError
from .conceptset import METADATA_FILE as CONCEPTSET_FILE
from .conceptset import ConceptSet, recorded_store
from .store import METADATA_FILE as STORE_METADATA_FILE
from .store import ActivationStore

__all__ = ["RunDir", "recorded_store"]


@dataclass(frozen=True)
class RunDir:
    """The layout of a run folder at ``path`` (nothing is created until a stage writes there)."""

    path: Path

    STORE = "store"
    SCAN = "scan"
    REPORT = "report"
    FEATUREVIZ = "featureviz"
    CAUSAL = "causal"
    DICTIONARY = "dictionary"
    FIGURES = "figures"
    MODEL = "model"
    CONTROL_MODEL = "control-model"

    def __init__(self, path: str | os.PathLike[str]):
        object.__setattr__(self, "path", Path(path))

    @property
    def store(self) -> Path:
        return self.path / self.STORE

    @property
    def scan(self) -> Path:
        return self.path / self.SCAN

    @property
    def dictionary(self) -> Path:
        """The run's sparse dictionary of the layer (`conceptvec dictionary STORE --out RUN/dictionary`)."""
        return self.path / self.DICTIONARY

    @property
    def report(self) -> Path:
        return self.path / self.REPORT

    @property
    def figures(self) -> Path:
        return self.path / self.FIGURES

    @property
    def model(self) -> Path:
        return self.path / self.MODEL

    @property
    def control_model(self) -> Path:
        """The demo's 10-class control network, when trained here (`conceptvec demo --control --retrain`)."""
        return self.path / self.CONTROL_MODEL

    @staticmethod
    def neuron_name(neuron: int) -> str:
        """The folder (and report page) name of a neuron's ConceptSet."""
        return f"neuron_{int(neuron)}"

    def neuron(self, neuron: int) -> Path:
        """The folder of neuron ``neuron``'s ConceptSet."""
        return self.path / self.neuron_name(neuron)

    def featureviz(self, conceptset: str | int) -> Path:
        """The feature visualisation folder of a ConceptSet, given its folder name or its neuron."""
        name = self.neuron_name(conceptset) if isinstance(conceptset, int) else conceptset
        return self.path / name / self.FEATUREVIZ

    def causal(self, conceptset: str | int) -> Path:
        """The causal-effects folder of a ConceptSet, given its folder name or its neuron."""
        name = self.neuron_name(conceptset) if isinstance(conceptset, int) else conceptset
        return self.path / name / self.CAUSAL

    def conceptsets(self) -> dict[str, Path]:
        """Direct sub-folders holding a ConceptSet, by folder name, sorted."""
        if not self.path.is_dir():
            return {}
        return {p.name: p for p in sorted(self.path.iterdir()) if p.is_dir() and (p / CONCEPTSET_FILE).exists()}

    def open_store(self, recorded: Iterable[ConceptSet | str | None] = ()) -> ActivationStore:
        """The run's ActivationStore: ``store/``, else the first existing store that a set or scan recorded.

        ``recorded`` holds ConceptSets or store paths; a relative path is taken from the run folder.
        """
        if self.store.exists():
            return ActivationStore.open(self.store)
        for item in recorded:
            path = recorded_store(item) if isinstance(item, ConceptSet) else item
            if path:
                candidate = Path(path)
                if not candidate.is_absolute():
                    candidate = self.path / candidate
                if candidate.exists():
                    return ActivationStore.open(candidate)
        raise StoreError(
            f"no activation store for {self.path}: {self.store} does not exist and nothing in {self.path} names an "
            f"existing store. Extract one with `conceptvec extract ... --out {self.store}`."
        )

    def neuron_conceptset(self, neuron: int, *, python: str) -> tuple[ConceptSet, Path]:
        """The ConceptSet of neuron ``neuron`` of a run and its folder; a missing one, or a direction's, is refused
        (``python`` names what to use from Python instead)."""
        if isinstance(neuron, bool) or not isinstance(neuron, int) or neuron < 0:
            raise ConceptvecError(f"--neuron must be a unit index (a whole number >= 0), got {neuron!r}.")
        cs_dir = self.neuron(neuron)
        if not (cs_dir / CONCEPTSET_FILE).exists():
            raise ConceptvecError(f"no ConceptSet of neuron {neuron} in {self.path} ({cs_dir} is missing); make it with "
                                  f"`conceptvec disentangle {self.store} --neuron {neuron} --out {cs_dir}`.")
        cs = ConceptSet.load(cs_dir)
        if cs.neuron is None:
            raise ConceptvecError(f"{cs_dir} was started from a direction, not a neuron; use {python}.")
        return cs, cs_dir


    def model_source(self, cs: ConceptSet) -> dict[str, Any]:
        """The model spec, layer and load options that made a run's activations (its store, else the ConceptSet's provenance)."""
        if (self.store / STORE_METADATA_FILE).exists():
            meta = ActivationStore.open(self.store).metadata
        else:
            meta = (cs.provenance or {}).get("activations") or {}
        if not isinstance(meta.get("model"), dict) or "name" not in meta["model"] or not meta.get("layer"):
            raise ConceptvecError(f"cannot tell which model and layer made {self.path}: no store/ with metadata and no model in the "
                                  f"ConceptSet's provenance; load the model in Python and pass it to cv.feature_visualisation or cv.causal_effects.")
        model = dict(meta["model"])
        if str(model.get("weights") or "").startswith("none (random"):
            model["weights"] = "none"  # the store describes random weights in words; load_model takes "none"
        elif str(model["name"]).startswith("hf:"):
            model["weights"] = None  # an hf: folder brings its own weights (the store records the folder's path)
        return {"model": model, "layer": meta["layer"], "load": _load_options(meta)}


def _load_options(meta: dict[str, Any]) -> dict[str, Any]:
    """The key map and preprocessing overrides the store was extracted with, to load the same model again."""
    options: dict[str, Any] = {}
    key_map = meta["model"].get("key_map")
    if key_map is not None:
        if key_map != "order" and not Path(key_map).exists():
            raise ConceptvecError(
                f"the store was extracted with key map {key_map!r}, which cannot be read back from here; load the model as "
                "for extraction and pass it to cv.feature_visualisation or cv.causal_effects from Python."
            )
        options["key_map"] = key_map
    overrides = (meta.get("preprocessing") or {}).get("overrides") or {}
    options.update({k: tuple(overrides[k]) for k in ("mean", "std") if k in overrides})
    if "size" in overrides:
        options["size"] = int(overrides["size"])
    return options

