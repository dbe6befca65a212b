"""Models and layers: resolve a model spec, find a layer by name, and the model's own preprocessing.

Specs: ``digits`` (the bundled CNN), ``torchvision:NAME``; or pass an ``nn.Module`` directly.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .errors import ConceptvecError

SPEC_KINDS = ("digits", "torchvision:NAME")


@dataclass
class LoadedModel:
    """A model ready for extraction: the module in eval mode, how to prepare its input, and what it is."""

    module: nn.Module
    name: str
    weights: str | None
    transform: Callable[[Any], torch.Tensor] | None
    input_shape: tuple[int, ...]
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "weights": self.weights}


def load_model(model: str | nn.Module, weights: str | None = None) -> LoadedModel:
    """Resolve ``model`` (a spec or an nn.Module) with ``weights``.

    For ``torchvision:NAME``, ``weights`` is a torchvision weights name (``DEFAULT``, ``IMAGENET1K_V1``),
    a local state-dict file (``.pt``/``.pth`` loaded with ``weights_only=True``, or ``.safetensors``),
    or ``none`` for random weights. For ``digits``, a safetensors file or directory; without it the
    CNN is trained (seeded) into the cache, or reused from there.
    """
    if isinstance(model, nn.Module):
        return LoadedModel(model.eval(), type(model).__name__, weights, None, (), {"note": "nn.Module given: inputs used as they are"})
    if not isinstance(model, str):
        raise ConceptvecError(f"model must be a spec string ({', '.join(SPEC_KINDS)}) or a torch nn.Module, got {type(model).__name__}.")
    if model == "digits":
        return _digits(weights)
    if model.startswith("torchvision:"):
        return _torchvision(model.split(":", 1)[1], weights)
    raise ConceptvecError(f"unknown model spec {model!r}; valid forms are {', '.join(SPEC_KINDS)}, or pass an nn.Module from Python.")


def _digits(weights: str | None) -> LoadedModel:
    from . import digits

    if weights is None:
        module, directory, _ = digits.cached_digits_cnn()
        weights = str(directory / digits.WEIGHTS_FILE)
    else:
        module = digits.load_digits_cnn(weights)
    return LoadedModel(module, "digits", str(weights), None, (1, digits.INPUT_SIZE, digits.INPUT_SIZE), dict(digits.PREPROCESSING))


def _torchvision(name: str, weights: str | None) -> LoadedModel:
    import torchvision
    from torchvision.models import get_model, get_model_weights, list_models

    available = list_models(module=torchvision.models)
    if name not in available:
        near = difflib.get_close_matches(name, available, n=5, cutoff=0.0)
        raise ConceptvecError(f"torchvision has no model {name!r}; nearest: {', '.join(near)}. All: torchvision.models.list_models().")
    weight_enum = get_model_weights(name)
    spec = "none" if weights is None else weights
    if spec.lower() == "none":
        torch.manual_seed(0)  # random weights, but the same ones every run
        module = get_model(name, weights=None)
        meta_weights = weight_enum.DEFAULT
        loaded = "none (random, torch seed 0)"
    elif os.path.exists(spec):
        module = get_model(name, weights=None)
        module.load_state_dict(_read_state_dict(spec, module))
        meta_weights = weight_enum.DEFAULT
        loaded = str(Path(spec).resolve())
    else:
        valid = [w.name for w in weight_enum] + ["DEFAULT"]
        if spec not in valid:
            raise ConceptvecError(
                f"{spec!r} is neither a file nor a weights name of torchvision:{name}; use one of {valid}, a local "
                f"state-dict file, or 'none' for random weights."
            )
        meta_weights = weight_enum[spec] if spec != "DEFAULT" else weight_enum.DEFAULT
        try:
            module = get_model(name, weights=meta_weights)
        except Exception as exc:  # noqa: BLE001 - a failed download surfaces in many exception types
            raise ConceptvecError(
                f"could not load torchvision weights {meta_weights} ({type(exc).__name__}: {exc}). With no network, download "
                f"them elsewhere into the torch hub cache ({torch.hub.get_dir()}) or pass the state-dict file with --weights."
            ) from exc
        loaded = str(meta_weights)
    transform = meta_weights.transforms()
    size = getattr(transform, "crop_size", [224])
    return LoadedModel(
        module.eval(), f"torchvision:{name}", loaded, transform, (3, size[0], size[0]),
        {"transforms_of": str(meta_weights), "transform": repr(transform)},
    )


def _read_state_dict(path: str, module: nn.Module) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ConceptvecError(f"could not read {path} as a state dict with weights_only=True ({exc}); save it with torch.save(model.state_dict(), path) or as safetensors.") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    missing = set(module.state_dict()) - set(state)
    unexpected = set(state) - set(module.state_dict())
    if missing or unexpected:
        raise ConceptvecError(
            f"{path} does not match the architecture: {len(missing)} missing keys (e.g. {sorted(missing)[:3]}) and "
            f"{len(unexpected)} unexpected keys (e.g. {sorted(unexpected)[:3]})."
        )
    return state


def layer_names(module: nn.Module) -> list[str]:
    """Every named sub-module, as the model names them (``layer4.1``, ``Mixed_7b``)."""
    return [name for name, _ in module.named_modules() if name]


def find_layer(module: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name``; a wrong name raises an error listing the five nearest real names."""
    modules = dict(module.named_modules())
    if name and name in modules:
        return modules[name]
    near = difflib.get_close_matches(name, layer_names(module), n=5, cutoff=0.0)
    raise ConceptvecError(f"invalid layer {name!r}. Nearest layers: {', '.join(near)}. List them all with `--layer list`.")


def list_layers(loaded: LoadedModel) -> list[tuple[str, str, tuple[int, ...] | None]]:
    """(name, module type, output shape for one example) of every layer, from one forward pass on zeros."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def record(name: str):
        def hook(_mod, _inp, out):
            if isinstance(out, torch.Tensor):
                shapes[name] = tuple(out.shape[1:])
        return hook

    module = loaded.module
    for name, sub in module.named_modules():
        if name:
            handles.append(sub.register_forward_hook(record(name)))
    try:
        if loaded.input_shape:
            with torch.inference_mode():
                module(torch.zeros((1, *loaded.input_shape)))
    finally:
        for h in handles:
            h.remove()
    return [(name, type(sub).__name__, shapes.get(name)) for name, sub in module.named_modules() if name]
