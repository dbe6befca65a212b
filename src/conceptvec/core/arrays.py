"""Activations as the algorithm reads them: a 2-D array of numbers (or a store's memory-mapped one), checked."""

from __future__ import annotations

import numbers
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConceptvecError


@runtime_checkable
class MatrixSource(Protocol):
    """What core reads from a store (``storage.ActivationStore``) without importing storage."""

    @property
    def activations(self) -> np.ndarray: ...

    def provenance(self) -> dict[str, Any]: ...


def as_matrix(acts: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """(A, source): the matrix of an array or ActivationStore, shape (n_examples, n_units), and where it came from."""
    if isinstance(acts, MatrixSource):
        return acts.activations, acts.provenance()
    if acts is None or isinstance(acts, (str, bytes)) or hasattr(acts, "__fspath__"):
        raise ConceptvecError(f"activations must be a 2-D array (n_examples, n_units) or an ActivationStore, got "
                              f"{type(acts).__name__}; open a store folder with cv.ActivationStore.open(path).")
    if not hasattr(acts, "shape") or not hasattr(acts, "dtype"):
        acts = _rectangular(acts, "activations")
    if acts.ndim != 2:
        raise ConceptvecError(
            f"activations must be a 2-D array (n_examples, n_units), got {acts.ndim}-D shape {tuple(acts.shape)}. "
            f"Pool spatial maps first (mean over H, W) or reshape a single vector with x[None, :]."
        )
    if 0 in acts.shape:
        raise ConceptvecError(f"activations are empty (shape {tuple(acts.shape)}); give at least one example and one unit.")
    if not (np.issubdtype(acts.dtype, np.floating) or np.issubdtype(acts.dtype, np.integer)):
        raise ConceptvecError(f"activations must be numbers, got dtype {acts.dtype}.")
    if acts.dtype.itemsize > 4 and np.issubdtype(acts.dtype, np.floating):
        # Squared distances of values beyond 1e150 overflow float64: the method's numbers would be inf or NaN.
        # (max and min, not abs: no copy of a large array; an inf is left to check_finite, which names its examples)
        largest = max(abs(float(np.nanmax(acts))), abs(float(np.nanmin(acts))))
        if np.isfinite(largest) and largest > MAX_MAGNITUDE:
            raise ConceptvecError(f"activations reach {largest:.3g}, beyond {MAX_MAGNITUDE:g}, where squared distances "
                                  f"overflow; rescale them (e.g. divide by {largest:.3g}) before disentangling.")
    return acts, {"activations": "array", "dtype": str(acts.dtype)}


MAX_MAGNITUDE = 1e150


def _rectangular(values: Any, what: str) -> np.ndarray:
    # A list of rows of different lengths is an error of the input, said as such (numpy's own message names no fix).
    try:
        return np.asarray(values)
    except (ValueError, TypeError) as exc:
        raise ConceptvecError(f"{what} must be a rectangular array: every row the same length ({str(exc).split('.')[0]}); "
                              f"pad or drop the short rows.") from None


def check_neuron(neuron: Any, n_units: int) -> int:
    """``neuron`` as an int when it is a unit index of a layer with ``n_units`` units."""
    if isinstance(neuron, bool) or not isinstance(neuron, numbers.Integral):
        raise ConceptvecError(f"neuron must be a whole number from 0 to {n_units - 1}, got {neuron!r}.")
    index = int(neuron)
    if not 0 <= index < n_units:
        raise ConceptvecError(f"neuron {neuron} is out of range: this layer has {n_units} units, so neuron must be 0 to {n_units - 1}.")
    return index


def check_finite(values: np.ndarray, what: str, *, rows: np.ndarray | None = None) -> None:
    """Raise, naming the examples, when ``values`` (a vector, or one row per example) hold NaN or inf."""
    bad = ~np.isfinite(values)
    if bad.any():
        bad_rows = np.flatnonzero(bad.any(axis=1) if bad.ndim == 2 else bad)
        examples = (rows[bad_rows] if rows is not None else bad_rows).tolist()
        shown = ", ".join(map(str, examples[:10])) + (" ..." if len(examples) > 10 else "")
        raise ConceptvecError(
            f"{what} contain {int(bad.sum())} NaN or inf value(s), in {len(examples)} example(s): {shown}. "
            f"Remove or repair these examples before disentangling."
        )


def check_directions(vectors: Any, n_units: int, *, what: str = "direction") -> np.ndarray:
    """Real, finite, non-zero direction vectors as float64, shape (k, n_units) (a vector becomes one row)."""
    if vectors is None or isinstance(vectors, (str, bytes)):
        raise ConceptvecError(f"{what} must be an array of shape (k, {n_units}), got {vectors!r}.")
    v = _rectangular(vectors, what)
    if v.dtype == bool or not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
        raise ConceptvecError(f"{what} must hold real numbers, got dtype {v.dtype}; give a float vector of length {n_units}.")
    v = np.atleast_2d(v.astype(np.float64))
    if v.ndim != 2 or v.shape[1] != n_units:
        raise ConceptvecError(f"{what} must be of length {n_units} (one value per unit), got shape {np.shape(vectors)}.")
    finite = np.isfinite(v).all(axis=1)
    if not finite.all():
        raise ConceptvecError(f"{what} row(s) {np.flatnonzero(~finite)[:10].tolist()} hold NaN or inf values; give finite vectors.")
    zero = np.flatnonzero(~np.any(v, axis=1))
    if zero.size:
        raise ConceptvecError(f"{what} row(s) {zero[:10].tolist()} have zero or non-finite norm; a direction needs a non-zero vector.")
    return v


def read_rows(matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``matrix[rows]`` as a C-ordered float64 array of shape (len(rows), n_units), read in file order.

    A memory-mapped store is read fastest row after row, so the rows are fetched sorted and put back
    in the order asked for.
    """
    rows = np.asarray(rows)
    order = np.argsort(rows)
    x = np.empty((len(rows), matrix.shape[1]), dtype=np.float64)
    x[order] = matrix[rows[order]]
    return x

