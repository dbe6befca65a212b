"""Dictionary: a layer written as sparse combinations of atoms, and its file format; imports no torch.

Notation (as Overcomplete's ``optimization/nmf.py``): A (n_examples, n_units) the activations, D
(n_atoms, n_units) the decoder whose rows are the atoms, Z (n_examples, n_atoms) the codes, b (n_units,)
the decoder bias, so that A ~ Z @ D + b. On disk a dictionary is a directory::

    dictionary.json           format, method, config, quality, provenance
    dictionary.safetensors    decoder, bias[, encoder, encoder_bias]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from ..errors import ConceptvecError
from ..storage.atomic import atomic_directory, write_json
from ..storage.files import read_arrays, read_format

FORMAT = "conceptvec.Dictionary/1"
METADATA_FILE = "dictionary.json"
ARRAYS_FILE = "dictionary.safetensors"
_FIX = "fit it again with `conceptvec dictionary STORE --out DIR`"

# Checkpoint tensor names: SAELens (W_dec (d_sae, d_in), b_dec, W_enc (d_in, d_sae), b_enc), conceptvec's own,
# and PyTorch Linear layers (decoder.weight is (d_in, d_sae), so transposed).
_DECODER_KEYS = ("W_dec", "decoder", "dictionary", "D", "dictionary._weights", "decoder.weight")
_BIAS_KEYS = ("b_dec", "bias", "decoder.bias", "b_pre")
_ENCODER_KEYS = ("W_enc", "encoder", "encoder.weight")
_ENCODER_BIAS_KEYS = ("b_enc", "encoder_bias", "encoder.bias")


@dataclass
class Dictionary:
    """A sparse dictionary of one layer.

    Attributes
    ----------
    decoder : array of shape (n_atoms, n_units)
        D, one atom per row (not necessarily unit norm; :meth:`atoms` are).
    bias : array of shape (n_units,)
        b, added to Z @ D (an SAE's b_dec; the mean for dictionary learning; zero for NMF).
    method : str
        ``topk_sae``, ``nmf``, ``dictionary_learning``, or ``checkpoint`` (read from elsewhere).
    config : dict
        The fit's options (``DictionaryConfig.to_dict()``; a checkpoint's ``k``).
    encoder : array of shape (n_units, n_atoms), optional
        An SAE's W_enc; codes are relu((A - b) @ W_enc + b_enc), keeping the k largest with TopK.
    encoder_bias : array of shape (n_atoms,), optional
    quality : dict
        ``explained_variance``, ``mean_l0``, ``dead_atoms`` (never active on the store), ``n_examples`` measured.
    provenance : dict
        The store's provenance, the versions and the time of fitting.
    """

    decoder: np.ndarray
    bias: np.ndarray
    method: str
    config: dict[str, Any] = field(default_factory=dict)
    encoder: np.ndarray | None = None
    encoder_bias: np.ndarray | None = None
    quality: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    reused: bool = field(default=False, repr=False)  # read back from an earlier identical fit (not saved)

    @property
    def n_atoms(self) -> int:
        return int(self.decoder.shape[0])

    @property
    def n_units(self) -> int:
        return int(self.decoder.shape[1])

    @property
    def k(self) -> int | None:
        k = self.config.get("k")
        return None if k is None else int(k)

    def atoms(self) -> np.ndarray:
        """The atoms as unit directions, shape (n_atoms, n_units), float64 (a zero atom stays zero)."""
        d = self.decoder.astype(np.float64)
        norms = np.linalg.norm(d, axis=1, keepdims=True)
        return np.divide(d, norms, out=np.zeros_like(d), where=norms > 0)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Codes Z of examples ``x`` (n, n_units) -> (n, n_atoms), float64, by the dictionary's own rule.

        An encoder (SAE) is applied as it was trained; NMF codes are the non-negative least-squares fit
        with D fixed; dictionary learning's (and a checkpoint's without encoder) are OMP with k atoms.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_units:
            raise ConceptvecError(f"examples of shape {x.shape} cannot be encoded by a dictionary of {self.n_units} units.")
        if self.encoder is not None:
            pre = (x - self.bias) @ self.encoder.astype(np.float64)
            if self.encoder_bias is not None:
                pre += self.encoder_bias
            z = np.maximum(pre, 0.0)
            k = self.k
            if k is not None and k < self.n_atoms:
                cut = np.partition(z, self.n_atoms - k, axis=1)[:, self.n_atoms - k][:, None]
                z = np.where(z >= cut, z, 0.0)
            return z
        d = self.decoder.astype(np.float64)
        if self.method == "nmf":
            from sklearn.decomposition import non_negative_factorization

            w, _, _ = non_negative_factorization(np.maximum(x, 0.0), H=d, n_components=self.n_atoms, update_H=False, max_iter=400)
            return np.asarray(w, dtype=np.float64)
        from sklearn.decomposition import sparse_encode

        k = min(self.k or 1, self.n_atoms, self.n_units)
        return np.asarray(sparse_encode(x - self.bias, self.atoms(), algorithm="omp", n_nonzero_coefs=k), dtype=np.float64) \
            / np.where(np.linalg.norm(d, axis=1) > 0, np.linalg.norm(d, axis=1), 1.0)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Z @ D + b, shape (n, n_units)."""
        return np.asarray(codes, dtype=np.float64) @ self.decoder.astype(np.float64) + self.bias

    def __repr__(self) -> str:
        q = self.quality
        extra = f", explained_variance={q['explained_variance']:.3f}, mean_l0={q['mean_l0']:.1f}" if "explained_variance" in q else ""
        return f"Dictionary(method={self.method!r}, n_atoms={self.n_atoms}, n_units={self.n_units}{extra})"

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the dictionary to the directory ``path`` (atomically); returns it."""
        arrays = {"decoder": np.ascontiguousarray(self.decoder, dtype=np.float32),
                  "bias": np.ascontiguousarray(self.bias, dtype=np.float32)}
        if self.encoder is not None:
            arrays["encoder"] = np.ascontiguousarray(self.encoder, dtype=np.float32)
        if self.encoder_bias is not None:
            arrays["encoder_bias"] = np.ascontiguousarray(self.encoder_bias, dtype=np.float32)
        with atomic_directory(path, overwrite=overwrite, what="dictionary", marker=METADATA_FILE) as tmp:
            save_file(arrays, str(tmp / ARRAYS_FILE))
            write_json(tmp / METADATA_FILE, {"format": FORMAT, "method": self.method, "n_atoms": self.n_atoms,
                                             "n_units": self.n_units, "config": self.config, "quality": self.quality,
                                             "provenance": self.provenance})
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Dictionary":
        """Read a dictionary directory written by :meth:`save`."""
        path = Path(path)
        if not (path / METADATA_FILE).is_file():
            raise ConceptvecError(f"{path} is not a dictionary (no {METADATA_FILE}); {_FIX}, or read a checkpoint with "
                                  f"Dictionary.from_checkpoint.")
        meta = read_format(path / METADATA_FILE, expected=FORMAT, what="a conceptvec dictionary", fix=_FIX)
        arrays = read_arrays(path / ARRAYS_FILE, needed=("decoder", "bias"), fix=_FIX)
        return check_arrays(cls(decoder=arrays["decoder"], bias=arrays["bias"], method=meta["method"], config=meta.get("config", {}),
                                encoder=arrays.get("encoder"), encoder_bias=arrays.get("encoder_bias"), quality=meta.get("quality", {}),
                                provenance=meta.get("provenance", {})), path / ARRAYS_FILE)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, n_units: int | None = None, k: int | None = None) -> "Dictionary":
        """A dictionary made elsewhere: an SAELens / Overcomplete / PyTorch safetensors file with its decoder and bias.

        The decoder is read from ``W_dec`` (SAELens), ``decoder``, ``dictionary``, ``D`` or ``decoder.weight``
        (transposed when its first axis has ``n_units``); the bias from ``b_dec`` / ``bias`` / ``decoder.bias``
        (zero when absent); an encoder (``W_enc``, ``b_enc``) when present. ``k``: keep the k largest codes
        (a TopK SAE), else a ReLU SAE (with an encoder) or OMP with one atom (without).
        """
        path = Path(path)
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
            raise ConceptvecError(f"k (--k) must be a whole number >= 1 (active atoms per example), or left out for ReLU codes; got {k!r}.")
        if path.is_dir():
            dic = cls.load(path)
            if k is not None and k != dic.k:
                raise ConceptvecError(f"{path} is a dictionary fitted with k={dic.k}; --k (k=) is for an SAE checkpoint file. Leave it out.")
            return dic
        if path.suffix.lower() != ".safetensors":
            raise ConceptvecError(f"{path}: a checkpoint must be a .safetensors file (SAELens' sae_weights.safetensors); "
                                  f"conceptvec never unpickles a .pt file. Convert it with safetensors.torch.save_file.")
        tensors = read_arrays(path, fix="give an SAE checkpoint saved with safetensors")

        def pick(keys: tuple[str, ...]) -> np.ndarray | None:
            for key in keys:
                if key in tensors:
                    return np.asarray(tensors[key], dtype=np.float32)
            return None

        decoder = pick(_DECODER_KEYS)
        if decoder is None or decoder.ndim != 2:
            raise ConceptvecError(f"{path} holds {sorted(tensors)[:12]}; none is a decoder matrix (expected one of "
                                  f"{', '.join(_DECODER_KEYS)}, shape (n_atoms, n_units)).")
        if n_units is not None and decoder.shape[1] != n_units and decoder.shape[0] == n_units:
            decoder = decoder.T
        elif n_units is None and "decoder.weight" in tensors and "W_dec" not in tensors:
            decoder = decoder.T  # nn.Linear(d_sae, d_in).weight is (d_in, d_sae)
        if n_units is not None and decoder.shape[1] != n_units:
            raise ConceptvecError(f"{path}: decoder of shape {decoder.shape} does not fit a layer of {n_units} units.")
        bias = pick(_BIAS_KEYS)
        bias = np.zeros(decoder.shape[1], dtype=np.float32) if bias is None else bias.reshape(-1)
        encoder, encoder_bias = pick(_ENCODER_KEYS), pick(_ENCODER_BIAS_KEYS)
        if encoder is not None and encoder.shape == decoder.shape:
            encoder = encoder.T  # nn.Linear(d_in, d_sae).weight is (d_sae, d_in)
        if encoder is not None and encoder.shape != decoder.T.shape:
            encoder, encoder_bias = None, None
        if bias.shape[0] != decoder.shape[1]:
            raise ConceptvecError(f"{path}: bias of length {bias.shape[0]} does not match the decoder's {decoder.shape[1]} units.")
        return check_arrays(cls(decoder=decoder, bias=bias, method="checkpoint", config={"k": k, "source": str(path.resolve())},
                                encoder=encoder, encoder_bias=encoder_bias), path)


def check_arrays(dic: Dictionary, path: Path) -> Dictionary:
    """``dic`` when it has atoms and every value is finite; else one line naming the file (a NaN atom would give NaN
    cosines and codes, read as "no match", not as the damaged file it is)."""
    if dic.n_atoms == 0:
        raise ConceptvecError(f"{path}: the decoder has no atoms (shape {dic.decoder.shape}); give a dictionary with at least one atom.")
    for name in ("decoder", "bias", "encoder", "encoder_bias"):
        value = getattr(dic, name)
        if value is not None and not np.isfinite(value).all():
            rows = np.flatnonzero(~np.isfinite(value).reshape(len(value), -1).all(axis=1))[:10].tolist()
            raise ConceptvecError(f"{path}: the {name} holds NaN or inf values (rows {rows}); give a dictionary with finite "
                                  f"values, or fit one with `conceptvec dictionary STORE --out DIR`.")
    return dic
