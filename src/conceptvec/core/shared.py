"""Shared concepts: concept vectors of different neurons of one layer that point the same way.

Notation: V, shape (n, n_units), the unit concept vectors of a layer scan (every neuron's, stacked), and
``owner`` (n,), the neuron (or direction) each came from. Two concepts of different owners are linked when
their cosine exceeds a level ``t``; the groups are the connected components of those links that span two
or more owners.

The level is a test on the layer's own concepts, so that one knob (``significance``) means the same on
every layer: a layer whose activations are all positive has concept vectors that all share its mean
direction, and a fixed cosine would link everything there and nothing elsewhere. Most pairs of concepts of
different neurons are unrelated; their cosines, Fisher-transformed (arctanh), are summarised by a robust
centre and spread (median and MAD of a sample of pairs, the MAD at the upper end of its 95 % confidence
interval), and ``t`` is where a Gaussian of that centre and spread leaves probability
``significance / n_pairs`` above it (Bonferroni over every cross-owner pair).
So a link says: these two are more alike than any pair of this layer would be by chance, at family-wise
level ``significance``.

The baseline: ``null_draws`` sets of random directions of the same layer (as many as V, Gaussian with the
layer's activation mean and covariance, or V's own without them; the same owners) go through the same test
at their own level; ``baseline_groups`` counts the groups each gives (at 0.05, none in about 19 sets of 20).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.stats import norm

from ..errors import ConceptvecError

BLOCK = 1024  # rows of V multiplied with all of V at a time: 1024 x n floats
SAMPLE = 50_000  # cross-owner pairs whose cosines estimate the layer's chance similarity
CLIP = 1 - 1e-6  # arctanh of a cosine of exactly 1 is infinite


@dataclass(frozen=True)
class SharedGroups:
    """What :func:`shared_groups` found.

    Attributes
    ----------
    group : array of shape (n,)
        Each concept's group, -1 when it shares with no other neuron; groups are numbered 0.. by size, largest first.
    level : float
        The cosine t above which two concepts of different owners are linked.
    baseline_groups : array of shape (null_draws,)
        The groups found, by the same test at its own level, in each set of random directions of the layer.
    neighbours, neighbour_cosines : arrays of shape (n, k)
        Each concept's k most similar concepts of other owners (index into V, -1 past the end) and their cosines.
    """

    group: np.ndarray
    level: float
    baseline_groups: np.ndarray
    neighbours: np.ndarray
    neighbour_cosines: np.ndarray

    @property
    def n_groups(self) -> int:
        return int(self.group.max() + 1) if len(self.group) else 0


def _unit(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1.0)


def cross_owner_pairs(vectors: np.ndarray, owner: np.ndarray, *, level: float | None = None, k: int = 0,
                      block: int = BLOCK) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One blockwise pass over V V^T, pairs of the same owner left out.

    Returns (largest cross-owner cosine, links (2, m) with cosine > ``level`` (empty without a level),
    their cosines (m,), each row's k nearest other-owner concepts (n, k) and their cosines (n, k)).
    """
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(v)
    k = min(k, n)
    top = -np.inf
    rows, cols, values = [], [], []
    near = np.full((n, k), -1, dtype=np.int64)
    near_cos = np.full((n, k), np.nan, dtype=np.float32)
    for a in range(0, n, block):
        b = min(n, a + block)
        c = v[a:b] @ v.T
        c[owner[a:b, None] == owner[None, :]] = -np.inf  # a neuron's own concepts are not "shared"
        if c.size:
            top = max(top, float(c.max()))
        if level is not None:
            r, q = np.nonzero(c > level)
            keep = r + a < q  # each pair once
            rows.append(r[keep] + a)
            cols.append(q[keep])
            values.append(c[r[keep], q[keep]])
        if k:
            part = np.argpartition(-c, k - 1, axis=1)[:, :k]
            pc = np.take_along_axis(c, part, axis=1)
            order = np.argsort(-pc, axis=1, kind="stable")
            part, pc = np.take_along_axis(part, order, axis=1), np.take_along_axis(pc, order, axis=1)
            ok = np.isfinite(pc)
            near[a:b] = np.where(ok, part, -1)
            near_cos[a:b] = np.where(ok, pc, np.nan)
    links = np.vstack([np.concatenate(rows), np.concatenate(cols)]) if rows else np.zeros((2, 0), np.int64)
    cosines = np.concatenate(values) if values else np.zeros(0, np.float32)
    return top, links, cosines, near, near_cos


def null_directions(n: int, mean: np.ndarray, factor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """n random unit directions of the layer, Gaussian with mean ``mean`` (n_units,) and covariance ``factor.T @ factor``
    (``factor`` of shape (r, n_units)), shape (n, n_units)."""
    z = rng.standard_normal((n, len(factor)), dtype=np.float32)
    return _unit(np.asarray(mean, dtype=np.float32) + z @ np.asarray(factor, dtype=np.float32))


def covariance_factor(cov: np.ndarray) -> np.ndarray:
    """F with F.T @ F = cov (symmetric, positive semi-definite, (n_units, n_units)), shape (n_units, n_units)."""
    w, u = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    return np.asarray((u * np.sqrt(np.clip(w, 0.0, None))).T)


def cross_owner_sample(vectors: np.ndarray, owner: np.ndarray, rng: np.random.Generator, *, size: int = SAMPLE) -> np.ndarray:
    """Cosines of up to ``size`` random pairs of concepts of different owners (unit rows), shape (m,); every pair when few."""
    n = len(vectors)
    if n * (n - 1) // 2 <= size:
        c = vectors @ vectors.T
        i, j = np.triu_indices(n, k=1)
        return np.asarray(c[i, j][owner[i] != owner[j]])
    i = rng.integers(0, n, size=2 * size)
    j = rng.integers(0, n, size=2 * size)
    keep = owner[i] != owner[j]
    i, j = i[keep][:size], j[keep][:size]
    # in chunks: a gather of every sampled pair at once would be size x n_units floats twice
    return np.concatenate([np.einsum("ij,ij->i", vectors[i[a : a + 4096]], vectors[j[a : a + 4096]]) for a in range(0, len(i), 4096)])


def chance_level(vectors: np.ndarray, owner: np.ndarray, significance: float, rng: np.random.Generator) -> float:
    """The cosine above which a cross-owner pair is beyond what this layer's pairs share by chance (module docstring)."""
    counts = np.unique(owner, return_counts=True)[1].astype(np.float64)
    n_pairs = (len(owner) ** 2 - float(np.sum(counts**2))) / 2
    if n_pairs < 1:
        return float("inf")
    z = np.arctanh(np.clip(cross_owner_sample(vectors, owner, rng), -CLIP, CLIP))
    centre = float(np.median(z))
    spread = 1.4826 * float(np.median(np.abs(z - centre)))  # the MAD of a Gaussian is its sd / 1.4826
    # the spread's upper 97.5 % confidence bound (the MAD's sd is 1.166 sd / sqrt(m) on m Gaussian values): a spread
    # underestimated by chance would otherwise put the level too low, and a small layer link by chance too often
    spread *= 1 + 1.96 * 1.166 / np.sqrt(len(z))
    return float(np.tanh(centre + spread * norm.isf(significance / n_pairs)))


def groups_of(n: int, links: np.ndarray) -> np.ndarray:
    """Connected components of ``links`` (2, m) among n items with two or more members, numbered by size; -1 for the rest."""
    graph = coo_matrix((np.ones(links.shape[1]), (links[0], links[1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    kept = np.unique(component[sizes[component] > 1])
    first = np.array([np.flatnonzero(component == g)[0] for g in kept], dtype=np.int64)
    order = kept[np.lexsort((first, -sizes[kept]))]  # largest first, ties by their first item
    rename = np.full(len(sizes), -1)
    rename[order] = np.arange(len(order))
    return np.asarray(rename[component])


def shared_groups(vectors: np.ndarray, owner: np.ndarray, *, significance: float = 0.05, null_draws: int = 10,
                  neighbours: int = 5, seed: int = 0, layer: tuple[np.ndarray, np.ndarray] | None = None,
                  advance: Callable[[], None] | None = None) -> SharedGroups:
    """Group concept vectors of different owners that point the same way (see the module docstring).

    Parameters
    ----------
    vectors : array of shape (n, n_units)
        Concept vectors (made unit length here).
    owner : array of shape (n,)
        The neuron or direction each came from; concepts of one owner are never linked.
    significance : float
        Family-wise chance of a link between two concepts no more alike than this layer's pairs by chance; in (0, 1).
    null_draws : int
        Sets of random directions of the layer put through the same test, for the baseline (0: none).
    layer : (mean, cov), arrays of shape (n_units,) and (n_units, n_units), optional
        The layer's activation mean and covariance: the random directions are Gaussian with them. Without it,
        with the concept vectors' own mean and covariance.
    neighbours : int
        Nearest other-owner concepts kept per concept.
    seed : int
        Seed of the sampled pairs and of the random directions.
    advance : callable, optional
        Called once per null draw and once for the real pass (a progress bar's step).
    """
    v = _unit(np.asarray(vectors, dtype=np.float32))
    owner = np.asarray(owner)
    if v.ndim != 2 or owner.shape != (len(v),):
        raise ConceptvecError(f"vectors must be (n, n_units) with one owner each; got {v.shape} and {owner.shape}.")
    if not 0 < significance < 1:
        raise ConceptvecError(f"significance must be in (0, 1), got {significance!r}; 0.05 is the usual level.")
    if isinstance(null_draws, bool) or not isinstance(null_draws, (int, np.integer)) or null_draws < 0:
        raise ConceptvecError(f"null_draws must be a whole number >= 0, got {null_draws!r}.")
    rng = np.random.default_rng(seed)
    baseline = np.zeros(int(null_draws), dtype=np.int64)
    if null_draws:
        mean, cov = layer if layer is not None else (v.mean(axis=0), np.cov(v.T) if len(v) > 1 else np.eye(v.shape[1]))
        factor = covariance_factor(np.atleast_2d(cov))
    for d in range(int(null_draws)):
        random_v = null_directions(len(v), mean, factor, rng)
        links = cross_owner_pairs(random_v, owner, level=chance_level(random_v, owner, significance, rng))[1]
        baseline[d] = int(groups_of(len(v), links).max() + 1) if len(v) else 0
        if advance is not None:
            advance()
    level = chance_level(v, owner, significance, rng)
    top, links, _, near, near_cos = cross_owner_pairs(v, owner, level=level, k=neighbours)
    if advance is not None:
        advance()
    return SharedGroups(group=groups_of(len(v), links), level=level, baseline_groups=baseline, neighbours=near,
                        neighbour_cosines=near_cos)
