"""`conceptvec reproduce`: the paper's ImageNet experiment in the authors' setting, and what it found beside theirs.

The setting, as the authors' code ran it (``lomahony/sw-interpretability``): torchvision Inception V3
with the ``IMAGENET1K_V1`` weights, built as ``inception_v3(pretrained=True)`` builds it
(``transform_input=True``: the weights expect inputs normalised to [-1, 1], which the model makes of
ImageNet-normalised ones); their preprocessing ``Resize(299)``, ``CenterCrop(299)``, ImageNet
mean/std (not torchvision's current preset, which resizes to 342); every 10th image of the training
set's file list (128,117 of 1,281,167); the layer ``Mixed_7b`` (their hooked node ``Mixed_7b.cat_2`` is
that module's output); ``Params()`` (N = 100, d_max = 15, outlier 15, minimum 5).

The run folder is a ``RunDir``: ``store/`` (resumable), ``scan/`` (resumable), ``neuron_35/``,
``neuron_16/``, ``neuron_1/``, ``report/``, and ``reproduce.json`` (the setting, then each statement of
the paper beside what this run found). Their image list came from an unsorted ``os.listdir``, so their
every-10th images are not exactly these: counts can differ while the method is the same.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..scan.disentangle import disentangle
from ..core.options import whole_number
from ..core.params import Params
from ..core.reference import PAPER_HISTOGRAM
from ..errors import ConceptvecError
from ..storage.atomic import read_json, write_json
from ..storage.conceptset import ConceptSet
from ..storage.provenance import environment, file_digest
from ..storage.rundir import RunDir
from ..storage.store import ActivationStore

REPRODUCE_FILE = "reproduce.json"
LAYER = "Mixed_7b"
SIZE = 299
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
EVERY = 10
NEURONS = (35, 16, 1)
PAPER = {
    35: "3 clusters and 2 concepts, after a cluster of 3 net-like images is removed; 52 examples kept",
    16: "1 concept",
    1: "2 concepts at d_max = 15, and 1 at a higher threshold",
    "scan": "concepts per neuron " + ", ".join(f"{k}: {v}" for k, v in PAPER_HISTOGRAM.items()) + " (4,232 concepts)",
}
CAVEAT = ("the authors' image list came from an unsorted os.listdir, so their every-10th images are not exactly "
          "these; the counts can differ while the method is the same")


@dataclass
class Reproduction:
    """What a reproduction found: the run folder, its store, scan and ConceptSets, and each finding beside the paper's."""

    out: Path
    store: ActivationStore
    scan: Any
    concept_sets: dict[int, ConceptSet]
    findings: list[dict[str, str]] = field(default_factory=list)
    histogram: dict[int, int] = field(default_factory=dict)
    report: Path | None = None


def paper_transform():
    """The authors' preprocessing: Resize(299), CenterCrop(299), ToTensor, ImageNet mean/std."""
    from torchvision import transforms as T

    return T.Compose([T.Resize(SIZE), T.CenterCrop(SIZE), T.ToTensor(), T.Normalize(MEAN, STD)])


MODEL = "torchvision:inception_v3"  # a weights file of it is built as torchvision builds IMAGENET1K_V1: transform_input=True


def authors_inception_v3(weights: str | os.PathLike[str]):
    """Inception V3 as ``inception_v3(pretrained=True)`` builds it, with the state dict from ``weights`` (read safely):
    what ``load_model("torchvision:inception_v3", weights)`` gives, the model ``reproduce`` extracts with."""
    from ..models.load import load_model

    return load_model(MODEL, str(weights)).module


def every_nth_image(imagenet: str | os.PathLike[str], every: int):
    """Every ``every``-th image of the sorted file list of an ImageNet-layout tree (class folders), with its class."""
    from ..sources.images import image_files

    every = whole_number("every (--every)", every, 1)  # -1 would take every image in reverse, 0 fails in slicing
    files = image_files(imagenet)
    if files.layout != "class-folders":
        raise ConceptvecError(f"{imagenet} is not in ImageNet's layout (one folder per class, e.g. train/n01440764/*.JPEG); "
                              f"give the training set's folder to --imagenet.")
    return dataclasses.replace(files, paths=files.paths[::every], labels=files.labels[::every],
                               layout=f"class-folders, every {every}th image of the sorted list")


def reproduce(
    imagenet: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str],
    out: str | os.PathLike[str],
    every: int = EVERY,
    params: Params | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    report: bool = True,
    umap: bool = True,
    progress: bool = True,
) -> Reproduction:
    """Run the paper's experiment (module notes) into ``out``; run again after an interruption to continue.

    Parameters
    ----------
    imagenet : the training set's folder (``train/``, one folder per class)
    weights : the ``IMAGENET1K_V1`` state dict of torchvision's Inception V3 (``inception_v3_google-0cc3c7bd.pth``)
    out : the run folder
    every : take every ``every``-th image of the sorted list (the paper: 10)
    params : the method's parameters (the paper's: ``Params()``)
    engine, ray_address, workers, batch_size, device : of the extraction and the scan (``cv.extract``, ``cv.scan_layer``)
    report, umap : write the HTML report (with UMAP figures) for the three neurons and the scan
    """
    from ..engines.registry import check_engine
    from ..extraction.config import ExtractConfig
    from ..extraction.pipeline import extract
    from ..scan.layer import scan_layer

    every = whole_number("every (--every)", every, 1)  # before anything is recorded
    params = params or Params()
    run = RunDir(out)
    weights = Path(weights)
    if not weights.is_file():
        raise ConceptvecError(f"--weights {weights} is not a file; give the IMAGENET1K_V1 state dict of torchvision's Inception V3 "
                              f"(inception_v3_google-0cc3c7bd.pth, in the torch hub cache after torchvision downloads it).")
    if not Path(imagenet).is_dir():
        raise ConceptvecError(f"--imagenet {imagenet} is not a folder; give ImageNet's training set folder (train/, one folder per class).")
    # the extraction's and the engine's own checks, before reproduce.json claims the folder
    ExtractConfig(batch_size=batch_size, workers=workers, device=device)
    check_engine(engine, stage="extraction", ray_address=ray_address, workers=workers)
    digest = file_digest(weights)
    setting = {"imagenet": str(Path(imagenet).resolve()), "weights": str(weights.resolve()), "weights_sha256": digest["sha256"],
               "every": int(every), "layer": LAYER, "preprocessing": repr(paper_transform()), "params": params.to_dict()}
    _claim(run.path, setting)

    files = every_nth_image(imagenet, every)
    # The model spec and its weights file, as `conceptvec extract --model torchvision:inception_v3 --weights FILE` loads
    # them (transform_input=True, recorded in the store); the weights recorded by content (sha256), so that another file
    # at the same path is another model and the same one moved is not. The preprocessing is the authors'.
    store = extract(MODEL, layer=LAYER, data=files, out=run.store, weights=str(weights), transform=paper_transform(),
                    batch_size=batch_size, workers=workers, device=device, engine=engine, ray_address=ray_address, progress=progress)
    scan = scan_layer(store, params=params, out=run.scan, engine=engine, workers=workers, ray_address=ray_address, progress=progress)
    sets = {}
    for j in NEURONS:
        sets[j] = disentangle(store, neuron=j, params=params)
        sets[j].save(run.neuron(j), overwrite=True)
    counts = Counter(int(c) for c in scan.n_concepts)
    result = Reproduction(run.path, store, scan, sets, histogram=dict(sorted(counts.items())))
    result.findings = findings(store, sets, result.histogram, params)
    write_json(run.path / REPRODUCE_FILE, {"format": "conceptvec.reproduce/1", "setting": setting, "n_images": store.n_examples,
                                           "findings": result.findings, "histogram": result.histogram, "caveat": CAVEAT,
                                           **environment()})
    if report:
        from ..report.html import write_report

        result.report = write_report(run.path, neurons=list(NEURONS), umap=umap)
    return result


def findings(store: ActivationStore, sets: dict[int, ConceptSet], histogram: dict[int, int], params: Params) -> list[dict[str, str]]:
    """Each statement of the paper beside what this run found."""
    rows = []
    cs = sets[35]
    removed = sorted(set(range(cs.n_agglomerative)) - {int(c) for c in cs.kmeans_cluster_ids})
    sizes = [int(np.sum((cs.kmeans_labels == c) & ~cs.outliers)) for c in removed]
    rows.append({"what": "neuron 35", "paper": PAPER[35],
                 "found": f"{cs.n_agglomerative} cluster(s) and {cs.n_concepts} concept(s)"
                          + (f", after {len(removed)} cluster(s) of {', '.join(map(str, sizes))} example(s) removed" if removed else "")
                          + f"; {int(cs.kept.sum())} examples kept"})
    rows.append({"what": "neuron 16", "paper": PAPER[16], "found": f"{sets[16].n_concepts} concept(s)"})
    cs = sets[1]
    # Above the last ward merge the top examples are one cluster: the smallest "higher threshold" that can give 1 concept.
    higher = float(cs.linkage[-1, 2]) * 1.001 if len(cs.linkage) else params.fixed_distance
    above = disentangle(store, neuron=1, params=params.replace(distance_threshold=max(higher, params.fixed_distance)))
    then = (f"{above.n_concepts} at d_max = {above.params.distance_threshold:.4g} (above its last merge)"
            if higher > params.fixed_distance else "one cluster already (its last merge is below d_max)")
    rows.append({"what": "neuron 1", "paper": PAPER[1],
                 "found": f"{cs.n_concepts} concept(s) at d_max = {params.distance_threshold:g}, and {then}"})
    total = sum(k * v for k, v in histogram.items())
    rows.append({"what": f"layer scan ({sum(histogram.values())} neurons)", "paper": PAPER["scan"],
                 "found": "concepts per neuron " + ", ".join(f"{k}: {v}" for k, v in histogram.items()) + f" ({total:,} concepts)"})
    return rows


def _claim(out: Path, setting: dict[str, Any]) -> None:
    """Refuse a folder that holds other files or another reproduction; record the setting before any work."""
    marker = out / REPRODUCE_FILE
    if marker.exists():
        claimed = read_json(marker, fix=f"move {out} away and run again")
        before = claimed.get("setting")
        ours = claimed.get("format") == "conceptvec.reproduce/1" and isinstance(before, dict) and "findings" not in claimed
        if before != setting and ours and [p.name for p in out.iterdir()] == [REPRODUCE_FILE]:
            # only our claim, nothing done under it (e.g. the weights file could not be read): claim it again
            write_json(marker, {"format": "conceptvec.reproduce/1", "setting": setting})
        elif claimed.get("format") != "conceptvec.reproduce/1":
            raise ConceptvecError(f"{out} holds a {REPRODUCE_FILE} that conceptvec did not write; give a new folder to --out.")
        elif before != setting:
            differs = sorted(k for k in set(before or {}) | set(setting) if (before or {}).get(k) != setting.get(k))
            raise ConceptvecError(f"{out} holds a reproduction of another setting (differs in {', '.join(differs)}); "
                                  f"choose another --out.")
        return
    if out.exists() and any(out.iterdir()):
        raise ConceptvecError(f"{out} exists and holds other files; give a new folder to --out (a reproduction's folder "
                              f"can be given again to continue it).")
    out.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"format": "conceptvec.reproduce/1", "setting": setting})
