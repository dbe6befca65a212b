"""Benchmark: does the method recover superposition that a real network has? Truth known, real weights, offline.

Layers (``real_data.py`` rebuilds and caches them): efficientnet-lite0 ``blocks.5`` and ``blocks.6`` over Debian's
PNG icons composited on white, and all-MiniLM-L6-v2 ``encoder.layer.3.intermediate`` over apt's package descriptions.

Cases, the same for every representation and criterion:

- **pairs / triples**: neurons that ``auto`` on the activations calls single-concept, whose top-N sets overlap in at
  most ``MAX_OVERLAP`` examples; their superposed direction is the sum of their basis directions, each divided by
  its neuron's standard deviation over the layer (so each source weighs the same). Truth: each of the direction's
  top-N examples belongs to the one source whose own top-N set holds it (examples in none or several are set aside).
  Printed: the share of cases with the exact count, the share where every source is the majority of a concept
  ("all majority"), the mean adjusted Rand index to the truth (removed examples count as one more group), and the
  mean ARI that k-means told the true count reaches on the same representation ("oracle": what the representation
  allows at best for a k-means cut).
- **random**: Gaussian directions in the same standardised units; the share split into >= 2 concepts (a control:
  what the method finds on any direction).
- **consistency**: live neurons against the same neuron plus a random perturbation of 10 % of its (standardised)
  norm, and against ``seed=1``: the share getting the same count.

Representations: ``activations`` (the paper's: the top examples' pooled activations of the layer),
``attribution`` (gradient x input at the layer below, pooled like the layer: why the direction fires) and
``excitation`` (its positive part on its 5 leading principal components over the top examples, ``core.represent``),
``contributions`` (the rows x_k * d_k, ``core.represent``; a neuron: its activations) and, for the image layers,
``pixels`` (gradient x input at the pixels pooled over a 4 x 4 grid; recomputed from the icons, slow).
``dictionary`` (each atom's term c_a(x) (w_a . d) of the projection, in a TopK SAE of the layer fitted once and cached by
``real_data.layer_dictionary``: ``--dict-expansion`` atoms per unit, ``--dict-k``, ``--dict-seed``, ``--dict-epochs``),
``dictionary+`` (its positive part: the atoms that push the direction up), ``dict-codes`` (the codes of the atoms with
w_a . d > 0, unweighted), ``dictionary-units`` (the positive terms mapped back to the units: sum_a max(term_a, 0) w_a),
``pca`` / ``pca+`` (each of the layer's 50 leading principal components' term ((x - mean) . v_p)(v_p . d), or its
positive part). None of these is offered by the package: ``docs/thresholds.md`` says why.
Criteria: the paper's fixed ``15``, ``auto`` and auto with the layer null. Diagnostics (issue 23 h1): ``--consistency-detail``
prints, for auto, each consistency neuron whose count changes (its first split's p-value, excess share and null draws
under the base, perturbed and seed-1 directions; how many of its top-N the perturbation keeps); ``--what-if
SIG[:MIN_EXCESS],...`` adds auto criteria at another significance (and ``core.auto.MIN_EXCESS``, patched for those
rows only) on the same cases.

Usage: python benchmarks/bench_real.py [--layers text,blocks.5,blocks.6] [--pairs 40] [--triples 20] [--reps activations,attribution]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from itertools import combinations
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

import conceptvec as cv
from conceptvec.core.live import live_mask
from conceptvec.core.represent import atom_contributions, contributions, excitation
from conceptvec.core.steps import cluster_top
from conceptvec.core.streaming import top_examples, top_k_desc

import real_data

TOP = 100
MAX_OVERLAP = 10
PERTURBATION = 0.1
CRITERIA = {"paper 15": cv.Params(), "auto": cv.Params(distance_threshold="auto"),
            "auto, layer null": cv.Params(distance_threshold="auto", null="layer")}
EXTRA_EXCESS: dict[str, float] = {}  # --what-if criteria with another core.auto.MIN_EXCESS (diagnostic only)


@contextmanager
def min_excess(value: float | None) -> Iterator[None]:
    """core.auto.MIN_EXCESS set to ``value`` inside (None: unchanged); a diagnostic of --what-if, never the package's."""
    from conceptvec.core import auto

    before = auto.MIN_EXCESS
    auto.MIN_EXCESS = before if value is None else value
    try:
        yield
    finally:
        auto.MIN_EXCESS = before


@dataclass
class Layer:
    name: str
    acts: np.ndarray  # (n_examples, n_units) float64
    attribution: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (top indices, direction over units) -> (N, d_below)
    labels: np.ndarray
    pixels: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None  # images: (N, REGIONS**2) pixel attributions
    dictionary: Any = None  # a cv.Dictionary of the layer (--reps dictionary...)


REGIONS = 4  # pixel attributions pooled over a REGIONS x REGIONS grid of the image


def image_layer(name: str) -> Layer:
    import torch

    folder = real_data.build_images()
    acts = np.load(folder / f"{name}.npy").astype(np.float64)
    below = np.load(folder / ("in5.npy" if name == "blocks.5" else "in6.npy"), mmap_mode="r")
    block = real_data.image_model().module.blocks[int(name.split(".")[1])].eval()

    def attribution(idx: np.ndarray, direction: np.ndarray) -> np.ndarray:
        x = torch.tensor(np.asarray(below[np.sort(idx)], dtype=np.float32)).requires_grad_(True)
        w = torch.tensor(direction, dtype=torch.float32)
        (block(x).mean(dim=(2, 3)) @ w).sum().backward()
        out = (x.grad * x).sum(dim=(2, 3)).detach().numpy().astype(np.float64)
        return out[np.argsort(np.argsort(idx))]  # back to idx's order

    meta = json.loads((folder / "meta.json").read_text())
    loaded = real_data.image_model()
    net = loaded.module.eval()
    last = int(name.split(".")[1])

    def pixels(idx: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Gradient x input at the pixels (summed over colour), pooled over a REGIONS x REGIONS grid: where in the
        image the direction's evidence lies. Recomputed from the icons (the cache holds no pixels)."""
        x = torch.stack([loaded.transform(real_data.composite(Path(meta["paths"][i]))) for i in idx]).requires_grad_(True)
        h = net.bn1(net.conv_stem(x))
        for b in net.blocks[: last + 1]:
            h = b(h)
        (h.mean(dim=(2, 3)) @ torch.tensor(direction, dtype=torch.float32)).sum().backward()
        g = (x.grad * x).sum(dim=1, keepdim=True)
        return torch.nn.functional.adaptive_avg_pool2d(g, REGIONS).flatten(1).detach().numpy().astype(np.float64)

    return Layer(f"efficientnet-lite0 {name}", acts, attribution, np.array(meta["labels"]), pixels)


def text_layer() -> Layer:
    import torch

    folder = real_data.build_text()
    acts = np.load(folder / "acts.npy").astype(np.float64)
    tokens = np.load(folder / "tokens_in.npy", mmap_mode="r")
    offsets = np.load(folder / "offsets.npy")
    mlp = real_data.text_model().module.get_submodule(real_data.TEXT_LAYER).eval()

    def attribution(idx: np.ndarray, direction: np.ndarray) -> np.ndarray:
        w = torch.tensor(direction, dtype=torch.float32)
        rows = []
        for i in idx:
            x = torch.tensor(np.asarray(tokens[offsets[i]:offsets[i + 1]], dtype=np.float32)).requires_grad_(True)
            (mlp(x).mean(dim=0) @ w).backward()
            rows.append((x.grad * x).sum(dim=0).detach().numpy())
        return np.stack(rows).astype(np.float64)

    labels = np.array(json.loads((folder / "meta.json").read_text())["labels"])
    return Layer(f"all-MiniLM-L6-v2 {real_data.TEXT_LAYER}", acts, attribution, labels)


PCA_COMPONENTS = 50
_PCA: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def layer_pca(layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """The layer's mean and its PCA_COMPONENTS leading principal axes (k, n_units), computed once per layer."""
    if layer.name not in _PCA:
        from sklearn.decomposition import PCA

        pca = PCA(PCA_COMPONENTS, random_state=0).fit(layer.acts)
        _PCA[layer.name] = (pca.mean_, pca.components_)
    return _PCA[layer.name]


def represent(layer: Layer, rep: str, idx: np.ndarray, direction: np.ndarray) -> np.ndarray:
    if rep == "activations":
        return layer.acts[idx]
    if rep == "contributions":
        # a neuron's contributions are its own activation alone: the activations instead, as disentangle does
        return contributions(layer.acts[idx], direction) if np.count_nonzero(direction) >= 2 else layer.acts[idx]
    if rep == "attribution":
        return layer.attribution(idx, direction)
    if rep == "excitation":
        return excitation(layer.attribution(idx, direction))
    if rep.startswith("dictionary") or rep == "dict-codes":
        dic = layer.dictionary
        codes = dic.encode(layer.acts[idx])
        terms = atom_contributions(codes, dic.decoder, direction)
        if rep == "dictionary+":  # only the atoms that push the direction up
            return np.maximum(terms, 0.0)
        if rep == "dict-codes":  # the codes of the atoms that write positively on the direction, unweighted
            return codes * (dic.decoder.astype(np.float64) @ direction > 0)[None, :]
        if rep == "dictionary-units":  # the reconstruction by the atoms that push the direction up, in the units
            return np.maximum(terms, 0.0) @ dic.atoms()
        return terms
    if rep.startswith("pca"):  # each principal component's term ((x - mean) . v_p)(v_p . d), the layer's top PCA_COMPONENTS
        mean, vt = layer_pca(layer)
        terms = ((layer.acts[idx] - mean) @ vt.T) * (vt @ direction)[None, :]
        return np.maximum(terms, 0.0) if rep == "pca+" else terms
    if rep == "pixels" and layer.pixels is not None:
        return layer.pixels(idx, direction)
    raise ValueError(rep)


def source_directions(acts: np.ndarray, kind: str, *, count: int, seed: int) -> np.ndarray:
    """The directions superposed, (m, n_units): ``units`` (the basis), ``svd`` (the leading right singular vectors of
    the standardised layer, mapped back to the units) or ``random`` (Gaussian in standardised units)."""
    sd = acts.std(axis=0)
    sd[sd == 0] = 1.0
    if kind == "units":
        return np.eye(acts.shape[1])
    if kind == "svd":
        from sklearn.utils.extmath import randomized_svd

        _, _, vt = randomized_svd((acts - acts.mean(axis=0)) / sd, n_components=min(count, acts.shape[1] - 1), random_state=seed)
        return vt / sd[None, :]
    if kind == "random":
        return np.random.default_rng([seed, 7]).standard_normal((count, acts.shape[1])) / sd[None, :]
    raise ValueError(kind)


def single_concept_sources(layer: Layer, sources: np.ndarray, *, max_neurons: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Live sources (a seeded sample of at most ``max_neurons``) that auto on the activations calls single-concept,
    and every source's top-N examples (m, N)."""
    rng = np.random.default_rng(seed)
    units = np.array_equal(sources, np.eye(len(sources)))
    if units:
        idx, scores = top_examples(layer.acts, TOP, neurons=np.arange(len(sources)))
    else:
        idx, scores = top_examples(layer.acts, TOP, directions=sources / np.linalg.norm(sources, axis=1, keepdims=True))
    live = np.flatnonzero(live_mask(scores))
    sample = np.sort(rng.choice(live, size=min(max_neurons, len(live)), replace=False))
    auto = CRITERIA["auto"]
    one = [j for j in sample if (cv.disentangle(layer.acts, neuron=int(j), params=auto) if units else
                                 cv.disentangle(layer.acts, direction=sources[j], params=auto)).n_concepts == 1]
    return np.array(one, dtype=np.int64), idx


def pick_cases(single: np.ndarray, top_idx: np.ndarray, k: int, n: int, seed: int) -> list[tuple[int, ...]]:
    """Up to ``n`` seeded sets of ``k`` single-concept neurons whose top sets overlap pairwise in <= MAX_OVERLAP examples."""
    rng = np.random.default_rng(seed)
    sets = {int(j): set(top_idx[j].tolist()) for j in single}
    cases: list[tuple[int, ...]] = []
    for _ in range(200 * n):
        if len(cases) == n or len(single) < k:
            break
        c = tuple(sorted(int(j) for j in rng.choice(single, size=k, replace=False)))
        if c not in cases and all(len(sets[a] & sets[b]) <= MAX_OVERLAP for a, b in combinations(c, 2)):
            cases.append(c)
    return cases


def judge(labels: np.ndarray, truth: np.ndarray, k: int) -> tuple[bool, float]:
    """(every source the majority of a concept, ARI to the truth) on the examples with a truth."""
    has = truth >= 0
    lab, tru = labels[has], truth[has]
    majorities = set()
    for c in np.unique(lab[lab >= 0]):
        values, counts = np.unique(tru[lab == c], return_counts=True)
        majorities.add(int(values[np.argmax(counts)]))
    return len(majorities) == k, float(adjusted_rand_score(tru, lab))


def run_layer(layer: Layer, reps: list[str], *, n_pairs: int, n_triples: int, n_random: int, n_consistency: int,
              max_neurons: int, seed: int, null_draws: int = 100, sources_kind: str = "units",
              consistency_detail: bool = False) -> None:
    t0 = time.perf_counter()
    acts = layer.acts
    sd = acts.std(axis=0)
    sd[sd == 0] = 1.0
    sources = source_directions(acts, sources_kind, count=max_neurons, seed=seed)
    spread = (acts @ sources.T).std(axis=0)  # each source's sd over the layer: superposed at equal weight
    single, top_idx = single_concept_sources(layer, sources, max_neurons=max_neurons, seed=seed)
    print(f"\n{layer.name}: {acts.shape[0]} examples x {acts.shape[1]} units; sources {sources_kind}: {len(single)} "
          f"single-concept (auto) of {min(max_neurons, len(sources))} sampled")
    rng = np.random.default_rng(seed + 1)
    superposed = {2: pick_cases(single, top_idx, 2, n_pairs, seed), 3: pick_cases(single, top_idx, 3, n_triples, seed)}
    randoms = [rng.standard_normal(acts.shape[1]) / sd for _ in range(n_random)]
    _, scores = top_examples(acts, TOP, neurons=np.arange(acts.shape[1]))
    live = np.flatnonzero(live_mask(scores))
    consistency = np.sort(rng.choice(live, size=min(n_consistency, len(live)), replace=False))
    perturbations = {int(j): rng.standard_normal(acts.shape[1]) for j in consistency}

    cw = max(16, *(len(c) for c in CRITERIA))  # the criterion column's width

    def top_of(direction: np.ndarray) -> np.ndarray:
        return top_k_desc(acts @ direction, TOP).astype(np.int64)

    print(f"{'representation':<14} {'criterion':<{cw}} {'pairs exact':>11} {'all maj.':>8} {'ARI':>5} {'oracle':>6} "
          f"{'triples exact':>13} {'all maj.':>8} {'ARI':>5} {'oracle':>6} {'random split':>12} {'perturbed same':>14} "
          f"{'seed same':>9} {'smallest source (pairs, triples)':>33}")
    for rep in reps:
        criteria = {c: p for c, p in CRITERIA.items() if null_draws or p.null != "layer"}  # --null-draws 0: without
        rows: dict[str, dict[str, list[float]]] = {c: {} for c in criteria}
        null = cv.layer_null(acts, params=CRITERIA["auto, layer null"], draws=null_draws,
                             rows=lambda idx, d: represent(layer, rep, idx, d), representation=rep) if null_draws else None  # noqa: B023

        def cluster(x: np.ndarray, params: cv.Params, crit: str) -> dict:
            with min_excess(EXTRA_EXCESS.get(crit)):
                return cluster_top(x, params, layer_null=null if params.null == "layer" else None)

        def add(crit: str, key: str, value: float) -> None:
            rows[crit].setdefault(key, []).append(value)

        for k, cases in superposed.items():
            for case in cases:
                direction = sum(sources[j] / spread[j] for j in case)
                idx = top_of(direction)
                member = np.array([[i in set(top_idx[j].tolist()) for j in case] for i in idx])
                truth = np.where(member.sum(axis=1) == 1, member.argmax(axis=1), -1)
                x = represent(layer, rep, idx, direction)
                has = truth >= 0
                oracle = KMeans(k, n_init=5, random_state=0).fit_predict(x[has] / np.maximum(
                    np.linalg.norm(x[has], axis=1, keepdims=True), 1e-12))
                for crit, params in criteria.items():
                    out = cluster(x, params, crit)
                    n = int(out["labels"].max()) + 1
                    ok, ari = judge(out["labels"], truth, k)
                    add(crit, f"exact{k}", n == k)
                    add(crit, f"maj{k}", ok)
                    add(crit, f"ari{k}", ari)
                    add(crit, f"oracle{k}", adjusted_rand_score(truth[has], oracle))
                    # the smallest source's share of the examples with a truth: near 0, a case is one source
                    add(crit, f"minor{k}", np.bincount(truth[has], minlength=k).min() / max(int(has.sum()), 1))
        for direction in randoms:
            idx = top_of(direction)
            x = represent(layer, rep, idx, direction)
            for crit, params in criteria.items():
                add(crit, "random", int(cluster(x, params, crit)["labels"].max()) + 1 >= 2)
        detail: list[dict[str, Any]] = []
        for j in consistency:
            base = np.eye(acts.shape[1])[j] / sd[j]
            noise = perturbations[int(j)] / sd
            moved = base + PERTURBATION * np.linalg.norm(base * sd) * noise / np.linalg.norm(noise * sd)
            tops = {"base": top_of(base), "moved": top_of(moved)}
            xs = {name: represent(layer, rep, tops[name], d) for name, d in (("base", base), ("moved", moved))}
            for crit, params in criteria.items():
                outs = (cluster(xs["base"], params, crit), cluster(xs["moved"], params, crit),
                        cluster(xs["base"], params.replace(seed=1), crit))
                n0, n1, n2 = (int(o["labels"].max()) + 1 for o in outs)
                add(crit, "perturbed", n0 == n1)
                add(crit, "seed", n0 == n2)
                if consistency_detail and crit == "auto":
                    detail.append(consistency_row(int(j), outs, overlap=len(np.intersect1d(tops["base"], tops["moved"]))))
        for crit in criteria:
            r = {key: float(np.mean(v)) if v else float("nan") for key, v in rows[crit].items()}
            pct = lambda key: f"{100 * r.get(key, float('nan')):.0f} %"  # noqa: E731
            print(f"{rep:<14} {crit:<{cw}} {pct('exact2'):>11} {pct('maj2'):>8} {r.get('ari2', np.nan):>5.2f} "
                  f"{r.get('oracle2', np.nan):>6.2f} {pct('exact3'):>13} {pct('maj3'):>8} {r.get('ari3', np.nan):>5.2f} "
                  f"{r.get('oracle3', np.nan):>6.2f} {pct('random'):>12} {pct('perturbed'):>14} {pct('seed'):>9} "
                  f"{pct('minor2'):>16} {pct('minor3'):>16}")
        if detail:
            print_consistency_detail(rep, detail, CRITERIA["auto"].significance)
    print(f"  cases: {len(superposed[2])} pairs, {len(superposed[3])} triples, {n_random} random directions, "
          f"{len(consistency)} neurons for consistency; {time.perf_counter() - t0:.0f} s")


def consistency_row(neuron: int, outs: tuple[dict, dict, dict], *, overlap: int) -> dict[str, Any]:
    """--consistency-detail: auto's counts for a neuron (base, perturbed, seed 1), its first tested split under each, and
    how many of the base's top-N the perturbed direction keeps."""
    def first(out: dict) -> dict[str, Any]:
        tests = out["split_tests"] or [{}]
        return {k: tests[0].get(k) for k in ("p_value", "share", "null_mean", "draws", "split", "size")}

    return {"neuron": neuron, "counts": [int(o["labels"].max()) + 1 for o in outs],
            "agglomerative": [int(o["n_agglomerative"]) for o in outs], "first": [first(o) for o in outs], "overlap": overlap}


def print_consistency_detail(rep: str, rows: list[dict[str, Any]], level: float) -> None:
    """Every neuron whose count differs under the perturbation or seed 1 (auto), then a summary: how many have a first
    split near the level (p within a decade of it, base or perturbed), how many a first decision that differs, and the
    kept top-N (changed against unchanged neurons)."""
    def near(f: dict[str, Any]) -> bool:
        return f["p_value"] is not None and level / 10 <= f["p_value"] <= level * 10

    print(f"  consistency detail ({rep}, auto; first split: p, share - null mean, draws; overlap = top-{TOP} kept):")
    for r in rows:
        if len(set(r["counts"])) > 1:
            firsts = "; ".join(f"p {f['p_value']:.2g} exc {f['share'] - f['null_mean']:+.3f} draws {f['draws']}"
                               if f["p_value"] is not None else "untested" for f in r["first"])
            print(f"    neuron {r['neuron']:>5} counts base/moved/seed1 {r['counts']} (ward C {r['agglomerative']}) "
                  f"overlap {r['overlap']:>3}  [{firsts}]")
    for which, col in (("perturbed", 1), ("seed 1", 2)):
        changed = [r for r in rows if r["counts"][0] != r["counts"][col]]
        same = [r for r in rows if r["counts"][0] == r["counts"][col]]
        first_differs = sum(r["first"][0]["split"] != r["first"][col]["split"] for r in changed)
        near_level = sum(near(r["first"][0]) or near(r["first"][col]) for r in changed)
        near_all = sum(near(r["first"][0]) for r in rows)
        ov = lambda rs: f"{np.median([r['overlap'] for r in rs]):.0f}" if rs else "-"  # noqa: E731
        print(f"  {which}: {len(changed)} of {len(rows)} change; first decision differs in {first_differs}; first p within "
              f"a decade of {level:g} in {near_level} (of all neurons: {near_all}); median top-{TOP} kept {ov(changed)} "
              f"(changed) / {ov(same)} (same)")


def digits_fdr() -> None:
    """The digits CNN (shipped weights, block3): merged-pair units split against the 10-class control's live units
    split, for auto per neuron and for auto with the layer's first splits at FDR 0.05 (``Params.fdr``)."""
    import torch

    from conceptvec.demo.demo import merged_pair_units
    from conceptvec.models.digits import load_shipped_digits_cnn, preprocess_digits
    from conceptvec.models.hooks import capture_layer, forward_to_layer
    from conceptvec.sources.digits import load_digits_images

    images, digits = load_digits_images()
    x = preprocess_digits(images)
    print("\ndigits CNN (shipped weights, block3, 1797 examples x 64 units)")
    print(f"{'rule':<24} {'merged-pair units split':>24} {'control live units split':>24} {'expected false (control)':>24}")
    auto = CRITERIA["auto"]
    acts = {}
    for name, merged in (("merged", True), ("control", False)):
        model, _, _ = load_shipped_digits_cnn(merged=merged)
        with capture_layer(model.block3) as captured, torch.inference_mode():
            acts[name] = forward_to_layer(model, x, captured).numpy().astype(np.float64)
    pairs = merged_pair_units(acts["merged"], digits, auto)
    for label, params in (("auto (0.01 per split)", auto), ("auto, FDR 0.05", auto.replace(fdr=0.05)),
                          ("auto, FDR 0.01", auto.replace(fdr=0.01))):
        scans = {name: cv.scan_layer(a, params=params, workers=1, progress=False, projecting=False) for name, a in acts.items()}
        split_pairs = sum(r["split"] and scans["merged"].n_agglomerative[r["neuron"]] > 1 for r in pairs)
        control = scans["control"]
        live = control.live
        print(f"{label:<24} {f'{split_pairs} of {len(pairs)}':>24} "
              f"{f'{int((control.n_concepts[live] >= 2).sum())} of {int(live.sum())}':>24} "
              f"{control.layer_error['expected_false_splits']:>24.1f}")
    # The layer null per direction (disentangle; the null drawn once per network and reused for its units).
    layered = CRITERIA["auto, layer null"]
    nulls = {name: cv.layer_null(a, params=layered) for name, a in acts.items()}
    counts = {name: [cv.disentangle(a, neuron=j, params=layered, layer_null=nulls[name]).n_concepts
                     for j in range(a.shape[1])] for name, a in acts.items()}
    pairs = merged_pair_units(acts["merged"], digits, layered)
    _, scores = top_examples(acts["control"], TOP, neurons=np.arange(acts["control"].shape[1]))
    live = live_mask(scores)
    split_pairs = sum(r["split"] and counts["merged"][r["neuron"]] > 1 for r in pairs)
    control_split = int((np.array(counts["control"])[live] >= 2).sum())
    print(f"{'auto, layer null':<24} {f'{split_pairs} of {len(pairs)}':>24} {f'{control_split} of {int(live.sum())}':>24} "
          f"{0.01 * int(live.sum()):>24.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="text,blocks.5,blocks.6")
    ap.add_argument("--reps", default="activations,attribution,excitation")
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--triples", type=int, default=20)
    ap.add_argument("--random", type=int, default=40)
    ap.add_argument("--consistency", type=int, default=40)
    ap.add_argument("--max-neurons", type=int, default=320)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sources", default="units", choices=["units", "svd", "random"],
                    help="what is superposed: neurons, SVD directions or random directions of the layer")
    ap.add_argument("--null-draws", type=int, default=100, help="random directions of the layer null (auto, layer null)")
    ap.add_argument("--dict-expansion", type=int, default=4, help="dictionary reps: atoms per unit of the TopK SAE")
    ap.add_argument("--dict-k", type=int, default=16, help="dictionary reps: active atoms per example")
    ap.add_argument("--dict-seed", type=int, default=0, help="dictionary reps: the SAE's seed")
    ap.add_argument("--dict-epochs", type=int, default=100, help="dictionary reps: the SAE's epochs")
    ap.add_argument("--consistency-detail", action="store_true",
                    help="print auto's consistency cases whose count changes: first split's p, top-N kept (diagnostic)")
    ap.add_argument("--what-if", default="",
                    help="diagnostic: extra auto criteria SIG[:MIN_EXCESS],... (e.g. 0.001,0.01:0.04) on the same cases")
    ap.add_argument("--digits", action="store_true", help="also the digits CNN's merged pairs against its control")
    ap.add_argument("--digits-labels", action="store_true",
                    help="whether auto's concepts on the digits CNN's units follow the digit labels (digits_labels.py)")
    ap.add_argument("--montage-dir", default=None, help="with --digits-labels: write a montage PNG per split unit here")
    args = ap.parse_args()
    warnings.simplefilter("ignore", cv.ConceptvecWarning)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; torch threads 1")
    reps = args.reps.split(",")
    for item in [w for w in args.what_if.split(",") if w]:
        sig, _, excess = item.partition(":")
        name = f"auto {sig}" + (f", excess {excess}" if excess else "")
        CRITERIA[name] = cv.Params(distance_threshold="auto", significance=float(sig))
        if excess:
            EXTRA_EXCESS[name] = float(excess)
    import torch

    torch.set_num_threads(1)
    with threadpool_limits(1):
        for name in [n for n in args.layers.split(",") if n]:
            layer = text_layer() if name == "text" else image_layer(name)
            if any(r.startswith("dict") for r in reps):
                t = time.perf_counter()
                layer.dictionary = real_data.layer_dictionary(name, layer.acts, expansion=args.dict_expansion, k=args.dict_k,
                                                              seed=args.dict_seed, epochs=args.dict_epochs)
                print(f"{name}: {layer.dictionary} ({time.perf_counter() - t:.0f} s{', cached' if layer.dictionary.reused else ''})")
            run_layer(layer, reps, n_pairs=args.pairs, n_triples=args.triples, n_random=args.random,
                      n_consistency=args.consistency, max_neurons=args.max_neurons, seed=args.seed,
                      null_draws=args.null_draws, sources_kind=args.sources, consistency_detail=args.consistency_detail)
        if args.digits:
            digits_fdr()
        if args.digits_labels:
            from digits_labels import digits_labels

            digits_labels(Path(args.montage_dir) if args.montage_dir else None, seed=args.seed)


if __name__ == "__main__":
    main()
