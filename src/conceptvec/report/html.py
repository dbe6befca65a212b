"""A static HTML report of a run directory that opens from ``file://`` with no network.

A run directory may hold::

    store/            the ActivationStore (else a ConceptSet's provenance names it)
    <name>/           any sub-directory with a conceptset.json: one neuron's (or direction's) ConceptSet
    scan/             a layer scan (conceptvec.scan.ScanResult), when issue 5's scan is installed

``write_report`` writes ``<run>/report/`` atomically::

    index.html        the run, the scan's figures and a neuron table sortable by concept count
    neuron_<n>.html   one page per neuron: provenance, the distance-threshold slider, every figure
    assets/thumbs/    one thumbnail per example, made once and shared by all pages
    assets/<page>/    that page's figure PNGs and data.json, the numbers behind every figure

Pages use no scripts, styles, fonts or images from elsewhere; every text from the data (ids,
labels, paths, metadata) is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..storage.atomic import atomic_directory, read_json, write_json
from ..storage.provenance import environment
from ..storage.conceptset import METADATA_FILE, ConceptSet
from ..errors import ConceptvecError, StoreError
from ..storage.store import ActivationStore
from . import figures as F
from .examples import Examples, examples_for_store

REPORT_DIR = "report"
ASSETS = "assets"
STORE_DIR = "store"
SCAN_DIR = "scan"
DPI = 100
MAX_DEFAULT_SCAN_PAGES = 12  # pages made from a scan when no --neurons are given; the rest are listed


def esc(value: Any) -> str:
    """HTML-escape any value's text (quotes included, so it is safe in attributes too)."""
    return html.escape(str(value), quote=True)


# -- finding what is in a run directory ----------------------------------------------------------
def find_conceptsets(run_dir: Path) -> dict[str, Path]:
    """Direct sub-directories of ``run_dir`` holding a ConceptSet, by name."""
    return {p.name: p for p in sorted(run_dir.iterdir()) if p.is_dir() and (p / METADATA_FILE).exists()}


def _store_path(cs: ConceptSet) -> str | None:
    prov = cs.provenance or {}
    for where in (prov, prov.get("activations") if isinstance(prov.get("activations"), dict) else {}):
        if isinstance(where, dict) and where.get("store"):
            return str(where["store"])
    return None


def _open_store(run_dir: Path, sets: Iterable[ConceptSet]) -> ActivationStore:
    if (run_dir / STORE_DIR).exists():
        return ActivationStore.open(run_dir / STORE_DIR)
    for cs in sets:
        path = _store_path(cs) if isinstance(cs, ConceptSet) else cs
        if path:
            candidate = Path(path)
            if not candidate.is_absolute():
                candidate = run_dir / candidate
            if candidate.exists():
                return ActivationStore.open(candidate)
    raise StoreError(
        f"no activation store for the report: {run_dir / STORE_DIR} does not exist and no ConceptSet in "
        f"{run_dir} names an existing store. Put the store at {run_dir / STORE_DIR} or extract it again."
    )


def _scan_class() -> Any | None:
    try:
        from ..scan import ScanResult  # issue 5; the report works without it
    except ImportError:
        return None
    return ScanResult


def _scan_store_path(run_dir: Path) -> str | None:

    meta = run_dir / SCAN_DIR / "scan.json"
    if not meta.exists():
        return None
    prov = read_json(meta).get("provenance", {})
    acts = prov.get("activations") if isinstance(prov.get("activations"), dict) else prov
    return acts.get("store") if isinstance(acts, dict) else None


def _scan_neurons(scan: Any) -> np.ndarray:
    """The neuron (or direction row) of each scanned position."""
    counts = np.asarray(scan.n_concepts)
    return np.asarray(getattr(scan, "neurons", np.arange(len(counts))), dtype=np.int64)


def _scan_page(scan: Any, n: int) -> str:
    return f"neuron_{n}" if getattr(scan, "kind", "neurons") == "neurons" else f"direction_{n}"


def _page_name(name: str, cs: ConceptSet) -> str:
    if cs.neuron is not None:
        return f"neuron_{int(cs.neuron)}"
    # A direction's set is named after its folder, reduced to characters that are safe in a file name.
    return "set_" + (re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "direction")


# -- the report ------------------------------------------------------------------------------------
def write_report(
    run_dir: str | os.PathLike,
    neurons: Sequence[int] | str | None = None,
    out: str | os.PathLike | None = None,
    examples: Examples | None = None,
    umap: bool = True,
    overwrite: bool = True,
) -> Path:
    """Write the static HTML report of a run directory and return the path of its ``index.html``.

    Parameters
    ----------
    run_dir : path
        A run directory (see the module docstring).
    neurons : sequence of int, or text such as ``"0-9,35"``, optional
        Neurons to give a page. Without it: every saved ConceptSet, and from a scan up to
        ``MAX_DEFAULT_SCAN_PAGES`` neurons with the most concepts. A neuron with no saved set is
        taken from the scan, else computed with ``cv.disentangle`` and the run's parameters.
    out : path, optional
        The report folder; default ``<run_dir>/report``. It is replaced as a whole, atomically.
    examples : Examples, optional
        Renderer of the examples; default chosen from the store's data kind (images).
    umap : bool
        Draw Fig. 2 (a UMAP fit per page, a few seconds each).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConceptvecError(f"run directory {run_dir} does not exist; give the --out folder of `conceptvec demo`, `disentangle` or `scan`.")
    out = Path(out) if out is not None else run_dir / REPORT_DIR
    saved = {name: ConceptSet.load(path) for name, path in find_conceptsets(run_dir).items()}
    scan_cls = _scan_class() if (run_dir / SCAN_DIR).exists() else None
    store = _open_store(run_dir, [*saved.values(), *([_scan_store_path(run_dir)] if scan_cls else [])])
    scan = scan_cls.load(run_dir / SCAN_DIR, acts=store) if scan_cls is not None else None
    if examples is None:
        examples = examples_for_store(store)
    pages = _choose_pages(run_dir, saved, scan, store, neurons)
    if not pages:
        raise ConceptvecError(
            f"nothing to report in {run_dir}: it has no ConceptSet folder and no scan. Make one with "
            f"`conceptvec disentangle ... --out {run_dir}/neuron_N` or pass --neurons."
        )
    with atomic_directory(out, overwrite=overwrite, what="report") as tmp:
        assets = tmp / ASSETS
        assets.mkdir()
        entries = []
        for page, (cs, origin) in pages.items():
            _write_neuron_page(tmp, page, cs, origin, store, examples, umap=umap,
                               featureviz=_featureviz_dir(run_dir, origin))
            entries.append({"page": page, "cs": cs, "origin": origin})
        _write_index(tmp, run_dir, store, scan, entries, examples)
    return out / "index.html"


def _choose_pages(
    run_dir: Path, saved: dict[str, ConceptSet], scan: Any, store: ActivationStore, neurons: Sequence[int] | str | None
) -> dict[str, tuple[ConceptSet, str]]:
    pages: dict[str, tuple[ConceptSet, str]] = {}
    by_neuron = {cs.neuron: (name, cs) for name, cs in saved.items() if cs.neuron is not None}
    if neurons is None:
        for name, cs in saved.items():
            pages.setdefault(_page_name(name, cs), (cs, f"{name}/"))
        if scan is not None:
            counts, scanned = np.asarray(scan.n_concepts), _scan_neurons(scan)
            # live neurons first: a dead unit's many "concepts" group arbitrary examples
            order = np.lexsort((scanned, -counts, ~np.asarray(scan.live)))[:MAX_DEFAULT_SCAN_PAGES]
            for n in scanned[order]:
                if _scan_page(scan, int(n)) not in pages:  # a saved ConceptSet of the neuron comes first
                    pages[_scan_page(scan, int(n))] = (scan[int(n)], f"{SCAN_DIR}/")
        return pages
    from ..core.method import disentangle

    if isinstance(neurons, str):
        from ..core.selection import parse_neurons  # "0-9,35" as `conceptvec scan` reads it

        neurons = parse_neurons(neurons, store.n_units).tolist()
    params = next(iter(saved.values())).params if saved else (getattr(scan, "params", None) if scan is not None else None)
    for n in neurons:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= int(n) < store.n_units:
            raise ConceptvecError(f"neuron {n!r} is out of range: the store has {store.n_units} units (0 to {store.n_units - 1}).")
        n = int(n)
        if n in by_neuron:
            name, cs = by_neuron[n]
            pages[f"neuron_{n}"] = (cs, f"{name}/")
        elif scan is not None and getattr(scan, "kind", "neurons") == "neurons" and n in set(_scan_neurons(scan).tolist()):
            pages[f"neuron_{n}"] = (scan[n], f"{SCAN_DIR}/")
        else:
            pages[f"neuron_{n}"] = (disentangle(store, neuron=n, params=params), "computed for this report")
    return pages


# -- one neuron's page -------------------------------------------------------------------------------
_FIGURES = (
    # (file stem, heading, paper reference, caption)
    ("top_activating", "Top activating examples", "step 1",
     "The examples that activate the neuron most, in activation order, with id, class label and activation."),
    ("concepts", "Top examples grouped by concept", "steps 3-4",
     "The same examples grouped by the concept they support; removed ones (outliers, members of too-small clusters) last."),
    ("projecting", "Maximally activating vs maximally projecting examples", "Fig. 3",
     "Left: the neuron's maximally activating examples. Right: the examples with the largest projection on each concept vector, over the whole dataset."),
    ("projecting_cosine", "Maximally activating vs most cosine-similar examples", "",
     "As Fig. 3, with each concept's examples ranked by cosine similarity instead of projection. Where activations share a "
     "large common component (all-positive layers), projection favours examples of large norm whatever their direction; "
     "cosine ranks by direction alone."),
    ("projection_comparison", "Projections and cosine similarities", "Fig. 5",
     "Each cluster's members projected on (left) and cosine-similar to (right) their concept vector (solid) and the neuron direction (dashed)."),
    ("distance_matrices", "Euclidean distance matrices", "Fig. 4",
     "Distances between the top-N activations in activation order (left) and between the kept ones ordered by concept (right)."),
    ("umap", "UMAP of the kept examples", "Fig. 2",
     "A seeded 2-D UMAP of the kept examples' activations, coloured by concept; for display only, the method does not use it."),
    ("dendrogram", "Dendrogram and the distance-threshold cut", "Fig. A.7",
     "Ward tree of the top examples; merges at or above the dashed distance threshold are not made. The strip shows each leaf's final concept."),
    ("threshold_curve", "Clusters across distance thresholds", "Fig. A.8",
     "The number of clusters C of step 2 for each distance threshold; the run's value is marked."),
    ("components", "Components of the concept vectors", "Fig. A.9",
     "Each concept vector's weight on every unit of the layer; its largest units are labelled."),
    ("class_makeup", "Class labels of each concept", "",
     "How many of each concept's members carry each class label."),
)


def _write_neuron_page(
    root: Path, page: str, cs: ConceptSet, origin: str, store: ActivationStore, examples: Examples, umap: bool,
    featureviz: Path | None = None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # figures are files here, whatever backend a notebook has chosen

    folder = root / ASSETS / page
    folder.mkdir(parents=True)
    acts = store.activations
    umap_d = F.umap_data(cs) if umap else None
    data = _page_data(cs, acts, examples, umap_d)
    makers = {
        "top_activating": lambda: F.top_activating_grid(cs, examples),
        "concepts": lambda: F.concept_groups_grid(cs, examples),
        # Each ranking streams the whole store once, for the numbers and the figure alike.
        "projecting": lambda: F.projecting_grid(cs, acts, examples, data=data["projecting"]),
        "projecting_cosine": lambda: F.projecting_grid(cs, acts, examples, rank="cosine", data=data["projecting_cosine"]),
        "projection_comparison": lambda: F.projection_comparison(cs),
        "distance_matrices": lambda: F.distance_matrices(cs),
        "umap": (lambda: F.umap_plot(cs, examples, data=umap_d)) if umap else None,
        "dendrogram": lambda: F.dendrogram_plot(cs),
        "threshold_curve": lambda: F.threshold_curve(cs),
        "components": lambda: F.components_plot(cs),
        "class_makeup": lambda: F.class_makeup(cs, examples),
    }
    write_json(folder / "data.json", data)

    sections = []
    for stem, heading, ref, caption in _FIGURES:
        make = makers[stem]
        if make is None:
            continue
        fig = make()
        fig.savefig(folder / f"{stem}.png", dpi=DPI)
        src = f"{ASSETS}/{page}/{stem}.png"
        label = f"{heading}" + (f" <span class=ref>(paper {esc(ref)})</span>" if ref else "")
        sections.append(
            f'<section class=fig id="{esc(stem)}"><h3>{label}</h3>'
            f'<figure><img src="{esc(src)}" alt="{esc(heading)}"><figcaption>{esc(caption)}</figcaption></figure>'
            f"{_numbers_html(stem, data)}</section>"
        )
        if stem == "projecting":  # the paper's Fig. 3 shows the feature visualisations beside these examples
            sections.append(_featureviz_html(featureviz, folder, page))

    what = f"Neuron {cs.neuron}" if cs.neuron is not None else f"Direction ({page})"
    prov = cs.provenance or {}
    act_prov = prov.get("activations") if isinstance(prov.get("activations"), dict) else {}
    meta = store.metadata
    summary = cs.summary()
    body = f"""
<nav><a href="index.html">← all neurons</a></nav>
<h1>{esc(what)}</h1>
<p class=lead>{esc(_describe(meta))}. {summary['n_top']} top activating examples, C = {summary['n_agglomerative']} clusters at
distance threshold {cs.params.distance_threshold:g}, <b>{summary['n_concepts']} concept(s)</b> of sizes {esc(summary['concept_sizes'])},
{summary['n_outliers']} outlier(s), {summary['n_in_removed_small_clusters']} in removed small clusters.</p>
{"" if cs.is_live else f"<p class=warn><b>Not live:</b> {int(np.sum(cs.top_scores <= 0))} of the top {summary['n_top']} examples do not activate this {'neuron' if cs.neuron is not None else 'direction'} (ties at zero, taken in example order), so its clusters and concepts group arbitrary examples.</p>"}
{_table_html(F.summary_table(cs, examples), "concept-table")}
{_slider_html(cs, examples, root / ASSETS)}
<h2>Figures</h2>
<p>The numbers behind every figure are under each one and in <a href="{esc(f'{ASSETS}/{page}/data.json')}">data.json</a>.</p>
{''.join(sections)}
<h2>Provenance</h2>
{_kv_html({
    "ConceptSet": origin,
    "model": meta.get("model") or act_prov.get("model"),
    "layer": meta.get("layer") or act_prov.get("layer"),
    "pooling": meta.get("pooling"),
    "data": meta.get("data"),
    "preprocessing": meta.get("preprocessing"),
    "store": str(store.path.resolve()),
    "parameters": cs.params.to_dict(),
    "neuron": cs.neuron,
    "ConceptSet provenance": prov,
    "report": environment(),
})}
"""
    (root / f"{page}.html").write_text(_document(f"{what} · conceptvec", body, script=_SLIDER_JS), encoding="utf-8")


# -- feature visualisation (issue 7): the images `conceptvec featureviz` wrote beside the ConceptSet ------
FEATUREVIZ_DIR = "featureviz"
_SAFE_PNG = re.compile(r"^[A-Za-z0-9_-]{1,64}\.png$")


def _featureviz_dir(run_dir: Path, origin: str) -> Path | None:
    """``<run>/<ConceptSet folder>/featureviz`` for a page made from a saved ConceptSet, else None."""
    name = origin[:-1] if origin.endswith("/") else None
    if not name or "/" in name or name in (".", ".."):
        return None
    folder = run_dir / name / FEATUREVIZ_DIR
    return folder if folder.is_dir() else None


def _featureviz_html(fv_dir: Path | None, folder: Path, page: str) -> str:
    """The neuron's and its concept vectors' feature visualisations, copied into the page's assets; '' if none."""
    if fv_dir is None or not (fv_dir / "featureviz.json").is_file():
        return ""
    try:
        meta = json.loads((fv_dir / "featureviz.json").read_text())
    except (OSError, ValueError):
        return ""
    listed = meta.get("images") if isinstance(meta.get("images"), list) else []
    objective = meta.get("objective") if isinstance(meta.get("objective"), list) else []
    tiles = []
    for i, name in enumerate(listed):
        # Only plain file names written by featureviz; nothing from the JSON becomes a path outside fv_dir.
        if not isinstance(name, str) or not _SAFE_PNG.match(name) or not (fv_dir / name).is_file():
            continue
        shutil.copyfile(fv_dir / name, folder / f"featureviz_{name}")
        label = name[:-4].replace("_", " ")
        value = objective[i] if i < len(objective) and isinstance(objective[i], (int, float)) else None
        tiles.append(
            f'<figure style="margin:0"><img src="{esc(f"{ASSETS}/{page}/featureviz_{name}")}" alt="feature visualisation of the '
            f'{esc(label)}" style="width:160px;height:160px;image-rendering:pixelated"><figcaption>{esc(label)}'
            + (f"<br>objective {value:.3g}" if value is not None else "") + "</figcaption></figure>"
        )
    if not tiles:
        return ""
    params = meta.get("params") if isinstance(meta.get("params"), dict) else {}
    caption = (
        f"Images optimised so that layer {meta.get('layer', '?')} points along the neuron (left) and along each concept "
        f"vector: {params.get('steps', '?')} Adam steps at {params.get('size', '?')} px, seed {params.get('seed', '?')}, "
        f"objective {params.get('objective', '?')} (conceptvec featureviz; Lucent's parameterisation and transforms)."
    )
    if meta.get("partial"):
        caption += f" Interrupted: the images of {meta.get('steps_done', '?')} steps."
    shutil.copyfile(fv_dir / "featureviz.json", folder / "featureviz.json")
    return (
        '<section class=fig id="featureviz"><h3>Feature visualisation <span class=ref>(paper Fig. 3)</span></h3>'
        f'<div style="display:flex;flex-wrap:wrap;gap:12px">{"".join(tiles)}</div><p>{esc(caption)}</p>'
        f'<p><a href="{esc(f"{ASSETS}/{page}/featureviz.json")}">featureviz.json</a></p></section>'
    )


def _describe(meta: dict) -> str:
    model = meta.get("model")
    name = model.get("name") if isinstance(model, dict) else model
    data = meta.get("data")
    kind = data.get("kind") if isinstance(data, dict) else data
    return f"Model {name or '?'}, layer {meta.get('layer') or '?'}, data {kind or '?'}, {meta.get('n_examples', '?')} examples x {meta.get('n_units', '?')} units"


def _page_data(cs: ConceptSet, acts: Any, examples: Examples, umap_d: dict | None) -> dict[str, Any]:
    dist = F.distance_matrices_data(cs)
    dendro = F.dendrogram_data(cs)
    data = {
        "neuron": cs.neuron,
        "params": cs.params.to_dict(),
        "summary": cs.summary(),
        "summary_table": F.summary_table(cs, examples),
        "top_activating": {**(top := F.top_activating_data(cs)), "caption": [examples.caption(i) for i in top["index"]]},
        "concepts": F.concept_groups_data(cs),
        "projecting": F.projecting_data(cs, acts),
        "projecting_cosine": F.projecting_data(cs, acts, rank="cosine"),
        "projection_comparison": F.projection_comparison_data(cs),
        "distance_matrices": {**dist, "top": dist["top"].tolist(), "kept": dist["kept"].tolist()},
        "dendrogram": {k: v for k, v in dendro.items() if k not in ("icoord", "dcoord")},
        "threshold_curve": F.threshold_curve_data(cs, thresholds=np.unique(np.append(cs.linkage[:, 2], cs.params.distance_threshold))),
        "components": F.components_data(cs),
        "class_makeup": F.class_makeup_data(cs, examples),
    }
    if umap_d is not None:
        data["umap"] = {**umap_d, "embedding": np.asarray(umap_d["embedding"]).tolist()}
    return data


def _numbers_html(stem: str, data: dict[str, Any]) -> str:
    """A compact table of the numbers behind one figure, in a collapsed <details>."""
    d = data.get(stem)
    if d is None:
        return ""
    rows: list[dict[str, Any]] = []
    if stem == "top_activating":
        rows = [dict(zip(("rank", "example", "id · label", "activation", "concept"), r))
                for r in zip(d["rank"], d["index"], d["caption"], d["activation"], d["concept"])]
    elif stem == "concepts":
        rows = [{"group": F.concept_name(g["concept"]), "members": len(g["index"]), "ranks": " ".join(map(str, g["rank"]))} for g in d["groups"]]
    elif stem in ("projecting", "projecting_cosine"):
        rows = [{"column": c["name"], "examples (value)": ", ".join(f"{i} ({v:.3g})" for i, v in zip(c["index"], c["value"]))} for c in d["columns"]]
    elif stem == "projection_comparison":
        rows = [{
            "concept": c["concept"], "members": len(c["index"]),
            "mean projection, concept vector": np.mean(c["projection_concept"]), "mean projection, neuron": np.mean(c["projection_neuron"]),
            "mean cosine, concept vector": np.mean(c["cosine_concept"]), "mean cosine, neuron": np.mean(c["cosine_neuron"]),
        } for c in d["concepts"]]
    elif stem == "distance_matrices":
        rows = [{"top examples": len(d["top"]), "kept examples": len(d["kept_index"]), "mean intra-cluster": d["intra"], "mean inter-cluster": d["inter"]}]
    elif stem == "umap":
        rows = [{"kept examples": len(d["index"]), "seed": d["seed"], "n_neighbors": d["n_neighbors"], "min_dist": d["min_dist"]}]
    elif stem == "dendrogram":
        heights = sorted(d["heights"], reverse=True)[:10]
        rows = [{"distance_threshold": d["distance_threshold"], "clusters": d["n_clusters"], "highest merges": ", ".join(f"{h:.4g}" for h in heights)}]
    elif stem == "threshold_curve":
        t, c = np.asarray(d["threshold"]), np.asarray(d["n_clusters"])
        # Where C changes: the merge heights. Show the top of the tree, where thresholds matter.
        for k in range(len(t) - 1, -1, -1):
            if (k == len(t) - 1 or c[k] != c[k + 1]) and len(rows) < 12:
                rows.append({"threshold above": t[k], "clusters": int(c[k + 1]) if k < len(t) - 1 else int(c[k])})
        rows.append({"threshold above": "run", "clusters": d["n_agglomerative"]})
    elif stem == "components":
        rows = [{"concept": c["concept"], "weight on the neuron": c["neuron_weight"],
                 "largest units (weight)": ", ".join(f"{u} ({w:.3f})" for u, w in zip(c["top_units"], c["top_weights"]))} for c in d["concepts"]]
    elif stem == "class_makeup":
        rows = [{"group": F.concept_name(g["concept"]), "members": g["n"],
                 "labels": ", ".join(f"{s or '(none)'} ×{n}" for s, n in zip(g["labels"], g["counts"]))} for g in d["groups"]]
    if not rows:
        return ""
    return f"<details><summary>Numbers</summary>{_table_html(rows)}</details>"


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "nan" if not np.isfinite(v) else f"{v:.4g}"
    return str(v)


def _table_html(rows: list[dict[str, Any]], cls: str = "") -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{esc(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _kv_html(items: dict[str, Any]) -> str:
    rows = []
    for k, v in items.items():
        if v is None or v == {}:
            continue
        text = json.dumps(v, indent=1, default=str) if isinstance(v, (dict, list)) else str(v)
        rows.append(f"<tr><th>{esc(k)}</th><td><pre>{esc(text)}</pre></td></tr>")
    return f'<table class=prov>{"".join(rows)}</table>'


def _json_script(obj: Any, element_id: str) -> str:
    # "<" is written as \u003c so no string in the data can close the script element.
    text = json.dumps(obj, separators=(",", ":"), default=str).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


# -- the live distance-threshold slider --------------------------------------------------------------
def _slider_html(cs: ConceptSet, examples: Examples, asset_dir: Path) -> str:
    z = cs.linkage
    heights = z[:, 2]
    t_run = float(cs.params.distance_threshold)
    t_max = float(max(heights.max() * 1.05 if len(heights) else 1.0, t_run * 1.2))
    step = t_max / 2000
    tiles = []
    for k, i in enumerate(cs.top_indices):
        lab = int(cs.labels[k])
        badge = f"c{lab}" if lab >= 0 else ("outlier" if cs.outliers[k] else "removed")
        tiles.append(
            f'<div class=tile data-pos="{k}" title="{esc(examples.caption(i))}">{examples.html(int(i), asset_dir)}'
            # The rank and class label fit under a thumbnail; the full caption (with the id) is the tooltip.
            f'<div class=cap>#{k + 1} {esc(examples.label(i) or examples.caption(i))}</div>'
            f'<div class=badge style="background:{F.concept_colour(lab)}">{esc(badge)}</div></div>'
        )
    payload = {
        "n": int(len(cs.top_indices)),
        "linkage": [[int(a), int(b), float(h)] for a, b, h in z[:, :3]],
        "run_threshold": t_run,
        "run_clusters": int(cs.n_agglomerative),
        "max": t_max,
    }
    mark = 100.0 * t_run / t_max
    return f"""
<h2>Distance threshold</h2>
<p>Move the slider to re-cut the ward tree of the {len(cs.top_indices)} top examples (step 2) in the browser: merges at
heights at or above the threshold are not made. Tiles are grouped by the resulting clusters, in activation order; the
badge on each tile is its concept in the saved run (steps 3-4 are not re-run here; run <code>conceptvec disentangle
--distance-threshold T</code> for that).</p>
<div class=slider>
  <label for=threshold>distance_threshold</label>
  <div class=track><input type=range id=threshold min=0 max="{t_max:.10g}" step="{step:.10g}" value="{t_run:.10g}" list=run-mark>
  <span class=mark style="left:calc({mark:.4f}% + {8 - 0.16 * mark:.3f}px)" title="the value the run used">▲ run: {t_run:g}</span></div>
  <datalist id=run-mark><option value="{t_run:.10g}" label="run"></option></datalist>
  <input type=number id=threshold-value min=0 max="{t_max:.10g}" step="any" value="{t_run:.10g}">
  <button type=button id=threshold-reset>back to the run's value</button>
</div>
<p class=count><span id=n-clusters>{int(cs.n_agglomerative)}</span> cluster(s) at threshold <span id=threshold-shown>{t_run:g}</span>
<span class=timing>(re-cut in <span id=cut-ms>0</span> ms)</span></p>
{_json_script(payload, "cut-data")}
<div id=clusters></div>
<div id=tiles hidden>{''.join(tiles)}</div>
"""


_SLIDER_JS = r"""
(function () {
  "use strict";
  var el = document.getElementById("cut-data");
  if (!el) return;
  var D = JSON.parse(el.textContent), N = D.n, Z = D.linkage;
  // Cluster of each top example when merges at heights >= t are not made (the method's step 2,
  // equal to SciPy's fcluster(Z, t, "distance") for any t that is not itself a merge height).
  // Clusters are numbered in order of their most activating member.
  function cut(t) {
    var parent = new Int32Array(2 * N - 1).fill(-1), k, i, r;
    for (k = 0; k < Z.length; k++) {
      if (Z[k][2] < t) { parent[Z[k][0]] = N + k; parent[Z[k][1]] = N + k; }
    }
    var ids = new Map(), labels = new Array(N);
    for (i = 0; i < N; i++) {
      r = i;
      while (parent[r] >= 0) r = parent[r];
      if (!ids.has(r)) ids.set(r, ids.size);
      labels[i] = ids.get(r);
    }
    return { labels: labels, n: ids.size };
  }
  window.conceptvecCut = cut;
  var slider = document.getElementById("threshold"), box = document.getElementById("threshold-value");
  var tiles = Array.prototype.slice.call(document.getElementById("tiles").children);
  var host = document.getElementById("clusters");
  function show(t) {
    var t0 = performance.now(), c = cut(t), groups = [], g, i;
    var frag = document.createDocumentFragment();
    for (g = 0; g < c.n; g++) {
      var box_ = document.createElement("div"), head = document.createElement("div"), grid = document.createElement("div");
      box_.className = "cluster";
      head.className = "cluster-head"; grid.className = "grid";
      box_.appendChild(head); box_.appendChild(grid); frag.appendChild(box_);
      groups.push({ head: head, grid: grid, n: 0 });
    }
    for (i = 0; i < N; i++) { groups[c.labels[i]].grid.appendChild(tiles[i]); groups[c.labels[i]].n++; }
    for (g = 0; g < c.n; g++) groups[g].head.textContent = "cluster " + (g + 1) + " · " + groups[g].n + " example(s)";
    host.replaceChildren(frag);
    document.getElementById("n-clusters").textContent = String(c.n);
    document.getElementById("threshold-shown").textContent = (+t).toPrecision(4).replace(/\.?0+$/, "");
    document.getElementById("cut-ms").textContent = (performance.now() - t0).toFixed(1);
    document.body.dataset.clusters = String(c.n);
  }
  slider.addEventListener("input", function () { box.value = slider.value; show(+slider.value); });
  box.addEventListener("input", function () { if (box.value !== "" && isFinite(+box.value)) { slider.value = box.value; show(+box.value); } });
  document.getElementById("threshold-reset").addEventListener("click", function () {
    slider.value = D.run_threshold; box.value = D.run_threshold; show(D.run_threshold);
  });
  show(D.run_threshold);
})();
"""

_SORT_JS = r"""
(function () {
  "use strict";
  document.querySelectorAll("table.sortable th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var table = th.closest("table"), body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var dir = th.dataset.dir === "desc" ? "asc" : "desc";
      table.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
      th.dataset.dir = dir;
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v || a.cells[col].textContent, y = b.cells[col].dataset.v || b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y), d = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return dir === "asc" ? d : -d;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
})();
"""


# -- the index ------------------------------------------------------------------------------------------
def _write_index(root: Path, run_dir: Path, store: ActivationStore, scan: Any, entries: list[dict], examples: Examples) -> None:
    import matplotlib

    matplotlib.use("Agg")
    meta = store.metadata
    pages = {e["page"]: e["page"] for e in entries}
    parts = [f"<h1>conceptvec report</h1><p class=lead>{esc(_describe(meta))}. Run directory: <code>{esc(run_dir.resolve())}</code>.</p>"]

    cards = []
    for e in entries:
        cs = e["cs"]
        thumbs = "".join(examples.html(int(i), root / ASSETS) for i in cs.top_indices[:8])
        title = f"neuron {cs.neuron}" if cs.neuron is not None else e["page"]
        cards.append(
            f'<a class=card href="{esc(e["page"])}.html"><div class=card-title>{esc(title)}</div>'
            f'<div class=card-sub>{cs.n_concepts} concept(s) · C = {cs.n_agglomerative} · sizes {esc(cs.summary()["concept_sizes"])}</div>'
            f'<div class=thumbs>{thumbs}</div></a>'
        )
    parts.append(f"<h2>Neuron pages</h2><div class=cards>{''.join(cards)}</div>")

    if scan is not None:
        counts, live = np.asarray(scan.n_concepts), np.asarray(scan.live)
        d = F.scan_data(counts, live)
        fig = F.scan_histogram(counts, live)
        fig.savefig(root / ASSETS / "scan_histogram.png", dpi=DPI)
        n_agg = np.asarray(getattr(scan, "n_agglomerative", np.full(len(counts), -1)))
        rows = []
        for k, n in enumerate(_scan_neurons(scan)):
            page = _scan_page(scan, int(n))
            name = page.replace("_", " ")
            link = f'<a href="{esc(page)}.html">{esc(name)}</a>' if page in pages else esc(name)
            rows.append(
                f'<tr><td data-v="{int(n)}">{link}</td><td>{int(counts[k])}</td><td>{int(n_agg[k])}</td>'
                f'<td>{"not live" if not live[k] else "yes" if counts[k] >= 2 else "no"}</td></tr>'
            )
        parts.append(
            f"<h2>Layer scan</h2><p>{d['n_polysemantic']} of {d['n_neurons']} live neurons "
            f"({100 * d['share_polysemantic']:.1f}%) have two or more concepts."
            + (f" {d['n_not_live']} neuron(s) are not live (their top {scan.params.top} examples include zero "
               f"activations, so their clusters group arbitrary examples) and are left out of these counts." if d["n_not_live"] else "")
            + "</p>"
            f'<figure><img src="{ASSETS}/scan_histogram.png" alt="concepts per neuron"><figcaption>Concepts per neuron across the layer.</figcaption></figure>'
            f"{_table_html([{'concepts': v, 'neurons': f} for v, f in zip(d['n_concepts'], d['n_neurons_with'])])}"
            "<p>Click a column to sort. Neurons without a page can be added with "
            "<code>conceptvec report RUN_DIR --neurons N ...</code>.</p>"
            '<table class="sortable scan"><thead><tr><th>neuron</th><th>concepts</th><th>clusters C</th><th>polysemantic</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    parts.append(f"<h2>Provenance</h2>{_kv_html({'model': meta.get('model'), 'layer': meta.get('layer'), 'pooling': meta.get('pooling'), 'data': meta.get('data'), 'store': str(store.path.resolve()), 'scan parameters': getattr(scan, 'params', None) and scan.params.to_dict(), 'report': environment()})}")
    (root / "index.html").write_text(_document("conceptvec report", "\n".join(parts), script=_SORT_JS), encoding="utf-8")


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1180px;padding:1em 1.5em;color:#222;line-height:1.4}
h1{margin:.3em 0}h2{margin-top:1.6em;border-bottom:1px solid #ddd}h3{margin:.4em 0}.ref{color:#777;font-weight:normal}
.lead{font-size:1.05em;color:#333}.warn{background:#fff4d6;border-left:4px solid #e0a000;padding:.4em .8em}nav a{color:#1f4e79}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4}table.sortable th{cursor:pointer}table.sortable th[data-dir=asc]::after{content:" ▲"}table.sortable th[data-dir=desc]::after{content:" ▼"}
table.prov pre{margin:0;white-space:pre-wrap;font-size:.9em;max-height:22em;overflow:auto}
figure{margin:.4em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{color:#555;font-size:.9em}
details{margin:.3em 0 1em}summary{cursor:pointer;color:#1f4e79}
.slider{display:flex;align-items:center;gap:.8em;flex-wrap:wrap;margin:.6em 0}.track{position:relative;flex:1;min-width:300px;padding-bottom:1.3em}
.track input{width:100%;margin:0}.mark{position:absolute;top:1.3em;transform:translateX(-50%);font-size:.8em;color:#d62728;white-space:nowrap}
#threshold-value{width:7em}.count{font-size:1.15em}#n-clusters{font-weight:bold;color:#d62728}.timing{color:#888;font-size:.8em}
.cluster{border:1px solid #bbb;background:#fafafa;border-radius:6px;margin:.5em 0;padding:.3em .5em}.cluster-head{font-weight:600;margin-bottom:.3em}
.grid{display:flex;flex-wrap:wrap;gap:6px}.tile{width:84px;font-size:10px;position:relative;text-align:center}
.tile img{width:80px;height:80px;object-fit:contain;image-rendering:pixelated;background:#000;display:block;margin:auto}
.tile .cap{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}.badge{position:absolute;top:2px;left:2px;color:#fff;padding:0 3px;border-radius:3px;font-size:9px}
.snippet{display:block;font-family:monospace;font-size:10px;text-align:left}mark{background:#ffd54f}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{display:block;border:1px solid #ccc;border-radius:8px;padding:.5em;width:352px;text-decoration:none;color:#222}
.card:hover{border-color:#1f77b4}.card-title{font-weight:bold}.card-sub{font-size:.85em;color:#555}.thumbs img{width:40px;height:40px;image-rendering:pixelated;object-fit:contain;background:#000;margin:1px}
"""


def _document(title: str, body: str, script: str = "") -> str:
    # No external resource of any kind: the CSP forbids the network outright, so a page that
    # opens is a page that works offline.
    return f"""<!DOCTYPE html>
<html lang=en><head><meta charset=utf-8>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' data: file:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'none'">
<meta name=viewport content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{_CSS}</style></head>
<body>{body}
<footer><p style="color:#888;font-size:.8em">Made by conceptvec {esc(environment()['versions'].get('conceptvec', ''))} on {esc(time.strftime('%Y-%m-%d %H:%M'))}; opens offline.</p></footer>
<script>{script}</script></body></html>
"""
