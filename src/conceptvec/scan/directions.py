"""Where a scan starts: the neurons, the top singular vectors of A, a dictionary's atoms, or vectors from a file or array.

Notation as in ``scan.disentangle``: A is the activation matrix, shape (n_examples, n_units).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from ..core.arrays import as_matrix, check_directions
from ..core.metrics import unit_vectors
from ..core.params import Params
from ..core.streaming import check_block_finite, row_blocks
from ..dictionary.model import Dictionary
from ..errors import ConceptvecError
from ..storage.conceptset import ARRAYS_FILE as CONCEPTSET_ARRAYS
from ..storage.files import read_npy
from ..storage.store import ActivationStore
from .result import CONCEPTS_FILE


def svd_directions(acts: np.ndarray | ActivationStore, k: int, *, top: int = 100, progress: bool = False) -> np.ndarray:
    """The top ``k`` right singular vectors of A, as the authors' ``SVD_method.py`` (A not centred).

    Signs are chosen so the top examples project positively: a vector is flipped when the sum of
    the ``top`` largest projections on -v exceeds that on v. A is read in chunks; the vectors come
    from the eigenvectors of the Gram matrix A.T @ A (float64), which for the leading, separated
    singular values equals ``numpy.linalg.svd`` to rounding.

    Returns
    -------
    array of shape (k, n_units), unit rows, by descending singular value
    """
    matrix, _ = as_matrix(acts)
    n, d = matrix.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= min(n, d):
        raise ConceptvecError(f"svd:K needs 1 <= K <= {min(n, d)} (min of examples and units), got {k!r}.")
    gram = np.zeros((d, d), dtype=np.float64)
    for start, block in row_blocks(matrix, description="SVD (A.T A)", progress=progress):
        check_block_finite(block, start)
        gram += block.T @ block
    values, vectors = np.linalg.eigh(gram)
    v = vectors[:, ::-1][:, :k].T.copy()
    proj = np.concatenate([block @ v.T for _, block in row_blocks(matrix, description="SVD (signs)", progress=progress)])
    t = min(top, n)
    pos = np.sort(np.partition(proj, n - t, axis=0)[n - t:], axis=0).sum(axis=0)
    neg = np.sort(np.partition(-proj, n - t, axis=0)[n - t:], axis=0).sum(axis=0)
    v[neg > pos] *= -1.0
    return unit_vectors(v)


def load_directions(path: str | os.PathLike[str], n_units: int) -> np.ndarray:
    """Direction vectors from a .npy file, a .safetensors file, or a scan / ConceptSet directory.

    A safetensors file may hold one tensor, or ``concept_vectors`` (as a scan or ConceptSet writes),
    or ``directions`` / ``vectors``. Returns an array of shape (k, n_units), float64, not normalised.
    """
    path = Path(path)
    if not path.exists():
        raise ConceptvecError(f"direction file {path} does not exist; give a .npy or .safetensors file of shape (k, {n_units}).")
    if path.is_dir():
        for name in (CONCEPTS_FILE, CONCEPTSET_ARRAYS):
            if (path / name).exists():
                return load_directions(path / name, n_units)
        raise ConceptvecError(f"{path} is a directory without {CONCEPTS_FILE} or {CONCEPTSET_ARRAYS}; give a .npy or .safetensors file.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = read_npy(path, what="direction file")
    elif suffix == ".safetensors":
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ConceptvecError(f"could not read {path} as safetensors: {exc}") from None
        for key in ("concept_vectors", "directions", "vectors"):
            if key in tensors:
                arr = tensors[key]
                break
        else:
            if len(tensors) != 1:
                raise ConceptvecError(
                    f"{path} holds tensors {sorted(tensors)}; name the directions 'directions' (or keep a single tensor)."
                )
            arr = next(iter(tensors.values()))
    else:
        raise ConceptvecError(f"direction file {path} must end in .npy or .safetensors (or be a scan or ConceptSet directory).")
    arr = np.asarray(arr)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n_units or arr.shape[0] == 0:
        raise ConceptvecError(
            f"direction file {path} has shape {arr.shape}; expected shape (k, {n_units}) (one row per direction, "
            f"one value per unit of this layer) or ({n_units},)."
        )
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ConceptvecError(f"direction file {path} holds {arr.dtype} values; expected real numbers (float).")
    arr = arr.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1) | ~np.any(arr, axis=1))  # no norm: 1e200s would overflow it
    if bad.size:
        raise ConceptvecError(f"direction file {path}: row(s) {bad[:10].tolist()} are zero or not finite; every direction needs a finite, non-zero vector.")
    return arr


def resolve_directions(directions: Any, matrix: np.ndarray, *, params: Params, progress: bool) -> tuple[str, np.ndarray | None]:
    """('neurons', None), ('svd:K', V) or ('file:PATH' / 'array', V) with V unit rows of shape (k, n_units)."""
    n_units = matrix.shape[1]
    if directions is None or (isinstance(directions, str) and directions == "neurons"):
        return "neurons", None
    if isinstance(directions, np.ndarray):
        if directions.ndim not in (1, 2):
            raise ConceptvecError(f"directions array has shape {directions.shape}; expected shape (k, {n_units}).")
        return "array", unit_vectors(check_directions(directions, n_units, what="directions array"))
    if isinstance(directions, str) and directions.startswith("svd"):
        m = re.fullmatch(r"svd:(\d+)", directions)
        if not m:
            raise ConceptvecError(f"cannot read directions {directions!r}: write svd:K, e.g. svd:50 for the top 50 singular vectors.")
        k = int(m.group(1))
        return f"svd:{k}", svd_directions(matrix, k, top=params.top, progress=progress)
    if isinstance(directions, str) and directions.startswith("dictionary:"):
        return f"dictionary:{Path(directions[len('dictionary:'):]).resolve()}", dictionary_directions(directions, n_units)
    if isinstance(directions, (str, os.PathLike)):
        return f"file:{Path(directions).resolve()}", unit_vectors(load_directions(directions, n_units))
    raise ConceptvecError(f"directions must be 'neurons', 'svd:K', 'dictionary:DIR', a file path, or an array; got {type(directions).__name__}.")


def dictionary_directions(spec: str, n_units: int) -> np.ndarray:
    """The atoms of ``dictionary:DIR`` (a ``conceptvec dictionary`` folder, or an SAE checkpoint .safetensors) as unit
    rows, shape (n_atoms, n_units): direction i is atom i (a zero atom is refused)."""
    path = spec[len("dictionary:"):]
    if not path:
        raise ConceptvecError("write dictionary:DIR, with DIR a folder from `conceptvec dictionary` (or an SAE .safetensors checkpoint).")
    if not Path(path).exists():
        raise ConceptvecError(f"dictionary {path} does not exist; fit one with `conceptvec dictionary STORE --out {path}`.")
    dic = Dictionary.from_checkpoint(path, n_units=n_units)
    if dic.n_units != n_units:
        raise ConceptvecError(f"dictionary {path} has atoms of {dic.n_units} units; this layer has {n_units}. Fit it on this store.")
    return check_directions(dic.atoms(), n_units, what=f"dictionary {path} atom")


def digest(arr: np.ndarray) -> str:
    """SHA-1 of an array's bytes."""
    return hashlib.sha1(arr.tobytes()).hexdigest()


def fingerprint_directions(directions: Any, n_units: int) -> Any:
    """What identifies the scan's starting directions: the name, or a digest of an array's or a file's contents."""
    # A file's contents, not its path, decide whether a finished or partial scan can be reused.
    if isinstance(directions, np.ndarray):
        return digest(np.ascontiguousarray(directions))
    if isinstance(directions, str) and directions.startswith("dictionary:") and Path(directions[len("dictionary:"):]).exists():
        return f"{directions}#sha1={digest(np.ascontiguousarray(dictionary_directions(directions, n_units)))}"
    if isinstance(directions, (str, os.PathLike)) and Path(directions).exists():
        return f"{Path(directions).resolve()}#sha1={digest(np.ascontiguousarray(load_directions(directions, n_units)))}"
    return directions
