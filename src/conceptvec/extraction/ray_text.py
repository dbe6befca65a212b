"""A language model's corpus extracted on Ray (``cv.extract(model="hf:DIR", ..., engine="ray")``).

A text extraction's chunks are whole documents, each tokenised when it runs (``textrun``), so a chunk
is a unit of work that needs nothing but its documents: the chunks still to do are the rows of a Ray
Dataset, each carrying its documents' texts, ids and labels; ``map_batches`` hands them to a pool of
``TextActor``s, each of which loads the model once and returns the chunk's rows (and, for token rows,
its part of the example index; several layers: their rows side by side, from one forward). This process writes
each chunk as it arrives: the store's chunks,
resumable as a local run's, and the finished store is byte for byte a local run's (the same batches
through the same model; tested on CPU with one torch thread per actor).

Actors load the model folder at the path this process gives: on several machines it must be on a disk
every node mounts at the same path (docs/ray.md).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

from ..errors import ConceptvecError
from ..progress import progress_bar
from ..engines.raycluster import carrying_errors, for_workers, map_on_actors, connected, quiet_ray_data, user_error
from ..models.hooks import resolve_device
from ..models.language import TextModel
from .ray_images import actor_pool
from .textrun import TextForward, TextPlan

DOCUMENT_FIELDS = ("id", "label", "label_name", "text", "n_tokens")


class TextActor:
    """In a Ray actor: the language model loaded once, then the rows of each chunk of documents given to it.

    Parameters
    ----------
    model, weights : the model spec (``hf:DIR``) and weights, for ``models.load_model``
    layer, examples, pool, batch_size, batch_tokens, autocast, autocast_dtype : as in ``textrun.TextForward`` (``layer`` a
        name or a list of names)
    max_tokens, keep_special_tokens : as in ``textrun.plan_text``
    device : ``cpu`` or ``cuda``
    threads : torch's threads in this actor (its CPUs)
    """

    def __init__(self, *, model: str, weights: str | None, layer: str | list[str], examples: str, pool: str, batch_size: int,
                 batch_tokens: int | None, max_tokens: int, keep_special_tokens: bool, device: str, autocast: bool,
                 autocast_dtype: str = "float16", threads: int = 1):
        from ..models.load import load_model

        torch.set_num_threads(threads)
        dev = resolve_device(device)
        self.options = (max_tokens, keep_special_tokens)
        loaded = load_model(model, weights)
        if not isinstance(loaded, TextModel):  # extract sends only language models here
            raise ConceptvecError(f"{model} is not a language model (hf:DIR with a tokenizer); text extraction cannot run it.")
        self.forward = TextForward(loaded, layer, examples=examples, pool=pool, dev=dev,
                                   batch_size=batch_size, batch_tokens=batch_tokens,
                                   use_autocast=bool(autocast and dev.type == "cuda"), autocast_dtype=autocast_dtype)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Chunks (one per row of ``batch``) to ``chunk``, ``rows`` (float32 bytes), ``units``, ``index`` (Arrow IPC bytes)
        and ``widths`` (several layers: each one's units as int64 bytes, empty until this actor ran a forward)."""
        out: dict[str, list] = {"chunk": [], "rows": [], "units": [], "index": [], "widths": []}
        for k in range(len(batch["chunk"])):
            # Ray Data hands back NumPy arrays of NumPy scalars: the plan gets plain str and int, as locally.
            documents = {name: [int(v) if name in ("label", "n_tokens") else str(v) for v in batch[name][k]]
                         for name in DOCUMENT_FIELDS}
            plan = TextPlan(None, documents, np.asarray(batch["n_counted"][k], np.int64), [], {}, *self.options)
            with carrying_errors():
                rows, index = self.forward.chunk(plan, 0, len(documents["id"]), first_document=int(batch["d0"][k]))
            out["chunk"].append(int(batch["chunk"][k]))
            out["rows"].append(np.ascontiguousarray(rows, np.float32).tobytes())
            out["units"].append(rows.shape[1])
            out["index"].append(b"" if index is None else _ipc(index))
            out["widths"].append(np.asarray(self.forward.widths, np.int64).tobytes())
        return {"chunk": np.asarray(out["chunk"], np.int64), "rows": np.asarray(out["rows"], dtype=object),
                "units": np.asarray(out["units"], np.int64), "index": np.asarray(out["index"], dtype=object),
                "widths": np.asarray(out["widths"], dtype=object)}


def run_text_chunks_ray(*, model: str, weights: str | None, layer: str | list[str], plan: TextPlan, todo: list[tuple[int, int, int, int, int]],
                        writer: Any, examples: str, pool: str, device: str, batch_size: int, batch_tokens: int | None,
                        workers: int | None, autocast: bool, autocast_dtype: str, progress: bool, finished: int,
                        ray_address: str | None, layer_widths: list[int] | None = None) -> None:
    """Run ``model`` to ``layer`` over the chunks ``todo`` of ``plan`` on a Ray cluster; write each chunk as it comes.
    Several layers (a list): their rows side by side, ``layer_widths`` filled with their units (``layers.LayerWriters``)."""
    if not todo:
        return
    import pyarrow as pa

    model, weights = for_workers(model), for_workers(weights)  # absolute: the workers may run in another folder
    with connected(ray_address) as ray:
        from ray.data import ActorPoolStrategy

        quiet_ray_data(ray)
        gpu, actors = actor_pool(ray, device, workers, len(todo))
        items = [{"chunk": k, "d0": d0, "n_counted": plan.n_counted[d0:d1].tolist(),
                  **{name: plan.documents[name][d0:d1] for name in DOCUMENT_FIELDS}} for k, _, _, d0, d1 in todo]
        options = dict(model=model, weights=weights, layer=layer, examples=examples, pool=pool, batch_size=batch_size,
                       batch_tokens=batch_tokens, max_tokens=plan.max_tokens, keep_special_tokens=plan.keep_special_tokens,
                       device="cuda" if gpu else "cpu", autocast=autocast, autocast_dtype=autocast_dtype)
        results = map_on_actors(
            ray.data.from_items(items, override_num_blocks=len(items)), TextActor, fn_constructor_kwargs=options,
            batch_size=1, batch_format="numpy", compute=ActorPoolStrategy(size=actors), num_gpus=1 if gpu else 0, num_cpus=1)
        ranges = {k: (start, stop) for k, start, stop, _, _ in todo}
        with progress_bar("rows", disable=not progress) as bar:
            named = layer if isinstance(layer, str) else ", ".join(layer)
            task = bar.add_task(f"extract {named} on Ray ({actors} actors)", total=plan.n_rows, completed=finished)
            try:
                for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
                    for k, rows, units, index, widths in zip(batch["chunk"], batch["rows"], batch["units"], batch["index"],
                                                             batch["widths"]):
                        if int(k) not in ranges:  # pragma: no cover - a chunk delivered again by a retried task
                            continue
                        if layer_widths is not None and not layer_widths and len(widths):
                            layer_widths.extend(int(w) for w in np.frombuffer(widths, np.int64))
                        start, stop = ranges.pop(int(k))
                        table = pa.ipc.open_stream(io.BytesIO(index)).read_all() if len(index) else None
                        writer.write_chunk(int(k), start, stop, np.frombuffer(rows, np.float32).reshape(-1, int(units)),
                                           examples=table)
                        bar.advance(task, stop - start)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - the worker's own error, out of Ray Data's wrappers
                raise user_error(exc) from None


def _ipc(table: Any) -> bytes:
    import pyarrow as pa

    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return sink.getvalue()
