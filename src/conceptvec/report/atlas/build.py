"""Writing the layer atlas: an offline site for every scanned neuron of a layer (see ``docs/atlas.md``).

``write_atlas`` writes ``out/``::

    index.html, atlas.js, atlas.css   one page and its script and style (package data, the same for every atlas)
    data/overview.js                   the layer: every neuron's row, the histogram, the map, the shared concepts
    data/n00035.js                     one small file per scanned neuron (by its row in the scan), loaded on demand
    sprites/s0000.jpg                  the thumbnails, packed (``thumbs``)
    thresholds.png                     the thresholds figure of the layer (``thresholds``)
    atlas.json                         what the atlas was made from (marks the folder as an atlas)

Data files are scripts that hand their data to the page (``ATLAS.overview = ...``, ``ATLAS.neuron(...)``),
because a page opened from ``file://`` may load scripts from its folder but not fetch files. The page draws
everything from them with one template; every text from the data is set as text, never as HTML.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from ...core.options import whole_number
from ...core.evidence import count_words, short_verdict
from ...core.reference import PAPER_HISTOGRAM
from ...errors import ConceptvecError
from ...progress import progress_bar
from ...scan.result import CONCEPT_TABLE_FILE, ScanResult
from ...scan.shared import SharedConcepts, shared_concepts
from ...storage.atomic import atomic_directory, input_path, refuse_existing, refuse_inside, write_json
from ...storage.provenance import environment
from ...storage.rundir import RunDir
from ...storage.store import ActivationStore
from ..examples import Examples, examples_for_store
from ..pages import describe, scan_page
from ..figures.tree import cut_height
from .layout import MAP_METHODS, concept_map
from .beside import causal_by_row, dictionary_by_row
from .thresholds import thresholds_figure
from .thumbs import Thumbs

ATLAS_FILE = "atlas.json"
DATA = "data"
STATIC = ("index.html", "atlas.js", "atlas.css")
STRIP = 8  # top examples shown in the overview's row
LABELS = 3  # commonest labels named per concept
PROJECTING = 12  # maximally projecting examples shown per concept


def neuron_file(pos: int) -> str:
    """The data file of the scan's row ``pos``."""
    return f"n{int(pos):05d}.js"


def write_atlas(run_or_scan: str | os.PathLike | ScanResult, *, out: str | os.PathLike | None = None,
                examples: Examples | None = None, shared: bool | SharedConcepts = True, map_method: str = "auto",
                overwrite: bool = True, progress: bool = True, seed: int = 0) -> Path:
    """Write the atlas of a scanned layer and return the path of its ``index.html``.

    Parameters
    ----------
    run_or_scan : path or ScanResult
        A run directory holding ``scan/`` (``conceptvec scan --out RUN/scan``), a scan folder, or a ScanResult
        whose store is where it recorded.
    out : path, optional
        The atlas folder; default ``<run>/atlas`` (``<scan>/../atlas`` for a scan). An earlier atlas there (it
        holds ``atlas.json``) is replaced as a whole, atomically; any other folder is refused.
    examples : Examples, optional
        How examples are shown; default chosen from the store's data kind (images, text).
    shared : bool or SharedConcepts
        Find shared concepts (``cv.shared_concepts``) for the shared view and each concept's neighbours; taken from
        the scan folder when they were saved there, or given (e.g. with other settings).
    map_method : {"auto", "umap", "pca"}
        How the map of concept vectors is laid out: UMAP (umap-learn) or the first two principal components;
        ``auto`` is UMAP from 15 up to 50,000 concepts (``layout.UMAP_UP_TO``), PCA otherwise.
    overwrite : bool
        Replace an earlier atlas at ``out`` (never anything else).
    progress : bool
    seed : int
        Seed of the map's layout and of the shared concepts' baseline.
    """
    if map_method not in MAP_METHODS:  # before any work
        raise ConceptvecError(f"map method must be one of {', '.join(MAP_METHODS)}, got {map_method!r}.")
    seed = whole_number("seed (--seed)", seed, 0)
    scan, scan_dir, run = _open(run_or_scan)
    if out is None:
        if scan_dir is None:
            raise ConceptvecError("give out= for the atlas of a ScanResult (it has no folder of its own): cv.write_atlas(scan, out=DIR).")
        out = run.path / "atlas" if run is not None else scan_dir.parent / "atlas"
    if scan.store_path is None or not Path(scan.store_path).exists():
        raise ConceptvecError(f"the scan's store ({scan.store_path}) is not at hand; the atlas shows its examples. "
                              "Load the scan with cv.ScanResult.load(path, acts=store) from the store's folder.")
    store = ActivationStore.open(scan.store_path)
    if scan.activations is None:
        scan.with_activations(store)
    out = Path(out)
    if examples is None:
        examples = examples_for_store(store)
    protect = [scan_dir, store.path, run.path if run is not None else None]
    outside = (run.path if run is not None else scan_dir.parent if scan_dir is not None else out.parent) / "atlas"
    refuse_inside(out, [(scan_dir, "scan"), (store.path, "activation store")],
                  fix=f"Write the atlas beside them: --out {outside} (out=).")
    refuse_existing(out, overwrite=overwrite, what="atlas", marker=ATLAS_FILE, protect=protect)  # before the work
    found = _shared(scan, scan_dir, shared=shared, progress=progress, seed=seed)
    with atomic_directory(out, overwrite=overwrite, what="atlas", marker=ATLAS_FILE, protect=protect) as tmp:
        for name in STATIC:
            (tmp / name).write_text(files(__package__).joinpath("static", name).read_text(encoding="utf-8"), encoding="utf-8")
        (tmp / DATA).mkdir()
        thumbs = Thumbs(examples, tmp)
        reports = _reports(run, scan, out)
        # the folders other commands' outputs of this layer would be in: the run's (RUN/thresholds, RUN/dictionary-comparison),
        # or the scan's parent
        near = [run.path] if run is not None else [scan_dir.parent] if scan_dir is not None else []
        atoms, dictionary = dictionary_by_row(scan, near)
        beside = {"causal": causal_by_row(scan, run, store), "dictionary": atoms}
        overview = _overview(scan, store, found, thumbs, examples, reports, tmp, scan_dir, beside, progress=progress,
                             map_method=map_method, seed=seed)
        overview["thumbs"] = thumbs.close()
        overview["thresholds"] = thresholds_figure(scan, store, near, tmp)
        overview["dictionary"] = dictionary
        _script(tmp / DATA / "overview.js", "ATLAS.overview = ", overview)
        write_json(tmp / ATLAS_FILE, {"scan": str(scan_dir.resolve()) if scan_dir else None, "store": str(store.path.resolve()),
                                      "store_id": store.store_id, "n_neurons": len(scan), "shared": found is not None,
                                      "map": overview["map"]["method"], **environment()})
    return out / "index.html"


def _open(run_or_scan: Any) -> tuple[ScanResult, Path | None, RunDir | None]:
    if isinstance(run_or_scan, ScanResult):
        return run_or_scan, None, None
    path = input_path(run_or_scan, what="write_atlas", fix="a run folder holding scan/, a scan folder, or a ScanResult")
    if (path / "scan.json").is_file():
        run = RunDir(path.parent) if path.name == RunDir.SCAN else None
        return ScanResult.load(path), path, run
    run = RunDir(path)
    if not run.scan.is_dir():
        raise ConceptvecError(f"{path} holds no scan ({run.scan} not found); scan the layer first: "
                              f"`conceptvec scan STORE --out {run.scan}`.")
    return ScanResult.load(run.scan), run.scan, run


def _shared(scan: ScanResult, scan_dir: Path | None, *, shared: bool | SharedConcepts, progress: bool,
            seed: int) -> SharedConcepts | None:
    if isinstance(shared, SharedConcepts):
        if len(shared.group) != len(scan.concept_vectors):
            raise ConceptvecError(f"the shared concepts given are of {len(shared.group)} concepts, the scan has "
                                  f"{len(scan.concept_vectors)}; make them with cv.shared_concepts(scan).")
        return shared
    if not shared:
        return None
    if scan_dir is not None:
        try:
            saved = SharedConcepts.load(scan_dir)
            if len(saved.group) == len(scan.concept_vectors):
                return saved
        except (ConceptvecError, OSError, KeyError):
            pass
    found = shared_concepts(scan, progress=progress, seed=seed)
    if scan_dir is not None:
        found.save(scan_dir)  # beside the scan, for Python and the next atlas
    return found


def _reports(run: RunDir | None, scan: ScanResult, out: Path) -> dict[int, str]:
    """Relative links to the full report pages of the run (``conceptvec report``), by scan row."""
    if run is None or not run.report.is_dir():
        return {}
    links = {}
    for pos, n in enumerate(scan.neurons.tolist()):
        page = run.report / f"{scan_page(scan, n)}.html"
        if page.is_file():
            links[pos] = os.path.relpath(page, out.resolve() if out.exists() else out.parent.resolve() / out.name)
    return links


def _script(path: Path, prefix: str, data: Any, suffix: str = ";\n") -> None:
    # json.dumps escapes no "<", so "</script>" in a label could not end anything here: the file is a script of its own
    path.write_text(prefix + json.dumps(data, separators=(",", ":"), allow_nan=False) + suffix, encoding="utf-8")


def _finite(x: Any) -> Any:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def _overview(scan: ScanResult, store: ActivationStore, found: SharedConcepts | None, thumbs: Thumbs, examples: Examples,
              reports: dict[int, str], root: Path, scan_dir: Path | None, beside: dict[str, dict[int, Any]], *, progress: bool,
              map_method: str, seed: int) -> dict[str, Any]:
    names = store.label_names
    n_concepts, live, offsets = scan.n_concepts, scan.live, scan.concept_offsets
    outliers = scan.params.outliers(scan.kmeans_labels, scan.centroid_sq_distances)
    concept_rows = _concept_rows(scan, scan_dir)
    agree = scan.stability["count_agreement"] if scan.stability is not None else None
    reappear = scan.stability["concept_reappearance"] if scan.stability is not None else None
    evidence = scan.evidence()  # the checks behind each count (core.evidence): the words say which groups are concepts
    rows: dict[str, list[Any]] = {k: [] for k in ("neuron", "concepts", "evidence", "C", "split_p", "live", "agreement", "unstable",
                                                  "outliers", "shared", "causal", "causal_of", "atom_cos", "labels", "strip", "report")}
    concept_labels: list[str] = []
    concept_thumbs: list[Any] = []
    with progress_bar("neurons", disable=not progress) as bar:
        task = bar.add_task("atlas", total=len(scan))
        for pos, n in enumerate(scan.neurons.tolist()):
            a, b = int(offsets[pos]), int(offsets[pos + 1])
            top, lab = scan.top_indices[pos], scan.labels[pos]
            # an unlabelled example's name is "": not a label to count
            per_concept = [Counter(str(names[e]) for e in top[lab == j] if str(names[e])) for j in range(b - a)]
            firsts = [c.most_common(1)[0][0] if c else "" for c in per_concept]
            concept_labels += firsts
            for j in range(b - a):  # the map's hover shows a concept's first member (a caption for text: snippets are long)
                first = top[lab == j][:1]
                concept_thumbs.append(None if not len(first) else
                                      thumbs.ref(first[0], n) if thumbs.kind == "image" else examples.caption(int(first[0])))
            rows["neuron"].append(int(n))
            rows["concepts"].append(int(n_concepts[pos]))
            rows["evidence"].append(count_words(int(n_concepts[pos]), evidence[pos]) if live[pos] else "not live")
            rows["C"].append(int(scan.n_agglomerative[pos]))
            # auto's p-value of the neuron's first split (None with a fixed threshold); 3 significant digits, not
            # _finite's 4 decimals, which would round every clear split to 0
            p_first = None if scan.first_p is None else float(scan.first_p[pos])
            rows["split_p"].append(float(f"{p_first:.3g}") if p_first is not None and np.isfinite(p_first) else None)
            rows["live"].append(bool(live[pos]))
            rows["agreement"].append(_finite(agree[pos]) if agree is not None else None)
            rows["unstable"].append(int(np.sum(reappear[a:b] < scan.UNSTABLE)) if reappear is not None else None)
            rows["outliers"].append(int(outliers[pos].sum()))
            rows["shared"].append(int(np.sum(found.group[a:b] >= 0)) if found is not None else None)
            causal = beside["causal"].get(pos)  # concepts that `conceptvec causal` found selective; None where it was not run
            rows["causal"].append(None if causal is None else causal["n_selective"])
            rows["causal_of"].append(None if causal is None else len(causal["concepts"]))
            atoms = beside["dictionary"].get(pos)  # the lowest cosine of a concept with its matched atom (compare-dictionary)
            cosines = [c["cosine"] for c in atoms["concepts"] if c["cosine"] is not None] if atoms is not None else []
            rows["atom_cos"].append(min(cosines) if cosines else None)
            rows["labels"].append(" · ".join(f for f in firsts if f))
            rows["strip"].append([thumbs.ref(e, n) for e in top[:STRIP]])
            rows["report"].append(reports.get(pos))
            neuron = _neuron(scan, pos, n, per_concept, found, thumbs, concept_rows, reports.get(pos))
            for concept, checked in zip(neuron["concepts"], evidence[pos]):
                concept["evidence"], concept["verdict"] = short_verdict(checked), checked["verdict"]
            neuron["causal"], neuron["dictionary"] = causal, beside["dictionary"].get(pos)
            _script(root / DATA / neuron_file(pos), f"ATLAS.neuron({pos},", neuron, ");\n")
            bar.advance(task)
    counts = n_concepts[live]
    meta = store.metadata
    layer = str(meta.get("layer") or "")
    return {
        "title": f"{describe(meta)}: {len(scan)} {'neurons' if scan.kind == 'neurons' else 'directions'} ({scan.kind})",
        "kind": scan.kind,
        "layer": layer,
        "params": scan.params.to_dict(),
        "rows": rows,
        "histogram": {str(k): int(v) for k, v in enumerate(np.bincount(counts, minlength=1))},
        "not_live": int(np.sum(~live)),
        # the authors' histogram is theirs for Inception V3's Mixed_7b only
        "authors": {str(k): v for k, v in PAPER_HISTOGRAM.items()} if layer.endswith("Mixed_7b") else None,
        "map": concept_map(scan.concept_vectors, method=map_method, seed=seed) | {
            "pos": np.repeat(np.arange(len(scan)), n_concepts).tolist(),
            "concept": np.concatenate([np.arange(int(k)) for k in n_concepts] or [np.zeros(0, int)]).tolist(),
            "label": concept_labels,
            "thumb": concept_thumbs,
        },
        "shared": None if found is None else {
            "level": round(found.level, 4), "params": found.params,
            "baseline": found.baseline_groups.tolist(),
            "groups": [{"concepts": [[int(np.searchsorted(scan.neurons, n)), c] for n, c in zip(g["neurons"], g["concept_of_neuron"])],
                        "mean_cosine": round(g["mean_cosine"], 4), "min_cosine": round(g["min_cosine"], 4),
                        "overlap": round(g["overlap"], 4), "labels": list(g["labels"])} for g in found.groups],
        },
    }


def _concept_rows(scan: ScanResult, scan_dir: Path | None) -> dict[str, np.ndarray] | None:
    """The scan's concept table (members' mean cosines), when it was saved in the scan's folder; None otherwise."""
    table = scan_dir / CONCEPT_TABLE_FILE if scan_dir is not None else None
    if table is None or not table.is_file():
        return None
    t = pq.read_table(table, columns=["cos_concept", "cos_nearest_other"])
    if t.num_rows != len(scan.concept_vectors):
        return None
    return {c: t.column(c).to_numpy() for c in t.column_names}


def _neuron(scan: ScanResult, pos: int, n: int, per_concept: list[Counter], found: SharedConcepts | None, thumbs: Thumbs,
            concept_rows: dict[str, np.ndarray] | None, report: str | None) -> dict[str, Any]:
    a = int(scan.concept_offsets[pos])
    top, lab = scan.top_indices[pos], scan.labels[pos]
    outliers = scan.params.outliers(scan.kmeans_labels[pos : pos + 1], scan.centroid_sq_distances[pos : pos + 1])[0]
    reappear = scan.stability["concept_reappearance"] if scan.stability is not None else None
    concepts = []
    for j, counts in enumerate(per_concept):
        k = a + j
        near = []
        if found is not None:
            for m, cos in zip(found.neighbours[k], found.neighbour_cosines[k]):
                if m >= 0:
                    p = int(np.searchsorted(scan.concept_offsets, m, side="right") - 1)
                    near.append([p, int(m - scan.concept_offsets[p]), _finite(cos)])
        proj = []
        if scan.projecting is not None:
            proj = [[int(e), thumbs.ref(e, n), _finite(v)] for e, v in
                    zip(scan.projecting["indices"][k][:PROJECTING], scan.projecting["projections"][k][:PROJECTING])]
        concepts.append({
            "size": int(np.sum(lab == j)),
            "labels": [[name, c] for name, c in counts.most_common(LABELS)],
            "reappearance": _finite(reappear[k]) if reappear is not None else None,
            "cos_concept": _finite(concept_rows["cos_concept"][k]) if concept_rows is not None else None,
            "cos_nearest_other": _finite(concept_rows["cos_nearest_other"][k]) if concept_rows is not None else None,
            "group": int(found.group[k]) if found is not None else -1,
            "near": near,
            "projecting": proj,
        })
    return {
        "neuron": int(n), "pos": pos, "C": int(scan.n_agglomerative[pos]), "live": bool(scan.live[pos]),
        "threshold": cut_height(scan.params, scan.linkage[pos], int(scan.n_agglomerative[pos])),
        "linkage": [[int(x), int(y), round(float(h), 5)] for x, y, h in scan.linkage[pos][:, :3]],
        "top": [[int(e), _finite(s), int(c) if c >= 0 else (-2 if o else -1), thumbs.ref(e, n), str(thumbs.examples.caption(int(e)))]
                for e, s, c, o in zip(top, scan.top_scores[pos], lab, outliers)],
        "concepts": concepts,
        "report": report,
    }

