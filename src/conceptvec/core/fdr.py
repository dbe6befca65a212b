"""Error control over a layer: the neurons' first splits as a Benjamini-Hochberg discovery set (``Params.fdr``).

``auto`` tests each split at ``Params.significance``; over a layer of m single-concept neurons that gives about
``significance * m`` false splits. With ``fdr = q`` a scan keeps a neuron's first split only when it is also a
discovery of the Benjamini-Hochberg procedure at level q over the first-split p-values of the live neurons
scanned (Benjamini & Hochberg 1995; valid for independent or positively dependent tests). Among the kept
splits, the expected share of false ones is at most q, so the expected number of false splits is at most
about q times the number kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import false_discovery_control


def first_split_p(split_tests: list[dict[str, Any]] | None) -> float:
    """The p-value of the first split auto tested (NaN with a fixed threshold; 1 when no split could be tested)."""
    if split_tests is None:
        return float("nan")
    return float(split_tests[0]["p_value"]) if split_tests else 1.0


def bh_discoveries(p_values: np.ndarray, fdr: float) -> np.ndarray:
    """Mask of the Benjamini-Hochberg discoveries at level ``fdr`` among ``p_values`` (m,) (NaN: not tested)."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = adjusted_p(p)
    found: np.ndarray = np.isfinite(adjusted) & (np.nan_to_num(adjusted, nan=np.inf) <= fdr)
    return found


def adjusted_p(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values of ``p_values`` (m,) over the finite ones (NaN: not tested, stays NaN).

    A first split whose adjusted p-value is below q is a discovery at FDR q over the layer (:func:`bh_discoveries`).
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.isfinite(p)
    if tested.any():
        out[tested] = false_discovery_control(p[tested], method="bh")
    return out


def layer_error(p_values: np.ndarray, split: np.ndarray, *, significance: float, fdr: float | None) -> dict[str, Any]:
    """What a scan reports about false splits.

    Parameters
    ----------
    p_values : array of shape (m,)
        First-split p-values of the live neurons scanned.
    split : array of shape (m,), bool
        Whether each neuron's first split is kept (after the FDR rule when ``fdr`` is set).
    significance, fdr : the rule's levels.

    Returns
    -------
    dict with ``rule`` (in words), ``tested``, ``splits`` and ``expected_false_splits``: with ``fdr``, at most
    about fdr x splits; without, at most significance x tested (every tested neuron single-concept).
    """
    tested = int(np.count_nonzero(np.isfinite(p_values)))
    splits = int(np.count_nonzero(split))
    if fdr is not None:
        return {"rule": f"Benjamini-Hochberg FDR {fdr:g} over {tested} first splits", "level": fdr, "tested": tested,
                "splits": splits, "expected_false_splits": fdr * splits}
    return {"rule": f"significance {significance:g} per split, no correction over the layer", "level": significance,
            "tested": tested, "splits": splits, "expected_false_splits": significance * tested}
