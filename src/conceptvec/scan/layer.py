"""The paper's method over every neuron of a layer (or many directions), vectorised and parallel.

Notation as in ``scan.disentangle``: A is the activation matrix, shape (n_examples, n_units); a scan runs
the method from m starting directions (neurons, SVD directions, or vectors from a file) and keeps,
for each, the N = ``params.top`` top examples and the method's results (``ScanResult``).

Where the time goes, and what is done about it:

1. Top examples: one pass over A in blocks of rows (``core.streaming``) keeps, per column, the N
   best candidates in ``top_k_desc`` order, so the selection is the one ``disentangle`` makes.
2. Steps 2-4 (``core.steps.cluster_top``): per neuron, in batches run by an engine (``engine``).
3. Maximally projecting examples of all concepts: one streamed product A @ V.T.

With ``out=`` the scan keeps its progress in ``<out>.partial`` (``resume``) and a call again continues.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.arrays import as_matrix, read_rows
from ..core.live import live_mask
from ..core.fdr import bh_discoveries, layer_error
from ..core.layernull import LayerNull, layer_null
from ..core.steps import cluster_top
from ..core.metrics import unit_vectors
from ..core.options import whole_number
from ..core.params import Params
from ..core.scale import SCALE_HINT, warn_scale
from ..core.selection import parse_neurons
from ..core.stability import MAX_STABILITY, concept_stability, resampling
from ..core.streaming import TopK, block_rows, row_blocks, top_examples_and_floors
from ..errors import ConceptvecError
from ..progress import progress_bar
from ..storage.atomic import check_replaceable, output_path, read_json, read_manifest, refuse_existing, writer_lock
from ..storage.provenance import environment
from ..storage.store import ActivationStore
from .directions import dictionary_directions, fingerprint_directions, resolve_directions
from .engine import BATCH, BatchResult, BatchTask, Engine, make_engine
from .result import SCAN_FILE, ScanResult
from .resume import ScanPartial, scan_call


def projecting_and_cosine(
    acts: np.ndarray | ActivationStore, vectors: np.ndarray, *, top: int = 100, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``top`` maximally projecting examples of each vector, with their cosine similarity, from one streamed A @ V.T.

    The selection is ``core.metrics.maximally_projecting``'s; the row norms for the cosines come from the same pass.

    Returns
    -------
    indices : array of shape (k, top), most projecting first
    projections : array of shape (k, top), on the normalised vectors
    cosine : array of shape (k, top), cosine similarity of each example with the vector (0 for a zero example)
    """
    matrix, _ = as_matrix(acts)
    v = unit_vectors(vectors) if len(vectors) else np.empty((0, matrix.shape[1]))
    top = min(top, matrix.shape[0])
    if len(v) == 0:
        empty = np.empty((0, top))
        return empty.astype(np.int64), empty, empty.copy()
    selector = TopK(len(v), top)
    norms = np.empty(matrix.shape[0])
    # Keep the (rows, k) product block near BLOCK_BYTES whatever the number of concepts.
    rows = min(block_rows(matrix), block_rows(matrix, row_bytes=8 * len(v)))
    for start, block in row_blocks(matrix, rows=rows, description="maximally projecting", progress=progress):
        norms[start : start + len(block)] = np.linalg.norm(block, axis=1)
        selector.update(block @ v.T, start)
    idx, proj = selector.result()
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = proj / norms[idx]
    cos[norms[idx] == 0] = 0.0
    return idx, proj, cos


def scan_layer(
    acts: np.ndarray | ActivationStore,
    *,
    params: Params | None = None,
    neurons: Any = None,
    workers: int | None = None,
    directions: Any = "neurons",
    projecting: bool = True,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    engine: str | Engine = "local",
    ray_address: str | None = None,
    stability: int = 0,
) -> ScanResult:
    """Run the paper's method on every neuron of a layer (or on many directions) at once.

    The result for each neuron equals ``disentangle(acts, neuron=j, params=params)``: the same top
    examples, clusters, labels and concept vectors (it runs the same ``cluster_top``).

    Parameters
    ----------
    acts : array of shape (n_examples, n_units), or an ActivationStore
    params : Params, optional
        Defaults to the paper's ``Params()``.
    neurons : None, int, sequence of ints, or text such as ``"0-99,512"``
        Which neurons (or which rows of the directions) to scan; None scans all.
    workers : int, optional
        Workers for steps 2-4 (``engines.registry``: one meaning on every engine); default: the usable CPUs
        (on Ray, the cluster's). 0 or 1: one worker (locally, this process alone).
    directions : 'neurons', 'svd:K', a path, or an array of shape (k, n_units)
        Starting directions: the neurons (default); the top K right singular vectors of A; or
        vectors from a .npy / .safetensors file or scan / ConceptSet directory (e.g. another run's
        concept vectors, or CAVs). Top examples of a direction are ranked by projection on it.
    projecting : bool
        Also find the maximally projecting examples of every concept (one streamed A @ V.T).
    out : path, optional
        Directory to write the scan to. Progress is kept in ``<out>.partial`` chunk by chunk, so a
        killed scan called again continues from the neurons already done; a finished ``out`` made by
        the same call is read back instead of recomputed (``result.reused``).
    overwrite : bool
        Replace an existing ``out`` made by a different call.
    progress : bool
        Show progress bars.
    engine : 'local', 'ray', a registered name, or an Engine object
        Where steps 2-4 run (``engines.registry.ENGINES``); the result does not depend on it, bit for bit.
    ray_address : str, optional
        The Ray cluster for ``engine='ray'``; default ``RAY_ADDRESS``, else a local Ray.
    stability : int
        Resampling runs per neuron (``core.stability.concept_stability``, seeded with ``params.seed``):
        each concept's share of runs it comes back in, and each neuron's count agreement, in
        ``result.stability`` and the tables. 0 (the default) skips it; it multiplies steps 2-4's time by about B.
    """
    params = params or Params()
    if not isinstance(params, Params):
        raise ConceptvecError(f"params must be a conceptvec.Params, got {type(params).__name__}.")
    if params.representation == "contributions":
        raise ConceptvecError(
            "a scan's neurons have no contributions of their own (a neuron's is its activation alone): leave "
            "--representation out, or run cv.disentangle(acts, direction=..., params=Params(representation='contributions')) "
            "on the directions you want.")
    if params.representation != "activations":
        raise ConceptvecError(
            f"a scan clusters the layer's activations; representation={params.representation!r} needs the model for every "
            f"direction: run cv.disentangle(..., attribution=cv.LayerAttribution(...)) on the neurons you want, or leave "
            f"--representation out."
        )
    matrix, source = as_matrix(acts)
    n_examples, n_units = matrix.shape
    if params.top > n_examples:
        raise ConceptvecError(
            f"top={params.top} is larger than the number of examples ({n_examples}); use top <= {n_examples}."
        )
    stability = whole_number("stability", stability, 0, MAX_STABILITY, why="each run clusters every neuron again; 20 to 100 runs tell which concepts come back")
    runner = make_engine(engine, workers=workers, ray_address=ray_address)
    if isinstance(directions, str) and directions.startswith("dictionary:"):
        dictionary_directions(directions, n_units)  # checked now: a missing dictionary is refused before any work
    elif isinstance(directions, str) and directions not in ("neurons",) and not directions.startswith("svd") and not Path(directions).exists():
        raise ConceptvecError(
            f"directions {directions!r} is not 'neurons', 'svd:K', 'dictionary:DIR', or an existing .npy / .safetensors file."
        )

    if neurons is not None:
        parse_neurons(neurons, None)  # the form now; the bounds once the directions are known
    call = scan_call(params=params, neurons=neurons, directions=fingerprint_directions(directions, n_units),
                     projecting=projecting, matrix=matrix, source=source)
    if stability:  # scans without it keep the call they always had
        call["stability"] = stability
    out_path = output_path(out, what="scan") if out is not None else None
    if out_path is not None and out_path.exists() and not out_path.is_dir():
        raise ConceptvecError(f"{out_path} is a file, not a folder; give the scan a folder to be written to (out=, --out).")
    if out_path is not None and not overwrite:
        if (out_path / SCAN_FILE).exists() and read_json(out_path / SCAN_FILE).get("call") == call:
            result = ScanResult.load(out_path, acts=matrix)
            result.reused = True
            return result
        if out_path.exists() and any(out_path.iterdir()):
            if (read_manifest(out_path) or {}).get("what") != "scan":
                check_replaceable(out_path, what="scan")  # not a scan: say why --overwrite would not help either
            raise ConceptvecError(
                f"{out_path} already exists and holds a different scan (or other files). Choose another output folder, "
                f"or pass --overwrite (overwrite=True) to replace the scan."
            )
    if out_path is not None:
        refuse_existing(out_path, overwrite=overwrite, what="scan", marker=SCAN_FILE, protect=[source.get("store")])

    kind, vectors = resolve_directions(directions, matrix, params=params, progress=progress)
    m_total = n_units if vectors is None else len(vectors)
    selected = parse_neurons(neurons, m_total, what="neuron" if vectors is None else "direction")

    with writer_lock(out_path) if out_path is not None else contextlib.nullcontext():  # one writer per --out
        return _scan(matrix, source, params=params, selected=selected, kind=kind, vectors=vectors, call=call,
                     out_path=out_path, projecting=projecting, progress=progress, runner=runner, stability=stability)


PER_NEURON = ("linkage", "n_agglomerative", "kmeans_labels", "centroid_sq_distances", "labels", "n_concepts")


def first_split_control(matrix: np.ndarray, top_indices: np.ndarray, top_scores: np.ndarray, arrays: dict[str, np.ndarray],
                        concepts: dict[str, list[np.ndarray]], params: Params, stability: int = 0,
                        null: LayerNull | None = None, floors: np.ndarray | None = None) -> dict[str, Any]:
    """With ``params.fdr``: withdraw the first splits that are no Benjamini-Hochberg discovery over the live neurons
    (those neurons are clustered again with C = 1, in place in ``arrays`` and ``concepts``); the layer's error report.
    ``floors`` (m,): each neuron's floor (``core.live``)."""
    live = live_mask(top_scores, floors)
    p = np.where(live, arrays["first_p"], np.nan)
    withdrawn: list[int] = []
    if params.fdr is not None:
        found = bh_discoveries(p, params.fdr)
        withdrawn = np.flatnonzero(live & (arrays["n_agglomerative"] > 1) & ~found).tolist()
        for i in withdrawn:
            x = read_rows(matrix, top_indices[i])
            one = cluster_top(x, params, n_clusters=1)
            if stability:
                st = concept_stability(x, one["labels"], params=params, runs=stability, seed=params.seed, layer_null=null)
                one["concept_reappearance"], arrays["count_agreement"][i] = st.reappearance, st.count_agreement
            for key in PER_NEURON:
                arrays[key][i] = len(one["concept_vectors"]) if key == "n_concepts" else one[key]
            for key in concepts:
                concepts[key][i] = one[key]
    report = layer_error(p[live], (arrays["n_agglomerative"] > 1)[live], significance=params.significance, fdr=params.fdr)
    if null is not None:
        report["rule"] = f"{report['rule']}; first splits against {len(null.shares)} random directions of the layer"
    return {**report, "withdrawn": len(withdrawn)}


def _scan(matrix: np.ndarray, source: dict[str, Any], *, params: Params, selected: np.ndarray, kind: str,
          vectors: np.ndarray | None, call: dict[str, Any], out_path: Path | None, projecting: bool, progress: bool,
          runner: Engine, stability: int = 0) -> ScanResult:
    """Steps 1-4 for the ``selected`` neurons (or rows of ``vectors``), resumable in ``<out_path>.partial``."""
    n_examples, n_units = matrix.shape
    # Params(null="layer"): drawn once for the layer (seeded, so a resumed scan draws the same null); before the
    # partial folder is made, so that a layer it refuses leaves nothing behind
    null = layer_null(matrix, params=params) if params.auto_distance and params.null == "layer" else None
    partial = ScanPartial(out_path, call) if out_path is not None else None
    provenance = {"activations": source, "n_examples": n_examples, "n_units": n_units, **environment()}
    if null is not None:
        provenance["layer_null"] = null.describe()

    # Step 1 for all neurons at once.
    top = partial.load_top() if partial else None
    saved_floors = top[2] if top is not None else None
    if top is None or saved_floors is None:  # (a partial scan written before floors were recorded: the pass again)
        dirs = vectors[selected] if vectors is not None else None
        # each unit's floor (core.live) from the same pass: whether its top reaches where it rests
        top_indices, top_scores, floors = top_examples_and_floors(matrix, params.top, neurons=selected if dirs is None else None,
                                                                  directions=dirs, progress=progress)
        if partial:
            partial.save_top(top_indices, top_scores, floors)
    else:
        top_indices, top_scores, floors = top[0], top[1], saved_floors

    # Steps 2-4, in batches of neurons; finished batches are saved when resumable.
    batches = [np.arange(s, min(s + BATCH, len(selected))) for s in range(0, len(selected), BATCH)]
    results: dict[int, dict[str, np.ndarray]] = partial.load_parts(len(batches)) if partial else {}
    resumed = sum(len(batches[b]) for b in results)
    todo = [b for b in range(len(batches)) if b not in results]
    tasks = [(b, BatchTask(params=params.to_dict(), top_indices=top_indices[batches[b]], n_units=n_units,
                                 stability=stability, null_shares=None if null is None else null.shares)) for b in todo]

    with progress_bar("neurons", disable=not progress, transient=True) as bar:
        task_id = bar.add_task("clustering", total=len(selected), completed=resumed)

        def finished(b: int, res: BatchResult) -> None:
            results[b] = res
            if partial:
                partial.save_part(b, res)
            bar.advance(task_id, len(batches[b]))

        runner.run(matrix, tasks, finished=finished)

    parts = [results[b] for b in range(len(batches))]
    arrays = {key: np.concatenate([p[key] for p in parts]) for key in PER_NEURON}
    arrays["first_p"] = np.concatenate([p.get("first_p", np.full(len(batches[b]), np.nan)) for b, p in enumerate(parts)])
    per_concept = ("concept_vectors", "kmeans_cluster_ids") + (("concept_reappearance",) if stability else ())
    concepts = {key: np.split(np.concatenate([p[key] for p in parts]), np.cumsum(arrays["n_concepts"])[:-1])
                for key in per_concept}
    if stability:
        arrays["count_agreement"] = np.concatenate([p["count_agreement"] for p in parts])
    layer_error = None
    if params.auto_distance:
        layer_error = first_split_control(matrix, top_indices, top_scores, arrays, concepts, params, stability=stability,
                                          null=null, floors=floors)
    n_concepts = arrays["n_concepts"]
    result = ScanResult(
        neurons=selected,
        top_indices=top_indices,
        top_scores=top_scores,
        floors=floors,
        linkage=arrays["linkage"], n_agglomerative=arrays["n_agglomerative"], kmeans_labels=arrays["kmeans_labels"],
        centroid_sq_distances=arrays["centroid_sq_distances"], labels=arrays["labels"],  # PER_NEURON but n_concepts
        concept_vectors=np.concatenate(concepts["concept_vectors"]) if len(selected) else np.empty((0, n_units)),
        concept_offsets=np.concatenate([[0], np.cumsum(n_concepts)]).astype(np.int64),
        kmeans_cluster_ids=np.concatenate(concepts["kmeans_cluster_ids"]).astype(np.int64) if len(selected)
        else np.empty(0, np.int64),
        first_p=arrays["first_p"],
        layer_error=layer_error,
        params=params,
        kind=kind,
        directions=vectors[selected] if vectors is not None else None,
        provenance=provenance,
        resumed=resumed,
        activations=matrix,
        stability=({"runs": stability, "resampling": resampling(params),
                    "concept_reappearance": np.concatenate(concepts["concept_reappearance"]).astype(np.float64),
                    "count_agreement": arrays["count_agreement"]} if stability else None),
    )
    if projecting:
        idx, proj, cos = projecting_and_cosine(matrix, result.concept_vectors, top=params.top, progress=progress)
        result.projecting = {"indices": idx, "projections": proj, "cosine": cos}
    warn_scale(result.scale_problems(), hint=SCALE_HINT)
    if partial:
        partial.finish(result)
    return result
