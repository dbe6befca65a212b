"""Stores of an extraction: the check for a finished one at ``out``, and several layers in one pass.

Several layers share each batch's forward pass (``models.hooks.layers_runner``); their pooled rows come side by side
and ``LayerWriters`` writes each layer's columns as that chunk of the layer's own store, the store a single-layer
extraction writes. Both engines (``runner.run_chunks``, ``ray_images.run_chunks_ray``) write through it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.console import Console
from rich.markup import escape

from ..errors import ConceptvecError, StoreError
from ..storage.atomic import check_replaceable, read_manifest
from ..storage.duplicates import duplicates_warning
from ..storage.store import ActivationStore, StoreWriter, remove_leftovers
from .refused import discarded_if_refused

_stderr = Console(stderr=True)


def layer_list(layer: Any) -> list[str]:
    """``layer`` as a list of distinct module names (a name, or a list of them)."""
    names = [layer] if isinstance(layer, str) else list(layer) if isinstance(layer, (list, tuple)) else None
    if not names or not all(isinstance(x, str) and x for x in names):
        raise ConceptvecError(f"layer must be a module name or a list of them, got {layer!r}.")
    repeated = sorted({x for x in names if names.count(x) > 1})
    if repeated:
        raise ConceptvecError(f"layer {repeated[0]!r} is named more than once; give each layer once.")
    if len(names) > 1:
        odd = [x for x in names if x in (".", "..") or "/" in x or os.sep in x]
        if odd:
            raise ConceptvecError(f"layer {odd[0]!r} cannot name a store folder (<out>/<layer>); layers are module names "
                                  f"such as blocks.5.")
    return names


class LayerWriters:
    """One chunk of side-by-side layer outputs written as one chunk of each layer's store (to the stores lacking it)."""

    def __init__(self, writers: dict[str, StoreWriter], widths: list[int]):
        self.writers, self.widths = writers, widths
        self.done = {name: set(w.completed()) for name, w in writers.items()}

    def write_chunk(self, index: int, start: int, stop: int, rows: Any, skipped: Sequence[int] = (), **kw: Any) -> None:
        import numpy as np

        edges = np.cumsum([0, *self.widths]) if self.widths else None
        for k, (name, writer) in enumerate(self.writers.items()):
            if index in self.done[name]:
                continue  # written before an interruption that stopped another layer's writing
            part = rows[:, edges[k]:edges[k + 1]] if edges is not None and rows.size else np.zeros((0, 0), np.float32)
            writer.write_chunk(index, start, stop, part, skipped, **kw)


def extract_layers(layers: list[str], out: Path, *, metadata_of: Callable[[str], dict[str, Any]], fingerprint_extra: dict[str, Any],
                    extra: dict[str, Any], dtype: str, overwrite: bool, protect: list[Any], chunks: list[tuple], n: int,
                    progress: bool, run: Callable[..., None], finish: Callable[[StoreWriter, dict[str, Any]], None]
                    ) -> dict[str, ActivationStore]:
    """``extract`` for several layers: each store at ``out/<layer>`` is the single-layer extraction's (same metadata,
    chunks and rows); a finished one is kept, and a run resumes every store's complete chunks.

    ``metadata_of(layer)``: what the store is of (model, layer, pooling, data, preprocessing); ``chunks``: the planned
    (index, start, stop, ...); ``run(layers, todo, writer, finished, widths)`` runs the model; ``finish(writer, metadata)``
    finishes a store."""
    import contextlib

    if read_manifest(out) is not None:  # an output of its own (a store): its folder is not ours to fill with stores
        raise ConceptvecError(f"{out} is an output of conceptvec (an activation store?); several layers are written as one store "
                              f"each under a folder of their own. Choose another --out.")
    stores: dict[str, ActivationStore] = {}
    with contextlib.ExitStack() as stack, discarded_if_refused(out) as fresh:
        writers: dict[str, StoreWriter] = {}
        for name in layers:
            existing = existing_store(out / name, metadata_of(name), dtype, overwrite)
            if existing is not None:
                say(progress, f"{out / name} is already complete for this model, layer and data; kept.")
                stores[name] = existing
                continue
            writers[name] = stack.enter_context(StoreWriter(out / name, fingerprint={**metadata_of(name), **fingerprint_extra},
                                                            dtype=dtype, overwrite=overwrite, protect=protect))
            fresh.append(writers[name])
        fresh.clear()  # every layer's writer is ready: what they made is the run's progress from here
        if writers:
            widths: list[int] = []
            multi = LayerWriters(writers, widths)
            todo = [ch for ch in chunks if any(ch[0] not in done for done in multi.done.values())]
            finished = n - sum(ch[2] - ch[1] for ch in todo)
            if finished:
                say(progress, f"resuming {out}: {finished} of {n} rows already done for every layer.")
            try:
                run(list(writers), todo, multi, finished, widths)
            except KeyboardInterrupt:
                say(True, f"interrupted; the complete chunks are kept in {out}/<layer>.partial. Run the same command again to resume.")
                raise
            for name, writer in writers.items():
                finish(writer, {**metadata_of(name), **extra})
                stores[name] = opened_store(out / name, progress, layer=name)
    return {name: stores[name] for name in layers}



def opened_store(out: Path, progress: bool, *, layer: str | None = None) -> ActivationStore:
    """The finished store, after saying when its rows repeat (``storage.duplicates``; warned on stderr even without
    progress; ``layer`` names the store when one pass wrote several)."""
    store = ActivationStore.open(out)
    warning = duplicates_warning(store.metadata.get("duplicates"), layer=layer)
    if warning:
        _stderr.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    return store


def say(progress: bool, message: str) -> None:
    if progress:
        _stderr.print(message, highlight=False, soft_wrap=True)


def existing_store(out: Path, metadata: dict[str, Any], dtype: str, overwrite: bool) -> ActivationStore | None:
    if not out.exists() or overwrite or (out.is_dir() and not any(out.iterdir())):
        return None  # nothing there, or an empty folder (written into, as by every command); a user's folder is named
    if not (out / "metadata.json").exists(): check_replaceable(out, what="activation store")  # noqa: E701 - as an output
    store = ActivationStore.open(out)
    asked = {**metadata, "dtype": dtype}
    had = dict(store.metadata)
    model, wanted = had.get("model"), asked["model"]
    if isinstance(model, dict) and model.get("weights_sha256") and model.get("weights_sha256") == wanted.get("weights_sha256"):
        # The same weights by content at another path (a moved or copied run folder) are the same model.
        had["model"] = {**model, "weights": wanted.get("weights")}
    differs = [d for k in ("model", "layer", "pooling", "data", "preprocessing", "dtype")
               for d in _differences(k, had.get(k), asked.get(k))]
    if differs:
        details = "; ".join(f"{name}: store has {_short(had)}, asked {_short(wanted)}" for name, had, wanted in differs)
        raise StoreError(f"{out} already holds a different extraction ({details}). Use another --out or --overwrite.")
    if (had.get("data") or {}).get("items"):  # the same type and length; its items could not be compared (runner.dataset_contents)
        say(True, f"{out}: reused for a Dataset of the same type and length; its items are not compared: pass --overwrite if they changed.")
    remove_leftovers(out)
    return store


def _differences(name: str, had: Any, wanted: Any) -> list[tuple[str, Any, Any]]:
    """(name, stored, asked) of what differs; within a dict, the differing entries by name, so that a changed
    weights digest is shown rather than cut off behind a long path."""
    had, wanted = _comparable(had), _comparable(wanted)
    if had == wanted:
        return []
    if isinstance(had, dict) and isinstance(wanted, dict):
        return [(f"{name}.{k}", had.get(k), wanted.get(k)) for k in sorted(set(had) | set(wanted), key=str) if had.get(k) != wanted.get(k)]
    return [(name, had, wanted)]


def _comparable(value: Any) -> Any:
    # Compare as the metadata file stores it (tuples become lists, paths strings).
    return json.loads(json.dumps(value, default=str))


def _short(value: Any, limit: int = 160) -> str:
    text = repr(_comparable(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."
