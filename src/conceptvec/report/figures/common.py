"""What every figure shares: concept colours and names, example panels, the activation-matrix check."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ConceptvecError
from ...storage.conceptset import ConceptSet
from ..examples import Examples, TextExamples

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


def example_panel(ax: Any, examples: Examples, index: int, title: str, colour: str | None = None) -> None:
    """Draw example ``index`` into ``ax`` with a title, framed in ``colour`` (no frame when None).

    The Axes' gid becomes ``"example:<index>"`` so a reader of the figure can tell which example it shows.
    """
    examples.draw(ax, int(index))
    ax.set_gid(f"example:{int(index)}")
    if isinstance(examples, TextExamples):  # "corpus.jsonl:466 · threading" is wider than a panel: the label on its own line
        title = title.replace(" · ", "\n")
    ax.set_title(title, fontsize=6.5, pad=2)
    for side in ax.spines.values():
        side.set_visible(colour is not None)
        if colour is not None:
            side.set_edgecolor(colour)
            side.set_linewidth(2.5)


def hide_axes(axes: np.ndarray) -> None:
    """Turn off every Axes of a grid (any shape); the panels in use are turned on again as they are drawn."""
    for ax in np.ravel(axes):
        ax.set_axis_off()


def check_acts(cs: ConceptSet, acts: Any) -> None:
    """Raise ConceptvecError unless ``acts`` is a matrix of shape (n_examples, cs.n_units)."""
    if getattr(acts, "ndim", None) != 2 or acts.shape[1] != cs.n_units:
        raise ConceptvecError(
            f"acts must be the (n_examples, {cs.n_units}) activation matrix the ConceptSet was made from, "
            f"got shape {getattr(acts, 'shape', None)}."
        )
