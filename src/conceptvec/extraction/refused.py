"""A several-layer extraction refused while it is set up leaves nothing behind (torch-free: the pipeline imports it)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from ..storage.atomic import remove_own_folder
from ..storage.store import PROGRESS_FILE


@contextlib.contextmanager
def discarded_if_refused(out: Any) -> Iterator[list[Any]]:
    """A list to put the StoreWriters of a several-layer run in while it is set up; if setting up fails (a later layer
    refused), the ``<layer>.partial`` folders they made, still empty, and ``out`` when this made it, are removed: a
    refused command leaves nothing behind. Cleared once set up, the list keeps its writers' progress."""
    out = Path(out)
    made = not out.exists()
    before = {p.name for p in out.glob("*.partial")} if out.is_dir() else set()  # an earlier run's progress: kept
    fresh: list[Any] = []
    try:
        yield fresh
    except BaseException:
        for writer in fresh:
            writer.close()
            if writer.partial.name not in before and not writer.completed():
                remove_own_folder(writer.partial, what="a partial activation store", ours=lambda name: name == PROGRESS_FILE)
        if made and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise

