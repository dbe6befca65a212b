"""Which units (or directions) have a top: the one liveness rule of the package.

Step 1 of the method ranks the examples by activation and keeps the top N. That ranking means
something unless the top examples carry none:

- **constant**: every top example has the same activation, so step 1 orders them by example index;
- **at the floor**: the top N reach the unit's floor, the value it rests at on the examples it does not
  respond to. The unit is above its floor on fewer than N examples, and the rest of its top is N minus that
  many arbitrary examples, tied at (or below) the floor.

A unit's **floor** is found on the whole layer (:func:`column_floors`, or streamed by :class:`FloorTracker`):
its minimum when two or more examples share it (a rectified unit: 0; ReLU then batch norm: each unit's own
constant; ReLU6 after a shift), or else 0 when two or more examples share it (hardswish, whose minimum,
-0.375, is a dip below where it rests). A unit without such a tie has no floor: a signed layer's unit (a block
output, a residual stream) is live whatever the sign of its top (its top 100 may run from 4.3 down to -0.08).

When the floors are not known (a ConceptSet or scan saved before they were recorded), the floor is taken to
be 0 for every unit and only a top ending exactly at 0 is at it: the rule those files were made with.

``ConceptSet.is_live``, ``ScanResult.live``, ``layer_thresholds``, ``threshold_sweep`` and the text demo all use
this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["FLOOR", "FloorTracker", "column_floors", "dead_reason", "dead_summary", "floors_of", "live_columns",
           "live_from_ends", "live_mask"]

FLOOR = 0.0  # the floor assumed when none was recorded (files made before floors were), and the resting value tested


def floors_of(minimum: np.ndarray, n_at_minimum: np.ndarray, n_at_zero: np.ndarray) -> np.ndarray:
    """Each unit's floor from its minimum over the layer, how many examples hold it, and how many hold exactly 0
    (arrays of shape (m,)): the minimum if 2 or more examples share it, else 0 if 2 or more do, else NaN (no floor)."""
    minimum = np.asarray(minimum, dtype=np.float64)
    floors = np.where(np.asarray(n_at_zero) >= 2, FLOOR, np.nan)
    return np.asarray(np.where(np.asarray(n_at_minimum) >= 2, minimum, floors))  # np.asarray: numpy's stubs give Any


def column_floors(acts: np.ndarray) -> np.ndarray:
    """:func:`floors_of` for each column of an array in memory, shape (n_examples, m) (or (n_examples,) for one unit)."""
    a = np.asarray(acts)
    a = a.reshape(len(a), -1)
    tracker = FloorTracker(a.shape[1])
    tracker.update(a)
    return tracker.floors()


class FloorTracker:
    """Each column's floor (:func:`floors_of`) over blocks of rows, in one pass: its running minimum, how many rows
    hold it, and how many hold exactly 0."""

    def __init__(self, n_cols: int):
        self.minimum = np.full(n_cols, np.inf)
        self.n_at_minimum = np.zeros(n_cols, dtype=np.int64)
        self.n_at_zero = np.zeros(n_cols, dtype=np.int64)

    def update(self, block: np.ndarray) -> None:
        """Add a block of rows, shape (rows, n_cols) (any float dtype: its values are compared exactly)."""
        if len(block) == 0:
            return
        low = block.min(axis=0)
        at_low = np.count_nonzero(block == low, axis=0)
        low = low.astype(np.float64)  # exact for float16/32: comparisons with the running minimum stay exact
        self.n_at_minimum = np.where(low < self.minimum, at_low,
                                     np.where(low == self.minimum, self.n_at_minimum + at_low, self.n_at_minimum))
        self.minimum = np.minimum(self.minimum, low)
        self.n_at_zero += np.count_nonzero(block == 0, axis=0)

    def floors(self) -> np.ndarray:
        """The floor of each column seen, shape (n_cols,); NaN where it has none."""
        return floors_of(self.minimum, self.n_at_minimum, self.n_at_zero)


def _at_floor(last: np.ndarray, floors: np.ndarray | None) -> np.ndarray:
    if floors is None:
        return np.asarray(last == FLOOR)
    return np.asarray(last <= np.asarray(floors, dtype=np.float64))  # NaN (no floor): never at it


def live_from_ends(first: np.ndarray, last: np.ndarray, floors: np.ndarray | None = None) -> np.ndarray:
    """The rule on the largest (``first``) and N-th largest (``last``) activation of each unit and its ``floors``
    (arrays of shape (m,); None: not known, see the module's docstring)."""
    first, last = np.asarray(first), np.asarray(last)
    return np.asarray((first > last) & ~_at_floor(last, floors))


def live_mask(top_scores: np.ndarray, floors: np.ndarray | float | None = None) -> np.ndarray:
    """Per row of ``top_scores`` (shape (m, N), or (N,) for one unit; best first): whether the unit has a top.
    ``floors``: each unit's floor, shape (m,) (or one number for one unit; NaN: none), None when not known."""
    s = np.atleast_2d(np.asarray(top_scores))
    if s.shape[1] == 0:
        return np.zeros(len(s), dtype=bool)
    return live_from_ends(s[:, 0], s[:, -1], None if floors is None else np.atleast_1d(np.asarray(floors, dtype=np.float64)))


def live_columns(acts: np.ndarray, top: int) -> np.ndarray:
    """Indices of the live units of ``acts``, shape (n_examples, n_units), with top-``top`` examples (one partition)."""
    a = np.asarray(acts)
    n = a.shape[0]
    kth = np.partition(a, n - top, axis=0)[n - top]
    return np.flatnonzero(live_from_ends(a.max(axis=0), kth, column_floors(a)))


def _floor_text(floor: float | None) -> str:
    return f"{FLOOR:g}, the layer's floor" if floor is None else f"{floor:.4g}, its floor (where it rests)"


def dead_reason(top_scores: np.ndarray, floor: float | None = None) -> str | None:
    """Why a unit has no top (its ``top_scores``, shape (N,), best first, and its ``floor``: NaN for none, None when
    not known), as a clause about "it"; None when it is live."""
    s = np.asarray(top_scores, dtype=np.float64).ravel()
    if len(s) == 0 or live_mask(s, floor)[0]:
        return None
    if s[0] == s[-1]:
        return (f"all {len(s)} of its top examples have the same activation ({s[0]:.4g}), so step 1 orders them by example "
                f"index and its concepts group arbitrary examples")
    level = FLOOR if floor is None else float(floor)
    at_floor = int(np.sum(s <= level))
    return (f"it is above {level:.4g} on only {len(s) - at_floor} examples: the other {at_floor} of its top {len(s)} sit at "
            f"{_floor_text(floor)}, and are arbitrary examples it does not respond to")


def dead_summary(top_scores: np.ndarray, units: Sequence[int] | np.ndarray, *, floors: np.ndarray | None = None,
                 unit: str = "neuron", shown: int = 20) -> str | None:
    """What the not-live rows of ``top_scores`` (shape (m, N)) are, by kind, naming the first ``shown`` of ``units``
    (``floors`` (m,) as for :func:`live_mask`); None if all live."""
    s = np.atleast_2d(np.asarray(top_scores))
    units = np.asarray(units)
    dead = ~live_mask(s, floors)
    if not dead.any():
        return None
    constant = dead & (s[:, 0] == s[:, -1])
    floor = dead & ~constant
    parts = []
    if floor.any():
        if floors is None:
            where = f"ties at the floor {FLOOR:g}"
        else:
            found = np.unique(np.asarray(floors, dtype=np.float64)[floor])
            where = (f"ties at their floor {found[0]:.4g}" if len(found) == 1 else
                     f"ties at each one's floor, {len(found)} different ones from {found[0]:.4g} to {found[-1]:.4g}")
        parts.append(f"{int(floor.sum())} above their floor on fewer than their top {s.shape[1]} examples (the rest of the top "
                     f"{where})")
    if constant.any():
        parts.append(f"{int(constant.sum())} with all top examples tied")
    names = units[dead].tolist()
    listed = ", ".join(map(str, names[:shown])) + (" ..." if len(names) > shown else "")
    return (f"{int(dead.sum())} {unit}(s) not live, left out of the counts: {'; '.join(parts)}; their concepts would group "
            f"arbitrary examples: {listed}")
