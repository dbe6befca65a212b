"""Benchmark (issue 23 item 2): pool the layer where the direction fires ("focus") instead of over every position.

The paper pools an example's activations over all positions (space or tokens), so an example's row is dominated by
what the whole image or document holds. "focus" pools the per-position activations ``a_p`` weighted by how much the
direction ``d`` fires there: ``row = sum_p w_p a_p / sum_p w_p``, ``w_p = relu(a_p . d)``: what the layer holds where
the direction fires. Variants: ``focus-above`` (``w_p = relu(a_p . d - m)``, ``m`` the direction's mean over the
layer: only where it fires above its usual level), ``focus-soft`` (``w = softmax(s / sd(s))`` over the example's
positions), ``focus-top3`` (the mean of the 3 positions where it fires most), ``focus +c`` / ``pooled +c`` (centred
over the top examples), ``focus - pooled`` (where it fires against the whole example), ``below-pooled`` /
``below-focus`` (the same pooling of the layer BELOW's per-position inputs), ``pooled z`` / ``focus z`` (standardised
by the layer's mean and sd over examples / over the positions of STATS_SAMPLE examples), and ``attribution`` (``bench_real.py``'s
gradient x input at the layer below, the best representation measured there: a reference on the same cases).

Cases are ``bench_real.py``'s (same functions, same seeds): superposed pairs of single-concept sources (``--sources
units``: neurons; ``svd``: the layer's leading singular directions, which no unit names), top-100 sets overlapping
in <= 10 examples, truth = the one source whose top set holds the example. Printed per representation: the oracle
ARI (k-means told the true count, unit rows: the representation's ceiling for a cut), the same with what the rows
say along the sources removed (``-src``: for neuron pairs the two units' columns deleted, for any sources the rows
projected off the sources' covectors: a representation that only reads the two units gains nothing there), the
5-fold accuracy of a logistic regression telling the two sources apart on the ``-src`` rows (is the information
there at all), auto's all-majority / ARI on the same ``-src`` rows (``below-`` and ``attribution`` rows as they are),
and the share of random directions auto splits (their full rows: the control).

Per-position activations are recomputed per top set from the cached spatial / per-token inputs
(``real_data.py``): ``blocks.5``'s output is cached (``in6``), ``blocks.6`` and the text MLP are run on their inputs.

Usage: python benchmarks/bench_focus.py [--layers text,blocks.6,blocks.5] [--sources units] [--pairs 25] [--random 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import conceptvec as cv
from conceptvec.core.represent import focus_pool
from conceptvec.core.steps import cluster_top
from conceptvec.core.streaming import top_k_desc

import real_data
from bench_real import TOP, Layer, image_layer, judge, pick_cases, single_concept_sources, source_directions, text_layer

Positions = Callable[[np.ndarray], list[np.ndarray]]  # top indices -> per example (n_positions, width) activations
AUTO = cv.Params(distance_threshold="auto")
LAYER_REPS = ("pooled", "focus", "focus-above", "focus-soft", "focus-top3", "pooled +c", "focus +c", "focus - pooled",
              "pooled z", "focus z")
STATS_SAMPLE = 300  # examples whose positions give the per-position mean and sd of the layer ("focus z")
BELOW_REPS = ("below-pooled", "below-focus", "attribution")  # attribution: bench_real's, a reference on the same cases


def _flat(x: np.ndarray) -> list[np.ndarray]:
    """(N, C, H, W) -> N arrays (H*W, C)."""
    return list(np.asarray(x, dtype=np.float64).reshape(len(x), x.shape[1], -1).transpose(0, 2, 1))


def positions(name: str) -> tuple[np.ndarray, Positions, Positions]:
    """The layer's pooled activations (n, width), its per-position activations and its input's, per top set."""
    import torch

    if name == "text":
        folder = real_data.build_text()
        pooled = np.load(folder / "acts.npy").astype(np.float64)
        tokens = np.load(folder / "tokens_in.npy", mmap_mode="r")
        offsets = np.load(folder / "offsets.npy")
        mlp = real_data.text_model().module.get_submodule(real_data.TEXT_LAYER).eval()

        def below(idx: np.ndarray) -> list[np.ndarray]:
            return [np.asarray(tokens[offsets[i]:offsets[i + 1]], dtype=np.float64) for i in idx]

        def layer(idx: np.ndarray) -> list[np.ndarray]:
            with torch.inference_mode():
                return [mlp(torch.tensor(t, dtype=torch.float32)).numpy().astype(np.float64) for t in below(idx)]

        return pooled, layer, below
    folder = real_data.build_images()
    pooled = np.load(folder / f"{name}.npy").astype(np.float64)
    in6 = np.load(folder / "in6.npy", mmap_mode="r")  # blocks.5's spatial output = blocks.6's input, 7 x 7
    if name == "blocks.5":
        in5 = np.load(folder / "in5.npy", mmap_mode="r")  # 14 x 14: pooled 2 x 2 onto blocks.5's output grid

        def below5(idx: np.ndarray) -> list[np.ndarray]:
            x = torch.nn.functional.avg_pool2d(torch.tensor(np.asarray(in5[idx], dtype=np.float32)), 2)
            return _flat(x.numpy())

        return pooled, lambda idx: _flat(in6[idx]), below5
    block = real_data.image_model().module.blocks[6].eval()

    def layer6(idx: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            return _flat(block(torch.tensor(np.asarray(in6[idx], dtype=np.float32))).numpy())

    return pooled, layer6, lambda idx: _flat(in6[idx])


def rows(rep: str, pooled: np.ndarray, per: list[np.ndarray], per_below: list[np.ndarray], direction: np.ndarray,
         mean_projection: float, scales: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """The top examples' rows (N, width) in representation ``rep`` from their pooled activations (N, width), their
    per-position activations ``per`` and their per-position inputs ``per_below`` (N arrays (P, width)). ``z`` rows
    are standardised by ``scales[kind]``: the layer's (mean, sd) over examples (pooled) or over positions (focus)."""
    if rep == "below-pooled":
        return np.stack([b.mean(axis=0) for b in per_below])
    if rep == "below-focus":  # where the direction fires in the layer, applied to the layer's input there
        return np.stack([focus_pool(b, scores=a @ direction) for a, b in zip(per, per_below)])
    kind = rep.split(" ")[0]
    if kind == "pooled":
        x = pooled
    elif kind == "focus":
        x = np.stack([focus_pool(a, scores=a @ direction) for a in per])
    elif kind == "focus-above":
        x = np.stack([focus_pool(a, scores=a @ direction - mean_projection) for a in per])
    elif kind == "focus-soft":
        x = np.stack([focus_pool(a, scores=a @ direction, weighting="softmax") for a in per])
    elif kind == "focus-top3":
        x = np.stack([focus_pool(a, scores=a @ direction, weighting="top", top=3) for a in per])
    else:
        raise ValueError(rep)
    if rep == "focus - pooled":  # where it fires, against the whole example
        return x - pooled
    if rep.endswith(" z") and scales is not None:
        mu, sd = scales[kind]
        return (x - mu) / sd
    return x - x.mean(axis=0) if rep.endswith("+c") else x


def oracle(x: np.ndarray, truth: np.ndarray, k: int) -> float:
    has = truth >= 0
    z = x[has] / np.maximum(np.linalg.norm(x[has], axis=1, keepdims=True), 1e-12)
    return float(adjusted_rand_score(truth[has], KMeans(k, n_init=5, random_state=0).fit_predict(z)))


def supervised(x: np.ndarray, truth: np.ndarray) -> float:
    has = truth >= 0
    if np.bincount(truth[has]).min() < 5:
        return float("nan")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    return float(cross_val_score(clf, x[has], truth[has], cv=5).mean())


SHOWN = 6  # top examples per source in the figure


def figure(name: str, case: tuple[int, ...], idx: np.ndarray, truth: np.ndarray, per: list[np.ndarray],
           direction: np.ndarray, out: Path) -> None:
    """Where the direction fires in the top examples of each source of one pair: icons with the 7 x 7 map of
    ``relu(a_p . d)`` over them, or documents with each token shaded by its weight. One PNG, ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weights = [np.maximum(a @ direction, 0.0) for a in per]
    rows_of = [np.flatnonzero(truth == k)[:SHOWN] for k in range(len(case))]
    if name == "text":
        folder = real_data.build_text()
        texts = json.loads((folder / "meta.json").read_text())["texts"]
        tok = real_data.text_model().tokenizer
        fig, ax = plt.subplots(figsize=(13, 0.42 * SHOWN * len(case) + 1.0))
        ax.set_axis_off()
        line = 0
        for k, members in enumerate(rows_of):
            for r in members:
                tokens = tok.convert_ids_to_tokens(tok(texts[idx[r]], truncation=True, max_length=64)["input_ids"])
                w = weights[r] / max(float(weights[r].max()), 1e-12)
                x, y = 0.0, 1 - (line + 0.5) / (SHOWN * len(case) + 1)
                ax.text(x, y, f"unit {case[k]}:", fontsize=8, family="monospace", va="center", fontweight="bold")
                x += 0.075
                for t, wt in zip(tokens, w):
                    ax.text(x, y, t, fontsize=8, family="monospace", va="center",
                            bbox={"facecolor": (1.0, 0.4, 0.0, float(wt)), "edgecolor": "none", "pad": 1})
                    x += 0.0061 * (len(t) + 1)
                    if x > 0.98:
                        break
                line += 1
        ax.set_title(f"{name}: where the superposed direction of units {case[0]} + {case[1]} fires in the top documents "
                     "of each source (orange = relu(a_p . d), per document)", fontsize=9)
    else:
        folder = real_data.build_images()
        paths = json.loads((folder / "meta.json").read_text())["paths"]
        crop = real_data.image_model().transform.transforms[:2]  # resize 256 + centre crop 224, as the model sees it
        fig, axes = plt.subplots(len(case), SHOWN, figsize=(2 * SHOWN, 2.6 * len(case)), squeeze=False)
        for k, members in enumerate(rows_of):
            for c in range(SHOWN):
                ax = axes[k, c]
                ax.set_axis_off()
                if c >= len(members):
                    continue
                r = members[c]
                im = real_data.composite(Path(paths[idx[r]]))
                for t in crop:
                    im = t(im)
                w = weights[r]
                eff = w.sum() ** 2 / max(float((w ** 2).sum()), 1e-300)
                veil = np.zeros((7, 7, 4))  # dark where the direction does not fire, clear where it fires most
                veil[..., 3] = 0.75 * (1 - w.reshape(7, 7) / max(float(w.max()), 1e-12))
                ax.imshow(np.asarray(im))
                ax.imshow(veil, extent=(0, 224, 224, 0), interpolation="nearest")
                ax.set_title(f"unit {case[k]}: {eff:.0f} of 49 pos.", fontsize=8)
        fig.suptitle(f"{name}: where the superposed direction of units {case[0]} + {case[1]} fires in the top icons of each "
                     "source (dark = relu(a_p . d) low, per icon, 7 x 7; title: effective number of positions)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def run(name: str, sources_kind: str, *, n_pairs: int, n_random: int, max_neurons: int, seed: int,
        figure_dir: Path | None = None) -> None:
    t0 = time.perf_counter()
    pooled, layer, below = positions(name)
    sources = source_directions(pooled, sources_kind, count=max_neurons, seed=seed)
    spread = (pooled @ sources.T).std(axis=0)
    single, top_idx = single_concept_sources(Layer(name, pooled, None, None), sources, max_neurons=max_neurons, seed=seed)  # type: ignore[arg-type]
    cases = pick_cases(single, top_idx, 2, n_pairs, seed)
    mean = pooled.mean(axis=0)
    attribution = (text_layer() if name == "text" else image_layer(name)).attribution
    sample = np.concatenate(layer(np.sort(np.random.default_rng(seed).choice(len(pooled), STATS_SAMPLE, replace=False))))
    scales = {kind: (a.mean(axis=0), np.where(a.std(axis=0) > 0, a.std(axis=0), 1.0))
              for kind, a in (("pooled", pooled), ("focus", sample))}

    def represent(rep: str, idx: np.ndarray, d: np.ndarray, per: list[np.ndarray], per_below: list[np.ndarray]) -> np.ndarray:
        if rep == "attribution":
            return attribution(idx, d)
        return rows(rep, pooled[idx], per, per_below, d, float(mean @ d), scales)

    got: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    diag: dict[str, list[float]] = defaultdict(list)
    for case in cases:
        d = sum(sources[j] / spread[j] for j in case)
        idx = top_k_desc(pooled @ d, TOP).astype(np.int64)
        member = np.array([[i in set(top_idx[j].tolist()) for j in case] for i in idx])
        truth = np.where(member.sum(axis=1) == 1, member.argmax(axis=1), -1)
        s_cov = np.stack([sources[j] for j in case])

        def off(covectors: np.ndarray) -> np.ndarray:  # projects rows off the sources' covectors
            return np.eye(len(d)) - covectors.T @ np.linalg.solve(covectors @ covectors.T, covectors)

        # a z row's source value is z . (s * sd) + const: its covectors are the sources scaled by the sd
        offs = {"": off(s_cov), "pooled z": off(s_cov * scales["pooled"][1]), "focus z": off(s_cov * scales["focus"][1])}
        per, per_below = layer(idx), below(idx)
        if figure_dir is not None and case == cases[0]:
            figure(name, case, idx, truth, per, d, figure_dir / f"focus_{name}_{sources_kind}.png")
        for rep in LAYER_REPS + BELOW_REPS:
            x = represent(rep, idx, d, per, per_below)
            out = got[rep]
            out["oracle"].append(oracle(x, truth, 2))
            if rep in LAYER_REPS:
                x = x @ offs.get(rep, offs[""])
                out["oracle -src"].append(oracle(x, truth, 2))
            out["supervised"].append(supervised(x, truth))
            ok, ari = judge(cluster_top(x, AUTO)["labels"], truth, 2)
            out["all maj."].append(ok)
            out["ARI"].append(ari)
        w = [np.maximum(a @ d, 0) for a in per]
        diag["positions"].append(np.mean([len(v) for v in w]))
        diag["effective positions (focus)"].append(np.mean([v.sum() ** 2 / max((v ** 2).sum(), 1e-300) for v in w]))
        f = rows("focus", pooled[idx], per, per_below, d, 0.0)
        diag["cosine(focus, pooled)"].append(float(np.mean(np.sum(f * pooled[idx], 1) / np.linalg.norm(f, axis=1)
                                                            / np.linalg.norm(pooled[idx], axis=1))))
    sd = pooled.std(axis=0)
    sd[sd == 0] = 1.0
    rng = np.random.default_rng(seed + 1)
    for _ in range(n_random):
        d = rng.standard_normal(pooled.shape[1]) / sd
        idx = top_k_desc(pooled @ d, TOP).astype(np.int64)
        per, per_below = layer(idx), below(idx)
        for rep in LAYER_REPS + BELOW_REPS:
            x = represent(rep, idx, d, per, per_below)
            got[rep]["random split"].append(int(cluster_top(x, AUTO)["labels"].max()) + 1 >= 2)
    print(f"\n{name}, sources {sources_kind}: {len(cases)} pairs of {len(single)} single-concept sources, {n_random} random "
          f"directions; " + "; ".join(f"{k} {np.mean(v):.2f}" for k, v in diag.items()) + f"; {time.perf_counter() - t0:.0f} s")
    print("| representation | oracle ARI | oracle ARI -src | supervised -src | auto all maj. | auto ARI | random split |")
    print("|---|---|---|---|---|---|---|")
    for rep, r in got.items():
        m = {k: float(np.nanmean(v)) for k, v in r.items()}
        m.setdefault("random split", float("nan"))
        print(f"| {rep} | {m['oracle']:.2f} | {m['oracle -src']:.2f} | {m['supervised']:.2f} | {100 * m['all maj.']:.0f} % | "
              f"{m['ARI']:.2f} | {100 * m['random split']:.0f} % |" if "oracle -src" in m else
              f"| {rep} | {m['oracle']:.2f} | (no unit columns) | {m['supervised']:.2f} | {100 * m['all maj.']:.0f} % | "
              f"{m['ARI']:.2f} | {100 * m['random split']:.0f} % |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="text,blocks.6,blocks.5")
    ap.add_argument("--sources", default="units", choices=["units", "svd"])
    ap.add_argument("--pairs", type=int, default=25)
    ap.add_argument("--random", type=int, default=15)
    ap.add_argument("--max-neurons", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure-dir", type=Path, default=None,
                    help="write focus_<layer>_<sources>.png: where the direction fires in the first pair's top examples")
    args = ap.parse_args()
    warnings.simplefilter("ignore", cv.ConceptvecWarning)
    import torch

    torch.set_num_threads(1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; torch and BLAS threads 1")
    with threadpool_limits(1):
        for name in [n for n in args.layers.split(",") if n]:
            run(name, args.sources, n_pairs=args.pairs, n_random=args.random, max_neurons=args.max_neurons, seed=args.seed,
                figure_dir=args.figure_dir)


if __name__ == "__main__":
    main()
