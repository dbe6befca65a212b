"""Layers of a loaded model: ``LoadedModel``, finding and listing a layer by name, a TorchScript model cut at a layer.

Loading a model from its spec is ``load`` (which dispatches to the builders of ``zoo``).

Specs: ``digits`` (the bundled CNN), ``torchvision:NAME``, ``timm:NAME``, ``hf:NAME_OR_PATH`` (a
transformers vision or language model in a local folder), ``checkpoint:FILE`` (TorchScript); or pass an
``nn.Module`` directly. Weights never unpickle code: state dicts load with ``weights_only=True`` or
from safetensors. Local weights files are fingerprinted by content (sha256 and size, in ``describe()``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ConceptvecError

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
    # Settings of the architecture that change its outputs for the same weights (Inception V3's transform_input).
    architecture: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "weights": self.weights}
        if self.weights_digest is not None:
            out["weights_sha256"] = self.weights_digest["sha256"]
            out["weights_size"] = self.weights_digest["size"]
        if self.key_map is not None:
            out["key_map"] = self.key_map
        if self.architecture:
            out["architecture"] = dict(self.architecture)
        return out



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
    graph = module.forward.graph.copy()  # type: ignore[attr-defined]  # torch types forward as a plain callable; a scripted one has .graph
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
    graph = module.forward.graph.copy()  # type: ignore[attr-defined]  # torch types forward as a plain callable; a scripted one has .graph
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
