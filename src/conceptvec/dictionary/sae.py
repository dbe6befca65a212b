"""The TopK sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"), in plain PyTorch.

Z = TopK_k(relu((A - b_dec) @ W_enc + b_enc)), A_hat = Z @ W_dec + b_dec, trained by Adam on the mean
squared error; the decoder's rows are kept at unit norm. Dead atoms (none of an example's k for ``dead_after``
examples) learn from the AuxK loss (same paper): the aux_k largest of their pre-activations reconstruct the
residual A - A_hat, weighted by aux_alpha. The encoder's and decoder's products touch only the active atoms
(sparse backward, ``embedding_bag``), as Gao et al.'s kernels do. A is scaled by one number so that the mean
squared norm of an example is n_units (as SAELens normalises), and the scale is folded into the saved
weights, so that the saved dictionary reads A in its own units. The only module of the room that loads torch.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch

from ..progress import progress_bar
from .blocks import all_blocks, epoch_blocks
from .checkpoint import Checkpoint
from .config import DictionaryConfig
from .model import Dictionary
from .quality import QualityStep


def _sparse_backward(xc: torch.Tensor, w_enc: torch.Tensor, indices: torch.Tensor, g: torch.Tensor,
                     needs: tuple[bool, ...]) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """Gradients of xc, W_enc and b_enc from the gradient ``g`` (batch, j) of the codes at ``indices`` (batch, j)."""
    n, j = indices.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: "Sparse CSR tensor support is in beta state"
        sparse = torch.sparse_csr_tensor(torch.arange(0, n * j + 1, j), indices.reshape(-1), g.reshape(-1), (n, w_enc.shape[1]))
        grad_xc = sparse @ w_enc.T if needs[0] else None
        grad_w = (sparse.t() @ xc).T.contiguous() if needs[1] else None
    grad_b = torch.zeros(w_enc.shape[1], dtype=g.dtype).index_add_(0, indices.reshape(-1), g.reshape(-1))
    return grad_xc, grad_w, grad_b


DEAD_WINDOW = 10_000_000  # examples without firing after which Gao et al. count an atom dead (their 10M tokens)


class TopKEncoder(torch.autograd.Function):
    """relu(TopK_k(xc @ W_enc + b_enc)) as (values, atoms), each (batch, k), with a sparse backward; and, for the
    AuxK loss, the same of the ``aux_k`` largest pre-activations among the ``dead`` atoms (batch, aux_k).

    Only k of each row's n_atoms codes get a gradient, so the encoder's two backward products are a
    (batch, n_atoms) matrix with k entries per row times a dense one: done as a sparse CSR product, about
    n_atoms / k times less work than autograd's dense ones (which multiply the zeros too). Same gradients.
    """

    @staticmethod
    def forward(ctx: Any, xc: torch.Tensor, w_enc: torch.Tensor, b_enc: torch.Tensor, k: int, dead: torch.Tensor | None,
                aux_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        pre = torch.addmm(b_enc, xc, w_enc)
        values, indices = pre.topk(k, dim=1)
        values = values.clamp_min(0.0)
        if dead is not None and aux_k > 0:
            aux_values, aux_indices = pre.masked_fill_(~dead, -torch.inf).topk(aux_k, dim=1)
            aux_values = aux_values.clamp_min(0.0)
        else:
            aux_values, aux_indices = values.new_zeros((len(xc), 0)), indices.new_zeros((len(xc), 0))
        ctx.save_for_backward(xc, w_enc, indices, values, aux_indices, aux_values)
        ctx.mark_non_differentiable(indices, aux_indices)
        return values, indices, aux_values, aux_indices

    @staticmethod
    def backward(ctx: Any, grad_values: torch.Tensor, _gi: Any, grad_aux: torch.Tensor, _ga: Any) -> tuple[torch.Tensor | None, ...]:
        xc, w_enc, indices, values, aux_indices, aux_values = ctx.saved_tensors
        needs = ctx.needs_input_grad
        # the ReLU's gradient: none where a code was cut to 0
        grad_xc, grad_w, grad_b = _sparse_backward(xc, w_enc, indices, torch.where(values > 0, grad_values, 0.0), needs)
        if aux_indices.shape[1] > 0:  # a dead atom may also be among the k: two products, summed
            gx, gw, gb = _sparse_backward(xc, w_enc, aux_indices, torch.where(aux_values > 0, grad_aux, 0.0), needs)
            grad_xc = None if grad_xc is None or gx is None else grad_xc + gx
            grad_w = None if grad_w is None or gw is None else grad_w + gw
            grad_b = grad_b + gb
        return grad_xc, grad_w, grad_b, None, None, None


class TopKSAE(torch.nn.Module):
    """W_enc (n_units, n_atoms), b_enc (n_atoms,), W_dec (n_atoms, n_units), b_dec (n_units,)."""

    def __init__(self, n_units: int, n_atoms: int, k: int, *, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(n_atoms, n_units, generator=g)
        w /= w.norm(dim=1, keepdim=True)
        self.k = min(k, n_atoms)
        self.W_dec = torch.nn.Parameter(w)
        self.W_enc = torch.nn.Parameter(w.T.contiguous())
        self.b_enc = torch.nn.Parameter(torch.zeros(n_atoms))
        self.b_dec = torch.nn.Parameter(torch.zeros(n_units))

    def encode_topk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The k largest codes of each example: values (batch, k), >= 0, and their atoms (batch, k)."""
        values, indices, _, _ = TopKEncoder.apply(x - self.b_dec, self.W_enc, self.b_enc, self.k, None, 0)
        return values, indices

    def encode_with_aux(self, x: torch.Tensor, dead: torch.Tensor, aux_k: int) -> tuple[torch.Tensor, ...]:
        """(values, atoms) of the k largest codes, and of the ``aux_k`` largest among the ``dead`` atoms (n_atoms,) bool."""
        aux_k = min(aux_k, int(dead.sum()))
        return tuple(TopKEncoder.apply(x - self.b_dec, self.W_enc, self.b_enc, self.k, dead, aux_k))

    def decode_topk(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """sum_j values_j W_dec[indices_j] + b_dec: only the k active atoms' rows are read (and get gradients), not a
        dense (batch, n_atoms) @ (n_atoms, n_units) product that is almost all zeros."""
        return torch.nn.functional.embedding_bag(indices, self.W_dec, per_sample_weights=values, mode="sum") + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction (batch, n_units), code values (batch, k), their atoms (batch, k))."""
        values, indices = self.encode_topk(x)
        return self.decode_topk(values, indices), values, indices

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))


class DeadAtoms:
    """For the AuxK loss: how many examples each atom has gone without firing; dead beyond ``after``."""

    def __init__(self, n_atoms: int, *, after: int):
        self.since, self.after = torch.zeros(n_atoms, dtype=torch.int64), after

    def mask(self) -> torch.Tensor:
        return self.since >= self.after

    def update(self, values: torch.Tensor, indices: torch.Tensor) -> None:
        self.since += len(values)
        self.since[indices[values > 0]] = 0


def aux_loss(sae: TopKSAE, residual: torch.Tensor, aux_values: torch.Tensor, aux_indices: torch.Tensor) -> torch.Tensor:
    """AuxK (Gao et al. 2024): the squared error of the dead atoms' reconstruction of the main residual (without
    b_dec; the residual is a constant, so only the dead atoms learn from it), per example, averaged."""
    e_hat = torch.nn.functional.embedding_bag(aux_indices, sae.W_dec, per_sample_weights=aux_values, mode="sum")
    return ((e_hat - residual) ** 2).sum(dim=1).mean()


def _state(sae: TopKSAE, opt: torch.optim.Adam, scale: float, dead: DeadAtoms | None) -> dict[str, np.ndarray]:
    arrays = {name: np.ascontiguousarray(p.detach().numpy()) for name, p in sae.named_parameters()}
    arrays["scale"] = np.asarray([scale], dtype=np.float64)
    if dead is not None:
        arrays["dead.since"] = dead.since.numpy().copy()
    for i, p in enumerate(sae.parameters()):
        st = opt.state.get(p)
        if st:
            arrays[f"adam.{i}.exp_avg"] = st["exp_avg"].numpy().copy()
            arrays[f"adam.{i}.exp_avg_sq"] = st["exp_avg_sq"].numpy().copy()
            arrays[f"adam.{i}.step"] = np.asarray([float(st["step"])], dtype=np.float64)
    return arrays


def _restore(sae: TopKSAE, opt: torch.optim.Adam, dead: DeadAtoms | None, arrays: dict[str, np.ndarray]) -> float:
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.from_numpy(arrays[name]))
    if dead is not None and "dead.since" in arrays:
        dead.since = torch.from_numpy(arrays["dead.since"].astype(np.int64))
    for i, p in enumerate(sae.parameters()):
        if f"adam.{i}.step" in arrays:
            opt.state[p] = {"step": torch.tensor(float(arrays[f"adam.{i}.step"][0])),
                            "exp_avg": torch.from_numpy(arrays[f"adam.{i}.exp_avg"]).clone(),
                            "exp_avg_sq": torch.from_numpy(arrays[f"adam.{i}.exp_avg_sq"]).clone()}
    return float(arrays["scale"][0])


def fit_topk_sae(matrix: np.ndarray, config: DictionaryConfig, *, rows: int, checkpoint: Checkpoint | None,
                 progress: bool, seconds: dict[str, float] | None = None) -> tuple[Dictionary, QualityStep]:
    """Train the SAE over ``config.epochs`` passes of A in blocks; returns the dictionary and its quality step.

    ``seconds`` receives the wall time of the scaling pass (``scale``) and of the training passes (``train``).
    """
    seconds = {} if seconds is None else seconds
    n, d = matrix.shape
    sae = TopKSAE(d, config.n_atoms, config.k, seed=config.seed)
    opt = torch.optim.Adam(sae.parameters(), lr=config.lr)
    aux_k = d // 2 if config.aux_k is None else config.aux_k
    dead = DeadAtoms(config.n_atoms, after=config.dead_after or min(n, DEAD_WINDOW)) if aux_k > 0 else None
    found = checkpoint.read() if checkpoint is not None else None
    start = 0
    started = time.perf_counter()
    if found is not None:
        start, arrays = found
        scale = _restore(sae, opt, dead, arrays)
    else:
        # One number that brings a mean squared example norm to d, and b_dec at the (scaled) mean, from one pass.
        sq, total = 0.0, np.zeros(d)
        for block in all_blocks(matrix, rows=rows, shuffle=config.shuffle, seed=config.seed):
            sq += float(np.einsum("ij,ij->", block, block, dtype=np.float64))
            total += block.sum(axis=0, dtype=np.float64)
        scale = float(np.sqrt(d * n / sq)) if sq > 0 else 1.0
        with torch.no_grad():
            sae.b_dec.copy_(torch.from_numpy(total / n * scale).float())
    seconds["scale"] = time.perf_counter() - started
    started = time.perf_counter()
    with progress_bar("examples", disable=not progress, transient=True) as bar:
        task = bar.add_task(f"TopK SAE ({config.n_atoms} atoms, k={config.k})", total=n * config.epochs, completed=n * start)
        for epoch in range(start, config.epochs):
            for block in epoch_blocks(matrix, rows=rows, epoch=epoch, seed=config.seed, shuffle=config.shuffle):
                xb = torch.from_numpy(block) * scale
                for b in range(0, len(xb), config.batch_size):
                    x = xb[b:b + config.batch_size]
                    if dead is None:
                        x_hat, _, _ = sae(x)
                        loss = ((x_hat - x) ** 2).sum(dim=1).mean()
                    else:
                        values, indices, aux_values, aux_indices = sae.encode_with_aux(x, dead.mask(), aux_k)
                        x_hat = sae.decode_topk(values, indices)
                        loss = ((x_hat - x) ** 2).sum(dim=1).mean()
                        if aux_indices.shape[1] > 0:
                            loss = loss + config.aux_alpha * aux_loss(sae, (x - x_hat).detach(), aux_values, aux_indices)
                        dead.update(values.detach(), indices)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sae.normalise_decoder()
                bar.advance(task, len(block))
            if checkpoint is not None:
                checkpoint.write(epoch + 1, _state(sae, opt, scale, dead))
    seconds["train"] = time.perf_counter() - started
    with torch.no_grad():
        # Fold the scale in: (A s - b) W_enc = (A - b / s)(s W_enc); A_hat = (Z W_dec + b) / s.
        dic = Dictionary(decoder=(sae.W_dec / scale).numpy().astype(np.float32), bias=(sae.b_dec / scale).numpy().astype(np.float32),
                         method="topk_sae", config={**config.to_dict(), "input_scale": scale},
                         encoder=(sae.W_enc * scale).numpy().astype(np.float32), encoder_bias=sae.b_enc.numpy().astype(np.float32))

    @torch.no_grad()
    def step(x: np.ndarray) -> tuple[float, float, np.ndarray]:
        # float32 in torch with the sparse decode, as trained; the error summed in float64
        xs = torch.from_numpy(np.multiply(x, np.float32(scale), dtype=np.float32))
        values, indices = sae.encode_topk(xs)
        err = float(((sae.decode_topk(values, indices) - xs) ** 2).sum(dtype=torch.float64)) / scale ** 2
        active = values > 0
        return err, float(active.sum()), torch.bincount(indices[active], minlength=config.n_atoms).numpy()

    return dic, step
