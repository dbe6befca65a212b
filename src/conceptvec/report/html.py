"""A static HTML report of a run directory that opens from ``file://`` with no network.

The report reads a run directory laid out as ``conceptvec.storage.rundir.RunDir`` describes:
``store/`` (else a ConceptSet's or the scan's provenance names the store), any sub-directory
holding a ``conceptset.json`` (one neuron's or direction's ConceptSet), and ``scan/``.

``write_report`` writes ``<run>/report/`` atomically::

    index.html        the run, the scan's figures and a neuron table sortable by concept count
    neuron_<n>.html   one page per neuron: provenance, the distance-threshold slider, every figure
    assets/thumbs/    one thumbnail per example, made once and shared by all pages
    assets/<page>/    that page's figure PNGs and data.json, the numbers behind every figure

Pages use no scripts, styles, fonts or images from elsewhere; every text from the data (ids,
labels, paths, metadata) is HTML-escaped. ``pages`` gathers what each page shows, ``render``
fills the templates in ``templates/`` with it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.metrics import layer_mean
from ..core.selection import parse_neurons
from ..errors import ConceptvecError, ConceptvecWarning, StoreError
from ..scan.result import ScanResult
from ..storage.atomic import atomic_directory, refuse_existing, refuse_inside, write_json
from ..storage.conceptset import ConceptSet
from ..storage.provenance import environment
from ..storage.rundir import RunDir
from ..storage.store import ActivationStore
from .dictionary_section import run_dictionary
from .examples import Examples, examples_for_store
from .pages import ASSETS, Page, index_page, neuron_page, scan_page, set_page
from .render import write_page

REPORT_FILE = "report.json"  # what the report was made from; marks a folder as a report (so it may be replaced)
MAX_DEFAULT_SCAN_PAGES = 12  # pages made from a scan when no --neurons are given; the rest are listed


def write_report(
    run_dir: str | os.PathLike[str],
    *,
    neurons: Sequence[int] | str | None = None,
    out: str | os.PathLike[str] | None = None,
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
        The report folder; default ``<run_dir>/report``. An earlier report there (it holds
        ``report.json``) is replaced as a whole, atomically; any other folder, or one that is or
        holds the run, is refused.
    examples : Examples, optional
        Renderer of the examples; default chosen from the store's data kind (images).
    umap : bool
        Draw Fig. 2 (a UMAP fit per page: about 4 s once, umap-learn compiling, then a tenth of a second each).
    overwrite : bool
        Replace an earlier report at ``out`` (never anything else).
    """
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise ConceptvecError(f"run directory {run.path} does not exist; give the --out folder of `conceptvec demo`, `disentangle` or `scan`.")
    out = Path(out) if out is not None else run.report
    read = [(folder, what) for folder, what in ((run.scan, "scan"), (run.store, "activation store")) if folder.exists()]
    refuse_inside(out, read, fix=f"Write the report beside them: --out {run.report} (out=), the default.")
    refuse_existing(out, overwrite=overwrite, what="report", marker=REPORT_FILE, protect=[run.path])  # before the work
    saved = readable_sets(run)
    scan = ScanResult.load(run.scan) if run.scan.exists() else None
    store = run.open_store([*saved.values(), *([scan.store_path] if scan is not None else [])])
    for name, cs in saved.items():
        store.check_made_from(cs.provenance, what=f"the ConceptSet {run.path / name}")
    if scan is not None:
        store.check_made_from(scan.provenance, what=f"the scan {run.scan}")
        scan.with_activations(store)
    if examples is None:
        examples = examples_for_store(store)
    pages = choose_pages(run, saved, scan, store, neurons)
    dictionary = run_dictionary(run)
    if not pages:
        raise ConceptvecError(
            f"nothing to report in {run.path}: it has no ConceptSet folder and no scan. Make one with "
            f"`conceptvec disentangle ... --out {run.path}/neuron_N` or pass --neurons."
        )
    with atomic_directory(out, overwrite=overwrite, what="report", marker=REPORT_FILE, protect=[run.path, store.path]) as tmp:
        (tmp / ASSETS).mkdir()
        centre = layer_mean(store.activations)  # one pass for every page's centred ranking and baselines
        for page in pages:
            write_page(tmp / f"{page.name}.html", "neuron.html",
                       **neuron_page(tmp, page, store, examples, umap=umap, centre=centre, dictionary=dictionary))
        write_page(tmp / "index.html", "index.html", **index_page(tmp, run.path, store, scan, pages, examples))
        write_json(tmp / REPORT_FILE, {"run": str(run.path.resolve()), "store": str(store.path.resolve()),
                                       "store_id": store.store_id, "pages": [p.name for p in pages], "umap": umap,
                                       **environment()})
    return out / "index.html"


def readable_sets(run: RunDir) -> dict[str, ConceptSet]:
    """The run's ConceptSets by folder name; a damaged one is left out with a warning naming it and the fix."""
    saved = {}
    for name, path in run.conceptsets().items():
        try:
            saved[name] = ConceptSet.load(path)
        except StoreError as exc:
            warnings.warn(f"left out of the report: {exc}", ConceptvecWarning, stacklevel=3)
    return saved


def choose_pages(
    run: RunDir, saved: dict[str, ConceptSet], scan: ScanResult | None, store: ActivationStore,
    neurons: Sequence[int] | str | None,
) -> list[Page]:
    """The report's neuron pages, in the order the index lists them (see ``write_report`` for ``neurons``).

    ``saved`` holds the run's ConceptSets by folder name; a saved set of a neuron comes before the scan's.
    """
    pages: dict[str, Page] = {}

    def from_folder(name: str, cs: ConceptSet, page: str) -> Page:
        fv, causal = run.featureviz(name), run.causal(name)
        return Page(page, cs, f"{name}/", fv if fv.is_dir() else None, causal if causal.is_dir() else None)

    if neurons is None:
        for name, cs in saved.items():
            page = set_page(name, cs)
            if page not in pages:
                pages[page] = from_folder(name, cs, page)
        if scan is not None:
            counts = scan.n_concepts
            # live neurons first: a dead unit's many "concepts" group arbitrary examples
            order = np.lexsort((scan.neurons, -counts, ~scan.live))[:MAX_DEFAULT_SCAN_PAGES]
            for n in scan.neurons[order].tolist():
                page = scan_page(scan, n)
                if page not in pages:
                    pages[page] = Page(page, scan[n], f"{RunDir.SCAN}/")
        return list(pages.values())
    from ..scan.disentangle import disentangle

    if isinstance(neurons, str):
        neurons = parse_neurons(neurons, store.n_units).tolist()
    by_neuron = {cs.neuron: (name, cs) for name, cs in saved.items() if cs.neuron is not None}
    scanned = set(scan.neurons.tolist()) if scan is not None and scan.kind == "neurons" else set()
    params = next(iter(saved.values())).params if saved else (scan.params if scan is not None else None)
    for n in neurons:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= int(n) < store.n_units:
            raise ConceptvecError(f"neuron {n!r} is out of range: the store has {store.n_units} units (0 to {store.n_units - 1}).")
        n = int(n)
        page = RunDir.neuron_name(n)
        if n in by_neuron:
            pages[page] = from_folder(*by_neuron[n], page)
        elif scan is not None and n in scanned:
            pages[page] = Page(page, scan[n], f"{RunDir.SCAN}/")
        else:
            pages[page] = Page(page, disentangle(store, neuron=n, params=params), "computed for this report")
    return list(pages.values())
