"""Benchmark: the evidence's split check against class labels, at several levels (issue 23 item 4).

A scan's split check calls a neuron's split supported when its first-split p-value, adjusted over the scan's first
splits (Benjamini-Hochberg, ``split_q``), is below a level. Which level? Here every split ``auto`` makes on a layer
with class labels is checked against those labels, a truth that does not come from the method:

- **separates labels**: the adjusted Rand index of the split's concepts (kept top examples) to the class labels is
  above that of all but 1 % of random reassignments of the same examples to groups of the same sizes (``DRAWS``
  draws; a permutation p-value below ``SEPARATES_P``);
- **label check**: ``core.evidence``'s own label check (every concept's majority label hypergeometrically enriched
  against the layer and purer than random splits of the same sizes), for comparison.

For each level it prints how many splits are supported, how many of those and of the rest separate labels, and the
expected number of false splits: at most ``significance`` x (neurons tested) among all splits auto made, at most
level x (supported) among the supported ones.

Layers: efficientnet-lite0 ``blocks.6`` over 3,000 Debian icons (labels: the icon's context folder; ``real_data.py``
rebuilds it offline), the MiniLM MLP layer over package descriptions (labels: the package's section; ``text``, slow)
and the digits CNN's ``block3``, merged and 10-class control (shipped weights; labels: the digit). The digits' cases
with a known answer are in ``digits_labels.truth_cases``.

Usage: python benchmarks/bench_evidence.py [--layers blocks.6,merged,control] [--montage-dir DIR] [--random K] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

import conceptvec as cv
from conceptvec.core.evidence import layer_verdicts

LEVELS = (0.01, 0.05, 0.1)
DRAWS = 200
SEPARATES_P = 0.01


def label_ari(top_labels: np.ndarray, concepts: np.ndarray, *, rng: np.random.Generator, draws: int = DRAWS) -> tuple[float, float]:
    """ARI of concepts (N,) (-1: removed, left out) to class labels (N,), and its permutation p-value against random
    groups of the same sizes."""
    kept = concepts >= 0
    y, c = top_labels[kept], concepts[kept]
    ari = float(adjusted_rand_score(y, c))
    null = np.array([adjusted_rand_score(y, rng.permutation(c)) for _ in range(draws)])
    return ari, float((1 + np.sum(null >= ari)) / (1 + draws))


def layer_splits(acts: np.ndarray, labels: np.ndarray, *, params: cv.Params, seed: int = 0,
                 directions: np.ndarray | None = None) -> dict[str, Any]:
    """Scan a layer with ``params`` (its neurons, or ``directions`` (k, n_units)) and judge each split of a live
    neuron against ``labels`` (n_examples,)."""
    names, codes = np.unique(labels, return_inverse=True)
    scan = cv.scan_layer(acts, params=params, workers=1, progress=False,
                         **({"directions": directions} if directions is not None else {}))
    rows = layer_verdicts(scan.concept_offsets, scan.top_indices, scan.labels, first_p=scan.first_p, level=LEVELS[0],
                          reappearance=None, example_labels=codes, seed=seed)
    rng = np.random.default_rng(seed)
    splits = []
    for i in np.flatnonzero(scan.live & (scan.n_concepts >= 2)):
        ari, ari_p = label_ari(codes[scan.top_indices[i]], scan.labels[i], rng=rng)
        splits.append({"neuron": int(scan.neurons[i]), "n_concepts": int(scan.n_concepts[i]), "split_p": rows[i][0]["split_p"],
                       "split_q": rows[i][0]["split_q"], "ari": ari, "ari_p": ari_p, "separates": ari_p < SEPARATES_P,
                       "label_check": all(r["checks"].get("labels", False) for r in rows[i]),
                       # per concept, core.evidence's label numbers: majority label, its enrichment and purity tests
                       "concepts": [{k: (names[r["label_label"]].item() if k == "label" else r.get(f"label_{k}"))
                                     for k in ("label", "members", "purity", "enrichment_p", "random_purity", "purity_p")}
                                    for r in rows[i] if r.get("label_label") is not None]})
    tested = int(np.count_nonzero(np.isfinite(scan.first_p[scan.live])))
    return {"tested": tested, "splits": splits, "significance": params.significance}


def level_table(name: str, found: dict[str, Any]) -> list[dict[str, Any]]:
    """Print (and return) the supported splits at each level and how many separate labels."""
    splits, tested = found["splits"], found["tested"]
    q = np.array([s["split_q"] for s in splits])
    sep = np.array([s["separates"] for s in splits], bool)
    check = np.array([s["label_check"] for s in splits], bool)
    ari = np.array([s["ari"] for s in splits])
    print(f"\n{name}: auto splits {len(splits)} of {tested} live neurons tested; expected false splits among them "
          f"<= {found['significance'] * tested:.1f} (significance {found['significance']:g} x tested)")
    print(f"{'level':>6} {'supported':>10} {'separate labels':>16} {'median ARI':>11} {'label check':>12} "
          f"{'expected false':>15} | {'rest':>5} {'separate labels':>16} {'median ARI':>11} {'label check':>12}")
    out = []
    for level in LEVELS:
        s = q < level
        row = {"level": level, "supported": int(s.sum()), "separate_supported": int((sep & s).sum()),
               "rest": int((~s).sum()), "separate_rest": int((sep & ~s).sum()), "expected_false_supported": level * int(s.sum())}
        out.append(row)

        def med(mask: np.ndarray) -> str:
            return f"{np.median(ari[mask]):.2f}" if mask.any() else "-"

        print(f"{level:>6g} {int(s.sum()):>10} {f'{int((sep & s).sum())} of {int(s.sum())}':>16} {med(s):>11} "
              f"{f'{int((check & s).sum())} of {int(s.sum())}':>12} {level * int(s.sum()):>15.1f} | {int((~s).sum()):>5} "
              f"{f'{int((sep & ~s).sum())} of {int((~s).sum())}':>16} {med(~s):>11} {f'{int((check & ~s).sum())} of {int((~s).sum())}':>12}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="blocks.6,merged,control", help="blocks.5, blocks.6, text, merged, control")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--montage-dir", default=None, help="write a montage PNG per digits truth-case unit here")
    ap.add_argument("--json", default=None, help="write every split's numbers (split_p, split_q, ARI, per-concept label "
                                                  "enrichment and purity) per layer to this JSON file")
    ap.add_argument("--random", type=int, default=0,
                    help="real layers: also this many random directions, whose splits show how often the measure "
                         "'separates labels' holds with no concept behind it")
    args = ap.parse_args()
    warnings.simplefilter("ignore", cv.ConceptvecWarning)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; one thread")
    params = cv.Params(distance_threshold="auto")
    names = [n for n in args.layers.split(",") if n]
    recorded: dict[str, Any] = {}
    with threadpool_limits(1):
        digits_acts = None
        for name in names:
            if name in ("merged", "control"):
                from digits_labels import digits_activations

                if digits_acts is None:
                    digits_acts = digits_activations()
                images, digits, acts = digits_acts
                found = layer_splits(acts[name], digits, params=params, seed=args.seed)
                title = f"digits CNN {name} block3 ({acts[name].shape[0]} x {acts[name].shape[1]}), labels: the digit"
            else:
                import real_data

                folder = real_data.build_text() if name == "text" else real_data.build_images()
                layer = np.load(folder / ("acts.npy" if name == "text" else f"{name}.npy")).astype(np.float64)
                labels = np.array(json.loads((folder / "meta.json").read_text())["labels"])
                found = layer_splits(layer, labels, params=params, seed=args.seed)
                what = "package section" if name == "text" else "icon context folder"
                title = f"{'all-MiniLM-L6-v2 ' + real_data.TEXT_LAYER if name == 'text' else 'efficientnet-lite0 ' + name} " \
                        f"({layer.shape[0]} x {layer.shape[1]}), labels: {what}"
                if args.random:
                    # a control: random directions of the layer (Gaussian in its standardised units) have no concept
                    # of their own, so how often their splits "separate labels" is what the measure gives by itself
                    sd = layer.std(axis=0)
                    sd[sd == 0] = 1.0
                    rand = np.random.default_rng([args.seed, 7]).standard_normal((args.random, layer.shape[1])) / sd
                    control = layer_splits(layer, labels, params=params, seed=args.seed, directions=rand)
                    splits = control["splits"]
                    print(f"\n{title}: {args.random} random directions: auto splits {len(splits)}; "
                          f"{sum(r['separates'] for r in splits)} of them separate labels "
                          f"(median ARI {np.median([r['ari'] for r in splits]) if splits else float('nan'):.2f})")
            recorded[name] = {"title": title, **found, "levels": level_table(title, found)}
        if digits_acts is not None:
            from digits_labels import truth_cases

            images, digits, acts = digits_acts
            truth_cases(acts, images, digits, params=params, montage_dir=Path(args.montage_dir) if args.montage_dir else None)
    if args.json:
        Path(args.json).write_text(json.dumps(recorded, indent=1, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
        print(f"every split's numbers: {args.json}")


if __name__ == "__main__":
    main()
