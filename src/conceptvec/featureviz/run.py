"""A run folder's neuron to images: the neuron and its concept vectors, written beside its ConceptSet.

Paths come from :class:`conceptvec.storage.rundir.RunDir`: the ConceptSet of neuron ``n`` is
``RUN/neuron_<n>/``, its images go to ``RUN/neuron_<n>/featureviz/``, and the model and layer are
read from ``RUN/store/`` (or the ConceptSet's provenance).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConceptvecError
from ..storage.atomic import refuse_existing
from ..storage.rundir import RunDir
from ..models.hooks import resolve_device
from ..models.load import load_model
from .objectives import neuron_directions
from .render import RESULT_FILE, FeatureVisualisation, feature_visualisation


def run_featureviz(run_dir: str | os.PathLike[str], *, neuron: int, steps: int = 512, size: int | None = None, seed: int = 0,
                   device: str = "auto", overwrite: bool = False, progress: bool = True) -> tuple[FeatureVisualisation, Path]:
    """Visualise neuron ``neuron`` of a run and its concept vectors in one batch; write ``neuron_<n>/featureviz/``.

    The model and layer are those of ``run_dir/store`` (or, without a store, of the ConceptSet's
    provenance). Writes ``neuron.png``, ``concept_<j>.png`` and ``featureviz.json``; after Ctrl-C
    the images so far, marked partial.

    Parameters
    ----------
    run_dir : the run folder (see :class:`~conceptvec.storage.rundir.RunDir`)
    neuron : the neuron whose ConceptSet ``run_dir/neuron_<n>`` is visualised
    steps, size, seed : Adam steps, image side in pixels (default the model's input size, else
        224), and the seed of the neuron's image (concept j: seed + 1 + j)
    device : ``auto`` (CUDA when available), ``cpu`` or ``cuda``
    overwrite : replace an existing ``featureviz/`` folder
    progress : show a progress bar

    Returns
    -------
    (FeatureVisualisation, Path)
        The images, (1 + n_concepts, size, size, 3), and the folder they were written to.
    """
    run = RunDir(run_dir)
    cs, cs_dir = run.neuron_conceptset(neuron, python="cv.feature_visualisation with its vectors")
    source = run.model_source(cs)
    out = run.featureviz(int(neuron))
    # before minutes of optimisation, not after
    refuse_existing(out, overwrite=overwrite, what="feature visualisation", marker=RESULT_FILE)
    dev = resolve_device(device)  # before loading the model: an unavailable GPU fails at once
    loaded = load_model(source["model"]["name"], source["model"].get("weights"), **source["load"])
    if size is None:
        size = int(loaded.input_shape[-1]) if loaded.input_shape else 224
    if cs.neuron is None:  # neuron_conceptset refuses a direction's set; this check tells the type checker
        raise ConceptvecError(f"{cs_dir} was started from a direction, not a neuron.")
    directions = neuron_directions(cs.n_units, cs.neuron, cs.concept_vectors)
    fv = feature_visualisation(loaded, source["layer"], directions, steps=steps, size=size, seed=seed, batch=True,
                               device=str(dev), progress=progress)
    names = ["neuron"] + [f"concept_{j}" for j in range(cs.n_concepts)]
    fv.save(out, names=names, overwrite=True, extra={"neuron": cs.neuron, "conceptset": str(cs_dir.resolve())})
    return fv, out
