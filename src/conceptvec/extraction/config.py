"""Options of extraction, validated when made (as ``Params`` is for the method); imports no torch."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from ..core.params import whole_number
from ..errors import ConceptvecError
from ..models.pooling import POOLS

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


@dataclass(frozen=True)
class ExtractConfig:
    """How ``extract`` runs the model over the data; recorded in the store's metadata.

    Parameters
    ----------
    weights, key_map, mean, std, size, transform_input
        See :func:`conceptvec.models.load.load_model`.
    per_class, seed : int
        Sample this many examples per class with this seed (the paper: 130); None takes all.
    class_index : path, optional
        An ImageNet class-index JSON labelling WordNet-id folders with the model's classes.
    batch_size : int
        Examples per forward pass.
    workers : int, optional
        Workers (``engines.registry``: one meaning on every engine). Locally, processes at work, this one
        included: this process runs the model and ``workers - 1`` more read and decode examples (DataLoader
        workers); 0 or 1, or left out: this process does both. On Ray: actors each running the model; left
        out, one per GPU of the cluster on CUDA, else one per CPU.
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    dtype : str
        ``float32`` or ``float16`` on disk.
    pool : str
        ``avg`` (the paper's global average), ``max``, or ``cls`` (first token).
    autocast : bool
        Autocast on CUDA (ignored on CPU, as recorded in the metadata).
    autocast_dtype : str
        ``float16`` or ``bfloat16``: the type autocast computes in.
    decode : str
        Images: ``auto``, ``cpu`` or ``device`` (see ``DECODES`` and docs/gpu.md): where JPEGs are decoded and
        preprocessed. ``device`` matches the CPU path within a grey level before the model.
    channels_last : bool, optional
        Memory format of 4-D inputs; default: when the model has 2-D convolutions.
    chunk_size : int
        Examples per resumable chunk (of text: whole documents, about this many rows).
    examples : str
        Text only: ``documents`` (one row per text, the layer's output pooled over its real tokens) or
        ``tokens`` (one row per token).
    max_tokens : int, optional
        Text only: tokens per document, special ones included; longer ones are truncated. Default: the model's limit.
    text_column, label_column : str, optional
        Text only: the columns of a .jsonl/.csv/.parquet file or saved dataset holding the text and the class label.
    keep_special_tokens : bool
        Text only: pool (or make rows of) special tokens (BOS, EOS, CLS, SEP) too.
    batch_tokens : int, optional
        Text only: padded tokens per forward pass at most (documents are batched by length); default: no limit
        beyond ``batch_size`` documents.
    """

    weights: str | None = None
    key_map: str | Mapping[str, str] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    size: int | None = None
    transform_input: bool | None = None
    per_class: int | None = None
    seed: int = 0
    class_index: str | os.PathLike | None = None
    batch_size: int = 64
    workers: int | None = None
    device: str = "auto"
    dtype: str = "float32"
    pool: str = "avg"
    autocast: bool = False
    autocast_dtype: str = "float16"
    decode: str = "auto"
    channels_last: bool | None = None
    chunk_size: int = CHUNK_SIZE
    examples: str = "documents"
    max_tokens: int | None = None
    text_column: str | None = None
    label_column: str | None = None
    keep_special_tokens: bool = False
    batch_tokens: int | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen dataclass
        for name, low in (("batch_size", 1), ("chunk_size", 1), ("seed", 0)):
            set_(name, whole_number(name, getattr(self, name), low))
        if self.workers is not None:
            set_("workers", whole_number("workers", self.workers, 0))
        if self.per_class is not None:
            set_("per_class", whole_number("per_class", self.per_class, 1))
        if self.size is not None:
            set_("size", whole_number("size", self.size, 1))
        for name in ("max_tokens", "batch_tokens"):
            if getattr(self, name) is not None:
                set_(name, whole_number(name, getattr(self, name), 1))
        if self.examples not in EXAMPLE_KINDS:
            raise ConceptvecError(f"examples must be one of {', '.join(EXAMPLE_KINDS)} (--examples), got {self.examples!r}.")
        if self.examples == "tokens" and self.pool != "avg":
            raise ConceptvecError(f"--pool {self.pool} pools a document's tokens; --examples tokens keeps one row per token. "
                                  f"Leave out --pool, or use --examples documents.")
        for name in ("text_column", "label_column"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConceptvecError(f"{name} must be a column name (--{name.replace('_', '-')} NAME), got {value!r}.")
        if not isinstance(self.keep_special_tokens, bool):
            raise ConceptvecError(f"keep_special_tokens must be True or False, got {self.keep_special_tokens!r}.")
        if self.transform_input is not None and not isinstance(self.transform_input, bool):
            raise ConceptvecError(f"transform_input must be True, False or None (--transform-input/--no-transform-input), got {self.transform_input!r}.")
        if self.decode not in DECODES:
            raise ConceptvecError(f"decode must be one of {', '.join(DECODES)} (--decode), got {self.decode!r}.")
        if self.autocast_dtype not in AUTOCAST_DTYPES:
            raise ConceptvecError(f"autocast_dtype must be one of {', '.join(AUTOCAST_DTYPES)} (--autocast-dtype), got {self.autocast_dtype!r}.")
        if self.pool not in POOLS:
            raise ConceptvecError(f"unknown pooling {self.pool!r}; valid: {', '.join(POOLS)}.")
        if self.dtype not in DTYPES:
            raise ConceptvecError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}.")
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConceptvecError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}.")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                try:
                    numbers = tuple(float(v) for v in value)
                except (TypeError, ValueError):
                    raise ConceptvecError(f"{name} must be numbers, one per colour channel (e.g. 0.5,0.5,0.5), got {value!r}.") from None
                set_(name, numbers)
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
