"""The atlas's thresholds figure: concepts per neuron against the distance threshold for the layer.

When the run holds the output of ``conceptvec thresholds`` made from the scan's store (``thresholds.json`` and
``thresholds.png`` in a folder of the run, e.g. ``RUN/thresholds``), its figure is shown: concepts per neuron (k-means at
every C). Otherwise the clusters per neuron are read off the ward trees the scan already holds, which needs no k-means
and no activations (``report.figures.thresholds.clusters_across_thresholds``); the page says which it is and how to
get the other.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ...scan.result import ScanResult
from ...storage.store import ActivationStore

FIGURE = "thresholds.png"  # in the atlas folder
SWEEP_JSON, SWEEP_FIGURE = "thresholds.json", "thresholds.png"  # what `conceptvec thresholds --out DIR` writes (cli/thresholds.py)
SWEEP_FORMAT = "conceptvec.thresholds/1"


def find_sweep(folders: list[Path], store: ActivationStore) -> Path | None:
    """The first folder among ``folders`` and their direct sub-folders holding a ``conceptvec thresholds`` output made
    from ``store`` (its store id, or its path for stores without one); None when there is none."""
    for folder in folders:
        if not folder.is_dir():
            continue
        for candidate in [folder] + sorted(p for p in folder.iterdir() if p.is_dir()):
            record = candidate / SWEEP_JSON
            if not (record.is_file() and (candidate / SWEEP_FIGURE).is_file()):
                continue
            try:
                made = json.loads(record.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            source = made.get("store") if isinstance(made, dict) and made.get("format") == SWEEP_FORMAT else None
            if isinstance(source, dict) and (source.get("store_id") == store.store_id if store.store_id
                                             else source.get("store") == str(store.path.resolve())):
                return candidate
    return None


def thresholds_figure(scan: ScanResult, store: ActivationStore, folders: list[Path], out: Path) -> dict[str, Any] | None:
    """Write ``out/thresholds.png`` and return what the layer view says about it; None when no live neuron has a tree
    with a merge above 0 (nothing to cut)."""
    found = find_sweep(folders, store)
    if found is not None:
        shutil.copyfile(found / SWEEP_FIGURE, out / FIGURE)
        return {"src": FIGURE, "kind": "sweep", "source": str(found.resolve()),
                "what": f"Concepts per live neuron at each distance threshold (k-means at every C), from `conceptvec thresholds` "
                        f"in {found}: left, every merge height of the layer with the thresholds marked; right, the share of "
                        f"neurons with 0, 1, 2, 3, 4+ concepts and the mean."}
    live = scan.live
    if not live.any() or scan.linkage.shape[1] == 0:
        return None
    from ..figures.thresholds import clusters_across_thresholds

    params = scan.params
    where = folders[0] / "thresholds" if folders else "RUN/thresholds"
    marked = None if params.auto_distance else params.fixed_distance
    heights = scan.linkage[live][:, :, 2]
    if not np.any(heights > 0):
        return None  # every live neuron's top examples are alike: no threshold splits them
    fig = clusters_across_thresholds(heights, n_concepts=scan.n_concepts[live], marked=marked, unit_length=params.auto_distance)
    fig.savefig(out / FIGURE, dpi=100)
    scale = (" The scan used distance_threshold=\"auto\", whose trees are of the examples scaled to unit length, so these "
             "thresholds are on that scale, not on the raw activations' (the paper's 15)." if params.auto_distance else "")
    return {"src": FIGURE, "kind": "clusters", "source": None,
            "what": "Clusters C per live neuron at each distance threshold, read off the ward trees the scan holds (no k-means, "
                    "so concepts, C less outliers and too-small clusters, are at most C)." + scale,
            "how": f"For concepts per neuron at every threshold, run `conceptvec thresholds {store.path} --out {where}` "
                   "and write the atlas again."}
