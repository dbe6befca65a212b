"""``<out>.partial/``: a dictionary fit's state after its last finished epoch, for resuming; imports no torch."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

CHECKPOINT_FILE = "checkpoint.safetensors"


def partial_dir(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


class Checkpoint:
    """``<out>.partial/``: the arrays after the last finished epoch and what they were fitted from."""

    def __init__(self, path: Path, fingerprint: dict[str, Any]):
        self.path, self.fingerprint = path, json.loads(json.dumps(fingerprint, default=str))

    def read(self) -> tuple[int, dict[str, np.ndarray]] | None:
        """(epochs done, arrays) when a checkpoint of this very fit exists; else None (a different one is ignored)."""
        file = self.path / CHECKPOINT_FILE
        if not file.is_file():
            return None
        try:
            with safe_open(str(file), framework="numpy") as f:
                meta = f.metadata() or {}
                if json.loads(meta.get("fingerprint", "null")) != self.fingerprint:
                    return None
                return int(meta["epochs_done"]), {name: f.get_tensor(name) for name in f.keys()}
        except (SafetensorError, OSError, ValueError, KeyError):
            return None  # a damaged checkpoint: start again

    def write(self, epochs_done: int, arrays: dict[str, np.ndarray]) -> None:
        """One file, written under a temporary name and renamed: the arrays and the epoch they belong to never part."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / f".{CHECKPOINT_FILE}.tmp"
        save_file({name: np.ascontiguousarray(a) for name, a in arrays.items()}, str(tmp),
                  metadata={"epochs_done": str(epochs_done), "fingerprint": json.dumps(self.fingerprint)})
        os.replace(tmp, self.path / CHECKPOINT_FILE)

    def remove(self) -> None:
        # Only the file this fit wrote; the folder goes only when nothing else is in it.
        (self.path / CHECKPOINT_FILE).unlink(missing_ok=True)
        if self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()
