"""Why a direction fires: gradient x input at the layer below, pooled like the layer (``Params(representation="attribution")``).

For a direction w of a layer whose pooled output is a(x) (n_units), an example's score is w . a(x). Its attribution
at the layer below, whose output h(x) has shape (channels, *positions), is the gradient of the score with respect
to h times h, summed over the positions: one value per channel of the layer below, shape (channels,). Two concepts
that excite a neuron through different inputs come apart in it even when the layer's own activations look alike.
For token models (inputs with an ``attention_mask``) the layer is pooled as the extraction pools it (the mean over
the document's tokens) and the attribution is summed over its tokens.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import ConceptvecError
from .hooks import first_tensor
from .layers import LoadedModel


class LayerAttribution:
    """``attribution(top_indices, direction) -> (N, channels of below)``, for ``cv.disentangle(..., attribution=...)``.

    Parameters
    ----------
    model : LoadedModel or nn.Module
    layer : str
        The layer of the store (its pooled output is what ``direction`` is a direction of).
    below : str
        A module whose output feeds ``layer`` (the layer below).
    inputs : callable
        ``inputs(example_indices)`` -> the model's input for those examples of the store: a tensor (images) or a
        dict of tensors with ``attention_mask`` (text).
    batch : int
        Examples per forward and backward pass.
    """

    def __init__(self, model: LoadedModel | nn.Module, *, layer: str, below: str, inputs: Callable[[np.ndarray], Any],
                 batch: int = 50):
        self.module = (model.module if isinstance(model, LoadedModel) else model).eval()
        self.name = model.name if isinstance(model, LoadedModel) else type(model).__name__
        names = dict(self.module.named_modules())
        for what, name in (("layer", layer), ("below", below)):
            if name not in names:
                raise ConceptvecError(f"{what}={name!r} is not a module of {self.name}; list them with "
                                      f"`conceptvec extract --model ... --layer list`.")
        self.layer, self.below, self.inputs, self.batch = names[layer], names[below], inputs, batch
        self.layer_name, self.below_name = layer, below

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "layer": self.layer_name, "below": self.below_name,
                "method": "gradient x input at the layer below, summed over positions"}

    def __call__(self, top_indices: np.ndarray, direction: np.ndarray) -> np.ndarray:
        w = torch.as_tensor(np.asarray(direction, dtype=np.float32))
        rows = [self._batch(np.asarray(top_indices[s:s + self.batch]), w) for s in range(0, len(top_indices), self.batch)]
        return np.concatenate(rows).astype(np.float64)

    def _batch(self, idx: np.ndarray, w: torch.Tensor) -> np.ndarray:
        got: dict[str, torch.Tensor] = {}

        def keep_below(_m, _i, out):
            h = first_tensor(out)
            h.retain_grad()
            got["below"] = h

        def keep_layer(_m, _i, out):
            got["layer"] = first_tensor(out)

        batch = self.inputs(idx)
        mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        handles = [self.below.register_forward_hook(keep_below), self.layer.register_forward_hook(keep_layer)]
        try:
            with torch.enable_grad():
                if isinstance(batch, dict):
                    self.module(**batch)
                else:
                    self.module(batch.requires_grad_(False))
                out = got["layer"]
                if mask is not None:  # (b, tokens, units): the mean over each document's tokens
                    m = mask.to(out.dtype).unsqueeze(-1)
                    pooled = (out * m).sum(dim=1) / m.sum(dim=1)
                else:  # (b, units, *positions): the average over positions
                    pooled = out.flatten(2).mean(dim=2) if out.dim() > 2 else out
                (pooled @ w).sum().backward()
        finally:
            for h in handles:
                h.remove()
        h = got["below"]
        if h.grad is None:  # backward never reached it: below is not on the way to layer
            raise ConceptvecError(f"below={self.below_name!r} does not feed layer={self.layer_name!r} in {self.name} "
                                  "(no gradient reaches it); give a module the layer is computed from as below=.")
        contribution = (h.grad * h).detach()
        if mask is not None:
            return (contribution * mask.to(h.dtype).unsqueeze(-1)).sum(dim=1).numpy()
        return contribution.flatten(2).sum(dim=2).numpy() if contribution.dim() > 2 else contribution.numpy()
