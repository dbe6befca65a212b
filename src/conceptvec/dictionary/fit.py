"""``cv.fit_dictionary``: a sparse dictionary of a layer, streamed from the store, seeded, resumable.

The TopK SAE trains in PyTorch (``dictionary.sae``, imported only for it); NMF and dictionary learning use
scikit-learn's ``MiniBatchNMF`` / ``MiniBatchDictionaryLearning`` through ``partial_fit`` on batches of each
block. With ``out``, each finished epoch is checkpointed in ``<out>.partial/``; calling again with the same
store and options resumes after the last finished epoch (see ``docs/dictionary.md``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.arrays import as_matrix
from ..core.streaming import row_blocks
from ..errors import ConceptvecError
from ..storage.atomic import output_path
from ..progress import progress_bar
from ..storage.atomic import read_json, refuse_existing
from ..storage.provenance import environment
from .blocks import all_blocks, epoch_blocks, rows_per_block
from .checkpoint import Checkpoint, partial_dir
from .config import DictionaryConfig
from .model import METADATA_FILE, Dictionary
from .quality import codes_step, measure_quality

def fit_dictionary(store: Any, *, n_atoms: int = 256, method: str = "topk_sae", k: int = 16, epochs: int = 5,
                   batch_size: int = 1024, block_rows: int | None = None, lr: float = 1e-3, alpha: float = 0.1,
                   aux_k: int | None = None, aux_alpha: float = 1 / 32, dead_after: int | None = None,
                   shuffle: bool = False, seed: int = 0, out: str | os.PathLike | None = None, overwrite: bool = False,
                   progress: bool = True) -> Dictionary:
    """Fit a sparse dictionary of the layer in ``store`` (ActivationStore or array (n_examples, n_units)).

    Options as :class:`DictionaryConfig`. Only ``block_rows`` rows of A are in memory at a time. With ``out``
    the dictionary is saved there (and each epoch checkpointed in ``<out>.partial`` for resuming); a dictionary of the
    same options and store already at ``out`` is read back instead (``reused`` True).

    Returns
    -------
    Dictionary with decoder (n_atoms, n_units), its quality on the whole store and its provenance
    """
    config = DictionaryConfig(n_atoms=n_atoms, method=method, k=k, epochs=epochs, batch_size=batch_size,
                              block_rows=block_rows, lr=lr, alpha=alpha, aux_k=aux_k, aux_alpha=aux_alpha,
                              dead_after=dead_after, shuffle=shuffle, seed=seed)
    matrix, source = as_matrix(store)
    if out is not None:
        out = output_path(out, what="dictionary")
    if matrix.shape[0] < 2:  # a dictionary of one example explains nothing (its variance is 0): NaN quality otherwise
        raise ConceptvecError(f"the store has too few examples to fit a dictionary (at least 2 are needed, got {matrix.shape[0]}).")
    rows = rows_per_block(matrix, config.block_rows)
    fingerprint = json.loads(json.dumps({"config": config.to_dict(), "shape": list(matrix.shape), "source": source,
                                         # a store is told apart by its id; an array saved to out by its contents
                                         **({} if "store_id" in source or out is None else {"sha1": array_digest(matrix, rows=rows)})}, default=str))
    if out is not None:
        earlier = Path(out) / METADATA_FILE
        if not overwrite and earlier.is_file() and read_json(earlier).get("provenance", {}).get("fit") == fingerprint:
            dic = Dictionary.load(out)  # the same fit of the same store is already there: reuse it (stages are idempotent)
            dic.reused = True
            return dic
        refuse_existing(out, overwrite=overwrite, what="dictionary", marker=METADATA_FILE,
                        protect=[getattr(store, "path", None)])
    check_memory(config, n_units=matrix.shape[1])
    if config.method == "nmf" and float(np.min(np.asarray(matrix[:rows]))) < 0:
        raise ConceptvecError(NMF_NEGATIVE)
    checkpoint = Checkpoint(partial_dir(out), fingerprint) if out is not None else None
    seconds: dict[str, float] = {}  # wall time of each pass, recorded with the dictionary
    if config.method == "topk_sae":
        from .sae import fit_topk_sae

        dic, step = fit_topk_sae(matrix, config, rows=rows, checkpoint=checkpoint, progress=progress, seconds=seconds)
    else:
        started = time.perf_counter()
        dic = _fit_classical(matrix, config, rows=rows, checkpoint=checkpoint, progress=progress)
        seconds["train"] = time.perf_counter() - started
        step = codes_step(dic)
    started = time.perf_counter()
    dic.quality = measure_quality(matrix, step, rows=rows, shuffle=config.shuffle, seed=config.seed, progress=progress)
    seconds["quality"] = time.perf_counter() - started
    dic.provenance = {"store": source, "fit": fingerprint, "seconds": seconds, **environment()}
    if out is not None:
        dic.save(out, overwrite=overwrite)
        if checkpoint is not None:
            checkpoint.remove()
    return dic


NMF_NEGATIVE = ("NMF needs non-negative activations and this layer has negative values; use method='topk_sae' or "
                "'dictionary_learning' (--method).")


def check_memory(config: DictionaryConfig, *, n_units: int) -> None:
    """Refuse a dictionary whose parameters and optimiser state alone would not fit in this machine's memory (a typo
    such as 10**9 atoms would otherwise fail deep in torch or scikit-learn)."""
    n_atoms = config.n_atoms
    # encoder and decoder, each with its gradient and Adam's two moments (float32); a batch's codes; dictionary
    # learning's n_atoms x n_atoms statistics (float64)
    need = 32 * n_atoms * n_units + 16 * config.batch_size * n_atoms
    need += 8 * n_atoms * n_atoms if config.method == "dictionary_learning" else 0
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return
    if need > have:
        raise ConceptvecError(f"a dictionary of {n_atoms} atoms of {n_units} units needs about {need / 2**30:,.1f} GiB for its "
                              f"parameters alone and this machine has {have / 2**30:,.1f} GiB; give fewer atoms (--n-atoms).")


def array_digest(matrix: np.ndarray, *, rows: int) -> str:
    """SHA-1 of A's values, read in blocks of ``rows``."""
    h = hashlib.sha1()
    for _, block in row_blocks(matrix, rows=rows, native=True):
        h.update(np.ascontiguousarray(block).tobytes())
    return h.hexdigest()


def column_mean(matrix: np.ndarray, *, rows: int, shuffle: bool, seed: int) -> np.ndarray:
    total = np.zeros(matrix.shape[1], dtype=np.float64)
    for block in all_blocks(matrix, rows=rows, shuffle=shuffle, seed=seed):
        total += block.sum(axis=0, dtype=np.float64)
    return total / matrix.shape[0]


def _fit_classical(matrix: np.ndarray, config: DictionaryConfig, *, rows: int, checkpoint: Checkpoint | None,
                   progress: bool) -> Dictionary:
    from sklearn.decomposition import MiniBatchDictionaryLearning, MiniBatchNMF

    n, d = matrix.shape
    nmf = config.method == "nmf"
    bias = np.zeros(d) if nmf else column_mean(matrix, rows=rows, shuffle=config.shuffle, seed=config.seed)
    start, components = 0, None
    found = checkpoint.read() if checkpoint is not None else None
    if found is not None:
        start, arrays = found
        components = arrays["decoder"].astype(np.float64)
    model: Any = None
    with progress_bar("examples", disable=not progress, transient=True) as bar:
        task = bar.add_task(f"{config.method} ({config.n_atoms} atoms)", total=n * config.epochs, completed=n * start)
        for epoch in range(start, config.epochs):
            for block in epoch_blocks(matrix, rows=rows, epoch=epoch, seed=config.seed, shuffle=config.shuffle):
                for b in range(0, len(block), config.batch_size):
                    batch = block[b:b + config.batch_size].astype(np.float64)
                    if len(batch) < 2:
                        continue
                    if nmf and batch.min() < 0:  # the first block was checked up front; a later one may still be signed
                        raise ConceptvecError(NMF_NEGATIVE)
                    if model is None:
                        model = _classical_model(MiniBatchNMF, MiniBatchDictionaryLearning, config, components, len(batch))
                        if nmf and components is not None:
                            model.partial_fit(batch, W=np.full((len(batch), config.n_atoms), 1e-2), H=components)
                            continue
                    model.partial_fit(batch if nmf else batch - bias)
                bar.advance(task, len(block))
            if checkpoint is not None and model is not None:
                checkpoint.write(epoch + 1, {"decoder": model.components_.astype(np.float32)})
    decoder = model.components_ if model is not None else components
    if decoder is None:
        raise ConceptvecError("the store has too few examples to fit a dictionary (at least 2 are needed).")
    return Dictionary(decoder=np.asarray(decoder, dtype=np.float32), bias=bias.astype(np.float32), method=config.method,
                      config=config.to_dict())


def _classical_model(nmf_cls: Any, dl_cls: Any, config: DictionaryConfig, components: np.ndarray | None, batch: int) -> Any:
    if config.method == "nmf":
        return nmf_cls(n_components=config.n_atoms, init="custom" if components is not None else "random",
                       batch_size=batch, alpha_W=config.alpha, alpha_H=0.0, l1_ratio=1.0, random_state=config.seed)
    return dl_cls(n_components=config.n_atoms, alpha=config.alpha, batch_size=batch, random_state=config.seed,
                  dict_init=components, transform_algorithm="omp", transform_n_nonzero_coefs=config.k)
