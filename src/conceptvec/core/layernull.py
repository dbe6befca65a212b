"""``Params(null="layer")``: auto's first split judged against random directions of the same layer.

``auto`` tests a split against a unimodal Gaussian with the top examples' own covariance (``core.auto``). On real
layers that null is too easy to beat: almost every direction's top examples are multimodal in the layer's space
(the data's dominant variation), so random directions split about as often as neurons, and 55 of the digits
control's 57 live units split (``benchmarks/bench_real.py``). With ``null="layer"`` the *first* split auto tests
(the same walk from the root, the same statistic: the share of the node's sum of squares that ward's split
explains, on unit-length rows) is compared with the first-split shares of the top-N sets of ``draws`` random
directions of the layer: Gaussian in the layer's standardised units (each unit divided by its standard deviation
over the examples), the same N, the same representation. A direction then splits only when its top examples are
more multimodal than a random direction's; by construction random directions split at about ``significance``.
Deeper splits keep auto's Gaussian test. The p-value is the normal approximation of the shares (as auto's own);
it is not exact in the tail (on the real layers of ``benchmarks/bench_real.py`` 0-10 % of 30 fresh random directions
split at 0.01). It is not auto's default: a random direction is itself a mixture, so real pairs, the digits' merged
pairs and planted 3- and 4-facet neurons are no more multimodal than one (``docs/thresholds.md``).

The null is drawn once per layer (one chunked pass over A for all draws) and can be reused for every direction of
the layer (``scan_layer`` does; ``disentangle`` takes it as ``layer_null=``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy.cluster.hierarchy import to_tree
from scipy.stats import norm

from .arrays import as_matrix, read_rows
from .auto import split_share, unit_rows
from .steps import ward_linkage
from .streaming import check_block_finite, row_blocks, top_examples
from ..errors import ConceptvecError

LAYER_NULL_DRAWS = 100  # random directions per layer: the shares' mean and sd to about 10 % and 7 % of the sd

Rows = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (top indices, direction over units) -> (N, d) rows clustered


def first_split_share(rows: np.ndarray, *, min_cluster_size: int) -> float:
    """The share auto's first test sees on ``rows`` (N, d): ward's tree of the unit rows walked from the root into
    the larger side past splits with a side below ``min_cluster_size``; NaN when no split can be tested."""
    unit = unit_rows(rows)
    node = to_tree(ward_linkage(unit))
    while not node.is_leaf() and node.get_count() >= 2 * min_cluster_size:
        left, right = node.get_left(), node.get_right()
        if min(left.get_count(), right.get_count()) >= min_cluster_size:
            return split_share(unit[node.pre_order()], node.dist)
        node = left if left.get_count() >= right.get_count() else right
    return float("nan")


def layer_sd(matrix: np.ndarray) -> np.ndarray:
    """Each unit's standard deviation over the examples, one chunked pass (1 where a unit is constant): (n_units,)."""
    total = np.zeros(matrix.shape[1])
    squares = np.zeros(matrix.shape[1])
    for start, block in row_blocks(matrix, description="layer sd", progress=False):
        check_block_finite(block, start)
        b = np.asarray(block, dtype=np.float64)
        total += b.sum(axis=0)
        squares += (b * b).sum(axis=0)
    n = matrix.shape[0]
    var = np.maximum(squares / n - (total / n) ** 2, 0.0)
    sd = np.sqrt(var)
    return np.where(sd > 0, sd, 1.0)


@dataclass(frozen=True)
class LayerNull:
    """First-split shares of random directions of one layer.

    Attributes
    ----------
    shares : array of shape (m,)
        The first split's share for each random direction whose top examples had a testable split.
    top, min_cluster_size, seed, representation : how they were drawn (a null is only valid for the same values)
    """

    shares: np.ndarray
    top: int
    min_cluster_size: int
    seed: int
    representation: str = "activations"

    def p_value(self, share: float) -> float:
        """P(a random direction's first split explains at least ``share``), normal approximation of the shares."""
        return float(norm.sf(self.z(share)))

    def z(self, share: float) -> float:
        sd = float(np.std(self.shares, ddof=1))
        mean = float(np.mean(self.shares))
        if sd > 0:
            return (share - mean) / sd
        return np.inf if share > mean else -np.inf

    def check(self, *, top: int, min_cluster_size: int, representation: str) -> None:
        """Refuse a null drawn for another N, minimum cluster size or representation."""
        mine = (self.top, self.min_cluster_size, self.representation)
        if mine != (top, min_cluster_size, representation):
            raise ConceptvecError(
                f"the layer null was drawn with top={self.top}, min_cluster_size={self.min_cluster_size}, representation="
                f"{self.representation!r}, not {top}, {min_cluster_size}, {representation!r}; draw it again with "
                f"cv.layer_null(acts, params=...) for these parameters.")

    def describe(self) -> dict[str, Any]:
        """What the provenance records."""
        return {"null": "layer", "draws": int(len(self.shares)), "seed": self.seed, "top": self.top,
                "representation": self.representation, "mean_share": float(np.mean(self.shares)),
                "sd_share": float(np.std(self.shares, ddof=1))}


def layer_null(acts: Any, *, params: Any, draws: int = LAYER_NULL_DRAWS, rows: Rows | None = None,
               representation: str = "activations") -> LayerNull:
    """Draw the layer's null for ``Params(null="layer")``.

    Parameters
    ----------
    acts : array of shape (n_examples, n_units), or an ActivationStore
    params : Params
        Its ``top``, ``min_cluster_size`` and ``seed`` are used (the seed draws the directions).
    draws : int
        Random directions, Gaussian in the layer's standardised units.
    rows : callable, optional
        ``rows(top_indices, direction)`` -> (N, d): the representation clustered (default: the activations, A[top]).
    representation : str
        Its name, recorded and checked against the params it is used with.
    """
    if draws < 3:
        raise ConceptvecError(f"draws must be at least 3 (the null's mean and sd), got {draws}; the default is {LAYER_NULL_DRAWS}.")
    matrix, _ = as_matrix(acts)
    rng = np.random.default_rng([params.seed, 0x1A7E])  # its own stream: the null does not move k-means' seed
    directions = rng.standard_normal((draws, matrix.shape[1])) / layer_sd(matrix)[None, :]
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    top_idx, _ = top_examples(matrix, params.top, directions=directions)
    shares = []
    for idx, direction in zip(top_idx, directions):
        x = read_rows(matrix, idx) if rows is None else np.asarray(rows(idx, direction), dtype=np.float64)
        shares.append(first_split_share(x, min_cluster_size=params.min_cluster_size))
    values = np.array([s for s in shares if np.isfinite(s)])
    if len(values) < 3:
        # why: rows that repeat (a constant or dead layer, duplicated inputs) give no two groups to test, whatever the size
        seen = np.unique(top_idx)
        distinct = len(np.unique(read_rows(matrix, seen), axis=0))
        why = (f"the {len(seen)} examples at their tops hold {distinct} distinct rows: the layer's rows repeat (check the "
               f"data), or leave --null layer out" if distinct < min(len(seen), 2 * params.min_cluster_size)
               else "lower min_cluster_size")
        raise ConceptvecError(f"only {len(values)} of {draws} random directions had a testable first split (top {params.top}, "
                              f"min_cluster_size {params.min_cluster_size}); the layer null needs at least 3: {why}.")
    return LayerNull(shares=values, top=params.top, min_cluster_size=params.min_cluster_size, seed=params.seed,
                     representation=representation)
