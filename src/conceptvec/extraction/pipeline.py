"""Pooled activations of one layer over a dataset, written to an ActivationStore.

The forward pass stops at the layer (a hook pools the output and raises; TorchScript graphs are cut
after it), runs under ``torch.inference_mode`` in batches from a DataLoader, and only the pooled
vectors leave the hook. Chunks of pooled vectors are written as they complete, so a run resumes
after any interruption and never holds more than one chunk in memory.

This module imports torch only when ``extract`` runs, so ``conceptvec.extract`` and
``help(conceptvec.extract)`` work without loading it; the work is in ``runner`` and ``hooks``.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, overload

from ..engines.registry import EngineEntry, check_engine
from ..errors import ConceptvecError
from ..storage.atomic import output_path
from ..storage.store import ActivationStore, StoreWriter
from .config import CHUNK_SIZE, ExtractConfig
from .layers import existing_store, extract_layers, layer_list, opened_store, say


# One layer gives its store, several a store per layer: the overloads tell type checkers which
# (tests/cli/test_options.py checks that they list the implementation's parameters).
@overload
def extract(
    model: Any, *, layer: str, data: Any, out: str | os.PathLike[str], config: ExtractConfig | None = None,
    weights: str | None = None, key_map: str | Mapping[str, str] | None = None, mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None, size: int | None = None, transform_input: bool | None = None,
    per_class: int | None = None, seed: int = 0, class_index: str | os.PathLike[str] | None = None,
    background: str = "white", batch_size: int = 64, workers: int | None = None, device: str = "auto",
    dtype: str = "float32", pool: str = "avg", autocast: bool = False, autocast_dtype: str = "float16",
    decode: str = "auto", channels_last: bool | None = None, chunk_size: int = CHUNK_SIZE,
    examples: str = "documents", max_tokens: int | None = None, text_column: str | None = None,
    label_column: str | None = None, keep_special_tokens: bool = False, batch_tokens: int | None = None,
    transform: Callable[[Any], Any] | None = None, overwrite: bool = False, progress: bool = True,
    engine: str = "local", ray_address: str | None = None,
) -> ActivationStore: ...


@overload
def extract(
    model: Any, *, layer: Sequence[str], data: Any, out: str | os.PathLike[str], config: ExtractConfig | None = None,
    weights: str | None = None, key_map: str | Mapping[str, str] | None = None, mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None, size: int | None = None, transform_input: bool | None = None,
    per_class: int | None = None, seed: int = 0, class_index: str | os.PathLike[str] | None = None,
    background: str = "white", batch_size: int = 64, workers: int | None = None, device: str = "auto",
    dtype: str = "float32", pool: str = "avg", autocast: bool = False, autocast_dtype: str = "float16",
    decode: str = "auto", channels_last: bool | None = None, chunk_size: int = CHUNK_SIZE,
    examples: str = "documents", max_tokens: int | None = None, text_column: str | None = None,
    label_column: str | None = None, keep_special_tokens: bool = False, batch_tokens: int | None = None,
    transform: Callable[[Any], Any] | None = None, overwrite: bool = False, progress: bool = True,
    engine: str = "local", ray_address: str | None = None,
) -> dict[str, ActivationStore]: ...


def extract(
    model: Any,
    *,
    layer: str | Sequence[str],
    data: Any,
    out: str | os.PathLike[str],
    config: ExtractConfig | None = None,
    weights: str | None = None,
    key_map: str | Mapping[str, str] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    size: int | None = None,
    transform_input: bool | None = None,
    per_class: int | None = None,
    seed: int = 0,
    class_index: str | os.PathLike[str] | None = None,
    background: str = "white",
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
    dtype: str = "float32",
    pool: str = "avg",
    autocast: bool = False,
    autocast_dtype: str = "float16",
    decode: str = "auto",
    channels_last: bool | None = None,
    chunk_size: int = CHUNK_SIZE,
    examples: str = "documents",
    max_tokens: int | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    keep_special_tokens: bool = False,
    batch_tokens: int | None = None,
    transform: Callable[[Any], Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    engine: str = "local",
    ray_address: str | None = None,
) -> ActivationStore | dict[str, ActivationStore]:
    """Pool ``layer`` of ``model`` over ``data`` into an ActivationStore at ``out``; resumable.

    The store is written in chunks of ``chunk_size`` examples into ``<out>.partial``. Run again after
    Ctrl-C, a crash or ``kill -9``, the same call keeps the complete chunks and the finished store is
    identical to an uninterrupted run's; on a finished store it does nothing; a store or partial store
    of a different model, layer, pooling or data is refused with what differs. Local weights files are
    compared by content (sha256 and size), so weights replaced at the same path make a different model.

    Parameters
    ----------
    model : a spec (``digits``, ``torchvision:NAME``, ``timm:NAME``, ``hf:DIR``, ``checkpoint:FILE``) or an nn.Module;
        ``hf:DIR`` is a vision model, or a language model with its tokenizer (causal LM, encoder, sentence-transformers)
    layer : the module name as the model names it (``block3``, ``layer4.1``, ``Mixed_7b``, ``transformer.h.5.mlp.act``);
        for language models also a TransformerLens hook name (``blocks.5.mlp.hook_post``) where it maps to a module.
        A list of names (either engine): one forward per batch for all of them, one store per layer at
        ``<out>/<layer>``, each the store a single-layer extraction of that layer writes; returns
        ``{layer: ActivationStore}``; resumable as one run
    data : ``digits`` (scikit-learn's bundled digits), an image folder (class sub-folders or flat), a
        text file listing image paths, ``sources.images.ImageFiles`` (files already chosen), or a torch Dataset of
        prepared tensors (no preprocessing applied); for a language model a text corpus (see :mod:`conceptvec.sources.text`)
    out : the store's directory
    config : ExtractConfig, optional
        All options below in one validated object; give either it or the options as keywords.
    weights, key_map, mean, std, size, transform_input, per_class, seed, class_index, background, batch_size, workers, device, dtype,
    pool, autocast, autocast_dtype, decode, channels_last, chunk_size, examples, max_tokens, text_column, label_column,
    keep_special_tokens, batch_tokens : see :class:`ExtractConfig` (the last six for text)
    transform : preprocessing for an nn.Module given with image files (specs bring their own)
    overwrite : replace an existing store made by another extraction
    progress : show a progress bar
    engine : ``local`` (this process and its DataLoader workers) or ``ray``: Ray Data with ``workers`` actors,
        each loading the model once (default: one per GPU of the cluster on CUDA, else one per CPU); the store
        is the one a local run writes, and either engine resumes the other's partial store (docs/ray.md)
    ray_address : the Ray cluster for ``engine="ray"``; default ``RAY_ADDRESS``, else a local Ray
    """
    from torch import nn

    from .gpu import choose_decoding
    from ..models.hooks import resolve_device
    from ..models.layers import find_layer, is_script
    from ..models.load import load_model
    from .runner import prepare_data

    out = output_path(out, what="activation store")  # before minutes of loading
    c = _config(config, locals())
    entry = check_engine(engine, stage="extraction", ray_address=ray_address, workers=c.workers)
    weights, per_class, seed, batch_size, workers = c.weights, c.per_class, c.seed, c.batch_size, c.workers
    if workers is None and not entry.on_ray:
        workers = 0  # the local default: this process reads and runs the model (engines.registry)
    dtype, pool, key_map, mean, std, size = c.dtype, c.pool, c.key_map, c.mean, c.std, c.size
    class_index, autocast, channels_last, chunk_size = c.class_index, c.autocast, c.channels_last, c.chunk_size
    dev = resolve_device(c.device)
    loaded = load_model(model, weights, key_map=key_map, mean=mean, std=std, size=size, transform_input=c.transform_input)
    from ..models.language import TextModel

    layers = layer_list(layer)
    layer = layers[0]
    if isinstance(loaded, TextModel):
        return _extract_text(loaded, layers if len(layers) > 1 else layer, data, out, c, dev, overwrite, progress, entry=entry,
                             ray_address=ray_address, spec=model)
    text_options = [k for k in ("max_tokens", "text_column", "label_column", "batch_tokens") if getattr(c, k) is not None]
    text_options += [k for k in ("examples", "keep_special_tokens") if getattr(c, k) != getattr(ExtractConfig(), k)]
    if text_options:
        raise ConceptvecError(f"{', '.join(text_options)} apply to language models (hf:DIR with a tokenizer); {loaded.name} is not one.")
    if transform is not None:
        loaded.transform = transform
        loaded.preprocessing = {"transform": repr(transform), "note": "given to extract()"}
    for name in layers:
        find_layer(loaded.module, name)
    data_desc, planned, dataset, preprocessing = prepare_data(loaded, data, per_class, seed, class_index,
                                                               background=c.background)
    decoding = choose_decoding(c.decode, transform=loaded.transform, name=loaded.name, dataset=dataset, dev=dev, engine=engine)
    n = len(dataset)
    use_autocast = bool(autocast and dev.type == "cuda")
    if channels_last is None:
        channels_last = any(isinstance(m, nn.Conv2d) for m in loaded.module.modules()) or is_script(loaded.module)
    metadata = {
        "model": loaded.describe(), "layer": layer, "pooling": pool, "data": data_desc, "preprocessing": preprocessing,
    }
    fingerprint = {**metadata, "chunk_size": int(chunk_size)}
    if decoding.used == "device":  # its rows differ from the CPU path's in the last digits: a partial store is of one or the other
        fingerprint["decode"] = "device"
    existing = existing_store(out, metadata, dtype, overwrite) if len(layers) == 1 else None
    if existing is not None:
        say(progress, f"{out} is already complete for this model, layer and data; nothing to do.")
        return existing
    if data_desc.get("n_transparent"):
        say(progress, f"{data_desc['n_transparent']} of {n} images have transparency; composited on {data_desc['background']} "
                       f"(--background).")

    metadata.update({
        "device": str(dev), "batch_size": batch_size, "workers": workers, "autocast": use_autocast,
        **({"autocast_dtype": c.autocast_dtype} if use_autocast else {}), "decode": decoding.describe(),
        "channels_last": bool(channels_last), "chunk_size": int(chunk_size), "engine": engine,
    })
    if autocast and not use_autocast:
        say(progress, "autocast applies on CUDA only; running in float32 on the CPU.")
    protect = [p for p in (data, weights, class_index, key_map) if isinstance(p, (str, os.PathLike)) and Path(p).exists()]
    load = {"weights": weights, "key_map": key_map, "mean": mean, "std": std, "size": size, "transform_input": c.transform_input}
    if len(layers) > 1:
        run = entry.runner("extraction")  # engines.registry: runner.run_chunks, or ray_images.run_chunks_ray

        def run_layers(names, todo, writer, finished, widths):
            if entry.on_ray:  # as one layer below; the actors run all of them
                run(model=model if isinstance(model, str) else loaded.module, load=load, layer=names, pool=pool, dataset=dataset,
                    todo=todo, writer=writer, n=n, finished=finished, device=c.device, batch_size=batch_size, workers=workers,
                    autocast=autocast, autocast_dtype=c.autocast_dtype, channels_last=bool(channels_last), progress=progress,
                    ray_address=ray_address, layer_widths=widths)
                return
            run(loaded.module, layer=names, pool=pool, dataset=dataset, todo=todo, writer=writer, n=n, finished=finished,
                device=dev, batch_size=batch_size, workers=workers, autocast=use_autocast,
                channels_last=bool(channels_last), progress=progress, device_batches=decoding.batches,
                autocast_dtype=c.autocast_dtype, layer_widths=widths)

        base = {k: metadata[k] for k in ("model", "layer", "pooling", "data", "preprocessing")}
        def finish_image(writer: StoreWriter, meta: dict[str, Any]) -> None:
            skipped = writer.skipped()
            meta["skipped"] = {"count": len(skipped), "sources": [planned["source"][i] for i in skipped]}
            writer.finish(planned, meta)

        return extract_layers(layers, out, metadata_of=lambda name: {**base, "layer": name},
                               fingerprint_extra={k: v for k, v in fingerprint.items() if k not in base},
                               extra={k: v for k, v in metadata.items() if k not in base}, dtype=dtype, overwrite=overwrite,
                               protect=protect, chunks=[(k, s0, min(s0 + chunk_size, n)) for k, s0 in enumerate(range(0, n, chunk_size))],
                               n=n, progress=progress, run=run_layers, finish=finish_image)
    with StoreWriter(out, fingerprint=fingerprint, dtype=dtype, overwrite=overwrite, protect=protect) as writer:
        done = writer.completed()
        chunks = [(k, start, min(start + chunk_size, n)) for k, start in enumerate(range(0, n, chunk_size))]
        todo = [c for c in chunks if c[0] not in done]
        finished = sum(stop - start for k, start, stop in chunks if k in done)
        if finished:
            say(progress, f"resuming {out}: {finished} of {n} examples already done.")
        try:
            run = entry.runner("extraction")  # engines.registry: runner.run_chunks, or ray_images.run_chunks_ray
            if entry.on_ray:
                # Each actor loads a spec itself; a module object travels pickled. The dataset brings the preprocessing.
                run(model=model if isinstance(model, str) else loaded.module, load=load, layer=layer, pool=pool,
                               dataset=dataset, todo=todo, writer=writer, n=n, finished=finished, device=c.device,
                               batch_size=batch_size, workers=workers, autocast=autocast, autocast_dtype=c.autocast_dtype,
                               channels_last=bool(channels_last),
                               progress=progress, ray_address=ray_address)
            else:
                run(loaded.module, layer=layer, pool=pool, dataset=dataset, todo=todo, writer=writer, n=n, finished=finished,
                    device=dev, batch_size=batch_size, workers=workers, autocast=use_autocast,
                    channels_last=bool(channels_last), progress=progress, device_batches=decoding.batches,
                    autocast_dtype=c.autocast_dtype)
        except KeyboardInterrupt:
            say(True, f"interrupted; the complete chunks are kept in {writer.partial}. Run the same command again to resume.")
            raise
        skipped = writer.skipped()
        # Unreadable files are listed, not fatal; the store holds the readable ones in data order.
        metadata["skipped"] = {"count": len(skipped), "sources": [planned["source"][i] for i in skipped]}
        writer.finish(planned, metadata)
    return opened_store(out, progress)


def _extract_text(loaded, layer: str | list[str], data: Any, out: Path, c: ExtractConfig, dev, overwrite: bool, progress: bool, *,
                  entry: EngineEntry, ray_address: str | None = None, spec: Any = None) -> ActivationStore | dict[str, ActivationStore]:
    """``extract`` for a language model: documents or tokens of a corpus, chunks of whole documents."""
    from ..models.language import resolve_layer
    from ..sources.text import read_corpus
    from .textrun import check_max_tokens, plan_text, run_text_chunks

    if not isinstance(data, (str, os.PathLike)):
        raise ConceptvecError(f"a language model reads a text corpus from a path (.txt, .jsonl, .csv, .parquet, a folder of .txt "
                              f"files or a saved dataset), got {type(data).__name__}.")
    if c.class_index is not None:
        raise ConceptvecError("--class-index labels ImageNet class folders; label a text corpus with --label-column or sub-folders.")
    if c.decode == "device":
        raise ConceptvecError("--decode device decodes images on the GPU; a language model reads token ids. Leave --decode out.")
    layers = [layer] if isinstance(layer, str) else layer
    paths = {name: resolve_layer(loaded.module, name) for name in layers}
    layer = layers[0]
    path = paths[layer]
    if c.background != ExtractConfig().background:  # recorded and never applied would be an ignored input
        raise ConceptvecError("--background composites transparent images; a language model reads text. Leave --background out.")
    max_tokens = check_max_tokens(loaded, c.max_tokens)
    corpus = read_corpus(data, text_column=c.text_column, label_column=c.label_column, per_class=c.per_class, seed=c.seed)
    plan = plan_text(loaded, corpus, examples=c.examples, max_tokens=max_tokens, keep_special_tokens=c.keep_special_tokens,
                     chunk_size=c.chunk_size)
    data_desc = {**plan.describe, "examples_sha256": plan.digest()}
    preprocessing = {**loaded.preprocessing, "examples": c.examples, "max_tokens": max_tokens,
                     "keep_special_tokens": c.keep_special_tokens}
    metadata = {"model": loaded.describe(), "layer": path, "pooling": "none (one row per token)" if c.examples == "tokens" else c.pool,
                "data": data_desc, "preprocessing": preprocessing}
    if path != layer:
        metadata["layer_asked"] = layer
    existing = existing_store(out, metadata, c.dtype, overwrite) if len(layers) == 1 else None
    if existing is not None:
        say(progress, f"{out} is already complete for this model, layer and data; nothing to do.")
        return existing
    fingerprint = {**metadata, "chunk_size": int(c.chunk_size)}
    use_autocast = bool(c.autocast and dev.type == "cuda")
    metadata.update({"device": str(dev), "batch_size": c.batch_size, "batch_tokens": c.batch_tokens, "autocast": use_autocast,
                     **({"autocast_dtype": c.autocast_dtype} if use_autocast else {}), "engine": entry.name,
                     "chunk_size": int(c.chunk_size)})
    skipped_rows = plan.describe["skipped_rows"]
    if len(layers) > 1:
        base = {k: v for k, v in metadata.items() if k in ("model", "layer", "pooling", "data", "preprocessing")}

        def metadata_of(name: str) -> dict[str, Any]:
            meta = {**base, "layer": paths[name]}
            if paths[name] != name:
                meta["layer_asked"] = name
            return meta

        def run_text(names, todo, writer, finished, widths):
            if entry.on_ray:
                from .ray_text import run_text_chunks_ray

                run_text_chunks_ray(model=spec, weights=c.weights, layer=[paths[name] for name in names], plan=plan, todo=todo,
                                    writer=writer, examples=c.examples, pool=c.pool, device=c.device, batch_size=c.batch_size,
                                    batch_tokens=c.batch_tokens, workers=c.workers, autocast=c.autocast,
                                    autocast_dtype=c.autocast_dtype, progress=progress, finished=finished, ray_address=ray_address,
                                    layer_widths=widths)
                return
            run_text_chunks(loaded, [paths[name] for name in names], plan, todo, writer, examples=c.examples, pool=c.pool, dev=dev,
                            batch_size=c.batch_size, batch_tokens=c.batch_tokens, use_autocast=use_autocast, progress=progress,
                            finished=finished, autocast_dtype=c.autocast_dtype, layer_widths=widths)

        def finish_text(writer: StoreWriter, meta: dict[str, Any]) -> None:
            meta["skipped"] = {"count": skipped_rows["count"], "sources": [r["id"] for r in skipped_rows["rows"]]}
            writer.finish(plan.examples, meta, documents=plan.documents if c.examples == "tokens" else None)

        extra = {k: v for k, v in metadata.items() if k not in base and k != "layer_asked"}
        return extract_layers(layers, out, metadata_of=metadata_of, fingerprint_extra={"chunk_size": int(c.chunk_size)},
                               extra=extra, dtype=c.dtype, overwrite=overwrite, protect=[data], chunks=list(plan.chunks),
                               n=plan.n_rows, progress=progress, run=run_text, finish=finish_text)
    with StoreWriter(out, fingerprint=fingerprint, dtype=c.dtype, overwrite=overwrite, protect=[data]) as writer:
        done = writer.completed()
        todo = [ch for ch in plan.chunks if ch[0] not in done]
        finished = sum(ch[2] - ch[1] for ch in plan.chunks if ch[0] in done)
        if finished:
            say(progress, f"resuming {out}: {finished} of {plan.n_rows} rows already done.")
        try:
            if entry.on_ray:
                from .ray_text import run_text_chunks_ray

                run_text_chunks_ray(model=spec, weights=c.weights, layer=path, plan=plan, todo=todo, writer=writer,
                                    examples=c.examples, pool=c.pool, device=c.device, batch_size=c.batch_size,
                                    batch_tokens=c.batch_tokens, workers=c.workers, autocast=c.autocast,
                                    autocast_dtype=c.autocast_dtype, progress=progress, finished=finished, ray_address=ray_address)
            else:
                run_text_chunks(loaded, path, plan, todo, writer, examples=c.examples, pool=c.pool, dev=dev, batch_size=c.batch_size,
                                batch_tokens=c.batch_tokens, use_autocast=use_autocast, progress=progress, finished=finished,
                                autocast_dtype=c.autocast_dtype)
        except KeyboardInterrupt:
            say(True, f"interrupted; the complete chunks are kept in {writer.partial}. Run the same command again to resume.")
            raise
        metadata["skipped"] = {"count": skipped_rows["count"], "sources": [r["id"] for r in skipped_rows["rows"]]}
        writer.finish(plan.examples, metadata, documents=plan.documents if c.examples == "tokens" else None)
    return opened_store(out, progress)


def _config(config: ExtractConfig | None, given: dict[str, Any]) -> ExtractConfig:
    """``config``, or one made from the keyword options; both at once only when the keywords are left at their defaults."""
    names = [f.name for f in fields(ExtractConfig)]
    keywords = {k: given[k] for k in names}
    if config is None:
        return ExtractConfig(**keywords)
    if not isinstance(config, ExtractConfig):
        raise ConceptvecError(f"config must be a conceptvec.ExtractConfig, got {type(config).__name__}.")
    defaults = ExtractConfig()
    clash = [k for k in names if keywords[k] != getattr(defaults, k)]
    if clash:
        raise ConceptvecError(f"give the options either in config= or as keywords, not both (keywords given: {', '.join(clash)}); "
                              f"use config.replace({clash[0]}=...) to change one.")
    return config
