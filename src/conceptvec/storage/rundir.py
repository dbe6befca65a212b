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
from typing import Iterable

from ..errors import StoreError
from .conceptset import METADATA_FILE as CONCEPTSET_FILE
from .conceptset import ConceptSet, recorded_store
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
    FIGURES = "figures"
    MODEL = "model"
    CONTROL_MODEL = "control-model"

    def __init__(self, path: str | os.PathLike):
        object.__setattr__(self, "path", Path(path))

    @property
    def store(self) -> Path:
        return self.path / self.STORE

    @property
    def scan(self) -> Path:
        return self.path / self.SCAN

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
