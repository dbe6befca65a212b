"""A run folder's neuron to images: the neuron and its concept vectors, written beside its ConceptSet.

Paths come from :class:`conceptvec.storage.rundir.RunDir`: the ConceptSet of neuron ``n`` is
``RUN/neuron_<n>/``, its images go to ``RUN/neuron_<n>/featureviz/``, and the model and layer are
read from ``RUN/store/`` (or the ConceptSet's provenance).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import ConceptvecError
from ...storage.atomic import refuse_existing
from ...storage.conceptset import METADATA_FILE as CONCEPTSET_FILE
from ...storage.conceptset import ConceptSet
from ...storage.rundir import RunDir
from ...storage.store import METADATA_FILE as STORE_METADATA_FILE
from ...storage.store import ActivationStore
from ..hooks import resolve_device
from ..models import load_model
from .objectives import neuron_directions
from .render import RESULT_FILE, FeatureVisualisation, feature_visualisation


def run_featureviz(run_dir: str | os.PathLike, *, neuron: int, steps: int = 512, size: int | None = None, seed: int = 0,
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
    cs, cs_dir = neuron_conceptset(run, neuron, python="cv.feature_visualisation with its vectors")
    source = model_and_layer(run, cs)
    out = run.featureviz(int(neuron))
    # before minutes of optimisation, not after
    refuse_existing(out, overwrite=overwrite, what="feature visualisation", marker=RESULT_FILE)
    dev = resolve_device(device)  # before loading the model: an unavailable GPU fails at once
    loaded = load_model(source["model"]["name"], source["model"].get("weights"), **source["load"])
    if size is None:
        size = int(loaded.input_shape[-1]) if loaded.input_shape else 224
    directions = neuron_directions(cs.n_units, cs.neuron, cs.concept_vectors)
    fv = feature_visualisation(loaded, source["layer"], directions, steps=steps, size=size, seed=seed, batch=True,
                               device=str(dev), progress=progress)
    names = ["neuron"] + [f"concept_{j}" for j in range(cs.n_concepts)]
    fv.save(out, names=names, overwrite=True, extra={"neuron": cs.neuron, "conceptset": str(cs_dir.resolve())})
    return fv, out


def neuron_conceptset(run: RunDir, neuron: int, *, python: str) -> tuple[ConceptSet, Path]:
    """The ConceptSet of neuron ``neuron`` of a run and its folder; a missing one, or a direction's, is refused
    (``python`` names what to use from Python instead)."""
    cs_dir = run.neuron(neuron)
    if not (cs_dir / CONCEPTSET_FILE).exists():
        raise ConceptvecError(f"no ConceptSet of neuron {neuron} in {run.path} ({cs_dir} is missing); make it with "
                              f"`conceptvec disentangle {run.store} --neuron {neuron} --out {cs_dir}`.")
    cs = ConceptSet.load(cs_dir)
    if cs.neuron is None:
        raise ConceptvecError(f"{cs_dir} was started from a direction, not a neuron; use {python}.")
    return cs, cs_dir


def model_and_layer(run: RunDir, cs: ConceptSet) -> dict[str, Any]:
    """The model spec, layer and load options that made a run's activations (its store, else the ConceptSet's provenance)."""
    if (run.store / STORE_METADATA_FILE).exists():
        meta = ActivationStore.open(run.store).metadata
    else:
        meta = (cs.provenance or {}).get("activations") or {}
    if not isinstance(meta.get("model"), dict) or "name" not in meta["model"] or not meta.get("layer"):
        raise ConceptvecError(f"cannot tell which model and layer made {run.path}: no store/ with metadata and no model in the "
                              f"ConceptSet's provenance; load the model in Python and pass it to cv.feature_visualisation or cv.causal_effects.")
    model = dict(meta["model"])
    if str(model.get("weights") or "").startswith("none (random"):
        model["weights"] = "none"  # the store describes random weights in words; load_model takes "none"
    return {"model": model, "layer": meta["layer"], "load": _load_options(meta)}


def _load_options(meta: dict[str, Any]) -> dict[str, Any]:
    """The key map and preprocessing overrides the store was extracted with, to load the same model again."""
    options: dict[str, Any] = {}
    key_map = meta["model"].get("key_map")
    if key_map is not None:
        if key_map != "order" and not Path(key_map).exists():
            raise ConceptvecError(
                f"the store was extracted with key map {key_map!r}, which cannot be read back from here; load the model as "
                "for extraction and pass it to cv.feature_visualisation or cv.causal_effects from Python."
            )
        options["key_map"] = key_map
    overrides = (meta.get("preprocessing") or {}).get("overrides") or {}
    options.update({k: tuple(overrides[k]) for k in ("mean", "std") if k in overrides})
    if "size" in overrides:
        options["size"] = int(overrides["size"])
    return options

