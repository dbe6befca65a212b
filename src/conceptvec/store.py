"""ActivationStore: the examples x units matrix of pooled activations of one layer, on disk.

A store is a directory::

    metadata.json      model, layer, pooling, data, preprocessing, package versions, shape, dtype
    activations.npy    (n_examples, n_units) float32 or float16, opened memory-mapped
    examples.parquet   one row per example: id (stable), label, label_name, source

It is written into ``<dir>.partial`` and renamed to ``<dir>`` only when complete, so a directory
with the final name is always whole.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ._io import environment, read_json, write_json
from .errors import StoreError

FORMAT = "conceptvec.ActivationStore/1"
METADATA_FILE = "metadata.json"
ACTIVATIONS_FILE = "activations.npy"
EXAMPLES_FILE = "examples.parquet"
DTYPES = ("float32", "float16")


def partial_path(path: str | os.PathLike) -> Path:
    """Where an unfinished store is written before it is renamed to ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


class ActivationStore:
    """A finished store, opened read-only; ``activations`` is memory-mapped."""

    def __init__(self, path: Path, metadata: dict[str, Any]):
        self.path = path
        self.metadata = metadata
        self._activations: np.ndarray | None = None
        self._examples: pa.Table | None = None

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike) -> "ActivationStore":
        """Open a complete store; a missing, partial or foreign directory raises StoreError saying what to do."""
        path = Path(path)
        if not path.exists():
            if partial_path(path).exists():
                raise StoreError(
                    f"the activation store {path} is incomplete: extraction stopped before it finished "
                    f"({partial_path(path)} holds the part done). Run the same `conceptvec extract ... --out {path}` "
                    f"command again to finish it."
                )
            raise StoreError(
                f"no activation store at {path}. Create one with `conceptvec extract --model ... --layer ... "
                f"--data ... --out {path}` or cv.extract(...), or check the path."
            )
        if not path.is_dir():
            raise StoreError(f"{path} is a file, not an activation store directory.")
        meta_file = path / METADATA_FILE
        if not meta_file.exists():
            if (path / "conceptset.json").exists():
                raise StoreError(f"{path} is a ConceptSet, not an activation store; open it with cv.ConceptSet.load({str(path)!r}).")
            raise StoreError(
                f"{path} is not an activation store (it has no {METADATA_FILE}). Point to the --out directory "
                f"of `conceptvec extract`."
            )
        metadata = read_json(meta_file)
        if metadata.get("format") != FORMAT:
            raise StoreError(f"{path}/{METADATA_FILE} is not an activation store's metadata (format {metadata.get('format')!r}, expected {FORMAT!r}).")
        for name in (ACTIVATIONS_FILE, EXAMPLES_FILE):
            if not (path / name).exists():
                raise StoreError(f"the activation store {path} is damaged: {name} is missing. Extract it again.")
        store = cls(path, metadata)
        shape = store.activations.shape
        expected = (metadata["n_examples"], metadata["n_units"])
        if shape != expected:
            raise StoreError(f"the activation store {path} is damaged: activations have shape {shape}, metadata says {expected}. Extract it again.")
        return store

    # -- contents --------------------------------------------------------------------------
    @property
    def activations(self) -> np.ndarray:
        """(n_examples, n_units) memory-mapped, read-only."""
        if self._activations is None:
            self._activations = np.load(self.path / ACTIVATIONS_FILE, mmap_mode="r", allow_pickle=False)
        return self._activations

    @property
    def examples(self) -> pa.Table:
        """The example index as a pyarrow Table (``.to_pandas()`` for a DataFrame)."""
        if self._examples is None:
            self._examples = pq.read_table(self.path / EXAMPLES_FILE)
        return self._examples

    @property
    def ids(self) -> np.ndarray:
        return self.examples.column("id").to_numpy(zero_copy_only=False)

    @property
    def labels(self) -> np.ndarray:
        return self.examples.column("label").to_numpy()

    @property
    def label_names(self) -> np.ndarray:
        return self.examples.column("label_name").to_numpy(zero_copy_only=False)

    @property
    def sources(self) -> np.ndarray:
        return self.examples.column("source").to_numpy(zero_copy_only=False)

    @property
    def n_examples(self) -> int:
        return int(self.metadata["n_examples"])

    @property
    def n_units(self) -> int:
        return int(self.metadata["n_units"])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_examples, self.n_units)

    def provenance(self) -> dict[str, Any]:
        """What made these activations, for the metadata of results computed from them."""
        keys = ("model", "layer", "pooling", "data", "preprocessing")
        return {"store": str(self.path.resolve()), **{k: self.metadata.get(k) for k in keys}}

    def __repr__(self) -> str:
        m = self.metadata
        return (
            f"ActivationStore({str(self.path)!r}, {self.n_examples} examples x {self.n_units} units, "
            f"model={m.get('model', {}).get('name')!r}, layer={m.get('layer')!r})"
        )

    # -- writing ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        activations: np.ndarray,
        examples: Mapping[str, Sequence] | None = None,
        metadata: Mapping[str, Any] | None = None,
        dtype: str = "float32",
        overwrite: bool = False,
    ) -> "ActivationStore":
        """Write a complete store from an in-memory matrix (for arrays made elsewhere, and tests)."""
        activations = np.asarray(activations)
        if activations.ndim != 2 or 0 in activations.shape:
            raise StoreError(f"activations must be a non-empty 2-D array (n_examples, n_units), got shape {activations.shape}.")
        with StoreWriter(path, activations.shape[0], activations.shape[1], dtype=dtype, overwrite=overwrite) as writer:
            writer.write(0, activations)
            writer.finish(examples, metadata)
        return cls.open(path)


class StoreWriter:
    """Writes a store block by block into ``<path>.partial``; ``finish`` makes it final.

    Used as a context manager, an exception (Ctrl-C included) leaves the partial directory for
    inspection and never a directory with the final name.
    """

    def __init__(self, path: str | os.PathLike, n_examples: int, n_units: int, dtype: str = "float32", overwrite: bool = False):
        if dtype not in DTYPES:
            raise StoreError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}.")
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise StoreError(
                    f"{self.path} already exists. Choose another --out, delete it, or pass overwrite=True (--overwrite)."
                )
        self.partial = partial_path(self.path)
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)
        self.n_examples, self.n_units, self.dtype = int(n_examples), int(n_units), dtype
        self.overwrite = overwrite
        self._matrix = np.lib.format.open_memmap(
            self.partial / ACTIVATIONS_FILE, mode="w+", dtype=np.dtype(dtype), shape=(self.n_examples, self.n_units)
        )
        self._finished = False

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._matrix = None  # release the memory map whatever happened

    def write(self, start: int, block: np.ndarray) -> None:
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != self.n_units or start < 0 or start + len(block) > self.n_examples:
            raise StoreError(f"block of shape {block.shape} at row {start} does not fit a ({self.n_examples}, {self.n_units}) store.")
        self._matrix[start : start + len(block)] = block

    def finish(self, examples: Mapping[str, Sequence] | None, metadata: Mapping[str, Any] | None, n_rows: int | None = None) -> None:
        """Write the example index and metadata, flush, and rename ``<path>.partial`` to ``<path>``.

        ``n_rows`` keeps only the first rows written (when some examples could not be read).
        """
        if n_rows is not None and n_rows != self.n_examples:
            self._shrink(n_rows)
        n = self.n_examples
        examples = dict(examples or {})
        ids = [str(x) for x in examples.get("id", range(n))]
        if len(set(ids)) != len(ids):
            raise StoreError("example ids must be unique.")
        columns = {
            "id": ids,
            "label": [int(x) for x in examples.get("label", [-1] * n)],
            "label_name": [str(x) for x in examples.get("label_name", [""] * n)],
            "source": [str(x) for x in examples.get("source", [""] * n)],
        }
        for name, values in columns.items():
            if len(values) != n:
                raise StoreError(f"examples[{name!r}] has {len(values)} entries, expected one per example ({n}).")
        table = pa.table(
            {k: pa.array(v, type=pa.int64() if k == "label" else pa.string()) for k, v in columns.items()}
        )
        pq.write_table(table, self.partial / EXAMPLES_FILE)
        self._matrix.flush()
        meta = {
            "format": FORMAT,
            **dict(metadata or {}),
            "n_examples": n,
            "n_units": self.n_units,
            "dtype": self.dtype,
            **environment(),
        }
        write_json(self.partial / METADATA_FILE, meta)
        self._matrix = None
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
            os.replace(self.path, old)
            os.replace(self.partial, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.partial, self.path)
        self._finished = True

    def _shrink(self, n_rows: int) -> None:
        if not 0 < n_rows <= self.n_examples:
            raise StoreError(f"cannot keep {n_rows} rows of a store allocated for {self.n_examples}; no example could be read.")
        self._matrix.flush()
        final = self.partial / ("shrunk-" + ACTIVATIONS_FILE)
        smaller = np.lib.format.open_memmap(final, mode="w+", dtype=self._matrix.dtype, shape=(n_rows, self.n_units))
        for start in range(0, n_rows, 65536):
            smaller[start : start + 65536] = self._matrix[start : min(start + 65536, n_rows)]
        smaller.flush()
        self._matrix = None
        os.replace(final, self.partial / ACTIVATIONS_FILE)
        self._matrix = np.load(self.partial / ACTIVATIONS_FILE, mmap_mode="r+", allow_pickle=False)
        self.n_examples = n_rows
