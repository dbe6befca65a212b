"""Planted layers: activations whose neurons have a known number of facets, to check a threshold rule.

Neuron j of the first ``n_neurons`` units fires for ``n_facets[j]`` facets (1 to 4; every fourth
neuron has one). A facet is a direction of the layer: a non-negative random pattern over the other
units plus the neuron's own unit. Each neuron gets ``top`` examples, split among its facets (at least
15 each); an example is its facet's direction times a strength drawn uniformly from ``strength``, plus
Gaussian noise of total norm about ``noise``, rectified. Strengths vary continuously, so a rule that
cuts by strength splits a single-facet neuron into pieces. Background examples fire weakly everywhere
and never reach a neuron's top examples. ``scale`` multiplies everything (a threshold that means the
same on every layer gives the same answer at every scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_FACET = 15


@dataclass(frozen=True)
class PlantedLayer:
    """acts (n_examples, width) float32; facet and owner (n_examples,): the example's facet and neuron, -1 for
    background; n_facets (n_neurons,)."""

    acts: np.ndarray
    facet: np.ndarray
    owner: np.ndarray
    n_facets: np.ndarray


def planted_layer(width: int, *, n_neurons: int = 40, top: int = 100, strength: tuple[float, float] = (0.5, 1.5),
                  noise: float = 0.35, n_background: int = 2000, scale: float = 1.0, seed: int = 0) -> PlantedLayer:
    """A planted layer of ``width`` units whose first ``n_neurons`` neurons have 1-4 known facets (see module)."""
    if width < n_neurons + 8:
        raise ValueError(f"width ({width}) must exceed n_neurons ({n_neurons}) by at least 8.")
    if top < 4 * MIN_FACET:
        raise ValueError(f"top must be >= {4 * MIN_FACET} for four facets of {MIN_FACET}, got {top}.")
    rng = np.random.default_rng(seed)
    rows, facets_of, owners, counts = [], [], [], []
    for j in range(n_neurons):
        k = 1 if j % 4 == 0 else int(rng.integers(2, 5))
        counts.append(k)
        directions = np.maximum(rng.normal(size=(k, width)), 0.0)
        directions[:, :n_neurons] = 0.0
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        directions[:, j] = 1.0  # the neuron's own unit fires for every one of its facets
        sizes = rng.multinomial(top - MIN_FACET * k, np.full(k, 1.0 / k)) + MIN_FACET
        for f in range(k):
            s = rng.uniform(*strength, size=sizes[f])
            x = s[:, None] * directions[f] + rng.normal(scale=noise / np.sqrt(width), size=(sizes[f], width))
            rows.append(np.maximum(x, 0.0))
            facets_of.append(np.full(sizes[f], f))
            owners.append(np.full(sizes[f], j))
    background = np.maximum(rng.normal(scale=0.3 / np.sqrt(width), size=(n_background, width)), 0.0)
    background[:, :n_neurons] = np.minimum(background[:, :n_neurons], 0.05)
    acts = (np.vstack(rows + [background]) * scale).astype(np.float32)
    return PlantedLayer(
        acts=acts,
        facet=np.concatenate(facets_of + [np.full(n_background, -1)]),
        owner=np.concatenate(owners + [np.full(n_background, -1)]),
        n_facets=np.asarray(counts, dtype=np.int64),
    )


@dataclass(frozen=True)
class PlantedSharedLayer:
    """acts (n_examples, width) float32; owner and facet (n_examples,): the example's neuron and its facet's id
    (-1 for background); facets_of: each neuron's facet ids; shared: the ids of facets that two or more neurons fire for."""

    acts: np.ndarray
    owner: np.ndarray
    facet: np.ndarray
    facets_of: tuple[tuple[int, ...], ...]
    shared: tuple[int, ...]


def planted_shared_layer(width: int, *, n_neurons: int = 24, n_shared: int = 6, top: int = 100,
                         strength: tuple[float, float] = (0.5, 1.5), noise: float = 0.35, n_background: int = 2000,
                         seed: int = 0) -> PlantedSharedLayer:
    """A planted layer whose first ``n_neurons`` neurons have 2-4 facets, ``n_shared`` of them fired for by 2 or 3 neurons.

    A facet is a non-negative random pattern over the units past the neurons; neuron j's examples of facet g are
    strength times (pattern g plus j's own unit) plus noise, rectified, as in :func:`planted_layer`. So the concept
    of g found in neuron j and the one found in neuron k share pattern g and differ in their own units (cosine near
    1/2), while unrelated facets' patterns overlap only by chance. Every other facet belongs to one neuron.
    """
    if width < n_neurons + 8:
        raise ValueError(f"width ({width}) must exceed n_neurons ({n_neurons}) by at least 8.")
    if top < 4 * MIN_FACET:
        raise ValueError(f"top must be >= {4 * MIN_FACET} for four facets of {MIN_FACET}, got {top}.")
    if n_neurons < 3 or not 0 <= n_shared <= n_neurons:
        raise ValueError(f"need n_neurons >= 3 and 0 <= n_shared <= n_neurons, got {n_neurons} and {n_shared}.")
    rng = np.random.default_rng(seed)
    facets: list[list[int]] = [[] for _ in range(n_neurons)]
    for g in range(n_shared):
        open_ = [j for j in range(n_neurons) if len(facets[j]) < 2]  # at most two shared facets per neuron
        for j in rng.choice(open_, size=min(len(open_), int(rng.integers(2, 4))), replace=False):
            facets[int(j)].append(g)
    n_facets = n_shared
    for j in range(n_neurons):
        target = max(len(facets[j]), int(rng.integers(2, 5)))
        while len(facets[j]) < target:
            facets[j].append(n_facets)
            n_facets += 1
    patterns = np.maximum(rng.normal(size=(n_facets, width)), 0.0)
    patterns[:, :n_neurons] = 0.0
    patterns /= np.linalg.norm(patterns, axis=1, keepdims=True)
    rows, owners, facet_ids = [], [], []
    for j, own in enumerate(facets):
        sizes = rng.multinomial(top - MIN_FACET * len(own), np.full(len(own), 1.0 / len(own))) + MIN_FACET
        for g, size in zip(own, sizes):
            direction = patterns[g].copy()
            direction[j] = 1.0
            s = rng.uniform(*strength, size=size)
            rows.append(np.maximum(s[:, None] * direction + rng.normal(scale=noise / np.sqrt(width), size=(size, width)), 0.0))
            owners.append(np.full(size, j))
            facet_ids.append(np.full(size, g))
    background = np.maximum(rng.normal(scale=0.3 / np.sqrt(width), size=(n_background, width)), 0.0)
    background[:, :n_neurons] = np.minimum(background[:, :n_neurons], 0.05)
    return PlantedSharedLayer(
        acts=np.vstack(rows + [background]).astype(np.float32),
        owner=np.concatenate(owners + [np.full(n_background, -1)]),
        facet=np.concatenate(facet_ids + [np.full(n_background, -1)]),
        facets_of=tuple(tuple(f) for f in facets),
        shared=tuple(g for g in range(n_shared) if sum(g in f for f in facets) >= 2),
    )
