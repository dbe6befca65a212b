"""Resuming a scan: ``<out>.partial`` keeps the top examples and each finished batch of neurons.

A scan is identified by its call (``scan_call``): parameters, selection, directions and a sample
of the activations. A finished ``out`` made by the same call is reused; a partial folder made by
another call is discarded.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from ..core.params import Params
from ..errors import ConceptvecError, ConceptvecWarning
from ..storage.atomic import atomic_directory, check_own_folder, read_json, remove_own_folder, write_json
from .result import SCAN_FILE, ScanResult

STATE_FILE = "state.json"
TOP_FILE = "top.safetensors"
PART_FILE = "part-{:06d}.safetensors"


def scan_call(*, params: Params, neurons: Any, directions: Any, projecting: bool, matrix: np.ndarray, source: dict) -> dict[str, Any]:
    """What makes two scans the same: parameters, selection, directions and the activations."""
    # A store is named by its id (its metadata, which records its content digest and when it was written), so a
    # store extracted again at the same path is another store; an array is hashed whole (it is in memory).
    contents = {"store_id": source["store_id"]} if source.get("store_id") else {"sha256": _array_sha256(matrix)}
    return {
        "params": params.to_dict(),
        "neurons": neurons if neurons is None or isinstance(neurons, str) else np.asarray(neurons).tolist(),
        "directions": str(directions),
        "projecting": bool(projecting),
        "activations": {"shape": list(matrix.shape), "dtype": str(matrix.dtype), **contents,
                        **({"store": source["store"]} if "store" in source else {})},
    }


def _array_sha256(matrix: np.ndarray) -> str:
    h = hashlib.sha256()
    for start in range(0, matrix.shape[0], 4096):  # in blocks of rows: a memory-mapped matrix is never copied whole
        h.update(np.ascontiguousarray(matrix[start:start + 4096]).tobytes())
    return h.hexdigest()


class ScanPartial:
    """``<out>.partial``: the top examples and finished batches of an unfinished scan."""

    def __init__(self, out: Path, call: dict[str, Any]):
        self.out = out
        self.dir = Path(str(out) + ".partial")
        self.call = call
        state = self.dir / STATE_FILE
        if self.dir.exists() and not state.exists() and any(self.dir.iterdir()):
            raise ConceptvecError(f"{self.dir} exists but is not the progress of a scan ({STATE_FILE} is missing); move it "
                                  f"away or choose another output folder.")
        check_own_folder(self.dir, what="a scan's progress", ours=_partial_file)
        if state.exists():
            before = _read_state(state)
            if before != call:
                # A different scan stopped here: its progress cannot be reused, and this scan's takes its place.
                differs = sorted(k for k in set(before) | set(call) if before.get(k) != call.get(k))
                warnings.warn(f"discarding {self.dir}: it holds the progress of another scan (differs in "
                              f"{', '.join(differs)}); this scan starts afresh.", ConceptvecWarning, stacklevel=3)
                remove_own_folder(self.dir, what="a scan's progress", ours=_partial_file)
        if not state.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            write_json(state, call)

    def _save(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        tmp = self.dir / f".{name}.tmp"
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
        os.replace(tmp, self.dir / name)

    def _load(self, name: str) -> dict[str, np.ndarray]:
        try:
            return load_file(str(self.dir / name))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ConceptvecError(f"{self.dir / name} is damaged ({exc}); delete {self.dir} to start the scan over.") from None

    def load_top(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        """(top indices, top scores, floors); floors None when an earlier version wrote the file without them."""
        if not (self.dir / TOP_FILE).exists():
            return None
        t = self._load(TOP_FILE)
        return t["top_indices"], t["top_scores"], t.get("floors")

    def save_top(self, indices: np.ndarray, scores: np.ndarray, floors: np.ndarray) -> None:
        self._save(TOP_FILE, {"top_indices": indices, "top_scores": scores, "floors": np.ascontiguousarray(floors, dtype=np.float64)})

    def load_parts(self, n_batches: int) -> dict[int, dict[str, np.ndarray]]:
        return {b: self._load(PART_FILE.format(b)) for b in range(n_batches) if (self.dir / PART_FILE.format(b)).exists()}

    def save_part(self, b: int, res: dict[str, np.ndarray]) -> None:
        self._save(PART_FILE.format(b), res)

    def finish(self, result: ScanResult) -> None:
        """Write the finished scan to ``out`` atomically and remove the partial folder."""
        with atomic_directory(self.out, overwrite=True, what="scan", marker=SCAN_FILE, protect=[result.store_path]) as tmp:
            result.write_files(tmp, call=self.call)
        remove_own_folder(self.dir, what="a scan's progress", ours=_partial_file)


def _partial_file(name: str) -> bool:
    # What ScanPartial writes into <out>.partial (and nothing else).
    return name in (STATE_FILE, TOP_FILE) or bool(re.fullmatch(r"part-\d{6}\.safetensors|\..*\.tmp|\.state\.json\..*", name))


def _read_state(state: Path) -> dict[str, Any]:
    fix = f"delete {state.parent} to start the scan over"
    value = read_json(state, fix=fix)
    if not isinstance(value, dict):
        raise ConceptvecError(f"{state} is damaged (not a JSON object); {fix}.")
    return value
