"""The TopK sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"), in plain PyTorch.

Z = TopK_k(relu((A - b_dec) @ W_enc + b_enc)), A_hat = Z @ W_dec + b_dec, trained by Adam on the mean
squared error; the decoder's rows are kept at unit norm. A is scaled by one number so that the mean
squared norm of an example is n_units (as SAELens normalises), and the scale is folded into the saved
weights, so that the saved dictionary reads A in its own units. The only module of the room that loads torch.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..progress import progress_bar
from .blocks import all_blocks, epoch_blocks
from .checkpoint import Checkpoint
from .config import DictionaryConfig
from .model import Dictionary


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

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)
        values, indices = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter_(1, indices, values)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z @ self.W_dec + self.b_dec, z

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))


def _state(sae: TopKSAE, opt: torch.optim.Adam, scale: float) -> dict[str, np.ndarray]:
    arrays = {name: np.ascontiguousarray(p.detach().numpy()) for name, p in sae.named_parameters()}
    arrays["scale"] = np.asarray([scale], dtype=np.float64)
    for i, p in enumerate(sae.parameters()):
        st = opt.state.get(p)
        if st:
            arrays[f"adam.{i}.exp_avg"] = st["exp_avg"].numpy().copy()
            arrays[f"adam.{i}.exp_avg_sq"] = st["exp_avg_sq"].numpy().copy()
            arrays[f"adam.{i}.step"] = np.asarray([float(st["step"])], dtype=np.float64)
    return arrays


def _restore(sae: TopKSAE, opt: torch.optim.Adam, arrays: dict[str, np.ndarray]) -> float:
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.from_numpy(arrays[name]))
    for i, p in enumerate(sae.parameters()):
        if f"adam.{i}.step" in arrays:
            opt.state[p] = {"step": torch.tensor(float(arrays[f"adam.{i}.step"][0])),
                            "exp_avg": torch.from_numpy(arrays[f"adam.{i}.exp_avg"]).clone(),
                            "exp_avg_sq": torch.from_numpy(arrays[f"adam.{i}.exp_avg_sq"]).clone()}
    return float(arrays["scale"][0])


def fit_topk_sae(matrix: np.ndarray, config: DictionaryConfig, *, rows: int, checkpoint: Checkpoint | None,
                 progress: bool) -> tuple[Dictionary, Callable[[np.ndarray], np.ndarray]]:
    """Train the SAE over ``config.epochs`` passes of A in blocks; returns the dictionary and its encoder (for quality)."""
    n, d = matrix.shape
    sae = TopKSAE(d, config.n_atoms, config.k, seed=config.seed)
    opt = torch.optim.Adam(sae.parameters(), lr=config.lr)
    found = checkpoint.read() if checkpoint is not None else None
    start = 0
    if found is not None:
        start, arrays = found
        scale = _restore(sae, opt, arrays)
    else:
        # One number that brings a mean squared example norm to d, and b_dec at the (scaled) mean, from one pass.
        sq, total = 0.0, np.zeros(d)
        for block in all_blocks(matrix, rows=rows, shuffle=config.shuffle, seed=config.seed):
            sq += float((block.astype(np.float64) ** 2).sum())
            total += block.sum(axis=0, dtype=np.float64)
        scale = float(np.sqrt(d * n / sq)) if sq > 0 else 1.0
        with torch.no_grad():
            sae.b_dec.copy_(torch.from_numpy(total / n * scale).float())
    with progress_bar("examples", disable=not progress, transient=True) as bar:
        task = bar.add_task(f"TopK SAE ({config.n_atoms} atoms, k={config.k})", total=n * config.epochs, completed=n * start)
        for epoch in range(start, config.epochs):
            for block in epoch_blocks(matrix, rows=rows, epoch=epoch, seed=config.seed, shuffle=config.shuffle):
                xb = torch.from_numpy(block) * scale
                for b in range(0, len(xb), config.batch_size):
                    x = xb[b:b + config.batch_size]
                    x_hat, _ = sae(x)
                    loss = ((x_hat - x) ** 2).sum(dim=1).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sae.normalise_decoder()
                bar.advance(task, len(block))
            if checkpoint is not None:
                checkpoint.write(epoch + 1, _state(sae, opt, scale))
    with torch.no_grad():
        # Fold the scale in: (A s - b) W_enc = (A - b / s)(s W_enc); A_hat = (Z W_dec + b) / s.
        dic = Dictionary(decoder=(sae.W_dec / scale).numpy().astype(np.float32), bias=(sae.b_dec / scale).numpy().astype(np.float32),
                         method="topk_sae", config={**config.to_dict(), "input_scale": scale},
                         encoder=(sae.W_enc * scale).numpy().astype(np.float32), encoder_bias=sae.b_enc.numpy().astype(np.float32))

    @torch.no_grad()
    def encode(x: np.ndarray) -> np.ndarray:
        return sae.encode(torch.from_numpy(np.asarray(x, dtype=np.float32)) * scale).numpy().astype(np.float64)

    return dic, encode
