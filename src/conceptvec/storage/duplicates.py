"""Exact duplicate rows of a store: examples the layer cannot tell apart.

A store whose rows repeat usually means the data was read wrongly (transparent images flattened
to the same black square, one document copied many times), and every result on it weighs those
examples many times over. ``duplicate_rows`` hashes each row's bytes; extraction records the
summary in the store's metadata (``duplicates``) and warns, and ``conceptvec scan`` repeats it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["WARN_SHARE", "duplicate_rows", "duplicates_warning"]

WARN_SHARE = 0.01  # above this share of rows repeating another, a store is flagged
BLOCK_BYTES = 64 << 20  # rows hashed a block at a time, so a memory-mapped store is read once, in order
N_GROUPS_SHOWN = 3
N_IDS_SHOWN = 4


def duplicate_rows(acts: np.ndarray, ids: Sequence[Any]) -> dict[str, Any]:
    """Summary of the exact duplicate rows of ``acts``, shape (n_examples, n_units), with ``ids`` one per row.

    Returns ``{"n_rows", "n_distinct", "n_duplicate_rows" (rows equal to an earlier row), "share"
    (n_duplicate_rows / n_rows), "n_groups" (distinct rows that occur more than once), "largest": [{"size",
    "ids" (the first few)}, ...]}`` (the largest groups first).
    """
    n, m = acts.shape
    step = max(1, BLOCK_BYTES // max(1, m * acts.dtype.itemsize))
    digests = np.empty(n, dtype="S16")
    for start in range(0, n, step):
        block = np.ascontiguousarray(acts[start:start + step])
        # +0.0 makes -0.0 and 0.0 the same bytes: equal values are equal rows
        block = block + block.dtype.type(0) if np.issubdtype(block.dtype, np.floating) else block
        for k, row in enumerate(block):
            digests[start + k] = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
    _, first, inverse, counts = np.unique(digests, return_index=True, return_inverse=True, return_counts=True)
    repeated = np.flatnonzero(counts > 1)
    order = repeated[np.lexsort((first[repeated], -counts[repeated]))][:N_GROUPS_SHOWN]
    largest = [{"size": int(counts[g]), "ids": [str(ids[i]) for i in np.flatnonzero(inverse == g)[:N_IDS_SHOWN]]}
               for g in order]
    n_dup = int(n - len(counts))
    return {"n_rows": int(n), "n_distinct": int(len(counts)), "n_duplicate_rows": n_dup, "share": n_dup / n if n else 0.0,
            "n_groups": int(len(repeated)), "largest": largest}


def duplicates_warning(summary: dict[str, Any] | None, *, layer: str | None = None) -> str | None:
    """The warning for a ``duplicate_rows`` summary over ``WARN_SHARE`` (prefixed by ``layer`` when given), else None."""
    if not summary or summary.get("share", 0.0) <= WARN_SHARE:
        return None
    groups = "; ".join(_group(g) for g in summary["largest"])
    more = summary.get("n_groups", 0) - len(summary["largest"])
    groups += f"; {more} more group{'s' if more > 1 else ''}" if more > 0 else ""
    where = f"{layer}: " if layer else ""
    return (f"{where}{summary['n_duplicate_rows']} of {summary['n_rows']} rows ({summary['share']:.1%}) repeat another row "
            f"exactly: only {summary['n_distinct']} distinct rows. {groups}. Identical rows usually mean the inputs were "
            f"read alike (transparent images flattened: see --background; repeated documents); check the data.")


def _group(group: dict[str, Any]) -> str:
    """``4 share one row (a.png, b.png ...)``; paths in one folder are named once, as ``in DIR/: a.png, ...``."""
    ids = [str(i) for i in group["ids"]]
    folder = ""
    if len(ids) > 1 and all("/" in i for i in ids):
        folder = os.path.commonpath(ids)
        folder = "" if folder in ("", "/") else folder
        ids = [os.path.relpath(i, folder) for i in ids] if folder else ids
    more = " ..." if group["size"] > len(group["ids"]) else ""
    return f"{group['size']} share one row ({f'in {folder}/: ' if folder else ''}{', '.join(ids)}{more})"
