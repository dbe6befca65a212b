"""The optimisation: one image per direction, Adam on its Fourier coefficients (Lucent's ``render``).

Holds :func:`feature_visualisation`, its result :class:`FeatureVisualisation` and parameters
:class:`FeatureVizParams`, and :func:`layer_output`, the gradient-keeping hook. Each step the
images (:class:`~.param.FourierImage`) are randomly transformed (:mod:`.transforms`), mapped to the
model's input (its own normalisation, or the caller's ``transform``), run up to the layer, and
scored (:mod:`.objectives`). The forward pass stops at the layer, the model's parameters stop
requiring gradients for the duration (Lucent computes every weight's gradient at every step), and
the only hook is removed when done. The model that runs is a private copy (:func:`.fast.fast_copy`)
where one can be made, else the caller's model itself, its state restored afterwards.

Notation: ``k`` directions, ``n_units`` units (channels) in the layer, images of ``size`` pixels,
``channels`` 1 (grey) or 3. Item ``i`` of a batch uses seed ``seed + i``, so ``directions[i:i+1]``
with ``seed=seed + i`` reproduces it alone.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConceptvecError
from ..progress import progress_bar
from ..storage.atomic import atomic_directory, write_json
from ..storage.provenance import environment
from ..models.hooks import forward_to_layer, resolve_device, stop_at_layer
from ..models.layers import LoadedModel, find_layer
from ..models.load import load_model
from .fast import fast_copy
from .objectives import check_directions, check_width, layer_objective
from .param import FourierImage
from .params import FeatureVizParams
from .transforms import TransformSizes, random_transform

RESULT_FILE = "featureviz.json"


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

    def save(self, directory: str | os.PathLike[str], *, names: Sequence[str] | None = None, overwrite: bool = False,
             extra: dict[str, Any] | None = None) -> Path:
        """Write ``<name>.png`` per image and ``featureviz.json`` into ``directory``, atomically.

        ``names`` default to ``direction_0``, ``direction_1``, ...
        """
        from PIL import Image

        names = list(names) if names is not None else [f"direction_{i}" for i in range(len(self.images))]
        if len(names) != len(self.images) or len(set(names)) != len(names):
            raise ConceptvecError(f"need {len(self.images)} distinct image names, got {names}.")
        with atomic_directory(directory, overwrite=overwrite, what="feature visualisation", marker=RESULT_FILE) as tmp:
            files = []
            for name, image in zip(names, self.images):
                Image.fromarray(np.round(image * 255).astype(np.uint8)).save(tmp / f"{name}.png")
                files.append(f"{name}.png")
            write_json(tmp / RESULT_FILE, {"images": files, **self.describe(), **(extra or {}), **environment()})
        return Path(directory)


# ---------------------------------------------------------------------------------------------
# The model: normalisation, a gradient-keeping hook that stops at the layer, frozen parameters
# ---------------------------------------------------------------------------------------------

def layer_output(layer: nn.Module) -> contextlib.AbstractContextManager[dict[str, torch.Tensor]]:
    """Hook ``layer`` for the block's duration: each forward stores the raw output, graph kept, and stops.

    The gradient-keeping sibling of :func:`conceptvec.models.hooks.capture_layer`.
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


# ---------------------------------------------------------------------------------------------
# The optimisation
# ---------------------------------------------------------------------------------------------

def feature_visualisation(
    model: str | nn.Module | LoadedModel,
    layer: str,
    directions: Any,
    *,
    steps: int = 512,
    size: int = 224,
    seed: int = 0,
    batch: bool = True,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    weights: str | None = None,
    objective: str = "projection",
    transforms: str = "standard",
    lr: float = 0.05,
    decorrelate: bool = True,
    channels: int | None = None,
    device: str = "auto",
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
    weights : weights of a spec'd model (see :func:`conceptvec.models.load.load_model`)
    objective : ``projection`` (default) or ``cosine``; see ``OBJECTIVES``
    transforms : ``standard`` (Lucent's) or ``none``; see ``TRANSFORMS``
    lr : Adam's learning rate (Lucent: 0.05)
    decorrelate : optimise RGB in Lucid's decorrelated colour basis
    channels : input channels, 1 (grey) or 3; default the model's (a 1-channel model is optimised
        in grey, without colour decorrelation)
    device : ``auto`` (CUDA when available, the default), ``cpu`` or ``cuda``
    progress : show a progress bar

    Returns
    -------
    FeatureVisualisation
        ``images`` (k, size, size, 3) in [0, 1], ``objective`` (k,), ``history`` (steps, k). Ctrl-C
        returns the images of the steps done so far with ``interrupted=True``.
    """
    # checked before the model loads (FeatureVizParams declares each option's check once)
    params = FeatureVizParams(steps=steps, size=size, seed=seed, lr=lr, objective=objective, transforms=transforms,
                              decorrelate=decorrelate, batch=batch)
    steps, size, seed = params.steps, params.size, params.seed
    dirs = check_directions(directions)
    # load_model puts a bare module in eval mode; remember its modes first so that they are restored.
    modes = {m: m.training for m in model.modules()} if isinstance(model, nn.Module) else None
    loaded = model if isinstance(model, LoadedModel) else load_model(model, weights)
    if getattr(loaded, "tokenizer", None) is not None:
        raise ConceptvecError(
            f"feature visualisation optimises a continuous input (an image) by gradient ascent; {loaded.name} is a language model, "
            f"whose input is discrete tokens, so there is nothing continuous to optimise. Look at the neuron's top activating and "
            f"maximally projecting token snippets instead (`conceptvec report RUN`, or extract with --examples tokens)."
        )
    find_layer(loaded.module, layer)  # a wrong name fails here, before any copy or optimisation
    dev = resolve_device(device)
    n_channels = _input_channels(loaded, channels)
    norm = None if transform is not None else _normalisation(loaded)
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
    """The model to optimise with and its layer: the private fast copy (:func:`.fast.fast_copy`), or else the
    caller's model itself on ``dev``, its device and layout restored afterwards."""
    net = fast_copy(module, layer, dev)
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


class _Run:
    """One batch of images optimised together: Adam on their Fourier coefficients, one generator per item."""

    def __init__(self, module, captured, prepare, unit, seeds, n_channels, params: FeatureVizParams, dev, layer: str):
        self.module, self.captured, self.prepare, self.unit, self.params, self.layer = module, captured, prepare, unit, params, layer
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        spectra = FourierImage.init(len(seeds), n_channels, params.size, params.fft_sd, self.generators)
        self.image = FourierImage(spectra, params.size, params.decorrelate, params.decay_power).to(dev)
        self.sizes = TransformSizes.for_size(params.size)
        self.history = np.full((params.steps, len(seeds)), np.nan)
        self.done = 0

    def objective(self, random: bool) -> torch.Tensor:
        x = self.prepare(random_transform(self.image(), self.generators if random else None, self.sizes))
        if x.ndim == 4 and x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        out = forward_to_layer(self.module, x, self.captured)
        check_width(out, self.unit, self.layer)
        return layer_objective(out, self.unit, self.params.objective)

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
