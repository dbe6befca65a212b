"""Atomic file output: a file or directory on disk is either complete or absent."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import ConceptvecError, StoreError


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def output_path(value: Any, *, what: str = "output") -> Path:
    """``value`` as the path of an output folder; None, an empty text or another type is an error naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ConceptvecError(f"the {what} needs a folder to be written to (out=PATH, --out PATH), got {value!r}.")
    return Path(value)


def refuse_existing(
    target: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    what: str = "output",
    marker: str | None = None,
    protect: Iterable[str | os.PathLike[str] | None] = (),
) -> None:
    """Raise unless writing ``target`` can destroy nothing that the caller did not write itself.

    ``target`` may be absent or an empty folder; with ``overwrite`` it may also be an earlier output
    of the same kind, recognised by its ``marker`` file (for example ``conceptset.json``), but never
    a folder of other files. It may never be, or hold, one of the command's inputs (``protect``).
    Long stages call this before their work as well as through ``atomic_directory``, so that a
    refusal comes before minutes of computing, not after.
    """
    target = output_path(target, what=what)
    here = target.resolve()
    for item in protect:
        if item is None:
            continue
        source = Path(item).resolve()
        if source == here or here in source.parents:
            raise ConceptvecError(
                f"the output {target} {'is' if source == here else 'holds'} this command's input {Path(item)}; writing there "
                f"would destroy the input. Choose another output folder."
            )
    if not target.exists() or _is_empty_dir(target):
        return
    if not target.is_dir():
        raise ConceptvecError(f"{target} is a file, not a folder; choose another output folder.")
    if not overwrite:
        raise ConceptvecError(
            f"{target} already exists and is not empty. Choose another output folder, or pass --overwrite "
            f"(overwrite=True) to replace this {what}."
        )
    if marker is not None and not (target / marker).is_file():
        raise ConceptvecError(
            f"{target} holds other files, not a {what} ({marker} is missing): --overwrite replaces only an earlier "
            f"{what}. Choose another output folder."
        )


@contextlib.contextmanager
def atomic_directory(
    target: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    what: str = "output",
    marker: str | None = None,
    protect: Iterable[str | os.PathLike[str] | None] = (),
) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``target`` only if the block completes.

    ``target`` is checked first as :func:`refuse_existing` checks it. A crash or Ctrl-C inside the
    block leaves ``target`` as it was and removes the temporary directory.
    """
    target = output_path(target, what=what)
    refuse_existing(target, overwrite=overwrite, what=what, marker=marker, protect=protect)
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


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
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


def read_json(path: str | os.PathLike[str], *, fix: str = "restore it, or write that output again") -> Any:
    """The JSON in ``path``; a file that is not valid UTF-8 JSON raises StoreError naming it and ``fix``."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path} is damaged: it is not valid JSON ({exc}); {fix}.") from None


LOCK_SIGNATURE = "conceptvec writer lock\n"


@contextlib.contextmanager
def writer_lock(target: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on writing ``target`` for the block; a second writer is refused at once.

    The lock is ``.<name>.lock`` beside ``target`` (flock, released by the system if the process dies);
    the file is removed afterwards only when it is a conceptvec lock.
    """
    import fcntl

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.with_name(f".{target.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConceptvecError(f"another conceptvec process is writing {target} right now; wait for it to finish, or "
                                  f"choose another output folder.") from None
        os.ftruncate(fd, 0)
        os.write(fd, LOCK_SIGNATURE.encode())
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                if lock.read_text() == LOCK_SIGNATURE:
                    lock.unlink()
    finally:
        os.close(fd)


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
