"""Atomic file output: a file or directory on disk is either complete or absent."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import ConceptvecError, StoreError, wrapped_os_error


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def output_path(value: Any, *, what: str = "output") -> Path:
    """``value`` as the path of an output folder; None, an empty text or another type is an error naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ConceptvecError(f"the {what} needs a folder to be written to (out=PATH, --out PATH), got {value!r}.")
    if Path(value).is_file():
        raise ConceptvecError(f"{value} is a file, not a folder; choose another output folder for the {what} (--out).")
    return Path(value)


def input_path(value: Any, *, what: str, fix: str) -> Path:
    """``value`` as the path of an input (a folder or file a command reads); None, an empty text or another type is an
    error naming ``what`` and where it comes from (``fix``), not a TypeError from ``Path``."""
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ConceptvecError(f"{what} needs a path ({fix}), got {value!r}.")
    return Path(value)


MANIFEST_FILE = ".conceptvec-manifest.json"
_HASH_BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read a block at a time (the file may be larger than memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_HASH_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _walk_files(folder: Path) -> list[str]:
    # Every entry below ``folder`` that is not a directory (symlinks included, never followed), as relative posix paths.
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        base = Path(root)
        for name in files + [d for d in dirs if (base / d).is_symlink()]:
            found.append((base / name).relative_to(folder).as_posix())
    return sorted(found)


def write_manifest(folder: str | os.PathLike[str], *, what: str, known: dict[str, str] | None = None) -> dict[str, Any]:
    """Record in ``folder/.conceptvec-manifest.json`` every file now in ``folder`` (name, size, sha256) as written by us.

    Only what is listed there is ever replaced or deleted by a later ``--overwrite`` (see :func:`check_replaceable`).
    Files of a nested output (a subfolder with its own manifest) are left to that manifest. ``known`` gives
    the sha256 of files just hashed by the caller (a store's activations), so that they are not read again.
    """
    folder = Path(folder)
    files: dict[str, dict[str, Any]] = {}
    nested = _nested_outputs(folder)
    for name in _walk_files(folder):
        if name == MANIFEST_FILE or any(name.startswith(n + "/") for n in nested):
            continue
        path = folder / name
        if path.is_symlink():
            continue  # a link is never ours to record: it would make its target look like our output
        files[name] = {"size": path.stat().st_size, "sha256": (known or {}).get(name) or file_sha256(path)}
    manifest = {"format": 1, "what": what, "files": files}
    write_json(folder / MANIFEST_FILE, manifest)
    return manifest


def record_written(folder: str | os.PathLike[str], *names: str) -> None:
    """Add files a command wrote into its finished output ``folder`` (e.g. a figure written after the output) to its manifest."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise ConceptvecError(f"{folder} has no {MANIFEST_FILE}; it is not an output written by conceptvec.")
    for name in names:
        path = folder / name
        manifest["files"][Path(name).as_posix()] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    write_json(folder / MANIFEST_FILE, manifest)


def unrecorded(folder: str | os.PathLike[str], names: Iterable[str]) -> list[str]:
    """Those of ``names`` present in ``folder`` that its manifest does not list with these bytes: files a command adding
    these names to a finished output must not replace (a user's file of the same name, or an edited one)."""
    folder = Path(folder)
    listed = (read_manifest(folder) or {}).get("files", {})
    found = []
    for name in names:
        path, entry = folder / name, listed.get(name)
        if not (path.exists() or path.is_symlink()):
            continue
        if (entry is None or path.is_symlink() or not path.is_file() or path.stat().st_size != entry.get("size")
                or file_sha256(path) != entry.get("sha256")):
            found.append(name)
    return found


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of an output folder, or None when it has none (or one that cannot be read)."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file() or path.is_symlink():
        return None
    try:
        value = read_json(path)
    except ConceptvecError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("files"), dict):
        return None
    return value


def _nested_outputs(folder: Path) -> list[str]:
    # Subfolders (at any depth) that hold their own manifest: outputs of other commands kept inside this one.
    nested = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        base = Path(root)
        if base != folder and MANIFEST_FILE in files:
            nested.append(base.relative_to(folder).as_posix())
            dirs[:] = []
    return nested


def foreign_files(folder: str | os.PathLike[str], *, manifest: dict[str, Any] | None = None) -> list[str]:
    """Files in ``folder`` that its manifest does not list as written by conceptvec with these bytes (sorted).

    Without a manifest every file is foreign. A nested output (subfolder with a manifest) is checked by its own.
    """
    folder = Path(folder)
    manifest = read_manifest(folder) if manifest is None else manifest
    listed = (manifest or {}).get("files", {})
    nested = _nested_outputs(folder)
    foreign = []
    for name in _walk_files(folder):
        if name == MANIFEST_FILE and manifest is not None:
            continue
        if any(name.startswith(n + "/") for n in nested):
            continue
        path = folder / name
        entry = listed.get(name)
        if (entry is None or path.is_symlink() or not path.is_file() or path.stat().st_size != entry.get("size")
                or file_sha256(path) != entry.get("sha256")):
            foreign.append(name)
    for n in nested:
        foreign.extend(f"{n}/{f}" for f in foreign_files(folder / n))
    return sorted(foreign)


def _a(what: str) -> str:
    return f"{'an' if what[:1] in 'aeiou' else 'a'} {what}"


def _named(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_replaceable(target: str | os.PathLike[str], *, what: str = "output", keep: Iterable[str] = ()) -> None:
    """Raise unless every file in the existing folder ``target`` was written by conceptvec as a ``what`` and is unchanged.

    The proof is the folder's manifest (:func:`write_manifest`): a marker file alone (``report.json``,
    ``metadata.json``...) never makes a folder ours. Top-level names in ``keep`` are carried over on
    replacement instead (a study's answers), so they may hold anything.
    """
    target = Path(target)
    manifest = read_manifest(target)
    if manifest is None:
        raise ConceptvecError(
            f"{target} holds other files, not {_a(what)} written by conceptvec ({MANIFEST_FILE}, the list of what it "
            f"wrote, is missing); conceptvec replaces only an earlier {what}. Move the folder away (or delete it yourself "
            f"if it is an output of an earlier conceptvec version), or "
            f"choose another output folder."
        )
    if manifest.get("what") != what:
        raise ConceptvecError(
            f"{target} holds {_a(str(manifest.get('what')))}, not {_a(what)}; conceptvec replaces only an earlier {what}. "
            f"Choose another output folder."
        )
    kept = tuple(keep)
    foreign = [f for f in foreign_files(target, manifest=manifest) if f.split("/")[0] not in kept]
    nested = [n for n in _nested_outputs(target) if n.split("/")[0] not in kept]
    if foreign:
        raise ConceptvecError(
            f"{target} holds files this {what} did not write or that changed since ({_named(foreign)}); replacing it "
            f"would delete them. Move them out of {target}, or choose another output folder."
        )
    if nested:
        raise ConceptvecError(
            f"{target} holds other outputs written into it since ({_named(nested)}); replacing it would delete them. "
            f"Move them out of {target}, or choose another output folder."
        )


def refuse_inputs(target: Path, protect: Iterable[str | os.PathLike[str] | None]) -> None:
    """Raise if the output ``target`` is, or holds, one of the command's inputs ``protect``."""
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


def refuse_inside(target: str | os.PathLike[str], outputs: Iterable[tuple[str | os.PathLike[str] | None, str]], *,
                  fix: str) -> None:
    """Raise if ``target`` lies inside one of ``outputs``, (folder, what) pairs of other commands' outputs this command
    reads: a folder written there is foreign to that output, whose ``--overwrite`` would then refuse to replace it
    (it never deletes what it did not write). ``fix`` says where to write instead."""
    here = Path(target).resolve()
    for folder, what in outputs:
        if folder is not None and Path(folder).resolve() in here.parents:
            raise ConceptvecError(
                f"{target} is inside the {what} {folder}, whose --overwrite would then refuse to replace it (it deletes "
                f"nothing it did not write). {fix}"
            )


def refuse_existing(
    target: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    what: str = "output",
    marker: str | None = None,
    protect: Iterable[str | os.PathLike[str] | None] = (),
    keep: Iterable[str] = (),
) -> None:
    """Raise unless writing ``target`` can destroy nothing that the caller did not write itself.

    ``target`` may be absent or an empty folder; with ``overwrite`` it may also be an earlier output
    of the same kind whose files are all listed, unchanged, in its manifest (:func:`check_replaceable`;
    ``marker`` is the file that names the kind in messages), never a folder holding anything else.
    It may never be, or hold, one of the command's inputs (``protect``). Long stages call this before
    their work as well as through ``atomic_directory``, so that a refusal comes before minutes of
    computing, not after.
    """
    target = output_path(target, what=what)
    refuse_inputs(target, protect)
    if target.is_symlink():
        raise ConceptvecError(f"{target} is a symbolic link; choose an output folder that is not one.")
    if not target.exists() or _is_empty_dir(target):
        return
    if not target.is_dir():
        raise ConceptvecError(f"{target} is a file, not a folder; choose another output folder.")
    if not overwrite:
        manifest = read_manifest(target)
        if manifest is None or manifest.get("what") != what:
            # not an earlier output of this kind: advising --overwrite would only lead to this refusal (cheap: no hashing)
            check_replaceable(target, what=what, keep=keep)
        raise ConceptvecError(
            f"{target} already exists and is not empty. Choose another output folder, or pass --overwrite "
            f"(overwrite=True) to replace this {what}."
        )
    check_replaceable(target, what=what, keep=keep)


@contextlib.contextmanager
def atomic_directory(
    target: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    what: str = "output",
    marker: str | None = None,
    protect: Iterable[str | os.PathLike[str] | None] = (),
    keep: Iterable[str] = (),
) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``target`` only if the block completes.

    ``target`` is checked first as :func:`refuse_existing` checks it, and again just before the
    replacement (files may have been put there meanwhile). The new folder gets a manifest of what
    the block wrote. Top-level entries named in ``keep`` (a study's answers and scores) are moved
    from the old folder into the new one, untouched. A crash or Ctrl-C inside the block leaves
    ``target`` as it was and removes the temporary directory.
    """
    target = output_path(target, what=what)
    keep = tuple(keep)
    refuse_existing(target, overwrite=overwrite, what=what, marker=marker, protect=protect, keep=keep)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    moved: list[str] = []
    try:
        yield tmp
        write_manifest(tmp, what=what)
        refuse_existing(target, overwrite=overwrite, what=what, marker=marker, protect=protect, keep=keep)
        for name in keep if target.is_dir() else ():
            if (target / name).exists() or (target / name).is_symlink():
                if (tmp / name).exists():
                    raise ConceptvecError(f"{target / name} would be replaced by this {what}'s own {name}; move it away.")
                os.replace(target / name, tmp / name)
                moved.append(name)
        replace_directory(tmp, target)
    except BaseException as exc:
        for name in moved:  # give back what was carried over before the failure
            with contextlib.suppress(OSError):
                os.replace(tmp / name, target / name)
        shutil.rmtree(tmp, ignore_errors=True)
        wrapped = None if isinstance(exc, (OSError, ConceptvecError)) else wrapped_os_error(exc)
        if wrapped is not None:  # a library's error around a full disk (safetensors) is said as the OSError it is
            wrapped.filename = str(target)
            raise wrapped from exc
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


def check_own_folder(folder: str | os.PathLike[str], *, what: str, ours: Callable[[str], bool]) -> None:
    """Raise, naming them, if ``folder`` (a command's progress folder) holds files the command does not write
    (``ours(relative path)`` is false) or links."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        raise ConceptvecError(f"{folder} is not a folder of {what}; move it away or choose another output folder.")
    foreign = [f for f in _walk_files(folder) if (folder / f).is_symlink() or not ours(f)]
    if foreign:
        raise ConceptvecError(
            f"{folder} holds files that are not {what} ({_named(foreign)}); move them away, or choose another output folder."
        )


def remove_own_folder(folder: str | os.PathLike[str], *, what: str, ours: Callable[[str], bool]) -> None:
    """Delete ``folder`` (a command's progress folder) if every file in it is one the command writes (``ours(relative
    path)``); otherwise raise naming the others, deleting nothing."""
    check_own_folder(folder, what=what, ours=ours)
    if Path(folder).exists():
        shutil.rmtree(folder)


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
    # a user's metadata holding an object: bad input, said as such (json.dump passes this error through)
    raise ConceptvecError(f"cannot write a {type(obj).__name__} into JSON (metadata, parameters); give text, numbers, "
                          f"lists or dicts.")
