"""conceptvec: disentangle polysemantic neurons into concept vectors.

Implements O'Mahony, Andrearczyk, Müller, Graziani, "Disentangling Neuron Representations with
Concept Vectors" (CVPR 2023 workshops). The algorithm core (method, metrics, store) needs no torch;
``extract`` and the models import torch only when called.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from .conceptset import ConceptSet
from .errors import ConceptvecError, StoreError
from .method import disentangle
from .params import Params
from .scan import ScanResult, scan_layer
from .store import ActivationStore

try:
    __version__ = _metadata.version("conceptvec")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"


def extract(*args, **kwargs):
    """Pooled activations of a model layer over a dataset, written to an ActivationStore.

    See :func:`conceptvec.extraction.extract`; imported on first call so that ``import conceptvec``
    does not load torch.
    """
    from .extraction import extract as _extract

    return _extract(*args, **kwargs)


def feature_visualisation(*args, **kwargs):
    """Optimised images for a layer's directions: a neuron and its concept vectors (the paper's Fig. 3).

    See :func:`conceptvec.featureviz.feature_visualisation`; imported on first call so that
    ``import conceptvec`` does not load torch.
    """
    from .featureviz import feature_visualisation as _feature_visualisation

    return _feature_visualisation(*args, **kwargs)


def __getattr__(name: str):
    # Classes of the torch-using modules, resolved on first access (PEP 562) for the same reason.
    if name == "FeatureVisualisation":
        from .featureviz import FeatureVisualisation

        return FeatureVisualisation
    raise AttributeError(f"module 'conceptvec' has no attribute {name!r}")


__all__ = [
    "ActivationStore",
    "ConceptSet",
    "ConceptvecError",
    "FeatureVisualisation",
    "Params",
    "ScanResult",
    "StoreError",
    "disentangle",
    "extract",
    "feature_visualisation",
    "scan_layer",
]
