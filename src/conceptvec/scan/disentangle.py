"""The paper's method on one direction (a neuron, an SVD direction, any vector): ``disentangle``.

It finds the top examples of the direction in A (step 1) and runs steps 2-4 of ``core.steps`` on them,
returning a ConceptSet with its parameters and provenance.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from ..core.fdr import first_split_p
from ..core.layernull import LayerNull, layer_null
from ..core.arrays import as_matrix, check_directions, check_finite, check_neuron, read_rows
from ..core.metrics import project, unit_vectors
from ..core.options import whole_number
from ..core.params import Params
from ..core.represent import MIN_CONTRIBUTING, contributions, excitation
from ..core.scale import SCALE_HINT, scale_problems, warn_scale
from ..core.stability import MAX_STABILITY, concept_stability
from ..core.steps import cluster_top
from ..core.live import column_floors
from ..core.streaming import top_k_desc
from ..errors import ConceptvecError
from ..storage.conceptset import ConceptSet
from ..storage.provenance import environment
from ..storage.store import ActivationStore


class Representation(Protocol):
    """What ``Params(representation="attribution" | "excitation")`` starts from: rows for the top examples of a direction."""

    def __call__(self, top_indices: np.ndarray, direction: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict: ...


def represent(params: Params, attribution: Representation | None, top_indices: np.ndarray, neuron: int | None,
              direction: np.ndarray | None, n_units: int, x: np.ndarray) -> tuple[np.ndarray | None, dict]:
    """The rows steps 2-3 cluster (None: the activations themselves) and what to record about them."""
    if params.representation == "contributions":
        if attribution is not None:
            raise ConceptvecError("attribution= is given but params.representation is 'contributions', which needs only the "
                                  "store; leave attribution out, or use representation='attribution'.")
        if direction is None or np.count_nonzero(direction) < MIN_CONTRIBUTING:
            return None, {"representation": {"name": "contributions", "clustered": "activations",
                                             "why": "a neuron's contributions are its own activation alone"}}
        return contributions(x, direction), {"representation": {"name": "contributions", "clustered": "contributions"}}
    if params.representation == "activations":
        if attribution is not None:
            raise ConceptvecError("attribution= is given but params.representation is 'activations'; use "
                                  "Params(representation='attribution') (--representation attribution) to cluster by it.")
        return None, {}
    if attribution is None:
        raise ConceptvecError(f"Params(representation={params.representation!r}) needs the model: pass attribution=cv.LayerAttribution("
                              "model, layer=..., below=..., inputs=...) (the store alone has no gradients).")
    if direction is None:
        direction = np.zeros(n_units)
        direction[neuron] = 1.0
    features = np.asarray(attribution(top_indices, direction), dtype=np.float64)
    if features.ndim != 2 or len(features) != len(top_indices):
        raise ConceptvecError(f"the attribution gave shape {features.shape}; expected ({len(top_indices)}, d), a row per top example.")
    check_finite(features, "the top examples' attributions", rows=top_indices)
    if params.representation == "excitation":
        features = excitation(features)
    return features, {"representation": {"name": params.representation, **attribution.describe()}}


def null_for(params: Params, matrix: np.ndarray, attribution: Representation | None,
             given: LayerNull | None, clustered: str) -> LayerNull | None:
    """The layer null ``Params(null="layer")`` tests the first split against: ``given`` (checked) or drawn now, for
    the representation ``clustered`` (``params.representation``, or ``activations`` where contributions fall back)."""
    if params.null != "layer" or not params.auto_distance:
        if given is not None:
            raise ConceptvecError("layer_null= is given but params.null is not 'layer'; use Params(distance_threshold='auto', "
                                  "null='layer') (--null layer) to test against it.")
        return None
    if given is not None:
        given.check(top=params.top, min_cluster_size=params.min_cluster_size, representation=clustered)
        return given
    if clustered == "activations":
        return layer_null(matrix, params=params)
    if clustered == "contributions":
        return layer_null(matrix, params=params, representation="contributions",
                          rows=lambda idx, d: contributions(read_rows(matrix, idx), d))
    assert attribution is not None  # represent() refused a model-based representation without it

    def rows(idx: np.ndarray, direction: np.ndarray) -> np.ndarray:
        a = np.asarray(attribution(idx, direction), dtype=np.float64)
        return excitation(a) if params.representation == "excitation" else a

    return layer_null(matrix, params=params, rows=rows, representation=params.representation)


def disentangle(
    acts: np.ndarray | ActivationStore,
    *,
    neuron: int | None = None,
    direction: np.ndarray | None = None,
    params: Params | None = None,
    stability: int = 0,
    attribution: Representation | None = None,
    layer_null: LayerNull | None = None,
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
    attribution : callable, optional
        With ``Params(representation="attribution")``: ``attribution(top_indices, direction)`` gives the top examples'
        attributions at the layer below, shape (N, d) (``cv.LayerAttribution``, which needs the model); its
        ``describe()`` is recorded in the provenance.
    layer_null : LayerNull, optional
        With ``Params(null="layer")``: the layer's null (``cv.layer_null(acts, params=params)``), drawn once and reused
        for every direction of the layer; left out, it is drawn here (one pass over A and ``LAYER_NULL_DRAWS`` trees,
        with a model-based representation that many attributions).
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

    features, represented = represent(params, attribution, top_indices, neuron, unit_direction, n_units, x)
    null = null_for(params, matrix, attribution, layer_null,
                    clustered=represented.get("representation", {}).get("clustered", params.representation))
    if null is not None:
        represented = {**represented, "layer_null": null.describe()}
    # k-means on N rows gains nothing from threads and loses much when the cores are shared.
    with threadpool_limits(1):
        steps = cluster_top(x, params, features=features, layer_null=null)
        if params.fdr is not None and steps["n_agglomerative"] > 1 and first_split_p(steps["split_tests"]) > params.fdr:
            # One direction is a layer of one: Benjamini-Hochberg keeps its first split only at p <= fdr.
            tests = [{**steps["split_tests"][0], "split": False, "withdrawn_by_fdr": True}]
            steps = {**cluster_top(x, params, n_clusters=1, features=features), "split_tests": tests}
    cs = ConceptSet(
        top_indices=top_indices,
        top_scores=scores[top_indices],
        floor=float(column_floors(scores)[0]),  # where the unit rests over the whole layer (core.live)
        top_activations=x,
        **steps,
        params=params,
        neuron=neuron,
        direction=unit_direction,
        provenance={"activations": source, "n_examples": n_examples, "n_units": n_units, **represented, **environment()},
    )
    if stability:
        cs.stability = concept_stability(x if features is None else features, cs.labels, params=params, runs=stability,
                                         seed=params.seed, layer_null=null).to_dict()
    if cs.is_live:
        warn_scale(scale_problems(cs.linkage, cs.centroid_sq_distances, cs.labels, params, what=what), hint=SCALE_HINT)
    return cs
