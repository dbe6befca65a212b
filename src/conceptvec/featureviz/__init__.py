"""Feature visualisation of neurons and concept directions (the paper's Fig. 3).

An input image is optimised so that a layer's activation points along a direction. Written after
Lucent (``lucent/optvis``), which the paper used, and checked against it in
``benchmarks/bench_featureviz.py``:

- the image is parameterised in Fourier space, frequencies scaled by ``1 / f`` so that Adam
  does not favour high frequencies, with Lucid's decorrelated colour basis and a sigmoid to
  [0, 1] (Lucent ``param.image(..., fft=True, decorrelate=True)``);
- every step sees a randomly transformed image: pad, jitter, random scale, small rotation,
  jitter again (Lucent ``transform.standard_transforms``);
- Adam with learning rate 0.05, 512 steps by default.

What differs, and why:

- the four random geometric transforms are composed into one affine warp per image, so each
  item of a batch draws its own transform from its own seeded generator (Lucent applies one
  draw to the whole batch) and the batch keeps one size;
- the forward pass stops at the layer, the model's parameters stop requiring gradients for the
  duration (Lucent computes every weight's gradient at every step), and the only hook is removed
  when done;
- the optimisation runs on a private eval-mode copy of the model (the caller's model is only read):
  batch norm folded into the preceding convolution where a torch.fx trace shows that it normalises
  that convolution's output alone, and on the CPU 1x1 convolutions run on oneDNN in both directions
  and weights are channels-last (see :func:`.fast.fast_copy`). Each step computes what the plain model
  computes up to float rounding; over hundreds of Adam steps those rounding differences grow
  (Adam's normalised update amplifies them where a gradient is near zero), as between a batch and
  separate runs, so images are alike but not bit-identical to the plain model's;
- the model's own input normalisation is applied inside (Lucent assumes ImageNet statistics).

Modules: ``param`` (the Fourier image), ``transforms`` (the random warp), ``objectives`` (directions
and what is maximised along them), ``fast`` (the private fast copy of the model), ``render`` (the
optimisation and its result), ``run`` (a run folder's neuron to images).

Notation: ``k`` directions, ``n_units`` units (channels) in the layer, images of ``size`` pixels.
Item ``i`` of a batch uses seed ``seed + i``, so ``directions[i:i+1]`` with ``seed=seed + i``
reproduces it alone.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .params import OBJECTIVES, TRANSFORMS, FeatureVizParams

# The rest needs torch: loaded when first used, so that the options above (and the command line) do not load it.
_LAZY = {
    "neuron_directions": ".objectives", "RESULT_FILE": ".render", "FeatureVisualisation": ".render",
    "feature_visualisation": ".render", "layer_output": ".render", "run_featureviz": ".run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from .objectives import neuron_directions
    from .render import RESULT_FILE, FeatureVisualisation, feature_visualisation, layer_output
    from .run import run_featureviz

__all__ = [
    "OBJECTIVES",
    "RESULT_FILE",
    "TRANSFORMS",
    "FeatureVisualisation",
    "FeatureVizParams",
    "feature_visualisation",
    "layer_output",
    "neuron_directions",
    "run_featureviz",
]
