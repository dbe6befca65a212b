"""ActivationStore: the examples x units matrix of pooled activations of one layer, on disk.

A store is a directory::

    metadata.json      model, layer, pooling, data, preprocessing, package versions, shape, dtype
    activations.npy    (n_examples, n_units) float32 or float16, opened memory-mapped
    examples.parquet   one row per example: id (stable), label, label_name, source; text stores add columns
                       (documents: text; tokens: document, position, token_id, token, start, end)
    documents.parquet  text stores of token rows: one row per document (id, label, label_name, text, n_tokens)

It is written into ``<dir>.partial`` chunk by chunk (resumable, see ``StoreWriter``) and renamed to
``<dir>`` only when complete, so a directory with the final name is always whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .atomic import (check_own_folder, check_replaceable, file_sha256, output_path, read_json, refuse_existing, refuse_inputs, remove_own_folder,
                     replace_directory, write_json, write_manifest, writer_lock)
from .duplicates import duplicate_rows
from .files import stored_as
from .chunks import ASSEMBLY_FILE, assemble_activations, assemble_index, assembled_chunks, chunk_name, write_index_chunk
from .provenance import environment
from ..errors import StoreError

FORMAT = "conceptvec.ActivationStore/1"
METADATA_FILE = "metadata.json"
ACTIVATIONS_FILE = "activations.npy"
EXAMPLES_FILE = "examples.parquet"
DOCUMENTS_FILE = "documents.parquet"
STANDARD_COLUMNS = ("id", "label", "label_name", "source")
DTYPES = ("float32", "float16")
CHUNKS_DIR = "chunks"
PROGRESS_FILE = "progress.json"


def partial_path(path: str | os.PathLike[str]) -> Path:
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
        self._documents: pa.Table | None = None

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "ActivationStore":
        """Open a complete store; a missing, partial or foreign directory raises StoreError saying what to do."""
        if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)) or not str(path).strip():
            raise StoreError(f"ActivationStore.open needs the path of a store folder (what `conceptvec extract --out` "
                             f"wrote), got {path!r}.")
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
                f"{path} is not an activation store (it has no {METADATA_FILE}); give the folder that "
                f"`conceptvec extract --out` wrote."
            )
        again = f"extract it again into a new folder (`conceptvec extract ... --out {path}` after moving the damaged store away)"
        metadata = read_json(meta_file, fix=again)
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            found = metadata.get("format") if isinstance(metadata, dict) else type(metadata).__name__
            raise StoreError(f"{meta_file} is not an activation store's metadata (format {found!r}, expected {FORMAT!r}).")
        missing = [k for k in ("n_examples", "n_units", "dtype") if k not in metadata]
        if missing:
            raise StoreError(f"{meta_file} is damaged: it lacks {', '.join(missing)}; {again}.")
        for name in (ACTIVATIONS_FILE, EXAMPLES_FILE):
            if not (path / name).exists():
                raise StoreError(f"the activation store {path} is damaged: {name} is missing; {again}.")
        store = cls(path, metadata)
        try:
            acts = store.activations
        except (ValueError, OSError, EOFError) as exc:
            raise StoreError(f"{path / ACTIVATIONS_FILE} is damaged or not a float array ({exc}); {again}.") from None
        expected = (metadata["n_examples"], metadata["n_units"])
        if acts.shape != expected:
            raise StoreError(f"the activation store {path} is damaged: activations have shape {acts.shape}, metadata says "
                             f"{tuple(expected)}; {again}.")
        if acts.dtype != np.dtype(str(metadata["dtype"])) or str(acts.dtype) not in DTYPES:
            raise StoreError(f"{path / ACTIVATIONS_FILE} holds {acts.dtype} values but the store's metadata says "
                             f"{metadata['dtype']} (stores hold {' or '.join(DTYPES)}); {again}.")
        try:
            rows = pq.ParquetFile(path / EXAMPLES_FILE).metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise StoreError(f"{path / EXAMPLES_FILE} is damaged ({exc}); {again}.") from None
        if rows != expected[0]:
            raise StoreError(f"the activation store {path} is damaged: {EXAMPLES_FILE} lists {rows} examples for "
                             f"{expected[0]} rows of activations; {again}.")
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
    def documents(self) -> pa.Table | None:
        """The documents of a store of token rows (``examples["document"]`` indexes them); None for other stores."""
        if self._documents is None and (self.path / DOCUMENTS_FILE).exists():
            self._documents = pq.read_table(self.path / DOCUMENTS_FILE)
        return self._documents

    @property
    def ids(self) -> np.ndarray:
        return np.asarray(self.examples.column("id").to_numpy(zero_copy_only=False))  # pyarrow has no stubs: Any

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.examples.column("label").to_numpy())

    @property
    def label_names(self) -> np.ndarray:
        return np.asarray(self.examples.column("label_name").to_numpy(zero_copy_only=False))

    @property
    def sources(self) -> np.ndarray:
        return np.asarray(self.examples.column("source").to_numpy(zero_copy_only=False))

    @property
    def n_examples(self) -> int:
        return int(self.metadata["n_examples"])

    @property
    def n_units(self) -> int:
        return int(self.metadata["n_units"])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_examples, self.n_units)

    @property
    def store_id(self) -> str:
        """What tells this store from another of the same shape: a digest of its metadata (what made it, when)."""
        import hashlib

        return hashlib.sha256(json.dumps(self.metadata, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def content_sha256(self) -> str | None:
        """A digest of the store's contents (activations and example index), computed once when it was written.

        None for stores written before it was recorded. Results record it (through ``store_id``), so a store
        extracted again at the same path is told from the one they were computed from.
        """
        value = self.metadata.get("content_sha256")
        return str(value) if value else None

    def provenance(self) -> dict[str, Any]:
        """What made these activations, for the metadata of results computed from them."""
        keys = ("model", "layer", "pooling", "data", "preprocessing")
        return {"store": str(self.path.resolve()), "store_id": self.store_id, **{k: self.metadata.get(k) for k in keys}}

    def check_made_from(self, provenance: Mapping[str, Any], *, what: str) -> None:
        """Refuse a result (``what``) whose provenance names another store than this one.

        Results from before store ids were recorded, or from plain arrays, carry no id and pass.
        """
        source = provenance.get("activations", provenance) if isinstance(provenance, Mapping) else {}
        recorded = source.get("store_id") if isinstance(source, Mapping) else None
        if recorded is not None and recorded != self.store_id:
            raise StoreError(f"{what} was computed from another activation store ({source.get('store')}, id {recorded}) "
                             f"than {self.path} (id {self.store_id}); give them the store they came from, or compute "
                             f"them again from this one.")

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
        path: str | os.PathLike[str],
        activations: np.ndarray,
        *,
        examples: Mapping[str, Sequence[Any]] | None = None,
        metadata: Mapping[str, Any] | None = None,
        dtype: str = "float32",
        overwrite: bool = False,
    ) -> "ActivationStore":
        """Write a complete store from an in-memory matrix (for arrays made elsewhere, and tests)."""
        if metadata is not None and not isinstance(metadata, Mapping):
            raise StoreError(f"metadata must be a dict (what made the activations: model, layer, data), got {type(metadata).__name__}.")
        activations = np.asarray(activations)
        if activations.ndim != 2 or 0 in activations.shape:
            raise StoreError(f"activations must be a non-empty 2-D array (n_examples, n_units), got shape {activations.shape}.")
        stored_as(activations, dtype)  # values beyond the dtype's range refused before a partial store is begun
        with StoreWriter(path, fingerprint=dict(metadata or {}), dtype=dtype, overwrite=overwrite) as writer:
            writer.write(0, activations)
            writer.finish(examples, metadata)
        return cls.open(path)


COLUMN_TYPES = {"id": pa.string(), "label": pa.int64(), "label_name": pa.string(), "source": pa.string()}


def index_column(values: Any, kept: np.ndarray | None, name: str) -> pa.Array:
    """Column ``name`` of an example index: ``values`` (a sequence, NumPy or Arrow array) at rows ``kept`` (all when None).

    The standard columns get their types (ids, names and sources as text, labels as int64); others keep theirs.
    Arrays are taken without a Python object per row, so a token store's index of millions of rows stays small.
    """
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        array = values
    elif isinstance(values, np.ndarray):
        array = pa.array(values)
    else:
        values = list(values)
        typed = COLUMN_TYPES.get(name)
        if typed == pa.string():
            values = [str(v) for v in values]
        elif typed == pa.int64():
            values = [int(v) for v in values]
        array = pa.array(values, type=typed)
    if kept is not None and len(kept) != len(array):
        array = array.take(pa.array(kept))
    if name in COLUMN_TYPES and array.type != COLUMN_TYPES[name]:
        array = array.cast(COLUMN_TYPES[name])
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def remove_leftovers(path: str | os.PathLike[str]) -> None:
    """Remove the chunk files left in a finished store when a run stopped between renaming and cleaning up."""
    shutil.rmtree(Path(path) / CHUNKS_DIR, ignore_errors=True)
    for name in (PROGRESS_FILE, ASSEMBLY_FILE):
        with contextlib.suppress(FileNotFoundError):
            os.remove(Path(path) / name)


def _partial_file(name: str) -> bool:
    # What a StoreWriter writes into <store>.partial (and nothing else).
    return (name in (PROGRESS_FILE, ASSEMBLY_FILE, METADATA_FILE, ACTIVATIONS_FILE, EXAMPLES_FILE, DOCUMENTS_FILE)
            or name.startswith(".") or name.startswith(CHUNKS_DIR + "/") or name.endswith(".tmp"))


def _plain(value: Any) -> Any:
    # Compare as JSON stores it (tuples become lists, paths strings).
    return json.loads(json.dumps(value, default=str))


def _differing(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, before, after) of what differs; inside a dict, by entry (``data.files_sha256``), so that the entry that
    changed is named rather than cut off behind a long description."""
    found = []
    for k in sorted(set(before) | set(after)):
        had, asked = before.get(k), after.get(k)
        if had == asked:
            continue
        if isinstance(had, dict) and isinstance(asked, dict):
            found += [(f"{k}.{sub}", had.get(sub), asked.get(sub)) for sub in sorted(set(had) | set(asked), key=str)
                      if had.get(sub) != asked.get(sub)]
        else:
            found.append((k, had, asked))
    return found


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class StoreWriter:
    """Writes a store chunk by chunk into ``<path>.partial``; ``finish`` assembles it and makes it final.

    Each chunk is a block of consecutive planned examples, saved as ``chunks/NNNNNN.npy`` (the rows of
    its readable examples) and then marked complete by ``chunks/NNNNNN.json`` (its range and the
    examples skipped in it). After Ctrl-C, a crash or ``kill -9`` a new writer with the same
    ``fingerprint`` resumes: complete chunks are kept, anything else is written again. ``finish``
    streams the chunks, one at a time, into ``activations.npy``, so the finished store does not depend
    on where a run was interrupted, and never more than one chunk is in memory.

    Parameters
    ----------
    path : the store's final directory
    fingerprint : what is being extracted (model, layer, pooling, data, ...); resuming a partial store
        made with a different fingerprint is refused, saying what differs
    dtype : ``float32`` or ``float16``, the dtype on disk
    overwrite : replace a finished store at ``path`` and discard any partial one
    protect : the extraction's inputs (data folder, weights file); ``path`` may not be or hold one of them
    """

    def __init__(self, path: str | os.PathLike[str], *, fingerprint: Mapping[str, Any] | None = None, dtype: str = "float32",
                 overwrite: bool = False, protect: Sequence[str | os.PathLike[str] | None] = ()):
        if dtype not in DTYPES:
            raise StoreError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}.")
        self.path = output_path(path, what="activation store")
        self._lock: contextlib.AbstractContextManager[None] | None = writer_lock(self.path)
        self._lock.__enter__()  # held until __exit__: a second extraction into the same folder is refused
        try:
            self._prepare(dtype, fingerprint, overwrite, protect)
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise

    def _prepare(self, dtype: str, fingerprint: Mapping[str, Any] | None, overwrite: bool,
                 protect: Sequence[str | os.PathLike[str] | None]) -> None:
        if self.path.exists() and not overwrite and any(self.path.iterdir()):  # an empty folder is written into
            raise StoreError(f"{self.path} already exists. Choose another output folder, or pass --overwrite (overwrite=True) "
                             f"to replace the store.")
        # --overwrite replaces an earlier store only, never a folder of other files or the extraction's own input.
        refuse_existing(self.path, overwrite=True, what="activation store", marker=METADATA_FILE, protect=protect)
        self.partial = partial_path(self.path)
        refuse_inputs(self.partial, protect)
        check_own_folder(self.partial, what="a partial activation store", ours=_partial_file)
        self.chunks = self.partial / CHUNKS_DIR
        self.dtype = dtype
        self.fingerprint = _plain({**dict(fingerprint or {}), "dtype": dtype})
        progress_file = self.partial / PROGRESS_FILE
        if self.partial.exists() and not overwrite and progress_file.exists():
            before = read_json(progress_file, fix=f"delete {self.partial} to start the extraction over").get("fingerprint", {})
            differs = _differing(before, self.fingerprint)
            if differs:
                details = "; ".join(f"{k}: partial has {_short(had)}, asked {_short(asked)}" for k, had, asked in differs)
                raise StoreError(
                    f"{self.partial} holds part of a different extraction ({details}). Run the original command to finish "
                    f"it, choose another --out, or pass overwrite=True (--overwrite) to discard it."
                )
        else:
            # No partial, or one from an older version without a fingerprint: start afresh.
            remove_own_folder(self.partial, what="a partial activation store", ours=_partial_file)
            self.chunks.mkdir(parents=True)
            write_json(progress_file, {"format": FORMAT, "fingerprint": self.fingerprint})
        self.chunks.mkdir(exist_ok=True)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Let another writer at the store; the partial directory stays for the next run to resume."""
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            lock.__exit__(None, None, None)

    def __del__(self) -> None:
        self.close()

    # -- chunks ----------------------------------------------------------------------------
    def completed(self) -> dict[int, dict[str, Any]]:
        """The complete chunks: index to ``{"start", "stop", "rows", "skipped", "index"}``."""
        done, assembled = {}, assembled_chunks(self.partial)
        for marker in sorted(self.chunks.glob("*.json")):
            if (self.chunks / (marker.stem + ".npy")).exists() or int(marker.stem) in assembled:
                info = read_json(marker, fix=f"delete {self.partial} to start the extraction over")
                done[int(marker.stem)] = {**info, "index": int(marker.stem)}
        return done

    def write_chunk(self, index: int, start: int, stop: int, rows: np.ndarray, skipped: Sequence[int] = (), *,
                    examples: pa.Table | None = None) -> None:
        """Save chunk ``index``: planned examples ``start:stop``, ``rows`` for the readable ones in order, ``skipped`` the others.

        ``examples``, one row per planned example of the chunk, is its part of the example index: a store whose
        index is too large to hold in memory (a language model's tokens) writes it chunk by chunk, and
        ``finish(None, ...)`` joins the parts.
        """
        rows = np.asarray(rows)
        skipped = sorted(int(i) for i in skipped)
        if rows.ndim != 2 or len(rows) + len(skipped) != stop - start or any(not start <= i < stop for i in skipped):
            raise StoreError(f"chunk {index} of examples {start}:{stop} got {rows.shape} rows and {len(skipped)} skipped; they must add up.")
        if examples is not None and examples.num_rows != stop - start:
            raise StoreError(f"chunk {index} of examples {start}:{stop} got an index of {examples.num_rows} rows; it needs one per example.")
        name = chunk_name(index)
        if examples is not None:
            write_index_chunk(self.chunks, index, examples)
        stored = stored_as(rows, self.dtype)  # refuses values that would become inf in the store's dtype
        tmp = self.chunks / f".{name}.npy.tmp"
        with open(tmp, "wb") as f:
            np.lib.format.write_array(f, stored, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the marker says the chunk is complete
        os.replace(tmp, self.chunks / f"{name}.npy")
        write_json(self.chunks / f"{name}.json", {"start": int(start), "stop": int(stop), "rows": int(len(rows)), "skipped": skipped})

    def write(self, start: int, block: np.ndarray) -> None:
        """Save ``block`` as the chunk of examples ``start:start + len(block)`` (chunk index = ``start``)."""
        block = np.asarray(block)
        self.write_chunk(int(start), int(start), int(start) + len(block), block)

    def skipped(self) -> list[int]:
        """Planned example indices that the complete chunks could not read, ascending."""
        return sorted(i for c in self.completed().values() for i in c["skipped"])

    # -- finishing -------------------------------------------------------------------------
    def finish(self, examples: Mapping[str, Sequence[Any]] | None, metadata: Mapping[str, Any] | None, *,
               documents: Mapping[str, Sequence[Any]] | None = None) -> None:
        """Assemble the chunks, write the example index and metadata, and rename ``<path>.partial`` to ``<path>``.

        ``examples`` lists every planned example; the skipped ones are left out of the store. Columns beyond
        ``id``, ``label``, ``label_name`` and ``source`` are kept with their types (a text store's token
        positions and spans). None with chunks written with their ``examples``: their parts are joined, a chunk
        at a time. ``documents`` (a table of columns) is written as ``documents.parquet``. Each chunk's file
        is deleted once its rows are assembled (see ``storage.chunks``), so the disk holds the store about once.
        """
        done = self.completed()
        order = sorted(done.values(), key=lambda c: c["start"])
        n_planned = order[-1]["stop"] if order else 0
        covered = 0
        for c in order:
            if c["start"] != covered:
                raise StoreError(f"{self.partial}: examples {covered}:{c['start']} were never written; run the extraction again to fill them.")
            covered = c["stop"]
        skipped = {i for c in order for i in c["skipped"]}  # from the markers already read, not a second pass over them
        n = sum(c["rows"] for c in order)
        if n == 0:
            raise StoreError("no example could be read; the store would be empty. Check the data path and file formats.")
        if examples is None and any(self.chunks.glob("*.parquet")):
            assemble_index(self.chunks, order, self.partial / EXAMPLES_FILE, COLUMN_TYPES)
        else:
            self._write_index(examples, n_planned, skipped, n)
        n_units = assemble_activations(self.partial, self.chunks, order, n, self.dtype, self.partial / ACTIVATIONS_FILE)
        if documents is not None:
            pq.write_table(pa.table({k: index_column(v, None, k) for k, v in documents.items()}), self.partial / DOCUMENTS_FILE)
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.partial / ASSEMBLY_FILE)
        # The content digest is computed once here (the files are read once more) and named by store_id, so that
        # results tell a store extracted again at the same path from the one they were computed from.
        content = {name: file_sha256(self.partial / name) for name in (ACTIVATIONS_FILE, EXAMPLES_FILE, DOCUMENTS_FILE)
                   if (self.partial / name).exists()}
        content_sha256 = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
        acts = np.load(self.partial / ACTIVATIONS_FILE, mmap_mode="r", allow_pickle=False)
        ids = pq.read_table(self.partial / EXAMPLES_FILE, columns=["id"]).column("id").to_pylist()
        duplicates = duplicate_rows(acts, ids)
        del acts
        meta = {"format": FORMAT, **dict(metadata or {}), "n_examples": n, "n_units": n_units, "dtype": self.dtype,
                "content_sha256": content_sha256, "duplicates": duplicates, **environment()}
        write_json(self.partial / METADATA_FILE, meta)
        # The finished store lists its files in a manifest: only they are replaced by a later --overwrite.
        shutil.rmtree(self.chunks, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.partial / PROGRESS_FILE)
        write_manifest(self.partial, what="activation store", known=content)
        if self.path.exists() and any(self.path.iterdir()):
            check_replaceable(self.path, what="activation store")  # again: files may have been put there meanwhile
        replace_directory(self.partial, self.path)
        remove_leftovers(self.path)

    def _write_index(self, examples: Mapping[str, Sequence[Any]] | None, n_planned: int, skipped: set[int], n: int) -> None:
        examples = dict(examples or {})
        for name, values in examples.items():
            if len(values) != n_planned:
                raise StoreError(f"examples[{name!r}] has {len(values)} entries, expected one per planned example ({n_planned}).")
        kept = np.setdiff1d(np.arange(n_planned), np.fromiter(skipped, np.int64, len(skipped)))
        defaults: dict[str, Callable[[], Any]] = {"id": lambda: np.arange(n).astype(str), "label": lambda: np.full(n, -1), "label_name": lambda: [""] * n,
                    "source": lambda: [""] * n}
        arrays = {k: index_column(examples[k], kept, k) if k in examples else pa.array(make(), type=COLUMN_TYPES[k])
                  for k, make in defaults.items()}
        arrays.update({k: index_column(v, kept, k) for k, v in examples.items() if k not in STANDARD_COLUMNS})
        if pc.count_distinct(arrays["id"]).as_py() != n:
            raise StoreError("example ids must be unique.")
        pq.write_table(pa.table(arrays), self.partial / EXAMPLES_FILE)
