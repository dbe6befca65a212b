"""Feature visualisation of neurons and concept directions (the paper's Fig. 3).

An input image is optimised so that a layer's activation points along a direction. This module
is written after Lucent (``lucent/optvis``), which the paper used, and is checked against it in
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
  and weights are channels-last (see :func:`_fast_copy`). Each step computes what the plain model
  computes up to float rounding; over hundreds of Adam steps those rounding differences grow
  (Adam's normalised update amplifies them where a gradient is near zero), as between a batch and
  separate runs, so images are alike but not bit-identical to the plain model's;
- the model's own input normalisation is applied inside (Lucent assumes ImageNet statistics).

Notation: ``k`` directions, ``n_units`` units (channels) in the layer, images of ``size`` pixels.
Item ``i`` of a batch uses seed ``seed + i``, so ``directions[i:i+1]`` with ``seed=seed + i``
reproduces it alone.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...storage.atomic import atomic_directory, refuse_existing, write_json
from ...storage.provenance import environment
from ...progress import progress_bar
from ...errors import ConceptvecError
from ..hooks import forward_to_layer, pool_output, resolve_device, stop_at_layer
from ..models import LoadedModel, find_layer, is_script, load_model

RESULT_FILE = "featureviz.json"

# Lucid's square root of the ImageNet colour covariance, columns normalised to a maximum norm of 1
# (these numbers are measured data, shared by Lucid and Lucent).
_COLOR_SQRT = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
_COLOR_DECORRELATION = _COLOR_SQRT / np.max(np.linalg.norm(_COLOR_SQRT, axis=0))

OBJECTIVES = {
    "projection": "the layer's spatially averaged activation projected on the unit direction",
    "cosine": "cosine of the direction with the activation at each position, averaged over positions (Lucent's `direction`)",
}

TRANSFORMS = {
    "standard": "Lucent's standard transforms: pad 12, jitter 8, scale 0.9-1.1, rotate -10..10 degrees, jitter 4 (pixels at size 224)",
    "none": "no random transforms (the image is optimised as it is)",
}


@dataclass(frozen=True)
class FeatureVizParams:
    """How the images were optimised; written beside them."""

    steps: int = 512
    size: int = 224
    seed: int = 0
    lr: float = 0.05
    objective: str = "projection"
    transforms: str = "standard"
    decorrelate: bool = True
    fft_sd: float = 0.01
    decay_power: float = 1.0
    batch: bool = True


@dataclass
class FeatureVisualisation:
    """Optimised images for ``k`` directions of one layer.

    Attributes
    ----------
    images : array of shape (k, size, size, 3), float32 in [0, 1]
        The optimised images (grey models: the grey image in all three channels).
    objective : array of shape (k,)
        The objective of each final image as returned (no padding, no random transforms).
    history : array of shape (steps_done, k)
        The objective at each step, on the randomly transformed image that step optimised.
    directions : array of shape (k, n_units)
        The directions as given.
    seeds : list of int
        The seed of each item (``seed + i``).
    steps_done : list of int
        Steps completed per item; less than ``params.steps`` when interrupted (with ``batch=False``,
        items never started have 0 and their initial image).
    interrupted : bool
        Ctrl-C stopped the optimisation; the images are those of the last completed step.
    """

    images: np.ndarray
    objective: np.ndarray
    history: np.ndarray
    directions: np.ndarray
    params: FeatureVizParams
    seeds: list[int]
    model: dict[str, Any]
    layer: str
    channels: int
    normalisation: dict[str, Any] | None
    steps_done: list[int]
    interrupted: bool = False
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """Everything that produced the images, as JSON-ready values."""
        return {
            "model": self.model, "layer": self.layer, "params": asdict(self.params), "seeds": self.seeds,
            "channels": self.channels, "normalisation": self.normalisation,
            "steps_done": self.steps_done, "partial": self.interrupted, "seconds": round(self.seconds, 3),
            "objective": self.objective.tolist(), "history": self.history.tolist(), **self.extra,
        }

    def save(self, directory: str | os.PathLike, names: Sequence[str] | None = None, overwrite: bool = False,
             extra: dict[str, Any] | None = None) -> Path:
        """Write ``<name>.png`` per image and ``featureviz.json`` into ``directory``, atomically.

        ``names`` default to ``direction_0``, ``direction_1``, ...
        """
        from PIL import Image

        names = list(names) if names is not None else [f"direction_{i}" for i in range(len(self.images))]
        if len(names) != len(self.images) or len(set(names)) != len(names):
            raise ConceptvecError(f"need {len(self.images)} distinct image names, got {names}.")
        with atomic_directory(directory, overwrite=overwrite, what="feature visualisation") as tmp:
            files = []
            for name, image in zip(names, self.images):
                Image.fromarray(np.round(image * 255).astype(np.uint8)).save(tmp / f"{name}.png")
                files.append(f"{name}.png")
            write_json(tmp / RESULT_FILE, {"images": files, **self.describe(), **(extra or {}), **environment()})
        return Path(directory)


# ---------------------------------------------------------------------------------------------
# Image parameterisation
# ---------------------------------------------------------------------------------------------

def _frequency_scale(size: int, decay_power: float) -> torch.Tensor:
    """1 / |f|^decay_power on the (size, size // 2 + 1) grid of a real 2-D FFT, floored at 1 / size."""
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    freqs = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / torch.clamp(freqs, min=1.0 / size) ** decay_power


class _FourierImage(nn.Module):
    """A batch of images as scaled Fourier coefficients; ``forward()`` gives (k, channels, size, size) in [0, 1]."""

    def __init__(self, spectra: torch.Tensor, size: int, decorrelate: bool, decay_power: float):
        super().__init__()
        self.spectra = nn.Parameter(spectra)  # (k, channels, size, size // 2 + 1, 2): real and imaginary parts
        self.size = size
        self.register_buffer("scale", _frequency_scale(size, decay_power)[None, None, :, :, None])
        channels = spectra.shape[1]
        self.decorrelate = decorrelate and channels == 3
        self.register_buffer("colour", torch.from_numpy(_COLOR_DECORRELATION.T.copy()))

    @staticmethod
    def init(k: int, channels: int, size: int, sd: float, generators: Sequence[torch.Generator]) -> torch.Tensor:
        shape = (channels, size, size // 2 + 1, 2)
        return torch.stack([torch.randn(shape, generator=g) * sd for g in generators])

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.scale * self.spectra)
        # Lucid's constant 4 keeps the sigmoid out of saturation at the start.
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4.0
        if self.decorrelate:
            image = torch.einsum("kchw,cd->kdhw", image, self.colour)
        return torch.sigmoid(image)


# ---------------------------------------------------------------------------------------------
# Random transforms: pad, then one affine warp per image (jitter, scale, rotate, jitter)
# ---------------------------------------------------------------------------------------------

_SCALES = torch.tensor([1 + (i - 5) / 50.0 for i in range(11)])
_ANGLES = torch.tensor(list(range(-10, 11)) + 5 * [0], dtype=torch.float32)  # Lucent's: a zero angle is likelier


@dataclass(frozen=True)
class _TransformSizes:
    pad: int
    jitter1: int
    jitter2: int

    @classmethod
    def for_size(cls, size: int) -> "_TransformSizes":
        # Lucent's pixel amounts are for 224-pixel images; scale them so that a 16-pixel digit is not
        # shifted by half its width.
        r = size / 224
        return cls(pad=max(1, round(12 * r)), jitter1=max(2, round(8 * r)), jitter2=max(2, round(4 * r)))


def _draw_affine(generators: Sequence[torch.Generator], sizes: _TransformSizes, padded: int) -> torch.Tensor:
    """(k, 2, 3) matrices for ``F.affine_grid``, one draw per item from its own generator."""
    thetas = []
    for g in generators:
        j1 = torch.randint(0, sizes.jitter1, (2,), generator=g).float() - (sizes.jitter1 - 1) // 2
        scale = _SCALES[torch.randint(0, len(_SCALES), (1,), generator=g)].item()
        angle = math.radians(_ANGLES[torch.randint(0, len(_ANGLES), (1,), generator=g)].item())
        j2 = torch.randint(0, sizes.jitter2, (2,), generator=g).float() - (sizes.jitter2 - 1) // 2
        # The content moves by y = R S (x + j1) + j2 about the centre; grid_sample needs the inverse
        # x = A (y - j2) - j1 with A = (R S)^-1, and offsets in units of half the image (align_corners=False).
        c, s = math.cos(angle), math.sin(angle)
        a = torch.tensor([[c, s], [-s, c]]) / scale
        b = (-(a @ j2) - j1) * 2.0 / padded
        thetas.append(torch.cat([a, b[:, None]], dim=1))
    return torch.stack(thetas)


def _transform(images: torch.Tensor, generators: Sequence[torch.Generator] | None, sizes: _TransformSizes) -> torch.Tensor:
    if generators is None:
        return images
    # Pad with grey (0.5) as Lucent does; the warp also fills with grey (warping image - 0.5 with zeros).
    x = F.pad(images, [sizes.pad] * 4, value=0.5)
    theta = _draw_affine(generators, sizes, x.shape[-1]).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5


# ---------------------------------------------------------------------------------------------
# The model: normalisation, a gradient-keeping hook that stops at the layer, frozen parameters
# ---------------------------------------------------------------------------------------------

def layer_output(layer: nn.Module) -> contextlib.AbstractContextManager[dict[str, torch.Tensor]]:
    """Hook ``layer`` for the block's duration: each forward stores the raw output, graph kept, and stops.

    The gradient-keeping sibling of :func:`conceptvec.nn.hooks.capture_layer`.
    """
    return stop_at_layer(layer, lambda output: output)


@contextlib.contextmanager
def _eval_frozen(model: nn.Module, modes: dict[nn.Module, bool] | None = None) -> Iterator[None]:
    """Eval mode and no parameter gradients for the block's duration; both restored afterwards (to ``modes`` if given)."""
    modes = modes if modes is not None else {m: m.training for m in model.modules()}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes.items():
            m.training = mode


# ---------------------------------------------------------------------------------------------
# A private, faster copy of the model: batch norm folded, 1x1 convolutions on oneDNN
# ---------------------------------------------------------------------------------------------

# Which speed-ups _fast_copy applies (tests and benchmarks switch them off to compare).
_SPEEDUPS = frozenset({"fold_batchnorm", "onednn_1x1"})


class _OneByOne(torch.autograd.Function):
    """A 1x1 convolution (groups 1, no padding) on oneDNN, forward and input gradient.

    PyTorch sends a 1x1 convolution of a single image on one thread to its im2col/GEMM fallback
    (its heuristic: "THNN is faster when single-threaded"), which was measured 2x slower than
    oneDNN on resnet50's 1x1 convolutions here. The input gradient of a 1x1 convolution is the 1x1
    convolution of the output gradient with the transposed weight, so both directions run as
    oneDNN forward convolutions. The weights get no gradient (they are frozen during the run).
    """

    @staticmethod
    def forward(ctx, x, weight, weight_t, bias, stride):
        ctx.weight_t, ctx.stride, ctx.shape = weight_t, stride, x.shape
        ctx.channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, [0, 0], list(stride), [1, 1], 1)

    @staticmethod
    def backward(ctx, grad):
        g = torch.ops.aten.mkldnn_convolution(grad, ctx.weight_t, None, [0, 0], [1, 1], [1, 1], 1)
        if ctx.stride != (1, 1):
            # A strided 1x1 convolution reads every stride-th pixel; the others get no gradient.
            full = g.new_zeros(ctx.shape)
            if ctx.channels_last:
                full = full.contiguous(memory_format=torch.channels_last)
            full[:, :, :: ctx.stride[0], :: ctx.stride[1]] = g
            g = full
        return g, None, None, None, None


class _Conv1x1(nn.Module):
    """Stands in for a frozen ``nn.Conv2d`` with a 1x1 kernel on the CPU; the same function, run by :class:`_OneByOne`."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        # The convolution belongs to the private copy: its tensors are taken over, not cloned.
        self.weight = nn.Parameter(conv.weight.detach(), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach(), requires_grad=False)
        self.register_buffer("weight_t", conv.weight.detach().transpose(0, 1).contiguous(), persistent=False)
        self.stride = tuple(conv.stride)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dtype != torch.float32 or x.ndim != 4:
            return F.conv2d(x, self.weight, self.bias, self.stride)
        return _OneByOne.apply(x, self.weight, self.weight_t, self.bias, self.stride)


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or getattr(m, "_backward_pre_hooks", None))


def _is_1x1(m: nn.Module) -> bool:
    return (type(m) is nn.Conv2d and m.kernel_size == (1, 1) and m.groups == 1 and m.padding_mode == "zeros"
            and m.padding in ((0, 0), "valid") and m.weight.dtype == torch.float32)


def _conv_bn_pairs(module: nn.Module, layer: str) -> list[tuple[str, str]]:
    """(convolution, batch norm) module names where the norm is applied to the convolution's output alone.

    Read from a torch.fx trace of the forward: the convolution is called once and its output is used
    only by the norm, which is called once. Pairs that the layer's boundary separates, and hooked
    modules, are left alone (a hook on either would see something else). No trace, no pairs.
    """
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception:  # noqa: BLE001 - control flow that fx cannot trace: nothing is folded
        return []
    modules = dict(module.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    inside = lambda name: name == layer or name.startswith(layer + ".")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        bn, conv_node = modules.get(node.target), node.args[0]
        if type(bn) is not nn.BatchNorm2d or not isinstance(conv_node, torch.fx.Node) or conv_node.op != "call_module":
            continue
        conv = modules.get(conv_node.target)
        if (type(conv) is nn.Conv2d and bn.track_running_stats and bn.running_mean is not None
                and len(conv_node.users) == 1 and calls[conv_node.target] == 1 and calls[node.target] == 1
                and inside(conv_node.target) == inside(node.target) and not _hooked(conv) and not _hooked(bn)):
            pairs.append((conv_node.target, node.target))
    return pairs


def _fast_copy(module: nn.Module, layer: str, dev: torch.device) -> nn.Module | None:
    """A frozen eval-mode copy of ``module`` on ``dev`` that computes the same layer output faster; None if none is made.

    - Batch norm in eval mode is an affine map per channel: folded into the preceding convolution's
      weight and bias (the norm becomes an identity), it costs nothing forward or backward.
    - On the CPU, 1x1 convolutions run on oneDNN (:class:`_OneByOne`) and 4-D weights are
      channels-last (oneDNN's preferred layout).

    The caller's model is only read. The results equal the original model's up to float rounding
    (tested).
    """
    if is_script(module):
        return None
    try:
        net = copy.deepcopy(module)
    except Exception:  # noqa: BLE001 - a module that cannot be copied runs as it is
        return None
    net.eval()
    net.to(dev)
    if "fold_batchnorm" in _SPEEDUPS:
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        for conv_name, bn_name in _conv_bn_pairs(net, layer):
            net.set_submodule(conv_name, fuse_conv_bn_eval(net.get_submodule(conv_name), net.get_submodule(bn_name)))
            net.set_submodule(bn_name, nn.Identity())
    if dev.type == "cpu":
        if "onednn_1x1" in _SPEEDUPS and torch.backends.mkldnn.is_available():
            for name, m in list(net.named_modules()):
                if _is_1x1(m) and not _hooked(m):
                    net.set_submodule(name, _Conv1x1(m))
        net.to(memory_format=torch.channels_last)
        for m in net.modules():
            if isinstance(m, _Conv1x1):
                m.weight_t = m.weight_t.contiguous(memory_format=torch.channels_last)
    for p in net.parameters():  # after the swaps: folded convolutions come with fresh parameters
        p.requires_grad_(False)
    return net


def _normalisation(loaded: LoadedModel) -> dict[str, list[float]] | None:
    """The mean and std of the model's own preprocessing; None if it has no preprocessing.

    Looked for on the transform (torchvision's ImageClassification), on the steps of a Compose
    (a Normalize), then in the recorded preprocessing (``mean``/``std``, ``image_mean``/``image_std``).
    """
    t = loaded.transform
    if t is None:
        return None
    for c in [t, *list(getattr(t, "transforms", []) or [])]:
        mean, std = getattr(c, "mean", None), getattr(c, "std", None)
        if mean is not None and std is not None:
            return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    found = _stats_in(loaded.preprocessing)
    if found is not None:
        return found
    raise ConceptvecError(
        f"could not find the input normalisation (mean, std) of {loaded.name}'s preprocessing; pass transform=, a "
        f"differentiable map from [0, 1] image batches to the model's input."
    )


def _stats_in(meta: Any) -> dict[str, list[float]] | None:
    if not isinstance(meta, dict):
        return None
    for m, s in (("mean", "std"), ("image_mean", "image_std")):
        if isinstance(meta.get(m), (list, tuple)) and isinstance(meta.get(s), (list, tuple)):
            return {"mean": [float(v) for v in meta[m]], "std": [float(v) for v in meta[s]]}
    for value in meta.values():
        found = _stats_in(value)
        if found is not None:
            return found
    return None


def _input_channels(loaded: LoadedModel, channels: int | None) -> int:
    if channels is not None:
        if channels not in (1, 3):
            raise ConceptvecError(f"channels must be 1 (grey) or 3 (RGB), got {channels}.")
        return channels
    if loaded.input_shape:
        return int(loaded.input_shape[0])
    # A bare module: the first layer that declares its input channels decides.
    for m in loaded.module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Conv3d)):
            return int(m.in_channels)
    return 3


def _unit_axis(output: torch.Tensor) -> int:
    if output.ndim in (2, 4):
        return 1
    if output.ndim == 3:
        return 2
    raise ConceptvecError(f"cannot visualise a layer output of shape {tuple(output.shape)}; expected 2, 3 or 4 dimensions.")


def _objective(output: torch.Tensor, directions: torch.Tensor, kind: str) -> torch.Tensor:
    """(k,) objective of each batch item on its own unit direction."""
    axis = _unit_axis(output)
    if kind == "projection":
        return (pool_output(output, "avg") * directions).sum(dim=1)
    shape = [1] * output.ndim
    shape[0], shape[axis] = directions.shape[0], directions.shape[1]
    cos = F.cosine_similarity(output, directions.reshape(shape), dim=axis, eps=1e-8)
    return cos.reshape(len(cos), -1).mean(dim=1)


def _check_directions(directions: Any) -> np.ndarray:
    d = np.asarray(directions, dtype=np.float64)
    if d.ndim == 1:
        d = d[None, :]
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] == 0:
        raise ConceptvecError(f"directions must be a (k, n_units) array (one row per direction), got shape {np.shape(directions)}.")
    if not np.all(np.isfinite(d)):
        raise ConceptvecError("directions hold NaN or infinite values.")
    norms = np.linalg.norm(d, axis=1)
    if np.any(norms == 0):
        raise ConceptvecError(f"direction(s) {np.flatnonzero(norms == 0).tolist()} are all zeros; a direction needs a length.")
    return d


def neuron_directions(n_units: int, neuron: int, concept_vectors: np.ndarray | None = None) -> np.ndarray:
    """The neuron's basis vector followed by its concept vectors: the rows of the paper's Fig. 3."""
    if not 0 <= neuron < n_units:
        raise ConceptvecError(f"neuron {neuron} is outside the layer's 0..{n_units - 1}.")
    basis = np.zeros((1, n_units))
    basis[0, neuron] = 1.0
    if concept_vectors is None or len(concept_vectors) == 0:
        return basis
    return np.concatenate([basis, np.asarray(concept_vectors, dtype=np.float64)])


# ---------------------------------------------------------------------------------------------
# The optimisation
# ---------------------------------------------------------------------------------------------

def feature_visualisation(
    model: str | nn.Module | LoadedModel,
    layer: str,
    directions: Any,
    steps: int = 512,
    size: int = 224,
    seed: int = 0,
    batch: bool = True,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    weights: str | None = None,
    objective: str = "projection",
    transforms: str = "standard",
    lr: float = 0.05,
    decorrelate: bool = True,
    channels: int | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> FeatureVisualisation:
    """Optimise one image per direction so that ``layer`` responds along it.

    Parameters
    ----------
    model : a spec (``digits``, ``torchvision:NAME``), a LoadedModel, or an nn.Module
        A spec'd model gets its own input normalisation inside; an nn.Module gets the [0, 1] image
        as it is, or ``transform(image)`` if given.
    layer : the module name as the model names it (``block3``, ``layer3``, ``Mixed_7b``)
    directions : array of shape (k, n_units), or (n_units,)
        One row per image; a neuron is a basis vector (see :func:`neuron_directions`). Rows are
        normalised to unit length.
    steps, size, seed : Adam steps, image side in pixels, and the seed of item 0 (item i: seed + i)
    batch : optimise all k images in one batch (True) or one after another (False); the same result
    transform : differentiable map of the (k, channels, h, w) [0, 1] batch to the model's input,
        replacing the model's own normalisation
    weights : weights of a spec'd model (see :func:`conceptvec.nn.models.load_model`)
    objective : ``projection`` (default) or ``cosine``; see ``OBJECTIVES``
    transforms : ``standard`` (Lucent's) or ``none``; see ``TRANSFORMS``
    lr : Adam's learning rate (Lucent: 0.05)
    decorrelate : optimise RGB in Lucid's decorrelated colour basis
    channels : input channels, 1 (grey) or 3; default the model's (a 1-channel model is optimised
        in grey, without colour decorrelation)
    device : ``cpu``, ``cuda`` or ``auto``
    progress : show a progress bar

    Returns
    -------
    FeatureVisualisation
        ``images`` (k, size, size, 3) in [0, 1], ``objective`` (k,), ``history`` (steps, k). Ctrl-C
        returns the images of the steps done so far with ``interrupted=True``.
    """
    if objective not in OBJECTIVES:
        raise ConceptvecError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}.")
    if transforms not in TRANSFORMS:
        raise ConceptvecError(f"unknown transforms {transforms!r}; valid: {', '.join(TRANSFORMS)}.")
    if int(steps) != steps or steps < 1:
        raise ConceptvecError(f"steps must be a positive integer, got {steps}.")
    if int(size) != size or size < 8:
        raise ConceptvecError(f"size must be an integer of at least 8 pixels, got {size}.")
    if not lr > 0:
        raise ConceptvecError(f"lr must be positive, got {lr}.")
    dirs = _check_directions(directions)
    # load_model puts a bare module in eval mode; remember its modes first so that they are restored.
    modes = {m: m.training for m in model.modules()} if isinstance(model, nn.Module) else None
    loaded = model if isinstance(model, LoadedModel) else load_model(model, weights)
    find_layer(loaded.module, layer)  # a wrong name fails here, before any copy or optimisation
    dev = resolve_device(device)
    n_channels = _input_channels(loaded, channels)
    norm = None if transform is not None else _normalisation(loaded)
    params = FeatureVizParams(steps=int(steps), size=int(size), seed=int(seed), lr=float(lr), objective=objective,
                              transforms=transforms, decorrelate=bool(decorrelate), batch=bool(batch))
    k = len(dirs)
    seeds = [int(seed) + i for i in range(k)]
    prepare = _input_map(transform, norm, n_channels, loaded, dev)
    unit = torch.as_tensor(dirs / np.linalg.norm(dirs, axis=1, keepdims=True), dtype=torch.float32, device=dev)
    groups = [list(range(k))] if batch else [[i] for i in range(k)]

    images = np.zeros((k, size, size, 3), dtype=np.float32)
    final = np.full(k, np.nan)
    history = np.full((params.steps, k), np.nan)
    steps_done = [0] * k
    interrupted = False
    module = loaded.module
    start = time.perf_counter()
    with _eval_frozen(module, modes), _model_to_run(module, layer, dev) as (net, net_layer), layer_output(net_layer) as captured, \
            progress_bar("step", disable=not progress) as bar:
        task = bar.add_task(f"feature visualisation {layer}", total=params.steps * len(groups))
        for group in groups:
            if interrupted:
                break
            run = _Run(net, captured, prepare, unit[group], [seeds[i] for i in group], n_channels, params, dev, layer)
            interrupted = not run.optimise(lambda: bar.advance(task))
            images[group], final[group] = run.result()
            history[:, group] = run.history
            for i in group:
                steps_done[i] = run.done
    return FeatureVisualisation(
        images=images, objective=final, history=history[: max(steps_done)], directions=dirs, params=params,
        seeds=seeds, model=loaded.describe(), layer=layer, channels=n_channels, normalisation=norm,
        steps_done=steps_done, interrupted=interrupted, seconds=time.perf_counter() - start,
        extra={"transform": "given by the caller" if transform is not None else None},
    )


@contextlib.contextmanager
def _model_to_run(module: nn.Module, layer: str, dev: torch.device) -> Iterator[tuple[nn.Module, nn.Module]]:
    """The model to optimise with and its layer: the private fast copy (:func:`_fast_copy`), or else the
    caller's model itself on ``dev``, its device and layout restored afterwards."""
    net = _fast_copy(module, layer, dev) if _SPEEDUPS else None
    if net is not None:
        yield net, find_layer(net, layer)
        return
    with _on_device(module, dev):
        yield module, find_layer(module, layer)


@contextlib.contextmanager
def _on_device(module: nn.Module, dev: torch.device) -> Iterator[None]:
    """The module on ``dev`` with its 4-D weights channels-last (oneDNN's preferred layout on the CPU,
    about 10% faster per step); device and layout restored afterwards."""
    params = list(module.parameters())
    before = params[0].device if params else dev
    layouts = [(p, p.is_contiguous()) for p in params if p.ndim == 4]
    module.to(dev)
    if dev.type == "cpu":
        module.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        module.to(before)
        for p, contiguous in layouts:
            if contiguous and not p.is_contiguous():
                p.data = p.data.contiguous()


def _input_map(transform, norm, n_channels: int, loaded: LoadedModel, dev: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    if transform is not None:
        return transform
    if norm is None:
        return lambda x: x
    mean = torch.tensor(norm["mean"], device=dev).reshape(1, -1, 1, 1)
    std = torch.tensor(norm["std"], device=dev).reshape(1, -1, 1, 1)
    if mean.shape[1] != n_channels:
        raise ConceptvecError(f"the normalisation of {loaded.name} has {mean.shape[1]} channels but the images {n_channels}; pass channels= or transform=.")
    return lambda x: (x - mean) / std


def _check_width(output: torch.Tensor, unit: torch.Tensor, layer: str) -> None:
    width = output.shape[_unit_axis(output)]
    if width != unit.shape[1]:
        raise ConceptvecError(
            f"directions have {unit.shape[1]} units but layer {layer!r} has {width} (output shape "
            f"{tuple(output.shape[1:])} per image); give directions of length {width}, or the layer they came from."
        )


class _Run:
    """One batch of images optimised together: Adam on their Fourier coefficients, one generator per item."""

    def __init__(self, module, captured, prepare, unit, seeds, n_channels, params: FeatureVizParams, dev, layer: str):
        self.module, self.captured, self.prepare, self.unit, self.params, self.layer = module, captured, prepare, unit, params, layer
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        spectra = _FourierImage.init(len(seeds), n_channels, params.size, params.fft_sd, self.generators)
        self.image = _FourierImage(spectra, params.size, params.decorrelate, params.decay_power).to(dev)
        self.sizes = _TransformSizes.for_size(params.size)
        self.history = np.full((params.steps, len(seeds)), np.nan)
        self.done = 0

    def objective(self, random: bool) -> torch.Tensor:
        x = self.prepare(_transform(self.image(), self.generators if random else None, self.sizes))
        if x.ndim == 4 and x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        out = forward_to_layer(self.module, x, self.captured)
        _check_width(out, self.unit, self.layer)
        return _objective(out, self.unit, self.params.objective)

    def optimise(self, advance: Callable[[], None]) -> bool:
        """Run the steps; False if Ctrl-C stopped them (the image is then that of the last full step)."""
        optimiser = torch.optim.Adam([self.image.spectra], lr=self.params.lr)
        random = self.params.transforms == "standard"
        try:
            for step in range(self.params.steps):
                optimiser.zero_grad(set_to_none=True)
                obj = self.objective(random)
                # The sum keeps item i's gradient free of the others' (a mean would scale it by 1 / k).
                (-obj.sum()).backward()
                self._step(optimiser)
                self.history[step] = obj.detach().cpu().numpy()
                self.done = step + 1
                advance()
        except KeyboardInterrupt:
            return False
        return True

    def _step(self, optimiser: torch.optim.Optimizer) -> None:
        # Ctrl-C inside Adam's update could leave the coefficients half-updated; keep a copy to fall back to.
        before = self.image.spectra.detach().clone()
        try:
            optimiser.step()
        except KeyboardInterrupt:
            with torch.no_grad():
                self.image.spectra.copy_(before)
            raise

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """The images as (k, size, size, 3) and their objective without random transforms."""
        with torch.no_grad():
            images = self.image()
            obj = self.objective(random=False)
        array = images.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
        if array.shape[-1] == 1:
            array = np.repeat(array, 3, axis=-1)
        return array, obj.cpu().numpy()


# ---------------------------------------------------------------------------------------------
# A run directory: the neuron and its concept vectors, written beside its ConceptSet
# ---------------------------------------------------------------------------------------------

FEATUREVIZ_DIR = "featureviz"


def run_featureviz(run_dir: str | os.PathLike, neuron: int, steps: int = 512, size: int | None = None, seed: int = 0,
                   device: str = "cpu", overwrite: bool = False, progress: bool = True) -> tuple[FeatureVisualisation, Path]:
    """Visualise neuron ``neuron`` of a run and its concept vectors in one batch; write ``neuron_<n>/featureviz/``.

    The model and layer are those of ``run_dir/store`` (or, without a store, of the ConceptSet's
    provenance). ``size`` defaults to the model's input size. Writes ``neuron.png``,
    ``concept_<j>.png`` and ``featureviz.json``; after Ctrl-C the images so far, marked partial.
    """
    from ...storage.conceptset import ConceptSet

    run_dir = Path(run_dir)
    cs_dir = run_dir / f"neuron_{neuron}"
    if not (cs_dir / "conceptset.json").exists():
        raise ConceptvecError(f"no ConceptSet of neuron {neuron} in {run_dir} ({cs_dir} is missing); make it with "
                              f"`conceptvec disentangle {run_dir / 'store'} --neuron {neuron} --out {cs_dir}`.")
    cs = ConceptSet.load(cs_dir)
    if cs.neuron is None:
        raise ConceptvecError(f"{cs_dir} was started from a direction, not a neuron; use cv.feature_visualisation with its vectors.")
    source = _model_and_layer(run_dir, cs)
    out = cs_dir / FEATUREVIZ_DIR
    refuse_existing(out, overwrite, what="feature visualisation")  # before minutes of optimisation, not after
    loaded = load_model(source["model"]["name"], source["model"].get("weights"), **source["load"])
    if size is None:
        size = int(loaded.input_shape[-1]) if loaded.input_shape else 224
    directions = neuron_directions(cs.n_units, cs.neuron, cs.concept_vectors)
    fv = feature_visualisation(loaded, source["layer"], directions, steps=steps, size=size, seed=seed, batch=True,
                               device=device, progress=progress)
    names = ["neuron"] + [f"concept_{j}" for j in range(cs.n_concepts)]
    fv.save(out, names=names, overwrite=True, extra={"neuron": cs.neuron, "conceptset": str(cs_dir.resolve())})
    return fv, out


def _model_and_layer(run_dir: Path, cs) -> dict[str, Any]:
    store_meta = run_dir / "store" / "metadata.json"
    if store_meta.exists():
        from ...storage.store import ActivationStore

        meta = ActivationStore.open(run_dir / "store").metadata
    else:
        meta = (cs.provenance or {}).get("activations") or {}
    if not isinstance(meta.get("model"), dict) or "name" not in meta["model"] or not meta.get("layer"):
        raise ConceptvecError(f"cannot tell which model and layer made {run_dir}: no store/ with metadata and no model in the "
                              f"ConceptSet's provenance; use cv.feature_visualisation(model, layer, directions) from Python.")
    return {"model": meta["model"], "layer": meta["layer"], "load": _load_options(meta)}


def _load_options(meta: dict[str, Any]) -> dict[str, Any]:
    """The key map and preprocessing overrides the store was extracted with, to load the same model again."""
    options: dict[str, Any] = {}
    key_map = meta["model"].get("key_map")
    if key_map is not None:
        if key_map != "order" and not Path(key_map).exists():
            raise ConceptvecError(
                f"the store was extracted with key map {key_map!r}, which cannot be read back from here; load the model as "
                "for extraction and call cv.feature_visualisation(model, layer, directions) from Python."
            )
        options["key_map"] = key_map
    overrides = (meta.get("preprocessing") or {}).get("overrides") or {}
    options.update({k: tuple(overrides[k]) for k in ("mean", "std") if k in overrides})
    if "size" in overrides:
        options["size"] = int(overrides["size"])
    return options
