"""Which neurons (or directions) a command works on: ``"0-99,512"`` as a user writes it, or ints."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..errors import ConceptvecError


def parse_neurons(neurons: Any, n_units: int | None, *, what: str = "neuron") -> np.ndarray:
    """Sorted unique unit indices from None (all), an int, a sequence, or text such as ``"0-99,512"``.

    Ranges are inclusive at both ends, as a user reads "neurons 0-99". ``n_units=None`` checks the
    form only (for a caller that checks bounds against what a run holds); ``neurons=None`` then is an error.

    Returns
    -------
    array of shape (k,), int64, ascending
    """
    if neurons is None:
        if n_units is None:
            raise ConceptvecError(f"no {what}s selected; give them like '0-7' or '0-99,512'.")
        return np.arange(n_units, dtype=np.int64)
    limit = n_units if n_units is not None else np.iinfo(np.int64).max
    valid = (f"{what}s must be within 0-{n_units - 1} (this layer has {n_units})" if n_units is not None
             else f"{what}s are whole numbers from 0 to the layer's number of units minus 1, and no layer has "
                  f"{limit} or more")
    if isinstance(neurons, str):
        values: list[int] = []
        for part in neurons.replace(" ", "").split(","):
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not m:
                raise ConceptvecError(f"cannot read {what} range {neurons!r}: write it like '0-99' or '0-99,512,1000-1023'.")
            lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
            if hi < lo:
                raise ConceptvecError(f"{what} range {part!r} is backwards; write the smaller number first ('{hi}-{lo}').")
            if hi >= limit:
                raise ConceptvecError(f"{what} range {part!r} is out of bounds: {valid}.")
            values.extend(range(lo, hi + 1))
        arr = np.asarray(values, dtype=np.int64)
    else:
        try:
            arr = np.atleast_1d(np.asarray(neurons))
        except (ValueError, TypeError):  # ragged nested lists
            raise ConceptvecError(f"{what}s must be an int, a flat list of ints, or text such as '0-99'; got {neurons!r}.") from None
        if arr.size == 0:
            raise ConceptvecError(f"no {what}s selected; {valid}.")
        if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool):
            raise ConceptvecError(f"{what}s must be whole numbers (an int, a list of ints, or text such as '0-99'), got {neurons!r}.")
        arr = arr.astype(np.int64)
    if arr.size == 0:
        raise ConceptvecError(f"no {what}s selected; {valid}.")
    bad = arr[(arr < 0) | (arr >= limit)]
    if bad.size:
        raise ConceptvecError(f"{what}(s) {bad[:5].tolist()} out of bounds: {valid}.")
    return np.unique(arr)
