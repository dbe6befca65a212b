"""The method's parameters, with the paper's defaults (Inception V3 ``Mixed_7b``, ImageNet)."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from ..errors import ConceptvecError, ConceptvecWarning
from .options import at_least, check_fields, documented, one_of, option, optional, whole_number
from .outliers import outlier_mask


AUTO = "auto"
REPRESENTATIONS = ("activations", "attribution", "excitation", "contributions")
NULLS = ("gaussian", "layer")
UNSTABLE_BELOW = 0.5  # a concept back in fewer than this share of the stability runs is flagged unstable


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == AUTO


def threshold(name: str, value: Any) -> float | str:
    """The check of a threshold: 'auto', or a finite number > 0 (a bool or the text "15" is a slip, not a threshold)."""
    if is_auto(value):
        return AUTO
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConceptvecError(f"{name} must be a number or 'auto', got {value!r}.")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ConceptvecError(
            f"{name} must be a finite number > 0, got {value!r}. "
            f"The paper uses 15 for Inception V3 Mixed_7b; other layers need their own scale, or 'auto'."
        )
    return number


def probability(name: str, value: Any) -> float:
    """The check of a level: a number strictly between 0 and 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 < value < 1:
        usual = {"significance": "the default is 0.01", "fdr": "0.05 is usual", "evidence_fdr": "the default is 0.05"}.get(name, "e.g. 0.05")
        raise ConceptvecError(f"{name} must be a number between 0 and 1 (exclusive), got {value!r}; {usual}.")
    return float(value)


SIGNIFICANCE_DEFAULT = 0.01
EVIDENCE_FDR_DEFAULT = 0.05


@documented
@dataclass(frozen=True)
class Params:
    """Parameters of the paper's method; every output records them. Each field is declared once
    (``core.options.option``): every command of the method takes the same options with the same defaults."""

    top: int = option(100, "N, the top activating examples clustered (paper: 100).", check=at_least(2))
    distance_threshold: float | str = option(
        15.0, "d_max of the ward clustering (paper: 15 for Inception V3 Mixed_7b), or 'auto': a significance test, "
        "the same on every layer.", check=threshold, kind="threshold",
        doc="d_max is the ward linkage height at or above which clusters are not merged; it sets the number of "
        "clusters C and is on the scale of one layer. ``'auto'`` decides C by a significance test on unit-length "
        "examples instead (``core.auto``).")
    outlier_threshold: float | str | None = option(
        None, "Squared distance to the k-means centroid at which an example is an outlier, or 'auto' (beyond its "
        "cluster's far-out fence).", check=threshold, kind="threshold",
        show_default="15, or auto with --distance-threshold auto",
        doc="The distance is *squared* euclidean, as in the paper's code (``>=`` this is an outlier); ``'auto'``: "
        "Q3 + 3 IQR of the cluster's squared distances. Left out: 15 with a number for distance_threshold, "
        "``'auto'`` with ``'auto'``.")
    min_cluster_size: int = option(5, "Clusters with fewer remaining members are removed.", check=at_least(1))
    n_init: int = option(5, "k-means restarts (scikit-learn's n_init; the paper's code: 5).", check=lambda name, value: whole_number(
        name, value, 1, 1000, why="each restart is one more k-means per neuron; the paper's code uses 5"))
    max_iter: int = option(1000, "k-means iterations at most (the paper's code: 1000).", check=lambda name, value: whole_number(
        name, value, 1, 10**6, why="k-means on 100 examples converges in tens of iterations"))
    seed: int = option(0, "Random seed of k-means (and of auto's null samples), recorded with the output.", check=lambda name, value:
                       whole_number(name, value, 0, 2**32 - 1, why="scikit-learn's k-means takes 32-bit seeds"))
    significance: float = option(
        SIGNIFICANCE_DEFAULT, "With --distance-threshold auto: keep a split into two concepts when one concept would show it with "
        "probability below this.", check=probability,
        doc="Lower asks for more clearly separated concepts. Not used with a fixed threshold.")
    fdr: float | None = option(
        None, "With --distance-threshold auto, in a scan: keep a neuron's first split only when it is a discovery of "
        "Benjamini-Hochberg at this false discovery rate over the scanned neurons (e.g. 0.05).",
        check=optional(probability), type=float,
        doc="A significance level per split is not an error rate over a layer: 2,048 single-concept neurons at 0.01 "
        "give about 20 false splits. With ``fdr`` the scan's first splits are a BH discovery set (``core.fdr``); it "
        "only withdraws splits (a withdrawn neuron keeps one concept), and the scan reports the expected number of "
        "false splits. One direction (``disentangle``) is a layer of one: its first split needs p <= fdr.")
    evidence_fdr: float = option(
        EVIDENCE_FDR_DEFAULT, "The evidence's split check: a split is supported when its first-split p-value, adjusted over "
        "the scan's first splits (Benjamini-Hochberg), is below this false discovery rate.", check=probability,
        doc="Only the verdicts (``cv.concept_evidence``, a scan's ``evidence``) use it; no split is withdrawn (``fdr`` "
        "does that). One direction is a layer of one: its p-value itself. 0.05 was chosen on layers with class labels "
        "(``benchmarks/bench_evidence.py``, ``docs/thresholds.md``): the splits a stricter 0.01 leaves unsupported "
        "separate the labels as often as the others.")

    representation: str = option(
        "activations", "What the top examples are clustered by: activations (the paper's: the layer's pooled activations), "
        "attribution (gradient x input at the layer below for the direction: why it fires; needs the model) or "
        "excitation (the attribution's positive part on its 5 leading principal components) or contributions (each unit's "
        "term x_k * d_k of a direction's projection; store-only; a neuron falls back to its activations).",
        check=one_of(REPRESENTATIONS),
        doc="With ``attribution`` or ``excitation`` (``core.represent``), ``cv.disentangle`` takes ``attribution=cv.LayerAttribution(model, layer=..., below=..., "
        "inputs=...)`` and records it; the concept vectors stay their members' mean activations of the layer. "
        "``docs/thresholds.md`` has the study (``benchmarks/bench_real.py``).")

    null: str = option(
        "gaussian", "With --distance-threshold auto: what the first split is tested against: gaussian (a unimodal Gaussian "
        "with the top examples' own covariance) or layer (the first splits of 100 random directions of the same layer).",
        check=one_of(NULLS),
        doc="``'layer'`` (``core.layernull``): a direction splits only when its top examples are more multimodal than a "
        "random direction's (Gaussian in the layer's standardised units, the same N and representation), so random "
        "directions split at about ``significance``; deeper splits keep the Gaussian test. The null is drawn once per "
        "layer (``cv.layer_null``; a scan draws it once). ``docs/thresholds.md`` has the study.")

    def __post_init__(self) -> None:
        if self.outlier_threshold is None:
            object.__setattr__(self, "outlier_threshold", self.outlier_rule)
        check_fields(self)
        if self.auto_distance and not self.auto_outliers:
            raise ConceptvecError(
                f"outlier_threshold={self.outlier_threshold!r} with distance_threshold='auto': auto clusters unit-length "
                f"examples, where a fixed squared distance has no meaning; use outlier_threshold='auto' (or leave it out)."
            )
        if not self.auto_distance and self.significance != SIGNIFICANCE_DEFAULT:
            warnings.warn(f"significance {self.significance:g} is not used with a fixed distance_threshold "
                          f"({self.distance_threshold:g}); it sets the test of distance_threshold='auto' "
                          f"(--distance-threshold auto). Leave it out, or use auto.", ConceptvecWarning, stacklevel=3)
        if not self.auto_distance and self.evidence_fdr != EVIDENCE_FDR_DEFAULT:
            warnings.warn(f"evidence_fdr {self.evidence_fdr:g} is not used with a fixed distance_threshold "
                          f"({self.distance_threshold:g}): it is the level of the evidence's split check, and only auto's "
                          f"test gives a split a p-value (--distance-threshold auto). Leave it out, or use auto.",
                          ConceptvecWarning, stacklevel=3)
        if self.fdr is not None and not self.auto_distance:
            raise ConceptvecError(
                f"fdr={self.fdr!r} needs distance_threshold='auto' (--distance-threshold auto): only auto's test gives "
                f"each split a p-value to control; leave fdr out with a fixed threshold."
            )
        if self.null != "gaussian" and not self.auto_distance:
            raise ConceptvecError(
                f"null={self.null!r} needs distance_threshold='auto' (--distance-threshold auto): a fixed threshold has no "
                f"test; leave null out with a fixed threshold."
            )
        if self.min_cluster_size > self.top:
            raise ConceptvecError(
                f"min_cluster_size ({self.min_cluster_size}) is larger than top ({self.top}): no cluster of the top "
                f"examples could ever be kept; use min_cluster_size <= top (the paper: 5 of 100)."
            )

    @property
    def auto_distance(self) -> bool:
        """Whether C is decided by the significance test (``distance_threshold="auto"``)."""
        return is_auto(self.distance_threshold)

    @property
    def decision_level(self) -> float:
        """The level auto compares a neuron's first split with: ``fdr`` when set (on the p-value adjusted over the
        scan), else ``significance``."""
        return self.fdr if self.fdr is not None else self.significance

    @property
    def auto_outliers(self) -> bool:
        return is_auto(self.outlier_threshold)

    @property
    def fixed_distance(self) -> float:
        """``distance_threshold`` as a number: the merge height of a fixed threshold (an error under ``'auto'``)."""
        if isinstance(self.distance_threshold, str):
            raise ConceptvecError("distance_threshold is 'auto', which decides C by a significance test, not at a merge "
                                  "height; give a number (the paper: 15) where a fixed threshold is needed.")
        return self.distance_threshold

    @property
    def outlier_rule(self) -> float | str:
        """``outlier_threshold`` resolved: a squared distance or ``'auto'``; left out, ``'auto'`` with
        ``distance_threshold='auto'`` and 15 otherwise."""
        if self.outlier_threshold is None:
            return AUTO if is_auto(self.distance_threshold) else 15.0
        return self.outlier_threshold

    def outliers(self, kmeans_labels: np.ndarray, sq_distances: np.ndarray) -> np.ndarray:
        """Mask of the examples the outlier rule removes; arrays of shape (N,) or (m, N), one neuron a row."""
        sq = np.asarray(sq_distances, dtype=np.float64)
        if not self.auto_outliers or sq.ndim == 1:
            return outlier_mask(kmeans_labels, sq, self.outlier_rule)
        rows = [outlier_mask(lab, row, AUTO) for lab, row in zip(np.asarray(kmeans_labels), sq)]
        return np.stack(rows) if rows else sq.astype(bool)

    def describe(self) -> str:
        """The thresholds in words, for messages and pages."""
        if self.auto_distance:
            fdr = f", first splits at FDR {self.fdr:g} (Benjamini-Hochberg)" if self.fdr is not None else ""
            null = ", first split against the layer's random directions" if self.null == "layer" else ""
            return (f"distance_threshold auto (significance {self.significance:g}{null}{fdr}), "
                    f"outlier_threshold {self.outlier_threshold}")
        outlier = "auto" if self.auto_outliers else f"{self.outlier_threshold:g}"
        return f"distance_threshold {self.distance_threshold:g}, outlier_threshold {outlier}"

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

