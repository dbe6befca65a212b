"""Turning a partial store's chunks into its final files, in bounded memory and disk, safely against a crash.

``StoreWriter`` writes a store as chunks (``chunks/NNNNNN.npy``, optionally ``chunks/NNNNNN.parquet``
with the chunk's part of the example index). Finishing streams them, one chunk at a time, into
``activations.npy`` and ``examples.parquet``. A token store of a language model is large (10 million
tokens x 1,536 units in float16 are 31 GB): keeping every chunk until the end would need its size twice
on disk, so each chunk's ``.npy`` is deleted as soon as its rows are on disk in the assembled file, and
``assembly.json`` records how far the assembly got; a run that stops (Ctrl-C, a crash, ``kill -9``) in
the middle continues from there, and the assembled file is byte for byte what an uninterrupted run
writes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import read_json, write_json
from ..errors import StoreError

ASSEMBLY_FILE = "assembly.json"


def chunk_name(index: int) -> str:
    return f"{index:06d}"


def write_index_chunk(chunks: Path, index: int, table: pa.Table) -> None:
    """Save a chunk's part of the example index (durable before the chunk's marker is written)."""
    tmp = chunks / f".{chunk_name(index)}.parquet.tmp"
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, chunks / f"{chunk_name(index)}.parquet")


def assembled_chunks(partial: Path) -> set[int]:
    """Chunks whose rows are already in the assembled ``activations.npy`` (their own ``.npy`` may be gone)."""
    path = partial / ASSEMBLY_FILE
    if not path.exists():
        return set()
    return set(read_json(path, fix=f"delete {partial} to start the extraction over").get("assembled", []))


def assemble_activations(partial: Path, chunks: Path, order: list[dict[str, Any]], n: int, dtype: str, target: Path) -> int:
    """Stream the chunks ``order`` (by start) into ``target``, an (n, n_units) ``.npy``; returns n_units.

    One chunk is in memory at a time; each chunk's file is deleted once its rows are durable in the
    assembled file, so the disk holds the store about once.
    """
    tmp = partial / f".{target.name}.tmp"
    state_file = partial / ASSEMBLY_FILE
    state = read_json(state_file, fix=f"delete {partial} to start the extraction over") if state_file.exists() else None
    if state is not None and target.exists() and not tmp.exists():
        return int(state["n_units"])  # stopped after the assembled file got its name
    if state is not None and not tmp.exists():
        # The half-assembled file is gone and with it the rows of the chunks already deleted: forget them.
        os.remove(state_file)
        raise StoreError(f"{tmp} is missing; run the extraction again: it extracts the chunks that file held again.")
    if state is None:
        state = {"assembled": [], "bytes": 0, "n_units": None}
    done = set(state["assembled"])
    with open(tmp, "r+b" if state["bytes"] else "wb") as f:
        f.truncate(state["bytes"])  # whatever was written after the last record is written again
        f.seek(state["bytes"])
        for c in order:
            if c["index"] in done:
                continue
            chunk = chunks / f"{chunk_name(c['index'])}.npy"
            if c["rows"]:
                try:
                    rows = np.load(chunk, allow_pickle=False)
                except (ValueError, OSError, EOFError) as exc:
                    raise StoreError(f"{chunk} is damaged ({exc}); delete it (its examples are extracted again) or delete "
                                     f"{partial} to start over.") from None
                if state["n_units"] is None:
                    state["n_units"] = int(rows.shape[1])
                    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                              "shape": (n, state["n_units"])}
                    np.lib.format.write_array_header_1_0(f, header)
                if rows.shape[1] != state["n_units"] or rows.dtype != np.dtype(dtype):
                    raise StoreError(f"{partial}: chunk at example {c['start']} has {rows.shape[1]} units of {rows.dtype}, "
                                     f"expected {state['n_units']} of {dtype}.")
                f.write(rows.tobytes())
                f.flush()
                os.fsync(f.fileno())  # the rows are on disk before the record says so and the chunk is deleted
            state["assembled"].append(c["index"])
            state["bytes"] = f.tell()
            write_json(state_file, state)
            with contextlib.suppress(FileNotFoundError):
                os.remove(chunk)
    os.replace(tmp, target)
    return int(state["n_units"])


def assemble_index(chunks: Path, order: list[dict[str, Any]], target: Path, column_types: dict[str, pa.DataType]) -> None:
    """Write the chunks' parts of the example index, in order and less their skipped rows, as one Parquet file.

    The standard columns get ``column_types``; every chunk must have the same columns. Ids must be
    unique: checked with one 64-bit hash per row (8 bytes a row in memory), equal hashes compared as text.
    """
    tmp = target.with_name(f".{target.name}.tmp")
    hashes, writer, schema = [], None, None
    try:
        for c in order:
            path = chunks / f"{chunk_name(c['index'])}.parquet"
            if not path.exists():
                raise StoreError(f"{path} is missing: a chunk of this store has activations but no example index. Delete "
                                 f"{chunks.parent} and run the extraction again.")
            table = pq.read_table(path)
            if table.num_rows != c["stop"] - c["start"]:
                raise StoreError(f"{path} lists {table.num_rows} examples for the chunk's {c['stop'] - c['start']}.")
            if c["skipped"]:
                table = table.filter(pa.array(~np.isin(np.arange(c["start"], c["stop"]), c["skipped"])))
            table = pa.table({k: table[k].cast(column_types[k]) if k in column_types else table[k] for k in table.column_names})
            if writer is None or schema is None:  # set together; the test narrows both for the type checker
                schema = table.schema
                writer = pq.ParquetWriter(tmp, schema)
            elif not table.schema.equals(schema):
                raise StoreError(f"{path} has the columns {table.schema.names}, another chunk {schema.names}; delete "
                                 f"{chunks.parent} and run the extraction again.")
            hashes.append(id_hashes(table["id"]))
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise StoreError("no example could be read; the store would be empty. Check the data path and file formats.")
    _check_unique(np.concatenate(hashes), tmp)
    os.replace(tmp, target)


def id_hashes(ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A 64-bit hash of each id (equal ids, equal hashes, within this process: Python's string hash is salted)."""
    return np.fromiter((hash(i) for i in ids.to_pylist()), np.int64, len(ids))


def _check_unique(hashes: np.ndarray, index: Path) -> None:
    hashes.sort()  # in place: no second copy of 8 bytes a row
    candidates = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
    if not len(candidates):
        return
    # Equal hashes: read the ids that have them and compare them as text.
    ids = pq.read_table(index, columns=["id"])["id"]
    same = np.isin(id_hashes(ids), candidates)
    suspects = ids.filter(pa.array(same)).to_pylist()
    if len(set(suspects)) != len(suspects):
        raise StoreError("example ids must be unique.")
