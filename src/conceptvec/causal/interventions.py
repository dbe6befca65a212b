"""Interventions on one layer: ablate, mean-ablate or steer directions inside the forward pass.

Notation: a layer's output x is (N, C, H, W) for a convolutional map (units along dim 1), (N, T, D)
for tokens or (N, D) (units along the last dim); a direction v is a unit vector of length n_units
(C or D). The edit applies to the unit vector of every spatial position or token, so the globally
average-pooled activation moves by exactly the same amount (pooling is linear):

- ``ablate``: x' = x - Q Q^T x, with Q an orthonormal basis of the directions (one v: x - (x . v) v);
- ``mean``:   x' = x - Q (Q^T x - Q^T mu), mu the reference mean activation (one v: x - ((x . v) - m) v);
- ``steer``:  x' = x + sum_i alpha_i v_i.

:func:`intervene` is the public context manager; :func:`branch_forward` and :class:`Edits` serve
``causal_effects``, which runs several single-direction edits as branches of one batch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConceptvecError
from ..models.hooks import first_tensor
from ..models.layers import LoadedModel, find_layer, is_script

MODES = ("ablate", "mean", "steer")
# Directions whose orthogonalised remainder is below this share of their norm add nothing to the span.
RANK_TOL = 1e-6


def unit_dim(x: torch.Tensor) -> int:
    """The dimension of ``x`` that holds the units: 1 for a (N, C, H, W) map, the last one otherwise."""
    if x.ndim == 4:
        return 1
    if x.ndim in (2, 3):
        return x.ndim - 1
    raise ConceptvecError(f"cannot edit a layer output of shape {tuple(x.shape)}; expected (N, C, H, W), (N, T, D) or (N, D).")


def as_directions(directions: Any, *, what: str = "directions") -> np.ndarray:
    """Directions as a float64 array (k, n_units) of unit rows; a zero, non-finite or empty one is an error."""
    if isinstance(directions, torch.Tensor):
        directions = directions.detach().cpu().numpy()
    try:  # a string, a ragged list or a ConceptSet: one line, not numpy's error
        d = np.array(directions, dtype=np.float64, copy=True)
    except (TypeError, ValueError):
        hint = " (a ConceptSet's are cs.concept_vectors)" if hasattr(directions, "concept_vectors") else ""
        raise ConceptvecError(f"{what} must be an array of numbers (k, n_units){hint}, got {type(directions).__name__}.") from None
    if d.ndim == 1:
        d = d[None]
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] == 0:
        raise ConceptvecError(f"{what} must be a vector (n_units,) or an array (k, n_units), got shape {np.shape(directions)}.")
    if not np.all(np.isfinite(d)):
        raise ConceptvecError(f"{what} hold NaN or infinite values; give finite vectors.")
    scale = np.abs(d).max(axis=1)  # scaled first: a vector of 1e200s has a direction, its norm would overflow
    if np.any(scale == 0):
        raise ConceptvecError(f"{what} {np.flatnonzero(scale == 0).tolist()} are zero vectors, which have no direction; drop them.")
    d = d / scale[:, None]
    return d / np.linalg.norm(d, axis=1)[:, None]


def orthonormal_basis(d: np.ndarray) -> np.ndarray:
    """An orthonormal basis (r, n_units) of the span of the rows of ``d``, by Gram-Schmidt in the given order."""
    basis: list[np.ndarray] = []
    for v in d:
        for _ in range(2):  # twice is enough for working precision (Kahan)
            for q in basis:
                v = v - (q @ v) * q
        norm = np.linalg.norm(v)
        if norm > RANK_TOL:
            basis.append(v / norm)
    return np.stack(basis)


def basis_direction(n_units: int, neuron: int) -> np.ndarray:
    """The neuron's basis vector e_neuron (n_units,): neuron ablation on the same footing as a concept's."""
    if not 0 <= neuron < n_units:
        raise ConceptvecError(f"neuron {neuron} is out of range: the layer has {n_units} units (0-{n_units - 1}).")
    e = np.zeros(n_units)
    e[neuron] = 1.0
    return e


def reference_mean(mean: Any, n_units: int) -> np.ndarray | float:
    """The reference mean activation (n_units,) from a vector, a (n_examples, n_units) array or an ActivationStore;
    a number is the mean projection itself (one direction only)."""
    if hasattr(mean, "activations"):  # an ActivationStore: its memory-mapped matrix, read in row blocks
        from ..core.metrics import layer_mean

        return np.asarray(layer_mean(mean.activations), dtype=np.float64)
    if isinstance(mean, torch.Tensor):
        mean = mean.detach().cpu().numpy()
    m = np.asarray(mean, dtype=np.float64)
    if m.ndim == 0:
        if not np.isfinite(m):
            raise ConceptvecError("mean must be finite.")
        return float(m)
    if m.ndim == 2:
        m = m.mean(axis=0)
    if m.shape != (n_units,) or not np.all(np.isfinite(m)):
        raise ConceptvecError(f"mean must be the reference mean activation ({n_units},), a reference array (n_examples, {n_units}), "
                              f"an ActivationStore or one number; got shape {m.shape} (or non-finite values).")
    return m


@dataclass
class Edits:
    """Single-direction edits, one per branch: x'_b = x - (s_b (x . v_b) - t_b) v_b.

    ablate: s = 1, t = 0; mean: s = 1, t = m_b (mean projection); steer: s = 0, t = alpha_b. A branch
    with v = 0 leaves x unchanged (the unedited branch).
    """

    vectors: np.ndarray  # (B, n_units)
    scale: np.ndarray  # (B,)
    shift: np.ndarray  # (B,)

    @property
    def n_branches(self) -> int:
        return len(self.vectors)

    def apply(self, x: torch.Tensor, branches: int, *, shared: bool = False) -> torch.Tensor:
        """Edit ``x`` into a batch (B * N, ...) laid out branch-major: rows b*N..(b+1)*N get edit b.

        ``x`` is the N examples' output (``shared``: every branch starts from it) or already (B * N, ...).
        """
        xb = x.unsqueeze(0) if shared else x.reshape(branches, -1, *x.shape[1:])  # (1 or B, N, ...)
        dim = unit_dim(xb[0]) + 1
        n_units = xb.shape[dim]
        if n_units != self.vectors.shape[1]:
            raise ConceptvecError(f"the directions have {self.vectors.shape[1]} units but the layer's output has {n_units} along "
                                  f"its unit dimension (dim {dim - 1}, shape {tuple(x.shape)}); give vectors of length {n_units}.")
        v, s, t = (torch.as_tensor(a, dtype=x.dtype, device=x.device) for a in (self.vectors, self.scale, self.shift))
        # the projections in the output's own layout, so that the edited batch is written once, contiguous
        letters = {2: "nd", 3: "ntd", 4: "nchw"}[xb.ndim - 1]
        unit = letters[dim - 1]
        rest = letters.replace(unit, "")
        proj = torch.einsum(f"{'' if shared else 'b'}{letters},b{unit}->b{rest}", xb[0] if shared else xb, v)
        shape = [branches] + [1] * (xb.ndim - 1)
        coeff = s.view(shape[:-1]) * proj - t.view(shape[:-1])
        shape[dim] = n_units
        out = torch.addcmul(xb, coeff.unsqueeze(dim), v.view(shape), value=-1)
        return out.reshape(branches * xb.shape[1], *xb.shape[2:])


def replace_first(output: Any, new: torch.Tensor) -> Any:
    """``output`` with its hidden-state tensor (see :func:`~conceptvec.models.hooks.first_tensor`) replaced by ``new``."""
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, tuple):
        return (new, *output[1:])
    if isinstance(output, list):
        return [new, *output[1:]]
    if hasattr(output, "to_tuple"):
        key = next(iter(output.keys()))
        output[key] = new
        return output
    raise ConceptvecError(f"cannot edit a layer output of type {type(output).__name__}; hook a layer that returns a tensor.")


def resolve_layer(model: Any, layer: str | nn.Module) -> tuple[nn.Module, nn.Module, str]:
    """(model module, layer module, layer name) of a spec-loaded or plain model; TorchScript is refused."""
    module = model.module if isinstance(model, LoadedModel) else model
    if not isinstance(module, nn.Module):
        raise ConceptvecError(f"model must be an nn.Module or a LoadedModel, got {type(model).__name__}.")
    if is_script(module):
        raise ConceptvecError("TorchScript models run no Python hooks, so their layers cannot be edited; load the model's Python "
                              "class with its weights instead (e.g. torchvision:NAME --weights FILE.pt).")
    if isinstance(layer, nn.Module):
        names = {m: n for n, m in module.named_modules()}
        if layer not in names:
            raise ConceptvecError("the layer module given is not a sub-module of the model; pass its name (list them with `--layer list`).")
        return module, layer, names[layer]
    return module, find_layer(module, layer), layer


@contextlib.contextmanager
def layer_edit(module: nn.Module, layer: nn.Module, name: str, edit) -> Iterator[dict[str, Any]]:
    """Replace ``layer``'s output by ``edit(output tensor)`` in every forward of ``module`` within the block.

    A forward of ``module`` that never runs the layer is an error (the edit would change nothing). The
    hooks are removed however the block ends. The yielded dict counts the edits (``"calls"``).
    """
    state = {"calls": 0, "ran": False}

    def before(_module, _inputs):
        state["ran"] = False

    def on_layer(_module, _inputs, output):
        state["ran"] = True
        state["calls"] += 1
        return replace_first(output, edit(first_tensor(output)))

    def after(_module, _inputs, _output):
        if not state["ran"]:
            raise ConceptvecError(f"layer {name!r} did not run in the model's forward pass, so editing it changes nothing; choose a "
                                  f"layer on the path to the output (list them with `--layer list`).")

    handles = [module.register_forward_pre_hook(before), layer.register_forward_hook(on_layer)]
    if module is not layer:
        handles.append(module.register_forward_hook(after))
    try:
        yield state
    finally:
        for h in handles:
            h.remove()


def intervention_edit(directions: Any, mode: str, alpha: Any, mean: Any, positions: Sequence[int] | slice | None):
    """The function from a layer output to its edited version, for :func:`intervene` (arguments checked here)."""
    if mode not in MODES:
        raise ConceptvecError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}.")
    d = as_directions(directions)
    n_units = d.shape[1]
    if mode == "steer":
        if alpha is None:
            raise ConceptvecError("mode='steer' needs alpha (a number, or one per direction).")
        a = np.asarray(alpha, dtype=np.float64)
        if a.ndim > 1 or a.ndim == 1 and len(a) != len(d):
            raise ConceptvecError(f"alpha must be one number or one per direction ({len(d)}), got shape {a.shape}.")
        if not np.all(np.isfinite(a)):
            raise ConceptvecError(f"alpha must be finite, got {alpha!r}.")
        a = np.broadcast_to(a, (len(d),))
        shift = a @ d  # (n_units,): the sum of alpha_i v_i
        if not np.all(np.abs(shift) < np.finfo(np.float32).max):  # the layer's float32 outputs would turn inf, then NaN
            raise ConceptvecError(f"alpha {alpha!r} moves the layer's activations beyond float32's range; steer with a smaller alpha.")
        q, m = None, None
    else:
        if alpha is not None:
            raise ConceptvecError(f"alpha is for mode='steer'; mode={mode!r} takes none.")
        q = orthonormal_basis(d)
        m = np.zeros(len(q))
        if mode == "mean":
            if mean is None:
                raise ConceptvecError("mode='mean' needs mean: the reference mean activation (n_units,), reference activations or an ActivationStore.")
            ref = reference_mean(mean, n_units)
            if isinstance(ref, float):
                if len(d) != 1:
                    raise ConceptvecError("a single number as mean is the mean projection of one direction; for several give the mean activation vector.")
                ref = ref * d[0]
            m = q @ ref
        elif mean is not None:
            raise ConceptvecError(f"mean is for mode='mean'; mode={mode!r} takes none.")

    cache: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def edit(x: torch.Tensor) -> torch.Tensor:
        dim = unit_dim(x)
        if x.shape[dim] != n_units:
            raise ConceptvecError(f"the directions have {n_units} units but the layer's output has {x.shape[dim]} along its unit "
                                  f"dimension (dim {dim}, shape {tuple(x.shape)}); give vectors of length {x.shape[dim]}.")
        key = (x.device, x.dtype)
        if key not in cache:
            arrays = (shift,) if mode == "steer" else (q, m)
            cache[key] = tuple(torch.as_tensor(a, dtype=x.dtype, device=x.device) for a in arrays)
        xl = x.movedim(dim, -1)
        if mode == "steer":
            new = xl + cache[key][0]
        else:
            qt, mt = cache[key]
            new = xl - ((xl @ qt.T) - mt) @ qt
        if positions is not None:
            if x.ndim != 3:
                raise ConceptvecError(f"positions are token positions of a (N, tokens, dim) output; this layer gives {tuple(x.shape)}.")
            kept = xl.clone()
            kept[:, positions] = new[:, positions]
            new = kept
        return new.movedim(-1, dim)

    return edit


@contextlib.contextmanager
def intervene(model: Any, layer: str | nn.Module, directions: Any, *, mode: str = "ablate", alpha: Any = None, mean: Any = None,
              positions: Sequence[int] | slice | None = None) -> Iterator[dict[str, Any]]:
    """Edit ``layer``'s output along ``directions`` in every forward of ``model`` inside the block.

    Parameters
    ----------
    model : nn.Module or LoadedModel (TorchScript is refused: it runs no hooks)
    layer : the layer's name (as ``--layer list`` shows it) or the sub-module itself
    directions : array (n_units,) or (k, n_units); each is normalised, and for ``ablate``/``mean`` the
        set is orthogonalised first (its span is removed)
    mode : ``ablate`` (x - (x . v) v), ``mean`` (x - ((x . v) - m) v) or ``steer`` (x + alpha v)
    alpha : for ``steer``: one number, or one per direction
    mean : for ``mean``: the reference mean activation (n_units,), reference activations (n, n_units),
        an ActivationStore (its mean row), or the mean projection m itself (one direction)
    positions : token positions to edit in a (N, T, D) output (default every position)

    Yields
    ------
    dict with ``calls``: how many forwards edited the layer. Hooks are removed on exit and on error;
    the model's parameters and train/eval modes are not touched.
    """
    module, layer_module, name = resolve_layer(model, layer)
    edit = intervention_edit(directions, mode, alpha, mean, positions)
    with layer_edit(module, layer_module, name, edit) as state:
        yield state


def branch_forward(module: nn.Module, layer: nn.Module, name: str, x: Any, edits: Edits, *, share: bool,
                   after: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Any:
    """One forward giving the model's output under every edit, stacked branch-major: batch B * N.

    ``share=True`` runs the layers below once on the N examples and edits the layer's output into B
    branches inside the hook, so only the layers above run B times; ``share=False`` repeats the input (every
    model allows it). The caller checks once that sharing gives the unshared result (see
    ``causal.effects``): a model whose upper part reuses a tensor from below the layer (a skip connection,
    a mask) cannot share. ``after`` sees the edited layer output (B * N, ...).
    """
    branches = edits.n_branches

    def edit(out: torch.Tensor) -> torch.Tensor:
        new = edits.apply(out, branches, shared=share)
        return new if after is None else after(new)

    inputs = x if share else x.repeat(branches, *([1] * (x.ndim - 1)))
    with layer_edit(module, layer, name, edit):
        return module(inputs)

