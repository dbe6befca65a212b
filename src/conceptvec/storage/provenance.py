"""What every output records about how it was made: package versions, the time of writing, the files it came from."""

from __future__ import annotations

import hashlib
import os
import sys
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

_PACKAGES = ("conceptvec", "numpy", "scipy", "scikit-learn", "torch", "torchvision", "safetensors", "pyarrow")


def environment() -> dict[str, Any]:
    """Versions of Python and of the packages that shape the numbers, and the time of writing."""
    versions = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions}


def file_digest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A file's content fingerprint: its size and SHA-256.

    Outputs record it for the files they were made from (model weights), so that a file replaced at
    the same path is seen as different; the path alone, or a modification time, is not the content.
    """
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return {"sha256": digest.hexdigest(), "size": size}
