"""What goes on each page of the report: the figures and numbers it shows, gathered for its template.

``neuron_page`` and ``index_page`` draw a page's figures into the report's ``assets/`` folder and
return the context that ``templates/neuron.html`` and ``templates/index.html`` print. Values
are plain data; the templates escape them. Only fragments that are HTML already (the example
renderers' thumbnails) come as ``Markup``.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from ..core.evidence import count_words
from ..scan.result import ScanResult
from ..storage.atomic import write_json
from ..storage.conceptset import ConceptSet
from ..storage.provenance import environment
from ..storage.rundir import RunDir
from ..storage.store import ActivationStore
from . import figures as F
from .dictionary_section import dictionary_section
from .evidence_section import evidence_section
from .examples import Examples
from .numbers import number_rows, page_data

ASSETS = "assets"
DPI = 100

FIGURES = (
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
    ("projecting_centred", "Maximally activating vs most similar once the layer's mean is subtracted", "",
     "As Fig. 3, with each concept's examples ranked by the cosine of their difference from the layer's mean activation. On a "
     "layer whose examples all lie near its mean direction, every concept vector does too, and uncentred rankings favour "
     "whatever is near that mean; this ranking cannot be won that way."),
    ("projection_comparison", "Projections and cosine similarities", "Fig. 5",
     "Each cluster's members projected on (left) and cosine-similar to (right) their concept vector (solid) and the neuron direction "
     "(dashed); on the right also the baselines a shared component cannot fool: the neuron's unsplit direction (the mean of all its "
     "kept examples, dotted) and the nearest other concept of the neuron (dash-dot). The table adds the same means with the "
     "layer's mean activation subtracted from the members."),
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

_SAFE_PNG = re.compile(r"^[A-Za-z0-9_-]{1,64}\.png$")


@dataclass(frozen=True)
class Page:
    """One neuron's (or direction's) page of the report.

    Attributes
    ----------
    name : str
        The page's file stem (``neuron_<n>``, ``direction_<n>`` or ``set_<folder>``); its assets go to ``assets/<name>/``.
    cs : ConceptSet
    origin : str
        Where the set came from, as the page says: ``"<folder>/"``, ``"scan/"`` or ``"computed for this report"``.
    featureviz : Path or None
        The saved set's feature visualisation folder, when it has one.
    causal : Path or None
        The saved set's causal-effects folder (``conceptvec causal``), when it has one.
    """

    name: str
    cs: ConceptSet
    origin: str
    featureviz: Path | None = None
    causal: Path | None = None


def scan_page(scan: ScanResult, n: int) -> str:
    """The page name of scanned neuron (or direction row) ``n``."""
    return RunDir.neuron_name(n) if scan.kind == "neurons" else f"direction_{int(n)}"


def set_page(folder: str, cs: ConceptSet) -> str:
    """The page name of a saved ConceptSet in ``folder``: its neuron's, else one made from the folder name."""
    if cs.neuron is not None:
        return RunDir.neuron_name(cs.neuron)
    # A direction's set is named after its folder, reduced to characters that are safe in a file name.
    return "set_" + (re.sub(r"[^A-Za-z0-9_-]+", "_", folder).strip("_") or "direction")


def short_model_name(name: Any) -> Any:
    """``hf:/a/b/c/model`` as ``hf:.../c/model``: a model read from a local folder or file is named by its last two
    path parts on a page (the full path, machine-specific, stays in the store's metadata)."""
    kind, sep, rest = str(name).partition(":") if name else ("", "", "")
    parts = Path(rest).parts if sep and rest.startswith("/") else ()
    return f"{kind}:.../{'/'.join(parts[-2:])}" if len(parts) > 3 else name


def describe(meta: dict) -> str:
    """One line naming a store's model, layer, data and size, from its metadata."""
    model = meta.get("model")
    name = short_model_name(model.get("name") if isinstance(model, dict) else model)
    data = meta.get("data")
    kind = data.get("kind") if isinstance(data, dict) else data
    return f"Model {name or '?'}, layer {meta.get('layer') or '?'}, data {kind or '?'}, {meta.get('n_examples', '?')} examples x {meta.get('n_units', '?')} units"


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "nan" if not np.isfinite(v) else f"{v:.4g}"
    return str(v)


def table(rows: list[dict[str, Any]], cls: str = "") -> dict[str, Any] | None:
    """Rows of dicts as the ``table`` macro prints them: every key a column, numbers to 4 digits; None if no rows."""
    if not rows:
        return None
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return {"cls": cls, "columns": columns, "rows": [[_fmt(r.get(c, "")) for c in columns] for r in rows]}


def tabled(section: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """A section with its lists of rows under ``keys`` made into tables for the ``table`` macro."""
    return None if section is None else {**section, **{k: table(section[k]) for k in keys}}


def provenance_rows(items: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, text) rows of a provenance table: dicts and lists as indented JSON; None and {} left out."""
    rows = []
    for k, v in items.items():
        if v is None or v == {}:
            continue
        rows.append((k, json.dumps(v, indent=1, default=str) if isinstance(v, (dict, list)) else str(v)))
    return rows


# -- one neuron's page -------------------------------------------------------------------------------
def neuron_page(root: Path, page: Page, store: ActivationStore, examples: Examples, *, umap: bool, centre: Any = None,
                dictionary: Any = None) -> dict[str, Any]:
    """Draw one page's figures into ``root/assets/<page.name>/`` with its ``data.json``; return the page's context.

    Parameters
    ----------
    root : Path
        The report folder being written; thumbnails go to ``root/assets/thumbs/``.
    page : Page
    store : ActivationStore
        The run's store, A of shape (n_examples, n_units); Fig. 3 ranks all of it.
    examples : Examples
    umap : bool
        Draw Fig. 2 (a UMAP fit: about 4 s for the first in a process, umap-learn compiling, then a tenth of a second).
    centre : array of shape (n_units,), optional
        The layer's mean activation, for the centred ranking and baselines (computed when not given).
    dictionary : Dictionary, optional
        The run's sparse dictionary: the page then shows the concepts beside their matched atoms.

    Returns
    -------
    dict
        What ``templates/neuron.html`` prints.
    """
    import matplotlib

    matplotlib.use("Agg")  # figures are files here, whatever backend a notebook has chosen

    cs = page.cs
    if hasattr(examples, "focus"):  # text snippets shade their tokens by this neuron's activation
        examples = examples.focus(cs.neuron)
    folder = root / ASSETS / page.name
    folder.mkdir(parents=True)
    acts = store.activations
    umap_d = F.umap_data(cs) if umap else None
    data = page_data(cs, acts, examples, umap_d, centre=centre)
    makers = {
        "top_activating": lambda: F.top_activating_grid(cs, examples),
        "concepts": lambda: F.concept_groups_grid(cs, examples),
        # Each ranking streams the whole store once, for the numbers and the figure alike.
        "projecting": lambda: F.projecting_grid(cs, acts, examples, data=data["projecting"]),
        "projecting_cosine": lambda: F.projecting_grid(cs, acts, examples, rank="cosine", data=data["projecting_cosine"]),
        "projecting_centred": lambda: F.projecting_grid(cs, acts, examples, rank="centred", data=data["projecting_centred"]),
        "projection_comparison": lambda: F.projection_comparison(cs, data=data["projection_comparison"]),
        "distance_matrices": lambda: F.distance_matrices(cs),
        "umap": (lambda: F.umap_plot(cs, examples, data=umap_d)) if umap else None,
        "dendrogram": lambda: F.dendrogram_plot(cs),
        "threshold_curve": lambda: F.threshold_curve(cs),
        "components": lambda: F.components_plot(cs),
        # examples without class labels (a list of paths) would get one bar per concept and a legend "(no label)"
        "class_makeup": (lambda: F.class_makeup(cs, examples)) if any(str(n) for n in store.label_names) else None,
    }
    write_json(folder / "data.json", data)

    figures = []
    for stem, heading, ref, caption in FIGURES:
        make = makers[stem]
        if make is None:
            continue
        make().savefig(folder / f"{stem}.png", dpi=DPI)
        figures.append({"stem": stem, "heading": heading, "ref": ref, "caption": caption,
                        "src": f"{ASSETS}/{page.name}/{stem}.png", "numbers": table(number_rows(stem, data))})

    prov = cs.provenance or {}
    activations = prov.get("activations")
    act_prov = activations if isinstance(activations, dict) else {}
    meta = store.metadata
    what = f"Neuron {cs.neuron}" if cs.neuron is not None else f"Direction ({page.name})"
    evidence = evidence_section(cs, store, page.causal)
    concept_rows = F.summary_table(cs, examples)
    for row, ev in zip(concept_rows, evidence["rows"]):  # the concepts' rows come first, the removed examples' last
        row["evidence"] = ev["verdict"]
    return {
        "title": f"{what} · conceptvec",
        "what": what,
        "page": page.name,
        "describe": describe(meta),
        "summary": cs.summary(),
        "threshold_text": ("the significance test of distance_threshold auto "
                           f"(significance {cs.params.significance:g}, on unit-length examples)" if cs.params.auto_distance
                           else f"distance threshold {cs.params.distance_threshold:g}"),
        "auto": cs.params.auto_distance,
        "live": cs.is_live,
        "dead_reason": cs.dead_reason,
        "unit": "neuron" if cs.neuron is not None else "direction",
        "concept_table": table(concept_rows, "concept-table"),
        "evidence": evidence,
        "slider": slider(cs, examples, root / ASSETS),
        "data_json": f"{ASSETS}/{page.name}/data.json",
        "figures": figures,
        # The paper's Fig. 3 shows the feature visualisations beside the maximally projecting examples.
        "featureviz": featureviz(page.featureviz, folder, page.name),
        "causal": causal_section(page.causal, folder, page.name),
        "dictionary": tabled(dictionary_section(dictionary, cs, store, examples, folder, page.name, ASSETS), ("concepts", "atoms")),
        "provenance": provenance_rows({
            "ConceptSet": page.origin,
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
        }),
    }


def slider(cs: ConceptSet, examples: Examples, asset_dir: Path) -> dict[str, Any]:
    """The distance-threshold slider: its range, the run's mark, one tile per top example, and the tree.

    ``cut_data`` is what ``static/slider.js`` reads: the linkage, shape (N - 1, 3) as lists, and the run's value.
    """
    z = cs.linkage
    heights = z[:, 2]
    t_run = F.run_cut(cs)[0]
    t_max = float(max(heights.max() * 1.05 if len(heights) else 1.0, t_run * 1.2))
    tiles = []
    for k, i in enumerate(cs.top_indices):
        lab = int(cs.labels[k])
        tiles.append({
            "pos": k,
            "caption": examples.caption(i),
            "thumb": Markup(examples.html(int(i), asset_dir)),
            # The rank and class label fit under a thumbnail; the full caption (with the id) is the tooltip.
            "short": examples.label(i) or examples.caption(i),
            "colour": F.concept_colour(lab),
            "badge": f"c{lab}" if lab >= 0 else ("outlier" if cs.outliers[k] else "removed"),
        })
    return {
        "n_top": len(cs.top_indices),
        "t_run": t_run,
        "t_max": t_max,
        "step": t_max / 2000,
        "mark": 100.0 * t_run / t_max,
        "n_agglomerative": int(cs.n_agglomerative),
        "tiles": tiles,
        "cut_data": {
            "n": int(len(cs.top_indices)),
            "linkage": [[int(a), int(b), float(h)] for a, b, h in z[:, :3]],
            "run_threshold": t_run,
            "run_clusters": int(cs.n_agglomerative),
            "max": t_max,
        },
    }


def featureviz(fv_dir: Path | None, folder: Path, page: str) -> dict[str, Any] | None:
    """The images `conceptvec featureviz` wrote for the neuron and its concept vectors, copied into the
    page's ``folder``; None when there are none."""
    if fv_dir is None or not (fv_dir / "featureviz.json").is_file():
        return None
    try:
        meta = json.loads((fv_dir / "featureviz.json").read_text())
    except (OSError, ValueError):
        return None
    listed = meta.get("images") if isinstance(meta.get("images"), list) else []
    objective = meta.get("objective") if isinstance(meta.get("objective"), list) else []
    tiles = []
    for i, name in enumerate(listed):
        # Only plain file names written by featureviz; nothing from the JSON becomes a path outside fv_dir.
        if not isinstance(name, str) or not _SAFE_PNG.match(name) or not (fv_dir / name).is_file():
            continue
        shutil.copyfile(fv_dir / name, folder / f"featureviz_{name}")
        value = objective[i] if i < len(objective) and isinstance(objective[i], (int, float)) else None
        tiles.append({"src": f"{ASSETS}/{page}/featureviz_{name}", "label": name[:-4].replace("_", " "), "objective": value})
    if not tiles:
        return None
    params = meta.get("params") if isinstance(meta.get("params"), dict) else {}
    caption = (
        f"Images optimised so that layer {meta.get('layer', '?')} points along the neuron (left) and along each concept "
        f"vector: {params.get('steps', '?')} Adam steps at {params.get('size', '?')} px, seed {params.get('seed', '?')}, "
        f"objective {params.get('objective', '?')} (conceptvec featureviz; Lucent's parameterisation and transforms)."
    )
    if meta.get("partial"):
        caption += f" Interrupted: the images of {meta.get('steps_done', '?')} steps."
    shutil.copyfile(fv_dir / "featureviz.json", folder / "featureviz.json")
    return {"tiles": tiles, "caption": caption, "json": f"{ASSETS}/{page}/featureviz.json"}


def causal_section(causal_dir: Path | None, folder: Path, page: str) -> dict[str, Any] | None:
    """The "Causal effect" section from what `conceptvec causal` wrote: heatmap, steering curve, numbers; None without it."""
    from ..storage.causal_effects import METADATA_FILE as CAUSAL_FILE
    from ..storage.causal_effects import CausalEffects
    from .figures.causal import selectivity_heatmap, steering_curve

    if causal_dir is None or not (causal_dir / CAUSAL_FILE).is_file():
        return None
    effects = CausalEffects.load(causal_dir)
    selectivity_heatmap(effects).savefig(folder / "causal_selectivity.png", dpi=DPI)
    figures = [{"src": f"{ASSETS}/{page}/causal_selectivity.png", "alt": "selectivity heatmap"}]
    if effects.steering:
        steering_curve(effects).savefig(folder / "causal_steering.png", dpi=DPI)
        figures.append({"src": f"{ASSETS}/{page}/causal_steering.png", "alt": "steering curve"})
    shutil.copyfile(causal_dir / CAUSAL_FILE, folder / CAUSAL_FILE)
    p = effects.params
    shown = ("intervention", "group", "n_examples", "d_logit", "d_prob", "kl", "flip", "d_loss", "cos_change")
    effect_rows = [{k: r[k] for k in shown if not (isinstance(r[k], float) and np.isnan(r[k]))} for r in effects.effects]
    labels = {"concept": "concept", "hurt_own": "drop on its members", "hurt_other_concepts_max": "largest drop on another concept's members",
              "hurt_random_examples": "drop on random examples", "hurt_random_directions_max": "largest drop by a random direction on its members",
              "hurt_neuron_on_own": "drop by the neuron on its members", "more_than_other_concepts": "beats other concepts' members",
              "more_than_random_directions": "beats random directions"}
    selectivity = [{labels[k]: v for k, v in r.items() if k in labels} for r in effects.selectivity()]
    return {
        "figures": figures,
        "edit": "set to the store's mean projection" if p.get("mode") == "mean" else "removed",
        "params": f"mode {p.get('mode')}, directions: {p.get('directions', 'concept vectors')}, {p.get('n_random')} random directions (seed {p.get('seed')}), {p.get('random_examples')} "
                  f"random examples; target: {p.get('targets')}; task {p.get('task')}",
        "selectivity": table(selectivity),
        "effects": table(effect_rows),
        "json": f"{ASSETS}/{page}/{CAUSAL_FILE}",
    }


# -- the index ------------------------------------------------------------------------------------------
def index_page(
    root: Path, run_dir: Path, store: ActivationStore, scan: ScanResult | None, pages: list[Page], examples: Examples
) -> dict[str, Any]:
    """Draw the scan's histogram (when there is a scan) into ``root/assets/``; return the index's context.

    Parameters
    ----------
    root : Path
        The report folder being written.
    run_dir : Path
        The run directory, named on the page.
    store : ActivationStore
    scan : ScanResult or None
        The run's scan; its neurons are listed in a sortable table, linked where ``pages`` has theirs.
    pages : list of Page
        The neuron pages, one card each.
    examples : Examples

    Returns
    -------
    dict
        What ``templates/index.html`` prints.
    """
    import matplotlib

    matplotlib.use("Agg")
    meta = store.metadata
    cards = []
    for page in pages:
        cs = page.cs
        cards.append({
            "page": page.name,
            "title": f"neuron {cs.neuron}" if cs.neuron is not None else page.name,
            "n_concepts": cs.n_concepts,
            "words": count_words(cs.n_concepts, cs.evidence),  # set by neuron_page, which runs first
            "n_agglomerative": cs.n_agglomerative,
            "sizes": cs.summary()["concept_sizes"],
            "thumbs": Markup("".join(examples.html(int(i), root / ASSETS) for i in cs.top_indices[:8])),
        })
    return {
        "title": "conceptvec report",
        "describe": describe(meta),
        "run_dir": run_dir.resolve(),
        "cards": cards,
        "scan": _scan_section(root, scan, {p.name for p in pages}) if scan is not None else None,
        "provenance": provenance_rows({
            "model": meta.get("model"), "layer": meta.get("layer"), "pooling": meta.get("pooling"), "data": meta.get("data"),
            "store": str(store.path.resolve()), "scan parameters": scan.params.to_dict() if scan is not None else None,
            "report": environment(),
        }),
    }


def _scan_section(root: Path, scan: ScanResult, named: set[str]) -> dict[str, Any]:
    counts, live = scan.n_concepts, scan.live
    F.scan_histogram(counts, live, rule=scan.rule_text()).savefig(root / ASSETS / "scan_histogram.png", dpi=DPI)
    d = F.scan_data(counts, live)
    rows = []
    evidence = scan.evidence()
    for k, n in enumerate(scan.neurons):
        page = scan_page(scan, int(n))
        supported = sum(bool(r["supported_by"]) for r in evidence[k])
        unchecked = all(not r["checks"] for r in evidence[k])
        rows.append({
            "neuron": int(n), "page": page, "name": page.replace("_", " "), "linked": page in named,
            "concepts": int(counts[k]), "n_agglomerative": int(scan.n_agglomerative[k]),
            # "yes" only where checks support two concepts or more (core.evidence)
            "polysemantic": "not live" if not live[k] else "no" if counts[k] < 2 else "yes" if supported >= 2
            else "unchecked" if unchecked else "unsupported split",
            "evidence": count_words(int(counts[k]), evidence[k]),
        })
    return {
        "data": d,
        "scale_warnings": scan.scale_problems(),
        "top": scan.params.top,
        "rule": scan.rule_text(),
        "histogram": f"{ASSETS}/scan_histogram.png",
        "histogram_table": table([{"concepts": int(v), "neurons": f} for v, f in d["concepts_per_neuron"].items() if f]),
        "rows": rows,
    }
