"""Directions and the objectives that are maximised along them.

Notation: ``k`` directions, ``n_units`` units (channels) of the layer. A layer output is
(k, n_units) for a linear layer, (k, n_units, h, w) for a convolution, or (k, tokens, n_units) for a
sequence; item i of the batch is scored on direction i.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import ConceptvecError
from ..models.hooks import pool_output



def neuron_directions(n_units: int, neuron: int, concept_vectors: np.ndarray | None = None) -> np.ndarray:
    """The neuron's basis vector followed by its concept vectors: the rows of the paper's Fig. 3.

    Parameters
    ----------
    n_units : the layer's width
    neuron : the neuron, in 0..n_units - 1
    concept_vectors : array of shape (n_concepts, n_units), optional

    Returns
    -------
    array of shape (1 + n_concepts, n_units), float64
    """
    if not 0 <= neuron < n_units:
        raise ConceptvecError(f"neuron {neuron} is outside the layer's 0..{n_units - 1}.")
    basis = np.zeros((1, n_units))
    basis[0, neuron] = 1.0
    if concept_vectors is None or len(concept_vectors) == 0:
        return basis
    return np.concatenate([basis, np.asarray(concept_vectors, dtype=np.float64)])


def check_directions(directions: Any) -> np.ndarray:
    """``directions`` as a (k, n_units) float64 array (a (n_units,) vector is one row); finite, no zero rows."""
    try:  # a string or a ragged list: one line, not numpy's error
        d = np.array(directions, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConceptvecError(f"directions must be a (k, n_units) array of numbers, got {type(directions).__name__}.") from None
    if d.ndim == 1:
        d = d[None, :]
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] == 0:
        raise ConceptvecError(f"directions must be a (k, n_units) array (one row per direction), got shape {np.shape(directions)}.")
    if not np.all(np.isfinite(d)):
        raise ConceptvecError("directions hold NaN or infinite values.")
    with np.errstate(over="ignore"):
        norms = np.linalg.norm(d, axis=1)
    over = ~np.isfinite(norms)  # a row of 1e200s: its direction, at a length that does not overflow
    if over.any():
        d[over] /= np.abs(d[over]).max(axis=1, keepdims=True)
        norms = np.linalg.norm(d, axis=1)
    if np.any(norms == 0):
        raise ConceptvecError(f"direction(s) {np.flatnonzero(norms == 0).tolist()} are all zeros; a direction needs a length.")
    return d


def _unit_axis(output: torch.Tensor) -> int:
    if output.ndim in (2, 4):
        return 1
    if output.ndim == 3:
        return 2
    raise ConceptvecError(f"cannot visualise a layer output of shape {tuple(output.shape)}; expected 2, 3 or 4 dimensions.")


def check_width(output: torch.Tensor, unit: torch.Tensor, layer: str) -> None:
    """Refuse a layer ``output`` whose width is not that of the (k, n_units) directions ``unit``."""
    width = output.shape[_unit_axis(output)]
    if width != unit.shape[1]:
        raise ConceptvecError(
            f"directions have {unit.shape[1]} units but layer {layer!r} has {width} (output shape "
            f"{tuple(output.shape[1:])} per image); give directions of length {width}, or the layer they came from."
        )


def layer_objective(output: torch.Tensor, directions: torch.Tensor, kind: str) -> torch.Tensor:
    """The objective of each batch item on its own unit direction.

    Parameters
    ----------
    output : tensor of shape (k, n_units), (k, n_units, h, w) or (k, tokens, n_units)
    directions : tensor of shape (k, n_units), rows of unit length
    kind : a key of ``OBJECTIVES``

    Returns
    -------
    tensor of shape (k,), differentiable in ``output``
    """
    axis = _unit_axis(output)
    if kind == "projection":
        return (pool_output(output, "avg") * directions).sum(dim=1)
    shape = [1] * output.ndim
    shape[0], shape[axis] = directions.shape[0], directions.shape[1]
    cos = F.cosine_similarity(output, directions.reshape(shape), dim=axis, eps=1e-8)
    return cos.reshape(len(cos), -1).mean(dim=1)
