"""Reading a user's ``.npy`` file: numbers only, never pickled objects, and a message that says what the file is."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConceptvecError

NPY_MAGIC = b"\x93NUMPY"


def read_npy(path: str | os.PathLike, *, what: str = "array") -> np.ndarray:
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
    return arr
