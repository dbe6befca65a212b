"""Reading files with checks: a message names the file, what is wrong with it and the fix.

A user's ``.npy`` is read as numbers only, never pickled objects; an output's JSON must carry its
format; a safetensors file must hold the arrays asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from ..errors import ConceptvecError, StoreError
from .atomic import read_json

NPY_MAGIC = b"\x93NUMPY"


def read_npy(path: str | os.PathLike[str], *, what: str = "array") -> np.ndarray:
    """The array in a ``.npy`` file, read with ``allow_pickle=False``; any other file raises ConceptvecError.

    A file that is not a .npy at all is said to be so (NumPy itself would call it "pickled data").
    """
    path = Path(path)
    if path.is_dir():
        raise ConceptvecError(f"{what} {path} is a folder; give a .npy file (np.save).")
    try:
        with open(path, "rb") as f:
            head = f.read(len(NPY_MAGIC))
    except OSError as exc:
        raise ConceptvecError(f"cannot read {what} {path}: {exc.strerror}.") from None
    if head != NPY_MAGIC:
        raise ConceptvecError(f"{what} {path} is not a .npy file (it lacks NumPy's header); save the array with np.save.")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ConceptvecError(f"{what} {path} holds Python objects, not numbers; conceptvec never unpickles a file. "
                                  f"Save a float array with np.save.") from None
        raise ConceptvecError(f"{what} {path} is damaged ({exc}); save it again with np.save.") from None
    except (OSError, EOFError) as exc:
        raise ConceptvecError(f"{what} {path} is damaged ({exc}); save it again with np.save.") from None
    return np.asarray(arr)  # np.load is typed Any; the magic check above makes it an .npy array


def read_format(path: Path, *, expected: str, what: str, fix: str) -> dict[str, Any]:
    """The JSON object in ``path`` whose ``format`` is ``expected``; else StoreError saying it is not a ``what``."""
    meta = read_json(path, fix=fix)
    if not isinstance(meta, dict) or meta.get("format") != expected:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise StoreError(f"{path} is not {what} (format {found!r}, expected {expected!r}).")
    return meta


def read_arrays(path: Path, *, needed: tuple[str, ...] = (), fix: str) -> dict[str, np.ndarray]:
    """The arrays of a safetensors file, holding at least ``needed``; else StoreError naming the file and ``fix``."""
    try:
        found = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise StoreError(f"{path} is missing or damaged ({exc}); {fix}.") from None
    lacking = [k for k in needed if k not in found]
    if lacking:
        raise StoreError(f"{path} is damaged: it lacks {', '.join(lacking)}; {fix}.")
    return found


def stored_as(rows: np.ndarray, dtype: Any) -> np.ndarray:
    """``rows`` as a C-ordered array of the store's ``dtype``; values that would become inf there (1e5 in float16, 1e200
    in float32) are refused: the store would hold infinities where the layer had numbers, and every later stage would
    refuse or mis-rank them."""
    with np.errstate(over="ignore"):  # the overflow is found and said below, not warned about
        stored = np.ascontiguousarray(rows, dtype=dtype)
    if np.issubdtype(rows.dtype, np.floating) and np.issubdtype(stored.dtype, np.floating) and rows.dtype.itemsize > stored.dtype.itemsize:
        overflowed = np.isinf(stored) & np.isfinite(rows)
        if overflowed.any():
            limit = float(np.finfo(stored.dtype).max)
            biggest = float(np.abs(rows[np.isfinite(rows)]).max())
            raise StoreError(f"activations reach {biggest:.3g}, beyond the {np.dtype(dtype).name} store's range ({limit:.3g}); "
                             f"store them as float32 (--dtype float32, dtype='float32') or rescale them first.")
    return stored
