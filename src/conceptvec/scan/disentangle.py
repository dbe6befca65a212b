"""The paper's method on one direction (a neuron, an SVD direction, any vector): ``disentangle``.

It finds the top examples of the direction in A (step 1) and runs steps 2-4 of ``core.steps`` on them,
returning a ConceptSet with its parameters and provenance.
"""

from __future__ import annotations


import numpy as np
from threadpoolctl import threadpool_limits

from ..core.arrays import as_matrix, check_directions, check_finite, check_neuron, read_rows
from ..core.metrics import project, unit_vectors
from ..core.params import Params, whole_number
from ..core.scale import SCALE_HINT, scale_problems, warn_scale
from ..core.stability import MAX_STABILITY, concept_stability
from ..core.steps import cluster_top
from ..core.streaming import top_k_desc
from ..errors import ConceptvecError
from ..storage.conceptset import ConceptSet
from ..storage.provenance import environment
from ..storage.store import ActivationStore

def disentangle(
    acts: np.ndarray | ActivationStore,
    *,
    neuron: int | None = None,
    direction: np.ndarray | None = None,
    params: Params | None = None,
    stability: int = 0,
) -> ConceptSet:
    """Split a neuron (or any direction) into concept vectors with the paper's method.

    Parameters
    ----------
    acts : array of shape (n_examples, n_units), or an ActivationStore
        Pooled activations of one layer.
    neuron : int, optional
        The unit whose top activating examples are clustered.
    direction : array of shape (n_units,), optional
        Instead of a neuron: examples are ranked by their projection on this vector.
    params : Params, optional
        Defaults to the paper's ``Params()``.
    stability : int
        Bootstrap runs of ``core.stability.concept_stability`` (seeded with ``params.seed``), recorded
        in ``cs.stability``; 0 (the default) skips it. The concepts themselves do not depend on it.
    """
    params = params or Params()
    if not isinstance(params, Params):
        raise ConceptvecError(f"params must be a conceptvec.Params, got {type(params).__name__}.")
    stability = whole_number("stability", stability, 0, MAX_STABILITY, why="each run clusters the neuron again; 20 to 100 runs "
                             "tell which concepts come back")  # before the work
    matrix, source = as_matrix(acts)
    n_examples, n_units = matrix.shape

    if (neuron is None) == (direction is None):
        raise ConceptvecError("give exactly one of neuron= (a unit index) or direction= (a vector of length n_units).")
    if neuron is not None:
        neuron = check_neuron(neuron, n_units)
        scores = np.asarray(matrix[:, neuron], dtype=np.float64)
        what = f"neuron {neuron}"
        unit_direction = None
    elif direction is not None:  # the check above leaves this the only other case
        if np.ndim(direction) != 1:
            raise ConceptvecError(f"direction must be a vector of length {n_units} (one value per unit), got shape {np.shape(direction)}.")
        unit_direction = unit_vectors(check_directions(direction, n_units))[0]
        scores = project(matrix, unit_direction)[:, 0]
        what = "the direction"

    if params.top > n_examples:
        raise ConceptvecError(
            f"top={params.top} is larger than the number of examples ({n_examples}); use top <= {n_examples} "
            f"(--top on the command line, Params(top=...) in Python)."
        )
    check_finite(scores, f"the activations along {what}")
    top_indices = top_k_desc(scores, params.top).astype(np.int64)
    x = read_rows(matrix, top_indices)
    check_finite(x, "the top examples' activations", rows=top_indices)

    # k-means on N rows gains nothing from threads and loses much when the cores are shared.
    with threadpool_limits(1):
        steps = cluster_top(x, params)
    cs = ConceptSet(
        top_indices=top_indices,
        top_scores=scores[top_indices],
        top_activations=x,
        **steps,
        params=params,
        neuron=neuron,
        direction=unit_direction,
        provenance={"activations": source, "n_examples": n_examples, "n_units": n_units, **environment()},
    )
    if stability:
        cs.stability = concept_stability(x, cs.labels, params=params, runs=stability, seed=params.seed).to_dict()
    if cs.is_live:
        warn_scale(scale_problems(cs.linkage, cs.centroid_sq_distances, cs.labels, params, what=what), hint=SCALE_HINT)
    return cs
