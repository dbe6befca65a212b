"""conceptvec: disentangle polysemantic neurons into concept vectors.

Implements O'Mahony, Andrearczyk, Müller, Graziani, "Disentangling Neuron Representations with
Concept Vectors" (CVPR 2023 workshops). The package is laid out by the data flow (see
``docs/architecture.md``): ``nn`` (models, data, hooks, extraction, feature visualisation; the only
part that imports torch), ``storage`` (stores, ConceptSets, run folders), ``core`` (the method on
arrays), ``scan`` (whole layers), ``report``, ``study``, ``demo``, ``cli``. ``import conceptvec``
does not load torch; ``extract`` and ``feature_visualisation`` import it when they run.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from .core.method import disentangle
from .core.params import Params
from .errors import ConceptvecError, StoreError
from .extraction.config import ExtractConfig
from .extraction.pipeline import extract
from .scan import ScanResult, scan_layer
from .storage.conceptset import ConceptSet
from .storage.rundir import RunDir
from .storage.store import ActivationStore

try:
    __version__ = _metadata.version("conceptvec")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"



def __getattr__(name: str):
    # Feature visualisation is torch through and through: resolved on first access (PEP 562), so that
    # ``import conceptvec`` stays torch-free while ``help(conceptvec.feature_visualisation)`` shows the function itself.
    if name in ("feature_visualisation", "FeatureVisualisation"):
        from . import featureviz

        return getattr(featureviz, name)
    if name == "intervene":
        from .causal.interventions import intervene

        return intervene
    if name == "causal_effects":
        from .causal.effects import causal_effects

        return causal_effects
    raise AttributeError(f"module 'conceptvec' has no attribute {name!r}")


__all__ = [
    "ActivationStore",
    "ConceptSet",
    "ConceptvecError",
    "ExtractConfig",
    "FeatureVisualisation",
    "Params",
    "RunDir",
    "ScanResult",
    "StoreError",
    "disentangle",
    "extract",
    "causal_effects",
    "feature_visualisation",
    "intervene",
    "scan_layer",
]
