"""Weights files: state dicts read without unpickling code, key names mapped, files fingerprinted by content."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import ConceptvecError
from ..storage.provenance import file_digest


def files_digest(files: list[Path]) -> dict[str, Any]:
    """sha256 and size of one weights file; of several (a model folder), the sha256 of their names and digests."""
    if len(files) == 1:
        return file_digest(files[0])
    import hashlib

    digests = {f.name: file_digest(f) for f in sorted(files)}
    listing = "".join(f"{name} {d['sha256']}\n" for name, d in digests.items())
    return {"sha256": hashlib.sha256(listing.encode()).hexdigest(), "size": sum(d["size"] for d in digests.values())}



def read_state_dict(path: str, module: nn.Module, key_map: str | Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a state-dict file, named as ``module`` names them; nothing unpickles code.

    ``key_map`` (see :func:`load_model`) renames them; without it the names must match. Either way every
    tensor of the architecture must be present with the same shape, else a ConceptvecError says which.
    """
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            # torch's message spans lines and suggests weights_only=False, which would run the file's code: keep its reason only
            skip = ("Weights only load failed", "Please file an issue", "Check the documentation", "Re-running")
            reason = next((ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith(skip)
                           and not ln.strip().endswith("error:")), type(exc).__name__)
            raise ConceptvecError(f"could not read {path} as a state dict of tensors ({reason}; read with weights_only=True: conceptvec never unpickles other "
                                  f"objects). Save it with torch.save(model.state_dict(), path) or as safetensors.") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    expected = module.state_dict()
    if key_map is not None:
        state = map_keys(path, state, expected, key_map)
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    if missing or unexpected:
        hint = "" if key_map is not None else " If only the names differ, pass a key map: --key-map order (Python: key_map='order') or a JSON {file_key: model_key}."
        raise ConceptvecError(
            f"{path} does not match the architecture: {len(missing)} missing keys (e.g. {sorted(missing)[:3]}) and "
            f"{len(unexpected)} unexpected keys (e.g. {sorted(unexpected)[:3]}).{hint}"
        )
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        k, got, want = wrong[0]
        raise ConceptvecError(f"{path}: {len(wrong)} tensors have the wrong shape, e.g. {k} is {got} in the file and {want} in the architecture.")
    return state


def map_keys(path: str, state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], key_map) -> dict[str, torch.Tensor]:
    if key_map == "order":
        if len(state) != len(expected):
            raise ConceptvecError(f"key_map='order' needs as many tensors in {path} ({len(state)}) as in the architecture ({len(expected)}).")
        for i, ((fk, fv), (mk, mv)) in enumerate(zip(state.items(), expected.items())):
            if tuple(fv.shape) != tuple(mv.shape):
                raise ConceptvecError(
                    f"key_map='order': tensor {i} of {path}, {fk} {tuple(fv.shape)}, does not fit {mk} {tuple(mv.shape)} of the "
                    f"architecture; the file's order is not the architecture's. Give an explicit {{file_key: model_key}} map."
                )
        return {mk: fv for fv, mk in zip(state.values(), expected)}
    if isinstance(key_map, (str, os.PathLike)):
        import json

        try:
            key_map = json.loads(Path(key_map).read_text())
        except (OSError, ValueError) as exc:
            raise ConceptvecError(f"key_map must be 'order', a dict or a JSON file of {{file_key: model_key}}; could not read {key_map} ({exc}).") from None
    if not isinstance(key_map, Mapping):
        raise ConceptvecError(f"key_map must be 'order', a dict or a JSON file of {{file_key: model_key}}, got {type(key_map).__name__}.")
    absent = [k for k in key_map if k not in state]
    if absent:
        raise ConceptvecError(f"the key map names {len(absent)} keys that {path} does not hold, e.g. {absent[:3]}.")
    targets = list(key_map.values())
    if len(set(targets)) != len(targets):
        raise ConceptvecError("the key map sends two file keys to the same model key; each must map one to one.")
    return {key_map.get(k, k): v for k, v in state.items()}

