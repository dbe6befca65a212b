"""The method's parameters, with the paper's defaults (Inception V3 ``Mixed_7b``, ImageNet)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from ..errors import ConceptvecError


def whole_number(name: str, value: Any, low: int) -> int:
    """``value`` as an int when it is a whole number >= ``low``; otherwise an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) and not isinstance(value, np.integer):
        raise ConceptvecError(f"{name} must be a whole number, got {value!r}.")
    if value < low:
        raise ConceptvecError(f"{name} must be >= {low}, got {value}.")
    return int(value)


@dataclass(frozen=True)
class Params:
    """Parameters of the paper's method; every output records them.

    Parameters
    ----------
    top : int
        N, the number of top activating examples clustered (paper: 100).
    distance_threshold : float
        d_max, the ward linkage height at or above which clusters are not merged (paper: 15).
        It sets the number of clusters C; tune it to the layer's scale.
    outlier_threshold : float
        An example whose *squared* euclidean distance to its k-means centroid is ``>=`` this is an
        outlier (paper's code: 15).
    min_cluster_size : int
        Clusters with fewer remaining members are removed (paper: 5).
    n_init, max_iter, seed : int
        scikit-learn ``KMeans(n_init, max_iter, random_state=seed)`` (paper's code: 5, 1000, 0).
    """

    top: int = 100
    distance_threshold: float = 15.0
    outlier_threshold: float = 15.0
    min_cluster_size: int = 5
    n_init: int = 5
    max_iter: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (("top", 2), ("min_cluster_size", 1), ("n_init", 1), ("max_iter", 1), ("seed", 0)):
            object.__setattr__(self, name, whole_number(name, getattr(self, name), low))
        for name in ("distance_threshold", "outlier_threshold"):
            value = getattr(self, name)
            # A bool or the text "15" is a slip, not a threshold: only real numbers are taken.
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ConceptvecError(f"{name} must be a number, got {value!r}.")
            number = float(value)
            if not math.isfinite(number) or number <= 0:
                raise ConceptvecError(
                    f"{name} must be a finite number > 0, got {value!r}. "
                    f"The paper uses 15 for Inception V3 Mixed_7b; other layers need their own scale."
                )
            object.__setattr__(self, name, number)
        if self.min_cluster_size > self.top:
            raise ConceptvecError(
                f"min_cluster_size ({self.min_cluster_size}) is larger than top ({self.top}): no cluster of the top "
                f"examples could ever be kept; use min_cluster_size <= top (the paper: 5 of 100)."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Params":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConceptvecError(f"unknown parameter(s) {unknown}; valid ones are {sorted(known)}.")
        return cls(**values)

    def replace(self, **changes: Any) -> "Params":
        """A copy with some values changed (validated again)."""
        return replace(self, **changes)

