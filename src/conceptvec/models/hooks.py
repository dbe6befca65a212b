"""Hooks on one layer of a model: capture its output (pooled), stop the forward there, and the device to run on.

Every hook lives only inside a context manager that removes it in ``finally`` (so do the activation-editing
hooks of ``causal.interventions``). Notation: a layer's output is (N, C, H, W) for a
convolutional map, (N, T, D) for tokens, or (N, D); pooling makes it (N, n_units).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..errors import ConceptvecError
from .pooling import POOLS
from .layers import find_layer, is_script, script_to_layer

def pool_output(out: torch.Tensor, pool: str = "avg") -> torch.Tensor:
    """(N, C, H, W) or (N, T, D) layer output to (N, units); (N, D) passes through."""
    if pool not in POOLS:
        raise ConceptvecError(f"unknown pooling {pool!r}; valid: {', '.join(POOLS)}.")
    if out.ndim == 2:
        return out
    if out.ndim == 4:
        if pool == "cls":
            raise ConceptvecError("pool='cls' needs a (N, tokens, dim) output; this layer gives (N, C, H, W) maps. Use 'avg' or 'max'.")
        return out.mean(dim=(2, 3)) if pool == "avg" else out.amax(dim=(2, 3))
    if out.ndim == 3:
        return {"avg": lambda t: t.mean(dim=1), "max": lambda t: t.amax(dim=1), "cls": lambda t: t[:, 0]}[pool](out)
    raise ConceptvecError(f"cannot pool a layer output of shape {tuple(out.shape)}; expected 2, 3 or 4 dimensions.")


class StopForward(Exception):
    """Raised by the hook once the layer's output is captured: nothing after the layer runs."""


def first_tensor(output: Any) -> torch.Tensor:
    """The hidden-state tensor of a block's output (a tensor, a tuple with it first, or a transformers ModelOutput)."""
    # Blocks return tensors, tuples (hidden state first) or transformers' ModelOutput.
    if hasattr(output, "to_tuple"):
        output = output.to_tuple()
    if isinstance(output, (tuple, list)):
        output = output[0]
    return output


@contextlib.contextmanager
def stop_at_layer(layer: nn.Module, keep: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
    """Hook ``layer`` for the block's duration: each forward stores ``keep(output)`` and stops there.

    The only hook of a run; it is removed however the block ends. Run the model with
    :func:`forward_to_layer`.
    """
    captured: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        captured["output"] = keep(first_tensor(output))
        raise StopForward

    handle = layer.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


@contextlib.contextmanager
def stop_at_layers(layers: list[nn.Module], keep: Callable[[torch.Tensor], torch.Tensor], *,
                   widths: list[int] | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """:func:`stop_at_layer` for several layers: once each has run (its first run counts), ``captured["output"]`` is
    their kept outputs joined on the last dimension (units) and the forward stops. ``widths`` gets each layer's
    number of units at the first forward."""
    parts: dict[int, torch.Tensor] = {}
    captured: dict[str, torch.Tensor] = {}

    def hook_for(k: int) -> Callable[..., None]:
        def hook(_module, _inputs, output):
            if k not in parts:
                parts[k] = keep(first_tensor(output))
            if len(parts) == len(layers):
                outs = [parts[j] for j in range(len(layers))]
                parts.clear()
                if widths is not None and not widths:
                    widths.extend(int(o.shape[-1]) for o in outs)
                captured["output"] = torch.cat(outs, dim=-1)
                raise StopForward
        return hook

    handles = [layer.register_forward_hook(hook_for(k)) for k, layer in enumerate(layers)]
    try:
        yield captured
    finally:
        parts.clear()
        for handle in handles:
            handle.remove()


def capture_layer(layer: nn.Module, pool: str = "avg", to_cpu: bool = True) -> contextlib.AbstractContextManager[dict[str, torch.Tensor]]:
    """Hook ``layer`` for the block's duration: each forward stores the pooled output and stops.

    The pooled vectors are float32 (pooled in float32 under autocast too); ``to_cpu=False`` leaves them
    on the model's device, so that a GPU loop does not wait for a copy after every batch.
    """

    def pooled(output: torch.Tensor) -> torch.Tensor:
        vectors = pool_output(output.detach().float(), pool)
        return vectors.cpu() if to_cpu else vectors

    return stop_at_layer(layer, pooled)


def forward_to_layer(model: nn.Module, x: torch.Tensor, captured: dict[str, torch.Tensor]) -> torch.Tensor:
    """Run ``model`` on ``x`` up to the layer hooked by :func:`stop_at_layer` and return what the hook kept."""
    try:
        model(x)
    except StopForward:
        pass
    if "output" not in captured:
        raise ConceptvecError("the forward pass finished without reaching the layer; is the layer used by forward()?")
    return captured.pop("output")


@contextlib.contextmanager
def layer_runner(module: nn.Module, layer: str, pool: str = "avg") -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """A function from a batch to the pooled output of ``layer`` (on the model's device), nothing after it computed.

    Hooks for ordinary modules; a cut graph for TorchScript, which runs no hooks.
    """
    if is_script(module):
        to_layer = script_to_layer(module, layer)
        yield lambda x: pool_output(first_tensor(to_layer(x)).float(), pool)
        return
    with capture_layer(find_layer(module, layer), pool, to_cpu=False) as captured:
        yield lambda x: forward_to_layer(module, x, captured)


@contextlib.contextmanager
def layers_runner(module: nn.Module, layers: list[str], pool: str = "avg", *,
                  widths: list[int] | None = None) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """A function from a batch to the pooled outputs of ``layers`` side by side, shape (N, sum of their units), each
    taken where the layer first runs, nothing after the last of them computed. ``widths`` is filled with each
    layer's number of units at the first batch (so the columns can be split again).
    """
    if is_script(module):
        raise ConceptvecError("several layers in one pass need forward hooks, which a TorchScript model does not run; "
                              "extract one layer at a time (one --layer per run).")
    captured: dict[str, torch.Tensor] = {}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_module, _inputs, output):
            if name not in captured:  # a module run twice (shared) counts where it first runs, as with one layer
                captured[name] = pool_output(first_tensor(output).detach().float(), pool)
            if len(captured) == len(layers):
                raise StopForward
        return hook

    handles = [find_layer(module, name).register_forward_hook(hook_for(name)) for name in layers]

    def run(x: torch.Tensor) -> torch.Tensor:
        captured.clear()
        try:
            module(x)
        except StopForward:
            pass
        missing = [name for name in layers if name not in captured]
        if missing:
            raise ConceptvecError(f"the forward pass finished without reaching {', '.join(missing)}; are they used by forward()?")
        outs = [captured[name] for name in layers]
        if widths is not None and not widths:
            widths.extend(int(o.shape[1]) for o in outs)
        return torch.cat(outs, dim=1)

    try:
        yield run
    finally:
        for handle in handles:
            handle.remove()


def resolve_device(device: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` as a torch device; an unavailable GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConceptvecError(f"device must be auto, cpu or cuda, got {device!r}.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConceptvecError("device 'cuda' asked for, but torch sees no CUDA GPU; use --device cpu.")
    return torch.device(device)
