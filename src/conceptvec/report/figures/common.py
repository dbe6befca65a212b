"""What every figure shares: concept colours and names, the activation-matrix check (example panels: ``panels``)."""

from __future__ import annotations

from typing import Any

from ...errors import ConceptvecError
from ...storage.conceptset import ConceptSet

REMOVED_COLOUR = "#9a9a9a"
NEURON_COLOUR = "#444444"
CELL = 1.25  # inches per example panel


def concept_colour(j: int) -> str:
    """Colour of concept j in every figure and in the report (-1, removed, is grey)."""
    if j < 0:
        return REMOVED_COLOUR
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
    return palette[j % len(palette)]


def concept_name(j: int) -> str:
    """Name of concept j in legends and tables ('removed' for -1)."""
    return "removed" if j < 0 else f"concept {j}"


def removal_reasons(cs: ConceptSet) -> list[str]:
    """Per top example: '' when kept, 'outlier' or 'small cluster' when removed (step 3)."""
    return ["" if lab >= 0 else ("outlier" if out else "small cluster") for lab, out in zip(cs.labels, cs.outliers)]


def check_acts(cs: ConceptSet, acts: Any) -> None:
    """Raise ConceptvecError unless ``acts`` is a matrix of shape (n_examples, cs.n_units)."""
    if getattr(acts, "ndim", None) != 2 or acts.shape[1] != cs.n_units:
        raise ConceptvecError(
            f"acts must be the (n_examples, {cs.n_units}) activation matrix the ConceptSet was made from, "
            f"got shape {getattr(acts, 'shape', None)}."
        )
