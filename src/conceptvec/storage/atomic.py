"""Atomic file output: a file or directory on disk is either complete or absent."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConceptvecError


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def refuse_existing(target: str | os.PathLike, *, overwrite: bool = False, what: str = "output") -> None:
    """Raise unless ``target`` is absent, an empty directory, or ``overwrite`` is set.

    Long stages call it before their work as well as through ``atomic_directory``, so that a
    refusal comes before minutes of computing, not after.
    """
    target = Path(target)
    if target.exists() and not _is_empty_dir(target) and not overwrite:
        raise ConceptvecError(
            f"{target} already exists and is not empty. Choose another --out, delete it, "
            f"or pass overwrite=True (--overwrite) to replace this {what}."
        )


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, *, overwrite: bool = False, what: str = "output") -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``target`` only if the block completes.

    A crash or Ctrl-C inside the block leaves ``target`` as it was and removes the temporary directory.
    """
    target = Path(target)
    refuse_existing(target, overwrite=overwrite, what=what)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        replace_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_directory(finished: Path, target: Path) -> None:
    """Rename the complete directory ``finished`` to ``target``; an existing ``target`` is moved aside first
    and deleted only once the new one is in place."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(finished, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(finished, target)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON through a temporary file and an atomic rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def _json_default(obj: Any) -> Any:
    # NumPy scalars and arrays appear in metadata; JSON has no type for them.
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
