"""The builders of each model spec: ``digits``, ``torchvision:NAME``, ``timm:NAME``, ``hf:NAME_OR_PATH``, ``checkpoint:FILE``.

Each returns a ``models.LoadedModel``: the module in eval mode, its own preprocessing, and what
identifies its weights (a name, or a local file's sha256). ``models.load_model`` picks one by spec.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import ConceptvecError
from ..storage.provenance import file_digest
from .layers import IMAGENET_MEAN, IMAGENET_STD, LoadedModel
from .statedict import files_digest, read_state_dict


def digits_model(weights: str | None) -> LoadedModel:
    from . import digits

    path = digits.shipped_digits_dir() if weights is None else Path(weights)
    if path.is_dir():
        path = path / digits.WEIGHTS_FILE
    digest = file_digest(path) if path.is_file() else None  # before loading: the digest is of what was loaded or earlier
    module = digits.load_digits_cnn(path)
    return LoadedModel(module, "digits", str(path if weights is None else weights), None,
                       (1, digits.INPUT_SIZE, digits.INPUT_SIZE), dict(digits.PREPROCESSING), weights_digest=digest)


def random_weights(weights: str | None) -> bool:
    return weights is None or weights.lower() == "none"


def input_shape(transform: Callable[[Any], torch.Tensor]) -> tuple[int, ...]:
    # What the preprocessing makes of an image is the model's input shape, whatever the library.
    from PIL import Image

    return tuple(transform(Image.new("RGB", (320, 320), (128, 128, 128))).shape)


# torchvision's builders of these models set ``transform_input=True`` when they load their pretrained weights
# (the weights expect inputs in [-1, 1]; the model converts ImageNet-normalised ones), False otherwise.
TRANSFORM_INPUT_MODELS = ("inception_v3", "googlenet")


def torchvision_model(name: str, weights: str | None, key_map, overrides: dict[str, Any],
                      transform_input: bool | None = None) -> LoadedModel:
    """torchvision:NAME with named weights, a local state-dict file, or random ones.

    A local file of Inception V3 or GoogLeNet builds the model as torchvision builds it for its own pretrained
    weights (``transform_input=True``), so that torchvision's weights file gives what their name gives;
    ``transform_input=False`` says otherwise (a model retrained on ImageNet-normalised inputs). Random weights
    keep the architecture's default (False) unless ``transform_input`` is given.
    """
    import torchvision
    from torchvision.models import get_model, get_model_weights, list_models

    available = list_models(module=torchvision.models)
    if name not in available:
        near = difflib.get_close_matches(name, available, n=5, cutoff=0.0)
        raise ConceptvecError(f"torchvision has no model {name!r}; nearest: {', '.join(near)}. All: torchvision.models.list_models().")
    if transform_input is not None and name not in TRANSFORM_INPUT_MODELS:
        raise ConceptvecError(f"transform_input (--transform-input) applies to torchvision's {' and '.join(TRANSFORM_INPUT_MODELS)}; "
                              f"{name} has no such setting, leave it out.")
    weight_enum = get_model_weights(name)
    spec = "none" if weights is None else weights
    architecture: dict[str, Any] = {}
    if name in TRANSFORM_INPUT_MODELS:
        architecture["transform_input"] = bool(transform_input if transform_input is not None else not random_weights(spec))
    digest = None  # named torchvision weights are identified by their name (their files carry a hash prefix)
    if random_weights(spec):
        torch.manual_seed(0)  # random weights, but the same ones every run
        module = get_model(name, weights=None, **architecture)
        meta_weights = weight_enum.DEFAULT
        loaded = "none (random, torch seed 0)"
    elif os.path.exists(spec):
        # init_weights=False as torchvision's builders for pretrained weights: the file replaces them anyway
        module = get_model(name, weights=None, **architecture, **({"init_weights": False} if architecture else {}))
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
            module = get_model(name, weights=meta_weights, **architecture)
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
        module.eval(), f"torchvision:{name}", loaded, transform, input_shape(transform),
        {"transforms_of": str(meta_weights), "transform": repr(transform), **({"overrides": overrides} if overrides else {})},
        weights_digest=digest, architecture=architecture or None,
    )


def timm_model(name: str, weights: str | None, key_map, overrides: dict[str, Any]) -> LoadedModel:
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
    if random_weights(weights):
        loaded = "none (random, torch seed 0)"
    elif weights is not None and os.path.exists(weights):  # not None: random_weights said so
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
        module.eval(), f"timm:{name}", loaded, transform, input_shape(transform),
        {"data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}, "transform": repr(transform),
         **({"overrides": overrides} if overrides else {})},
        weights_digest=digest,
    )


def hf_model(name: str, weights: str | None, overrides: dict[str, Any]) -> LoadedModel:
    from .language import is_language_folder, load_language_model, refuse_custom_code
    refuse_custom_code(name)
    if is_language_folder(name):  # a tokenizer and no image processor
        return load_language_model(name, weights, overrides)
    try:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel
    except ImportError:  # pragma: no cover - transformers is a dependency
        raise ConceptvecError("hf:NAME needs the transformers package; pip install transformers.") from None
    digest = None
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=True, trust_remote_code=False)
        if weights is not None and random_weights(weights):
            torch.manual_seed(0)
            module = AutoModel.from_config(config, trust_remote_code=False)
            loaded = "none (random, torch seed 0)"
        elif weights is None:
            files = hf_weight_files(name)
            digest = files_digest(files) if files else None
            module = AutoModel.from_pretrained(name, local_files_only=True, trust_remote_code=False)
            loaded = str(Path(name).resolve()) if Path(name).exists() else name
        else:
            raise ConceptvecError(f"hf models take their weights from their folder; pass no --weights (or 'none' for random), not {weights!r}.")
    except (OSError, ValueError) as exc:
        if isinstance(exc, ConceptvecError):
            raise
        refuse_custom_code(name, exc)
        raise ConceptvecError(
            f"could not load the transformers model {name!r} from a local folder or the local cache ({exc}). Save it "
            f"with model.save_pretrained(DIR) and processor.save_pretrained(DIR), then use hf:DIR."
        ) from None
    try:
        processor = AutoImageProcessor.from_pretrained(name, local_files_only=True, trust_remote_code=False)
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
        module.eval(), f"hf:{name}", loaded, transform, input_shape(transform),
        {"image_processor": processor.to_dict(), **({"overrides": overrides} if overrides else {})},
        weights_digest=digest,
    )


def hf_weight_files(name: str) -> list[Path]:
    """The weight files of a transformers model folder (none when ``name`` is not a local folder)."""
    folder = Path(name)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".pt", ".pth"))


def checkpoint_model(path: str, weights: str | None, overrides: dict[str, Any]) -> LoadedModel:
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

