"""conceptvec: disentangle polysemantic neurons into concept vectors.

Implements O'Mahony, Andrearczyk, Müller, Graziani, "Disentangling Neuron Representations with Concept
Vectors" (CVPR 2023 workshops). One public namespace: ``import conceptvec as cv`` and every name a user needs
is ``cv.<name>``; the folders are laid out by the data flow (``docs/architecture.md``): ``sources``,
``models``, ``extraction`` (torch), ``storage`` (stores, ConceptSets, run folders), ``core`` (the method on
arrays), ``scan`` (whole layers), ``engines``, ``causal`` and ``featureviz`` (torch), ``report``, ``study``,
``demo``, ``cli``. ``import conceptvec`` does not load torch: the names that need it (``load_model``,
``intervene``, ``causal_effects``, ``feature_visualisation``, ``FeatureVisualisation``) and the report's
``write_report`` (matplotlib, Jinja2) are imported on first use, and ``dir()``, ``help()`` and type checkers see them all the same.
"""

from __future__ import annotations

from importlib import import_module
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from .scan.disentangle import disentangle
from .scan.evidence import concept_evidence
from .core.power import detectable_separation, recommended_top
from .core.metrics import (concept_counts, cosine_similarity, distance_matrix, intra_inter_distances, layer_mean,
                           maximally_projecting, member_cosines, most_similar, project, top_k_desc, unit_vectors,
                           unsplit_direction)
from .core.layernull import LayerNull, layer_null
from .core.params import Params
from .core.reference import AUTHORS_REMOVED, authors_procedure
from .core.stability import concept_stability
from .core.sweep import threshold_sweep
from .core.thresholds import layer_thresholds, live_units
from .dictionary.compare import DictionaryComparison, ScanComparison, compare_scan_with_dictionary, compare_with_dictionary
from .dictionary.config import DictionaryConfig
from .dictionary.fit import fit_dictionary
from .dictionary.model import Dictionary
from .engines.registry import ENGINES, register_engine
from .errors import ConceptvecError, ConceptvecWarning, StoreError, ThresholdScaleWarning
from .extraction.config import ExtractConfig
from .extraction.pipeline import extract
from .featureviz.params import FeatureVizParams
from .scan import ScanResult, scan_layer
from .scan.shared import SharedConcepts, shared_concepts
from .report.atlas import write_atlas
from .storage.causal_effects import CausalEffects
from .storage.conceptset import ConceptSet
from .storage.rundir import RunDir
from .storage.store import ActivationStore
from .study import Study, StudyConfig, StudyScores, fleiss_kappa, make_study, read_labels, score_study, wilson_interval

if TYPE_CHECKING:  # what type checkers see of the names imported on first use (below)
    from .causal.effects import causal_effects
    from .causal.interventions import intervene
    from .featureviz import FeatureVisualisation, feature_visualisation
    from .models.attribution import LayerAttribution
    from .report.html import write_report
    from .models.layers import LoadedModel
    from .models.load import load_model

try:
    __version__ = _metadata.version("conceptvec")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

# Names that load torch, by the module that defines them: imported on first access (PEP 562).
_ON_FIRST_USE = {
    "causal_effects": "conceptvec.causal.effects",
    "intervene": "conceptvec.causal.interventions",
    "feature_visualisation": "conceptvec.featureviz",
    "FeatureVisualisation": "conceptvec.featureviz",
    "write_report": "conceptvec.report.html",
    "LayerAttribution": "conceptvec.models.attribution",
    "LoadedModel": "conceptvec.models.layers",
    "load_model": "conceptvec.models.load",
}
# Modules offered whole: the figures draw with matplotlib, imported when first used.
_MODULES = {"figures": "conceptvec.report.figures"}


def __getattr__(name: str) -> Any:
    if name in _ON_FIRST_USE:
        value = getattr(import_module(_ON_FIRST_USE[name]), name)
        globals()[name] = value
        return value
    if name in _MODULES:
        module = import_module(_MODULES[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'conceptvec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ON_FIRST_USE) | set(_MODULES))


__all__ = [
    "LayerNull",
    "AUTHORS_REMOVED",
    "ActivationStore",
    "CausalEffects",
    "ConceptSet",
    "ConceptvecError",
    "ConceptvecWarning",
    "Dictionary",
    "DictionaryComparison",
    "DictionaryConfig",
    "ENGINES",
    "ExtractConfig",
    "FeatureVisualisation",
    "FeatureVizParams",
    "LayerAttribution",
    "LoadedModel",
    "Params",
    "RunDir",
    "ScanComparison",
    "ScanResult",
    "SharedConcepts",
    "StoreError",
    "Study",
    "StudyConfig",
    "StudyScores",
    "ThresholdScaleWarning",
    "authors_procedure",
    "causal_effects",
    "compare_scan_with_dictionary",
    "compare_with_dictionary",
    "concept_counts",
    "concept_evidence",
    "concept_stability",
    "cosine_similarity",
    "detectable_separation",
    "recommended_top",
    "layer_null",
    "disentangle",
    "distance_matrix",
    "extract",
    "feature_visualisation",
    "figures",
    "fit_dictionary",
    "fleiss_kappa",
    "intervene",
    "intra_inter_distances",
    "layer_mean",
    "layer_thresholds",
    "live_units",
    "load_model",
    "make_study",
    "maximally_projecting",
    "member_cosines",
    "most_similar",
    "project",
    "read_labels",
    "register_engine",
    "scan_layer",
    "score_study",
    "shared_concepts",
    "threshold_sweep",
    "top_k_desc",
    "unit_vectors",
    "unsplit_direction",
    "wilson_interval",
    "write_atlas",
    "write_report",
]
