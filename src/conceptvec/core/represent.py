"""Representations of a direction's top examples other than the layer's activations (``Params.representation``).

``attribution``: gradient x input at the layer below (``models.attribution.LayerAttribution``), one value per
channel of the layer below: how much each input channel moved the direction, up or down.

``excitation``: the same attributions reduced to what excites the direction: their positive part (an example fires
because of the channels that push it up; the channels that hold it down vary with everything else), projected on
its ``EXCITATION_COMPONENTS`` leading right singular vectors over the top examples, where a few distinct reasons for
firing stand out from the many small ones (``benchmarks/bench_real.py``; ``docs/thresholds.md``). Not centred: auto
clusters the rows' directions from the origin (no excitation), and centring first would turn one reason whose
strength varies into several directions from the mean.

``contributions`` (store-only): the rows ``x_k * d_k``, each unit's term of the direction's projection (a row sums to
the example's projection on ``d``). Two sources that excite a direction through different units come apart. For a
neuron (or any direction with fewer than ``MIN_CONTRIBUTING`` non-zero units) it is degenerate, one column, so the
activations are clustered instead and the ConceptSet records it.

``dictionary`` (store-only, with a sparse dictionary of the layer, ``cv.fit_dictionary``): the rows
``c_a(x) * (w_a . d)``, each atom's term of the direction's projection when ``x - b ~ sum_a c_a(x) w_a``. The
dictionary never saw the direction, and a neuron (a basis direction) has as many terms as atoms that write to it.

``focus_pool`` (benchmark only, ``benchmarks/bench_focus.py``): an example's per-position activations (spatial
locations or tokens) pooled with weights given by how much the direction fires at each position, instead of the
paper's plain mean over positions: what the layer holds where the direction fires. Studied and not offered as an
option: it raised no ceiling on the real networks (``docs/thresholds.md``, "Pooling where the direction fires").
"""

from __future__ import annotations

import numpy as np

EXCITATION_COMPONENTS = 5
MIN_CONTRIBUTING = 2


def contributions(x: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Each unit's term of the projection of the rows of ``x`` (N, n_units) on ``direction`` (n_units,): (N, n_units)."""
    return np.asarray(x, dtype=np.float64) * np.asarray(direction, dtype=np.float64)[None, :]


def excitation(attributions: np.ndarray, components: int = EXCITATION_COMPONENTS) -> np.ndarray:
    """The positive part of ``attributions`` (N, channels) on its ``components`` leading right singular vectors: (N, k)."""
    positive = np.maximum(np.asarray(attributions, dtype=np.float64), 0.0)
    u, s, _ = np.linalg.svd(positive, full_matrices=False)
    k = min(components, len(s))
    return np.asarray(u[:, :k] * s[:k], dtype=np.float64)


def atom_contributions(codes: np.ndarray, decoder: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Each atom's term ``c_a * (w_a . d)`` of the projection on ``direction`` (n_units,) of examples coded ``codes``
    (N, n_atoms) by a dictionary whose atoms are the rows of ``decoder`` (n_atoms, n_units): (N, n_atoms).

    A row sums to the projection of the example's reconstruction minus the dictionary's bias.
    """
    weights = np.asarray(decoder, dtype=np.float64) @ np.asarray(direction, dtype=np.float64)
    return np.asarray(codes, dtype=np.float64) * weights[None, :]


FOCUS_WEIGHTINGS = ("relu", "softmax", "top")


def focus_pool(positions: np.ndarray, *, scores: np.ndarray, weighting: str = "relu", top: int = 3) -> np.ndarray:
    """One example's per-position activations ``positions`` (P, width) pooled where ``scores`` (P,) is high: (width,).

    ``weighting``: ``relu`` (weights ``max(s_p, 0)``), ``softmax`` (``exp(s_p / sd(s))``, the example's own spread as
    temperature) or ``top`` (the plain mean of the ``top`` positions of highest score). Weights are normalised to sum
    to one; where no weight is positive (the direction fires nowhere) it is the plain mean, the paper's pooling.
    """
    a = np.asarray(positions, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if a.ndim != 2 or s.shape != (len(a),):
        raise ValueError(f"positions (P, width) and scores (P,) expected, got {a.shape} and {s.shape}")
    if weighting == "relu":
        w = np.maximum(s, 0.0)
    elif weighting == "softmax":
        w = np.exp((s - s.max()) / max(float(s.std()), 1e-12))
    elif weighting == "top":
        w = np.zeros_like(s)
        w[np.argsort(-s, kind="stable")[:top]] = 1.0
    else:
        raise ValueError(f"weighting must be one of {FOCUS_WEIGHTINGS}, got {weighting!r}")
    total = w.sum()
    return np.asarray(a.mean(axis=0) if total <= 0 else (w / total) @ a, dtype=np.float64)
