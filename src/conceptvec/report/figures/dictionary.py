"""A neuron's concepts beside the dictionary atoms they are matched to, each with its top examples."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ...core.streaming import TopK, row_blocks
from ...dictionary.compare import DictionaryComparison
from ...dictionary.model import Dictionary
from ...storage.conceptset import ConceptSet
from ..examples import Examples
from .common import CELL, concept_colour, concept_name
from .panels import canvas, panel

ATOM_COLOUR = "#555555"


def atom_top_examples(dictionary: Dictionary, acts: Any, atoms: list[int], n: int = 6) -> dict[int, list[int]]:
    """Per atom, the ``n`` examples of A (n_examples, n_units) that drive it most, in one pass over A.

    An SAE's atom ranks examples by its encoder's pre-activation (A - b) @ W_enc[:, j] + b_enc[j] (the TopK code of
    an example where it is active); a dictionary without encoder ranks them by projection on the unit atom.
    """
    if not atoms:
        return {}
    if dictionary.encoder is not None:
        w = dictionary.encoder[:, atoms].astype(np.float64)
        b = dictionary.encoder_bias[atoms].astype(np.float64) if dictionary.encoder_bias is not None else np.zeros(len(atoms))
    else:
        w, b = dictionary.atoms()[atoms].T, np.zeros(len(atoms))
    top = TopK(len(atoms), n)
    for start, block in row_blocks(acts):
        top.update((block - dictionary.bias) @ w + b, start)
    rows, _ = top.result()
    return {a: [int(r) for r in rows[i] if r >= 0] for i, a in enumerate(atoms)}


def concepts_beside_atoms(cs: ConceptSet, comp: DictionaryComparison, atom_examples: dict[int, list[int]], examples: Examples,
                          n: int = 5) -> Figure:
    """One row per concept: its first ``n`` members (framed in its colour), then its matched atom's top ``n`` examples."""
    rows = max(1, comp.n_concepts)
    ncols = 2 * n + 1
    fig = Figure(figsize=(CELL * ncols, CELL * 1.35 * rows + 0.4))
    ax, top = canvas(fig), CELL * 1.35 * rows + 0.05  # the suptitle has the top 0.35 in

    def cell(c: int, k: int) -> tuple[float, float, float, float]:
        return (k * CELL, top - (c + 1) * CELL * 1.35, CELL, CELL * 1.35)

    for c in range(comp.n_concepts):
        members = cs.members(c)[:n]
        for k, index in enumerate(members):
            title = f"{concept_name(c)} #{k + 1}" + (f"\ncos {comp.cosine[c]:.2f}" if k == 0 else "")
            panel(ax, examples, int(index), title, cell(c, k), concept_colour(c))
        atom = comp.matched_atom[c]
        for k, index in enumerate(atom_examples.get(atom, [])[:n]):
            title = f"atom {atom} #{k + 1}" + (f"\n{comp.member_share[c]:.0%} of members" if k == 0 else "")
            panel(ax, examples, index, title, cell(c, n + 1 + k), ATOM_COLOUR)
    fig.suptitle("Each concept (left, its first members) beside its matched dictionary atom (right, the atom's top examples)",
                 fontsize=9)
    return fig
