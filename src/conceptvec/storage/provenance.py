"""What every output records about how it was made: package versions and the time of writing."""

from __future__ import annotations

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
