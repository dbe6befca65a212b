"""Extraction on Ray (``cv.extract(..., engine="ray")``): Ray Data over the planned batches, a model per actor.

The planned batches of the chunks still to do (``runner.planned_batches``, the very batches of a
local run) are the rows of a Ray Dataset; ``map_batches`` hands them to a pool of ``LayerActor``s
(``ActorPoolStrategy``), each of which loads the model once, reads and preprocesses its examples
itself and returns one row per example: its index in the plan, whether it was readable, and its
pooled vector (several layers: their pooled vectors side by side, from one forward). Ray Data does
not keep order, so this process gathers the rows by chunk and writes each chunk, sorted by index, as
soon as all its examples have come: the store's chunks, resumable as a local run's, and the finished store has exactly the ids, order and bytes of a local run (the
same batches through the same model; tested on CPU with one torch thread per actor).

Actors read the examples (and a weights file) at the paths this process gives: on several machines
those must be on a disk every node mounts at the same path (docs/ray.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..progress import progress_bar
from ..engines.raycluster import carrying_errors, check_visible, connected, for_workers, map_on_actors, quiet_ray_data, user_error
from ..models.hooks import layer_runner, layers_runner, resolve_device
from .runner import ImageDataset, autocast_context, collate, forward, on_device, planned_batches

ROWS_PER_BLOCK = 8  # planned batches per block of the input dataset: enough blocks to keep every actor busy


class LayerActor:
    """In a Ray actor: the model loaded once, then the pooled layer of each planned batch given to it.

    Parameters
    ----------
    model : a model spec (loaded here with ``load``'s options) or an nn.Module
    load : dict
        ``weights``, ``key_map``, ``mean``, ``std``, ``size``, ``transform_input`` for ``models.load_model``.
    layer, pool : the layer (or a list of layers, pooled side by side from one forward) and its pooling
    dataset : a Dataset yielding ``(tensor or None, index)`` (``runner.prepare_data``)
    device : ``cpu`` or ``cuda`` (Ray gives a GPU actor its own GPU as ``cuda``)
    autocast, autocast_dtype, channels_last : as in ``runner.run_chunks``
    threads : torch's threads in this actor (its CPUs)
    """

    def __init__(self, *, model: Any, load: dict[str, Any], layer: str | list[str], pool: str, dataset: Any, device: str,
                 autocast: bool, channels_last: bool, threads: int = 1, autocast_dtype: str = "float16"):
        torch.set_num_threads(threads)
        if isinstance(model, str):
            from ..models.load import load_model

            model = load_model(model, load.get("weights"), key_map=load.get("key_map"), mean=load.get("mean"),
                               std=load.get("std"), size=load.get("size"), transform_input=load.get("transform_input")).module
        self.dev = resolve_device(device)
        self.channels_last = channels_last
        self.amp = autocast and self.dev.type == "cuda"
        self.autocast_dtype = autocast_dtype
        self.dataset = dataset
        self.root = dataset.files.root if isinstance(dataset, ImageDataset) else None  # an image folder, checked on this node
        model = on_device(model, self.dev, channels_last)
        self.widths: list[int] = []  # each layer's units, filled at the first batch (several layers)
        self._layer = (layers_runner(model, list(layer), pool, widths=self.widths) if isinstance(layer, (list, tuple))
                       else layer_runner(model, layer, pool))
        self.run = self._layer.__enter__()  # hooks stay on the actor's model for its whole life

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Planned batches (``chunk``, ``start``, ``stop``) to one row per example: ``chunk``, ``index``, ``readable``, ``vector``
        and ``widths`` (each layer's units as int64 bytes; empty for one layer or before the first batch ran)."""
        chunk, index, readable, vectors = [], [], [], []
        if self.root is not None:
            with carrying_errors():  # a node without the data folder would find every example unreadable
                check_visible(self.root, "data folder")
            self.root = None
        for k, start, stop in zip(batch["chunk"], batch["start"], batch["stop"]):
            pooled = np.zeros((0, 0), np.float32)
            with carrying_errors():
                xs, ok, bad = collate([self.dataset[i] for i in range(int(start), int(stop))])
                if xs is not None:
                    with torch.inference_mode(), autocast_context(self.amp, self.autocast_dtype):
                        pooled = forward(self.run, xs, self.dev, self.channels_last).float().cpu().numpy()
            for i, row in zip(ok + bad, list(pooled) + [None] * len(bad)):
                chunk.append(int(k))
                index.append(int(i))
                readable.append(row is not None)
                vectors.append(b"" if row is None else row.tobytes())
        return {"chunk": np.asarray(chunk, np.int64), "index": np.asarray(index, np.int64),
                "readable": np.asarray(readable, bool), "vector": np.asarray(vectors, dtype=object),
                "widths": np.asarray([np.asarray(self.widths, np.int64).tobytes()] * len(index), dtype=object)}


class ChunkGatherer:
    """Rows of examples arriving in any order, written as store chunks once each chunk is whole."""

    def __init__(self, writer: Any, todo: list[tuple[int, int, int]], widths: list[int] | None = None):
        self.writer, self.widths = writer, widths
        self.ranges = {k: (start, stop) for k, start, stop in todo}
        # By example index, so that a batch Ray delivers twice (a retried task) counts once.
        self.rows: dict[int, dict[int, tuple[bool, bytes]]] = {k: {} for k in self.ranges}

    def add(self, batch: dict[str, np.ndarray]) -> int:
        """Take a batch of rows; write the chunks it completes. Returns the number of rows taken."""
        if self.widths is not None and not self.widths:  # several layers: their columns are known once an actor ran one
            for w in batch.get("widths", ()):
                if w:
                    self.widths.extend(int(x) for x in np.frombuffer(w, np.int64))
                    break
        for k, i, ok, vector in zip(batch["chunk"], batch["index"], batch["readable"], batch["vector"]):
            k = int(k)
            if k not in self.rows:  # pragma: no cover - a chunk already written, delivered again
                continue
            self.rows[k][int(i)] = (bool(ok), vector)
            start, stop = self.ranges[k]
            if len(self.rows[k]) == stop - start:
                self.write(k)
        return len(batch["index"])

    def write(self, k: int) -> None:
        start, stop = self.ranges[k]
        rows = self.rows.pop(k)
        vectors = [np.frombuffer(rows[i][1], dtype=np.float32) for i in range(start, stop) if rows[i][0]]
        self.writer.write_chunk(k, start, stop, np.stack(vectors) if vectors else np.zeros((0, 0), np.float32),
                                [i for i in range(start, stop) if not rows[i][0]])


def actor_pool(ray: Any, device: str, workers: int | None, tasks: int) -> tuple[bool, int]:
    """(whether actors take a GPU each, how many actors): ``workers``, else one per GPU of the cluster on CUDA
    (one per CPU otherwise), never more than ``tasks``."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
    default = gpus if gpu else int(ray.cluster_resources().get("CPU", 1))
    return gpu, max(1, min(workers if workers is not None else default, tasks))


def run_chunks_ray(*, model: Any, load: dict[str, Any], layer: str | list[str], pool: str, dataset: Any, todo: list[tuple[int, int, int]],
                   writer: Any, n: int, finished: int, device: str, batch_size: int, workers: int | None, autocast: bool,
                   channels_last: bool, autocast_dtype: str = "float16", progress: bool, ray_address: str | None,
                   layer_widths: list[int] | None = None) -> None:
    """Pool ``layer`` over the chunks ``todo`` on a Ray cluster and write each complete chunk (as ``runner.run_chunks``;
    several layers side by side, ``layer_widths`` filled with their units at the first rows, for ``layers.LayerWriters``)."""
    if not todo:
        return
    # the paths the workers open, absolute: a cluster started elsewhere runs them in another working folder
    model = for_workers(model)
    load = {name: for_workers(value) if name in ("weights", "key_map") else value for name, value in load.items()}
    if isinstance(dataset, ImageDataset):  # (a Dataset of the user's reads its own files)
        from dataclasses import replace

        dataset.files = replace(dataset.files, root=Path(dataset.files.root).resolve())
    with connected(ray_address) as ray:
        from ray.data import ActorPoolStrategy

        quiet_ray_data(ray)
        planned = [(k, b[0], b[-1] + 1) for k, start, stop in todo for b in planned_batches([(k, start, stop)], batch_size)]
        gpu, actors = actor_pool(ray, device, workers, len(planned))
        items = ray.data.from_items([{"chunk": k, "start": s, "stop": e} for k, s, e in planned],
                                    override_num_blocks=max(1, min(len(planned), len(planned) // ROWS_PER_BLOCK + actors)))
        options = dict(model=model, load=load, layer=layer, pool=pool, dataset=dataset, device="cuda" if gpu else "cpu",
                       autocast=autocast, autocast_dtype=autocast_dtype, channels_last=channels_last)
        rows = map_on_actors(items, LayerActor, fn_constructor_kwargs=options, batch_size=1, batch_format="numpy",
                             compute=ActorPoolStrategy(size=max(1, actors)), num_gpus=1 if gpu else 0, num_cpus=1)
        gatherer = ChunkGatherer(writer, todo, layer_widths)
        with progress_bar("img", disable=not progress) as bar:
            named = layer if isinstance(layer, str) else ", ".join(layer)
            task = bar.add_task(f"extract {named} on Ray ({actors} actors)", total=n, completed=finished)
            try:
                for batch in rows.iter_batches(batch_size=None, batch_format="numpy"):
                    bar.advance(task, gatherer.add(batch))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - the worker's own error, out of Ray Data's wrappers
                raise user_error(exc) from None
