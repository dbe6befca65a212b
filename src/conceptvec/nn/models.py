"""Models and layers: resolve a model spec, find a layer by name, and the model's own preprocessing.

Specs: ``digits`` (the bundled CNN), ``torchvision:NAME``, ``timm:NAME``, ``hf:NAME_OR_PATH`` (a
transformers vision or language model in a local folder), ``checkpoint:FILE`` (TorchScript); or pass an
``nn.Module`` directly. Weights never unpickle code: state dicts load with ``weights_only=True`` or
from safetensors. Local weights files are fingerprinted by content (sha256 and size, in ``describe()``).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..errors import ConceptvecError
from ..storage.provenance import file_digest

SPEC_KINDS = ("digits", "torchvision:NAME", "timm:NAME", "hf:NAME_OR_PATH", "checkpoint:FILE")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class LoadedModel:
    """A model ready for extraction: the module in eval mode, how to prepare its input, and what it is."""

    module: nn.Module
    name: str
    weights: str | None
    transform: Callable[[Any], torch.Tensor] | None
    input_shape: tuple[int, ...]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    key_map: str | None = None
    # Content of the local weights file(s) loaded, as read at load time: a store records it, so that
    # a file replaced at the same path makes another extraction, not the same one.
    weights_digest: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "weights": self.weights}
        if self.weights_digest is not None:
            out["weights_sha256"] = self.weights_digest["sha256"]
            out["weights_size"] = self.weights_digest["size"]
        if self.key_map is not None:
            out["key_map"] = self.key_map
        return out


def files_digest(files: list[Path]) -> dict[str, Any]:
    """sha256 and size of one weights file; of several (a model folder), the sha256 of their names and digests."""
    if len(files) == 1:
        return file_digest(files[0])
    import hashlib

    digests = {f.name: file_digest(f) for f in sorted(files)}
    listing = "".join(f"{name} {d['sha256']}\n" for name, d in digests.items())
    return {"sha256": hashlib.sha256(listing.encode()).hexdigest(), "size": sum(d["size"] for d in digests.values())}


def load_model(
    model: str | nn.Module,
    weights: str | None = None,
    key_map: str | Mapping[str, str] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    size: int | None = None,
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
    """
    if isinstance(model, nn.Module):
        return LoadedModel(model.eval(), type(model).__name__, weights, None, (), {"note": "nn.Module given: inputs used as they are"})
    if not isinstance(model, str):
        raise ConceptvecError(f"model must be a spec string ({', '.join(SPEC_KINDS)}) or a torch nn.Module, got {type(model).__name__}.")
    overrides = {k: v for k, v in (("mean", mean), ("std", std), ("size", size)) if v is not None}
    kind, _, name = model.partition(":")
    if model == "digits":
        return _digits(weights)
    if kind == "torchvision" and name:
        loaded = _torchvision(name, weights, key_map, overrides)
    elif kind == "timm" and name:
        loaded = _timm(name, weights, key_map, overrides)
    elif kind == "hf" and name:
        loaded = _hf(name, weights, overrides)
    elif kind == "checkpoint" and name:
        loaded = _checkpoint(name, weights, overrides)
    else:
        raise ConceptvecError(f"unknown model spec {model!r}; valid forms are {', '.join(SPEC_KINDS)}, or pass an nn.Module from Python.")
    if isinstance(key_map, Mapping):
        loaded.key_map = f"explicit mapping of {len(key_map)} keys"
    elif key_map is not None:
        loaded.key_map = key_map if key_map == "order" else str(Path(key_map).resolve())
    return loaded


def _digits(weights: str | None) -> LoadedModel:
    from . import digits

    path = digits.shipped_digits_dir() if weights is None else Path(weights)
    if path.is_dir():
        path = path / digits.WEIGHTS_FILE
    digest = file_digest(path) if path.is_file() else None  # before loading: the digest is of what was loaded or earlier
    module = digits.load_digits_cnn(path)
    return LoadedModel(module, "digits", str(path if weights is None else weights), None,
                       (1, digits.INPUT_SIZE, digits.INPUT_SIZE), dict(digits.PREPROCESSING), weights_digest=digest)


def _random(weights: str | None) -> bool:
    return weights is None or weights.lower() == "none"


def _input_shape(transform: Callable[[Any], torch.Tensor]) -> tuple[int, ...]:
    # What the preprocessing makes of an image is the model's input shape, whatever the library.
    from PIL import Image

    return tuple(transform(Image.new("RGB", (320, 320), (128, 128, 128))).shape)


def _torchvision(name: str, weights: str | None, key_map, overrides: dict[str, Any]) -> LoadedModel:
    import torchvision
    from torchvision.models import get_model, get_model_weights, list_models

    available = list_models(module=torchvision.models)
    if name not in available:
        near = difflib.get_close_matches(name, available, n=5, cutoff=0.0)
        raise ConceptvecError(f"torchvision has no model {name!r}; nearest: {', '.join(near)}. All: torchvision.models.list_models().")
    weight_enum = get_model_weights(name)
    spec = "none" if weights is None else weights
    digest = None  # named torchvision weights are identified by their name (their files carry a hash prefix)
    if _random(spec):
        torch.manual_seed(0)  # random weights, but the same ones every run
        module = get_model(name, weights=None)
        meta_weights = weight_enum.DEFAULT
        loaded = "none (random, torch seed 0)"
    elif os.path.exists(spec):
        module = get_model(name, weights=None)
        digest = files_digest([Path(spec)])
        module.load_state_dict(read_state_dict(spec, module, key_map))
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
    extra = {}
    if "size" in overrides:
        extra = {"crop_size": overrides["size"], "resize_size": round(overrides["size"] / 0.875)}
    extra.update({k: tuple(overrides[k]) for k in ("mean", "std") if k in overrides})
    transform = meta_weights.transforms(**extra)
    return LoadedModel(
        module.eval(), f"torchvision:{name}", loaded, transform, _input_shape(transform),
        {"transforms_of": str(meta_weights), "transform": repr(transform), **({"overrides": overrides} if overrides else {})},
        weights_digest=digest,
    )


def _timm(name: str, weights: str | None, key_map, overrides: dict[str, Any]) -> LoadedModel:
    try:
        import timm
        from timm.data import create_transform, resolve_model_data_config
    except ImportError:  # pragma: no cover - timm is a dependency
        raise ConceptvecError("timm:NAME needs the timm package; pip install timm.") from None
    if name not in timm.list_models():
        near = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.0)
        raise ConceptvecError(f"timm has no model {name!r}; nearest: {', '.join(near)}. All: timm.list_models().")
    torch.manual_seed(0)
    module = timm.create_model(name, pretrained=False)  # pretrained=True would download
    digest = None
    if _random(weights):
        loaded = "none (random, torch seed 0)"
    elif os.path.exists(weights):
        digest = files_digest([Path(weights)])
        module.load_state_dict(read_state_dict(weights, module, key_map))
        loaded = str(Path(weights).resolve())
    else:
        raise ConceptvecError(
            f"timm weights {weights!r} are not a file; pass a local state-dict file (.pth/.pt/.safetensors) or 'none' for "
            f"random weights (downloading timm's pretrained weights is left to you: timm.create_model(..., pretrained=True) "
            f"then torch.save(model.state_dict(), FILE))."
        )
    config = resolve_model_data_config(module)
    if "size" in overrides:
        config["input_size"] = (3, overrides["size"], overrides["size"])
    config.update({k: tuple(overrides[k]) for k in ("mean", "std") if k in overrides})
    transform = create_transform(**config, is_training=False)
    return LoadedModel(
        module.eval(), f"timm:{name}", loaded, transform, _input_shape(transform),
        {"data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}, "transform": repr(transform),
         **({"overrides": overrides} if overrides else {})},
        weights_digest=digest,
    )


def _hf(name: str, weights: str | None, overrides: dict[str, Any]) -> LoadedModel:
    from .language import is_language_folder, load_language_model
    if is_language_folder(name):  # a tokenizer and no image processor
        return load_language_model(name, weights, overrides)
    try:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel
    except ImportError:  # pragma: no cover - transformers is a dependency
        raise ConceptvecError("hf:NAME needs the transformers package; pip install transformers.") from None
    digest = None
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=True)
        if weights is not None and _random(weights):
            torch.manual_seed(0)
            module = AutoModel.from_config(config)
            loaded = "none (random, torch seed 0)"
        elif weights is None:
            files = _hf_weight_files(name)
            digest = files_digest(files) if files else None
            module = AutoModel.from_pretrained(name, local_files_only=True)
            loaded = str(Path(name).resolve()) if Path(name).exists() else name
        else:
            raise ConceptvecError(f"hf models take their weights from their folder; pass no --weights (or 'none' for random), not {weights!r}.")
    except (OSError, ValueError) as exc:
        if isinstance(exc, ConceptvecError):
            raise
        raise ConceptvecError(
            f"could not load the transformers model {name!r} from a local folder or the local cache ({exc}). Save it "
            f"with model.save_pretrained(DIR) and processor.save_pretrained(DIR), then use hf:DIR."
        ) from None
    try:
        processor = AutoImageProcessor.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConceptvecError(f"{name} has no image processor ({exc}); save one beside the model with processor.save_pretrained(DIR).") from None
    if "mean" in overrides:
        processor.image_mean = list(overrides["mean"])
    if "std" in overrides:
        processor.image_std = list(overrides["std"])
    if "size" in overrides:
        processor.size = {"height": overrides["size"], "width": overrides["size"]}

    def transform(image):
        return processor(images=image, return_tensors="pt")["pixel_values"][0]

    return LoadedModel(
        module.eval(), f"hf:{name}", loaded, transform, _input_shape(transform),
        {"image_processor": processor.to_dict(), **({"overrides": overrides} if overrides else {})},
        weights_digest=digest,
    )


def _hf_weight_files(name: str) -> list[Path]:
    """The weight files of a transformers model folder (none when ``name`` is not a local folder)."""
    folder = Path(name)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".pt", ".pth"))


def _checkpoint(path: str, weights: str | None, overrides: dict[str, Any]) -> LoadedModel:
    import warnings

    from torchvision import transforms as T

    if not os.path.isfile(path):
        raise ConceptvecError(f"checkpoint {path} does not exist; give a TorchScript file saved with torch.jit.save.")
    if weights is not None:
        raise ConceptvecError("a TorchScript checkpoint holds its own weights; pass no --weights.")
    digest = files_digest([Path(path)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream but is the format asked for
        try:
            module = torch.jit.load(path, map_location="cpu")
        except RuntimeError as exc:
            raise ConceptvecError(f"could not read {path} as TorchScript ({str(exc).splitlines()[0]}); save the model with torch.jit.save(torch.jit.script(model), path).") from None
    size = int(overrides.get("size", 224))
    mean, std = tuple(overrides.get("mean", IMAGENET_MEAN)), tuple(overrides.get("std", IMAGENET_STD))
    # TorchScript carries no preprocessing: ImageNet's by default, overridable with size, mean and std.
    transform = T.Compose([T.Resize(round(size / 0.875)), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)])
    return LoadedModel(
        module.eval(), f"checkpoint:{Path(path).resolve()}", str(Path(path).resolve()), transform, (3, size, size),
        {"transform": repr(transform), "note": "TorchScript has no preprocessing of its own; ImageNet's or the overrides"},
        weights_digest=digest,
    )


def read_state_dict(path: str, module: nn.Module, key_map: str | Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a state-dict file, named as ``module`` names them; nothing unpickles code.

    ``key_map`` (see :func:`load_model`) renames them; without it the names must match. Either way every
    tensor of the architecture must be present with the same shape, else a ConceptvecError says which.
    """
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
    expected = module.state_dict()
    if key_map is not None:
        state = _map_keys(path, state, expected, key_map)
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    if missing or unexpected:
        hint = "" if key_map is not None else " If only the names differ, pass a key map (key_map='order' or a JSON {file_key: model_key})."
        raise ConceptvecError(
            f"{path} does not match the architecture: {len(missing)} missing keys (e.g. {sorted(missing)[:3]}) and "
            f"{len(unexpected)} unexpected keys (e.g. {sorted(unexpected)[:3]}).{hint}"
        )
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        k, got, want = wrong[0]
        raise ConceptvecError(f"{path}: {len(wrong)} tensors have the wrong shape, e.g. {k} is {got} in the file and {want} in the architecture.")
    return state


def _map_keys(path: str, state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], key_map) -> dict[str, torch.Tensor]:
    if key_map == "order":
        if len(state) != len(expected):
            raise ConceptvecError(f"key_map='order' needs as many tensors in {path} ({len(state)}) as in the architecture ({len(expected)}).")
        for i, ((fk, fv), (mk, mv)) in enumerate(zip(state.items(), expected.items())):
            if tuple(fv.shape) != tuple(mv.shape):
                raise ConceptvecError(
                    f"key_map='order': tensor {i} of {path}, {fk} {tuple(fv.shape)}, does not fit {mk} {tuple(mv.shape)} of the "
                    f"architecture; the file's order is not the architecture's. Give an explicit {{file_key: model_key}} map."
                )
        return {mk: fv for fv, mk in zip(state.values(), expected)}
    if isinstance(key_map, (str, os.PathLike)):
        import json

        try:
            key_map = json.loads(Path(key_map).read_text())
        except (OSError, ValueError) as exc:
            raise ConceptvecError(f"key_map must be 'order', a dict or a JSON file of {{file_key: model_key}}; could not read {key_map} ({exc}).") from None
    if not isinstance(key_map, Mapping):
        raise ConceptvecError(f"key_map must be 'order', a dict or a JSON file of {{file_key: model_key}}, got {type(key_map).__name__}.")
    absent = [k for k in key_map if k not in state]
    if absent:
        raise ConceptvecError(f"the key map names {len(absent)} keys that {path} does not hold, e.g. {absent[:3]}.")
    targets = list(key_map.values())
    if len(set(targets)) != len(targets):
        raise ConceptvecError("the key map sends two file keys to the same model key; each must map one to one.")
    return {key_map.get(k, k): v for k, v in state.items()}


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
    if is_script(module):
        return _list_script_layers(loaded)
    if hasattr(loaded, "list_layers"):  # a language model runs a sentence, not zeros
        return loaded.list_layers()
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


def is_script(module: nn.Module) -> bool:
    """Whether ``module`` is TorchScript, whose sub-modules run no Python forward hooks."""
    return isinstance(module, torch.jit.ScriptModule)


def script_to_layer(module: nn.Module, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function computing the output of layer ``name`` of a TorchScript ``module``, and nothing after it.

    TorchScript ignores forward hooks, so the inlined forward graph is cut instead: its nodes know the
    module they came from, the layer's output is the last value of that module used outside it, and
    everything after it is dropped.
    """
    find_layer(module, name)
    graph = module.forward.graph.copy()
    torch._C._jit_pass_inline(graph)
    nodes = list(graph.nodes())
    output = _layer_outputs(nodes).get(name)
    if output is None:
        raise ConceptvecError(f"layer {name!r} of this TorchScript model is not used by its forward(); choose another (`--layer list`).")
    if output.node().owningBlock() is not graph.block():
        raise ConceptvecError(f"layer {name!r} runs inside a loop or branch of the TorchScript forward; choose an enclosing layer.")
    for i in reversed(range(len(list(graph.outputs())))):
        graph.eraseOutput(i)
    graph.registerOutput(output)
    cut = nodes.index(output.node())
    for node in reversed(nodes[cut + 1 :]):  # in-place ops count as side effects, so dead-code elimination alone keeps them
        node.destroy()
    torch._C._jit_pass_dce(graph)
    function = torch._C._create_function_from_graph(f"to_{name.replace('.', '_')}", graph)
    return lambda x: function(module._c, x)


def _layer_outputs(nodes: list) -> dict[str, Any]:
    """For every module path, the last tensor its nodes compute that a node outside it uses."""
    outputs: dict[str, Any] = {}
    for node in nodes:
        path = _module_path(node)
        if not path:
            continue
        parts = path.split(".")
        ancestors = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        for value in node.outputs():
            if value.type().kind() != "TensorType":
                continue
            users = [_module_path(u.user) for u in value.uses()]
            for a in ancestors:
                if any(not _inside(u, a) for u in users):
                    outputs[a] = value
    return outputs


def _module_path(node) -> str:
    # "SELF(ResNet).layer2(Sequential).0(BasicBlock).conv1(Conv2d).SELF(Conv2d)" -> "layer2.0.conv1"
    parts = []
    for part in node.getModuleHierarchy().split(".")[1:]:
        part = re.sub(r"\(.*\)$", "", part)
        if part in ("SELF", "UNKNOWN_INSTANCE"):
            break
        parts.append(part)
    return ".".join(parts)


def _inside(path: str, name: str) -> bool:
    return path == name or path.startswith(name + ".")


def _list_script_layers(loaded: LoadedModel) -> list[tuple[str, str, tuple[int, ...] | None]]:
    # One forward of a graph that returns every layer's output, rather than one cut graph per layer.
    module = loaded.module
    graph = module.forward.graph.copy()
    torch._C._jit_pass_inline(graph)
    outputs = {k: v for k, v in _layer_outputs(list(graph.nodes())).items() if v.node().owningBlock() is graph.block()}
    names = list(outputs)
    for i in reversed(range(len(list(graph.outputs())))):
        graph.eraseOutput(i)
    # shapes only: the in-place ops after a layer may change its values, never its shape
    pack = graph.create("prim::TupleConstruct", [outputs[k] for k in names])
    pack.output().setType(torch._C.TupleType([outputs[k].type() for k in names]))
    graph.appendNode(pack)
    graph.registerOutput(pack.output())
    function = torch._C._create_function_from_graph("all_layers", graph)
    with torch.inference_mode():
        values = function(module._c, torch.zeros((1, *loaded.input_shape)))
    shapes = {k: tuple(v.shape[1:]) for k, v in zip(names, values)}
    return [(name, sub.original_name, shapes.get(name)) for name, sub in module.named_modules() if name]
