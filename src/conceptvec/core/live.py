"""Which units (or directions) have a top: the one liveness rule of the package.

Step 1 of the method ranks the examples by activation and keeps the top N. That ranking means
something unless the top examples carry none:

- **constant**: every top example has the same activation, so step 1 orders them by example index;
- **at the floor**: the top N end in examples tied at zero, the floor of a rectified (ReLU-like)
  layer. The unit is above zero on fewer than N examples, and the rest of its top is N minus that
  many arbitrary examples it does not respond to.

Anything else is live, whatever the sign: a unit of a signed layer (a block output, a residual
stream) whose top examples are negative still ranks them (its top 100 may run from 4.3 down to -0.08).
An exact zero at the end of a top is the floor of a rectified unit; a signed unit's values are
almost never exactly zero.

``ConceptSet.is_live``, ``ScanResult.live``, ``layer_thresholds`` and ``threshold_sweep`` all use
this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["FLOOR", "dead_reason", "dead_summary", "live_columns", "live_from_ends", "live_mask"]

FLOOR = 0.0  # the floor of a rectified layer; a top that ends on it is padded with examples the unit ignores


def live_from_ends(first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The rule on the largest (``first``) and N-th largest (``last``) activation of each unit, arrays of shape (m,)."""
    first, last = np.asarray(first), np.asarray(last)
    return np.asarray((first > last) & (last != FLOOR))  # np.asarray: numpy's stubs type this as Any


def live_mask(top_scores: np.ndarray) -> np.ndarray:
    """Per row of ``top_scores`` (shape (m, N), or (N,) for one unit; best first): whether the unit has a top."""
    s = np.atleast_2d(np.asarray(top_scores))
    if s.shape[1] == 0:
        return np.zeros(len(s), dtype=bool)
    return live_from_ends(s[:, 0], s[:, -1])


def live_columns(acts: np.ndarray, top: int) -> np.ndarray:
    """Indices of the live units of ``acts``, shape (n_examples, n_units), with top-``top`` examples (one partition)."""
    a = np.asarray(acts)
    n = a.shape[0]
    kth = np.partition(a, n - top, axis=0)[n - top]
    return np.flatnonzero(live_from_ends(a.max(axis=0), kth))


def dead_reason(top_scores: np.ndarray) -> str | None:
    """Why a unit has no top (its ``top_scores``, shape (N,), best first), as a clause about "it"; None when it is live."""
    s = np.asarray(top_scores, dtype=np.float64).ravel()
    if len(s) == 0 or live_mask(s)[0]:
        return None
    if s[0] == s[-1]:
        return (f"all {len(s)} of its top examples have the same activation ({s[0]:.4g}), so step 1 orders them by example "
                f"index and its concepts group arbitrary examples")
    at_floor = int(np.sum(s == FLOOR))
    return (f"it is above {FLOOR:g} on only {len(s) - at_floor} examples: the other {at_floor} of its top {len(s)} sit at "
            f"{FLOOR:g}, the layer's floor, and are arbitrary examples it does not respond to")


def dead_summary(top_scores: np.ndarray, units: Sequence[int] | np.ndarray, *, unit: str = "neuron", shown: int = 20) -> str | None:
    """What the not-live rows of ``top_scores`` (shape (m, N)) are, by kind, naming the first ``shown`` of ``units``; None if all live."""
    s = np.atleast_2d(np.asarray(top_scores))
    units = np.asarray(units)
    dead = ~live_mask(s)
    if not dead.any():
        return None
    constant = dead & (s[:, 0] == s[:, -1])
    floor = dead & ~constant
    parts = []
    if floor.any():
        parts.append(f"{int(floor.sum())} above {FLOOR:g} on fewer than their top {s.shape[1]} examples (the rest of the top "
                     f"ties at the floor {FLOOR:g})")
    if constant.any():
        parts.append(f"{int(constant.sum())} with all top examples tied")
    names = units[dead].tolist()
    listed = ", ".join(map(str, names[:shown])) + (" ..." if len(names) > shown else "")
    return (f"{int(dead.sum())} {unit}(s) not live, left out of the counts: {'; '.join(parts)}; their concepts would group "
            f"arbitrary examples: {listed}")
