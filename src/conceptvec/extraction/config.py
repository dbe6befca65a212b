"""Options of extraction, validated when made (as ``Params`` is for the method); imports no torch."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from ..core.options import at_least, boolean, check_fields, documented, numbers, one_of, option, optional, switch, text, whole_number
from ..errors import ConceptvecError
from ..models.pooling import POOLS
from ..sources.images import check_background

CHUNK_SIZE = 4096  # examples per resumable chunk: 4096 x 2048 float32 pooled vectors are 32 MiB
DTYPES = ("float32", "float16")
EXAMPLE_KINDS = ("documents", "tokens")
DECODES = {
    "auto": "JPEGs decoded and preprocessed on the GPU when the device is CUDA and the device can reproduce the model's "
            "preprocessing, else on the CPU",
    "cpu": "images decoded and preprocessed on the CPU (PIL and the model's own transform), in DataLoader workers",
    "device": "JPEGs decoded (batched decode_jpeg) and preprocessed on the device, whatever it is",
}
AUTOCAST_DTYPES = ("float16", "bfloat16")


def device_name(name: str, value: Any) -> str:
    """The check of ``device``: auto, cpu, cuda or cuda:N."""
    if not isinstance(value, str) or not (value in ("auto", "cpu", "cuda") or value.startswith("cuda:")):
        raise ConceptvecError(f"{name} must be auto, cpu, cuda or cuda:N, got {value!r}.")
    return value


def key_mapping(name: str, value: Any) -> str | Mapping[str, str]:
    """The check of ``key_map``: 'order', a JSON object's text, or a mapping of state-dict keys."""
    if isinstance(value, Mapping) or (isinstance(value, str) and value.strip()):
        return value
    raise ConceptvecError(f"{name} must be 'order', a JSON {{file_key: model_key}} or a mapping, got {value!r}.")


def path_like(name: str, value: Any) -> str | os.PathLike[str]:
    """The check of a file option: a path (str or os.PathLike)."""
    if isinstance(value, os.PathLike) or (isinstance(value, str) and value.strip()):
        return value
    raise ConceptvecError(f"{name} must be a path to a file, got {value!r}.")


@documented
@dataclass(frozen=True)
class ExtractConfig:
    """How ``extract`` runs the model over the data; recorded in the store's metadata. Each field is declared once
    (``core.options.option``): ``cv.extract`` takes the same keywords and ``conceptvec extract`` the same options."""

    weights: str | None = option(
        None, "Weights name (DEFAULT, IMAGENET1K_V1), a local state-dict file, or none.", check=optional(text), type=str)
    key_map: str | Mapping[str, str] | None = option(
        None, "State-dict keys named differently: 'order' or a JSON {file_key: model_key}.", check=optional(key_mapping), type=str)
    mean: tuple[float, ...] | None = option(
        None, "Override the normalisation mean, e.g. 0.5,0.5,0.5.", check=optional(numbers), kind="numbers")
    std: tuple[float, ...] | None = option(
        None, "Override the normalisation std, e.g. 0.5,0.5,0.5.", check=optional(numbers), kind="numbers")
    size: int | None = option(None, "Override the input size (crop side in pixels).", type=int, check=optional(
        lambda name, value: whole_number(name, value, 1, 4096, why="a side of 100000 pixels is 120 GB per image")))
    transform_input: bool | None = option(
        None, "torchvision Inception V3 and GoogLeNet: convert ImageNet-normalised inputs to [-1, 1] first, as torchvision "
        "builds them for its weights; --no-transform-input for a model retrained without it.", check=switch,
        kind="switch", show_default="on with named weights or a weights file")
    per_class: int | None = option(None, "Sample this many examples per class (paper: 130).", check=optional(at_least(1)), type=int)
    seed: int = option(0, "Random seed of the per-class sample, recorded with the output.", check=at_least(0))
    class_index: str | os.PathLike[str] | None = option(
        None, "ImageNet class-index JSON for WordNet-id folders.", check=optional(path_like), type=Path)
    background: str = option(
        "white", "Images with transparency (RGBA, LA, palette with a transparent colour) are composited on this colour "
        "before the model's transform: a colour name or #rrggbb.", check=check_background,
        doc="Recorded as the store's ``data.background`` with ``data.n_transparent``, the number of such images.")
    batch_size: int = option(64, "Examples per forward pass.", check=at_least(1))
    workers: int | None = option(
        None, "Processes at work, this one included: N-1 of them read and decode examples while this one runs the model; "
        "0 or 1: this process alone. With --engine ray: Ray actors, each running the model.", check=optional(at_least(0)),
        type=int, doc="One meaning on every engine (``engines.registry``).", show_default="this process alone; on Ray one actor per GPU, else per CPU, of the cluster")
    device: str = option("auto", "auto (CUDA when available), cpu, cuda or cuda:N.", check=device_name)
    dtype: str = option("float32", "float32 or float16 on disk.", check=one_of(DTYPES))
    pool: str = option("avg", "avg (the paper's), max, or cls (first token).", check=one_of(tuple(POOLS)))
    autocast: bool = option(False, "Autocast on CUDA (float16, or --autocast-dtype).", check=boolean)
    autocast_dtype: str = option("float16", "float16 or bfloat16, with --autocast.", check=one_of(AUTOCAST_DTYPES))
    decode: str = option(
        "auto", "Images: auto (on CUDA, JPEGs decoded and preprocessed on the GPU when it can reproduce the model's "
        "preprocessing), cpu, or device.", check=one_of(tuple(DECODES)),
        doc="See ``DECODES`` and docs/gpu.md; ``device`` matches the CPU path within a grey level before the model.")
    channels_last: bool | None = option(
        None, "Memory format of 4-D inputs: channels last.", check=switch, kind="switch",
        show_default="when the model has 2-D convolutions")
    chunk_size: int = option(CHUNK_SIZE, "Examples per resumable chunk (of text: whole documents, about this many rows).",
                             check=at_least(1))
    examples: str = option(
        "documents", "Text: documents (one row per text, pooled over its real tokens) or tokens (one row per token).",
        check=one_of(EXAMPLE_KINDS))
    max_tokens: int | None = option(
        None, "Text: truncate documents to this many tokens (default: the model's limit).", check=optional(at_least(1)), type=int)
    text_column: str | None = option(
        None, "Text: the column of a .jsonl/.csv/.parquet file or saved dataset holding the text.", check=optional(text), type=str)
    label_column: str | None = option(
        None, "Text: the column holding each document's class label.", check=optional(text), type=str)
    keep_special_tokens: bool = option(False, "Text: pool (or keep rows of) BOS, EOS, CLS, SEP too.", check=boolean)
    batch_tokens: int | None = option(
        None, "Text: at most this many padded tokens per forward pass.", check=optional(at_least(1)), type=int)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.examples == "tokens" and self.pool != "avg":
            raise ConceptvecError(f"--pool {self.pool} pools a document's tokens; --examples tokens keeps one row per token. "
                                  f"Leave out --pool, or use --examples documents.")
        if self.std is not None and any(v <= 0 for v in self.std):
            raise ConceptvecError(f"std must be > 0 for every channel (it divides the image), got {self.std}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> "ExtractConfig":
        """A copy with some values changed (validated again)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ConceptvecError(f"unknown extraction option(s) {unknown}; valid ones are {sorted(f.name for f in fields(self))}.")
        return replace(self, **changes)
