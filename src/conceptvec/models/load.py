"""Load a model from its spec: ``load_model`` dispatches to the builder of each spec kind in ``zoo``.

Specs: ``digits`` (the bundled CNN), ``torchvision:NAME``, ``timm:NAME``, ``hf:NAME_OR_PATH`` (a
transformers vision or language model in a local folder), ``checkpoint:FILE`` (TorchScript); or pass an
``nn.Module`` directly. Weights never unpickle code: state dicts load with ``weights_only=True`` or
from safetensors. Local weights files are fingerprinted by content (sha256 and size, in ``describe()``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from torch import nn

from ..errors import ConceptvecError
from . import zoo
from .layers import LoadedModel

SPEC_KINDS = ("digits", "torchvision:NAME", "timm:NAME", "hf:NAME_OR_PATH", "checkpoint:FILE")


def load_model(
    model: str | nn.Module,
    weights: str | None = None,
    key_map: str | Mapping[str, str] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    size: int | None = None,
    transform_input: bool | None = None,
) -> LoadedModel:
    """Resolve ``model`` (a spec or an nn.Module) with ``weights``.

    Parameters
    ----------
    model : ``digits``, ``torchvision:NAME``, ``timm:NAME``, ``hf:NAME_OR_PATH``, ``checkpoint:FILE``, or an nn.Module
    weights : for ``torchvision``, a weights name (``DEFAULT``, ``IMAGENET1K_V1``); for ``torchvision`` and
        ``timm``, a local state-dict file (``.pt``/``.pth`` read with ``weights_only=True``, or ``.safetensors``);
        ``none`` for random weights (torch seed 0). For ``hf``, ``none`` builds the model from its config
        with random weights. For ``digits``, a safetensors file or directory; without it the trained CNN
        shipped with conceptvec.
    key_map : how the state dict's key names map to the architecture's, when they differ: ``"order"``
        (the i-th tensor of the file is the i-th of the architecture), or ``{file_key: model_key}`` /
        a JSON file of it. Every tensor must find its place and shapes must match one to one.
    mean, std, size : override the model's own normalisation and input size (e.g. weights trained with
        ``mean = std = 0.5``); recorded in the preprocessing.
    transform_input : torchvision's Inception V3 and GoogLeNet only: whether the model converts ImageNet-normalised
        inputs to [-1, 1] first. Default: True with named weights or a weights file (as torchvision builds them for its
        pretrained weights, so its weights file gives what the name gives), False with random weights; False for a
        model retrained without it. Recorded in ``describe()["architecture"]``.
    """

    if transform_input is not None and not (isinstance(model, str) and model.startswith("torchvision:")):
        what = model if isinstance(model, str) else f"an nn.Module ({type(model).__name__}; set its own attribute)"
        raise ConceptvecError(f"transform_input (--transform-input) applies to torchvision:inception_v3 and torchvision:googlenet, not {what}.")
    if isinstance(model, nn.Module):
        return LoadedModel(model.eval(), type(model).__name__, weights, None, (), {"note": "nn.Module given: inputs used as they are"})
    if not isinstance(model, str):
        raise ConceptvecError(f"model must be a spec string ({', '.join(SPEC_KINDS)}) or a torch nn.Module, got {type(model).__name__}.")
    overrides = {k: v for k, v in (("mean", mean), ("std", std), ("size", size)) if v is not None}
    kind, _, name = model.partition(":")
    if model == "digits":
        given = [f"--{k.replace('_', '-')}" for k, v in (*overrides.items(), ("key_map", key_map)) if v is not None]
        if given:  # its preprocessing is fixed (8x8 grey digits): an override would be recorded and never applied
            raise ConceptvecError(f"{', '.join(given)} set an image model's preprocessing or weights' names; the digits CNN has "
                                  f"its own (8x8 grey digits). Leave them out.")
        return zoo.digits_model(weights)
    if kind == "torchvision" and name:
        loaded = zoo.torchvision_model(name, weights, key_map, overrides, transform_input)
    elif kind == "timm" and name:
        loaded = zoo.timm_model(name, weights, key_map, overrides)
    elif kind == "hf" and name:
        loaded = zoo.hf_model(name, weights, overrides)
    elif kind == "checkpoint" and name:
        loaded = zoo.checkpoint_model(name, weights, overrides)
    else:
        raise ConceptvecError(f"unknown model spec {model!r}; valid forms are {', '.join(SPEC_KINDS)}, or pass an nn.Module from Python.")
    if key_map is not None and zoo.random_weights(weights):
        raise ConceptvecError("--key-map (key_map=) renames the keys of a weights file; without --weights FILE it would be "
                              "ignored. Give the file, or leave --key-map out.")
    if isinstance(key_map, Mapping):
        loaded.key_map = f"explicit mapping of {len(key_map)} keys"
    elif key_map is not None:
        loaded.key_map = key_map if key_map == "order" else str(Path(key_map).resolve())
    return loaded
