"""Do auto's concepts on the digits CNN follow the digit labels? (``bench_real.py --digits-labels``)

For every live unit of the 10-class control and every merged-pair unit of the merged network (shipped weights,
``block3``), auto's ConceptSet on the unit is compared with the digit labels of its top examples:

- **top purity**: the share of the top examples that are the unit's most common digit; **digits >= 10**: how many
  digits hold at least 10 of them (a top set of one digit cannot be split by digit);
- **ARI**: adjusted Rand index of auto's concepts (kept members only) to the digit labels;
- **purity gain**: the concepts' mean majority-digit share minus that of random groups of the same sizes drawn from
  the same kept members (200 draws); 0 means the concepts hold digits no better than chance groups;
- **enriched**: the share of concepts whose majority digit is enriched among its members (hypergeometric test
  against the unit's kept members, p < 0.01).

For the merged-pair units the truth is the two merged digits: ``ARI pair`` is the ARI restricted to examples of the
two digits. ``montage(...)`` writes one PNG per unit (a row of top images per concept) to look at what a split follows.

``truth_cases`` (printed last, and by ``bench_evidence.py``): the units whose answer is known, merged-pair units holding
both merged digits >= 20 times (two concepts) and control units >= 90 % one digit (one concept), with auto's answer
and the evidence's verdicts on each.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import hypergeom
from sklearn.metrics import adjusted_rand_score

import conceptvec as cv

RANDOM_GROUPS = 200
ENRICH_P = 0.01


def _majority_share(groups: list[np.ndarray]) -> float:
    """Mean over groups of the share held by the group's most common label."""
    return float(np.mean([Counter(g.tolist()).most_common(1)[0][1] / len(g) for g in groups]))


def label_agreement(cs: cv.ConceptSet, labels: np.ndarray, *, rng: np.random.Generator) -> dict[str, Any]:
    """How well a ConceptSet's concepts follow class labels of its top examples (see the module docstring)."""
    top_labels = labels[cs.top_indices]
    counts = Counter(top_labels.tolist())
    row: dict[str, Any] = {
        "n_concepts": cs.n_concepts,
        "top_purity": counts.most_common(1)[0][1] / len(top_labels),
        "digits_ge10": sum(c >= 10 for c in counts.values()),
        "top_digits": counts.most_common(3),
    }
    kept = cs.labels >= 0
    if cs.n_concepts < 2:
        return row
    concept = cs.labels[kept]
    lab = top_labels[kept]
    groups = [lab[concept == j] for j in range(cs.n_concepts)]
    sizes = [len(g) for g in groups]
    chance = []
    for _ in range(RANDOM_GROUPS):
        perm = rng.permutation(lab)
        chance.append(_majority_share(np.split(perm, np.cumsum(sizes)[:-1])))
    enriched = 0
    for g in groups:
        d, k = Counter(g.tolist()).most_common(1)[0]
        # P(X >= k): k of the group's len(g) members have digit d, of (lab == d).sum() among len(lab) kept members.
        enriched += hypergeom.sf(k - 1, len(lab), int((lab == d).sum()), len(g)) < ENRICH_P
    row.update(ari=adjusted_rand_score(lab, concept), purity=_majority_share(groups),
               purity_gain=_majority_share(groups) - float(np.mean(chance)), enriched=enriched / cs.n_concepts)
    return row


def pair_ari(cs: cv.ConceptSet, labels: np.ndarray, pair: list[int]) -> float:
    """ARI of the concepts to the digit labels over the kept top examples of the two merged digits."""
    lab = labels[cs.top_indices]
    keep = (cs.labels >= 0) & np.isin(lab, pair)
    return float(adjusted_rand_score(lab[keep], cs.labels[keep])) if keep.sum() > 1 else float("nan")


def montage(cs: cv.ConceptSet, images: np.ndarray, labels: np.ndarray, path: Path, *, per_row: int = 14) -> None:
    """One row of the most activating member images per concept, each titled with its digit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(cs.n_concepts, 1)
    fig, axes = plt.subplots(rows, per_row, figsize=(per_row * 0.7, rows * 0.85 + 0.4), squeeze=False)
    for j in range(rows):
        members = cs.members(j) if cs.n_concepts else cs.top_indices
        for i, ax in enumerate(axes[j]):
            ax.axis("off")
            if i < len(members):
                ax.imshow(images[members[i]], cmap="gray_r")
                ax.set_title(str(labels[members[i]]), fontsize=7)
        makeup = Counter(labels[members].tolist()).most_common(3)
        axes[j][0].text(-0.5, 0.5, f"c{j} n={len(members)}\n{makeup}", transform=axes[j][0].transAxes,
                        ha="right", va="center", fontsize=6)
    fig.suptitle(f"neuron {cs.neuron}: {cs.n_concepts} concepts (auto)", fontsize=8, y=1.0)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _summary(rows: list[dict[str, Any]], key: str) -> str:
    vals = np.array([r[key] for r in rows if key in r], dtype=float)
    if not len(vals):
        return "-"
    return f"{np.median(vals):.2f} [{np.percentile(vals, 10):.2f}, {np.percentile(vals, 90):.2f}]"


def digits_activations() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The digits images (n, 8, 8), their digits (n,) and the ``block3`` activations (n, 64) of the shipped merged and
    control networks (keys ``merged``, ``control``; float64)."""
    import torch

    from conceptvec.models.digits import load_shipped_digits_cnn, preprocess_digits
    from conceptvec.models.hooks import capture_layer, forward_to_layer
    from conceptvec.sources.digits import load_digits_images

    images, digits = load_digits_images()
    x = preprocess_digits(images)
    acts = {}
    for name, merged in (("merged", True), ("control", False)):
        model, _, _ = load_shipped_digits_cnn(merged=merged)
        with capture_layer(model.block3) as captured, torch.inference_mode():
            acts[name] = forward_to_layer(model, x, captured).numpy().astype(np.float64)
    return images, digits, acts


def digits_labels(montage_dir: Path | None = None, *, n_montage: int = 4, seed: int = 0) -> None:
    """Print label agreement of auto's concepts for the control's live units and the merged-pair units."""
    from conceptvec.demo.demo import merged_pair_units

    images, digits, acts = digits_activations()
    auto = cv.Params(distance_threshold="auto")
    rng = np.random.default_rng(seed)
    control = acts["control"]
    sets = [cv.disentangle(control, neuron=j, params=auto) for j in range(control.shape[1])]
    live = [cs for cs in sets if cs.is_live]
    ctrl_rows = [label_agreement(cs, digits, rng=rng) | {"neuron": cs.neuron} for cs in live]
    pairs = merged_pair_units(acts["merged"], digits, auto)
    pair_rows = []
    for r in pairs:
        cs = cv.disentangle(acts["merged"], neuron=r["neuron"], params=auto)
        pair_rows.append(label_agreement(cs, digits, rng=rng) | {"neuron": r["neuron"], "pair_ari": pair_ari(
            cs, digits, r["pair"]), "split": r["split"]})
    print("\ndigits CNN, auto's concepts against the digit labels (median [10th, 90th percentile] over units)")
    print(f"{'units':<28} {'n':>3} {'split':>5} {'top purity':>18} {'digits>=10':>18} {'ARI':>18} "
          f"{'purity gain':>18} {'enriched':>18}")
    for label, rows in (("control, live", ctrl_rows), ("merged-pair units", pair_rows),
                        ("control, split", [r for r in ctrl_rows if r["n_concepts"] >= 2])):
        print(f"{label:<28} {len(rows):>3} {sum(r['n_concepts'] >= 2 for r in rows):>5} "
              f"{_summary(rows, 'top_purity'):>18} {_summary(rows, 'digits_ge10'):>18} {_summary(rows, 'ari'):>18} "
              f"{_summary(rows, 'purity_gain'):>18} {_summary(rows, 'enriched'):>18}")
    print(f"merged-pair units: ARI to the two merged digits {_summary(pair_rows, 'pair_ari')}")
    single = [r for r in ctrl_rows if r["top_purity"] >= 0.9]
    print(f"control units whose top set is >= 90 % one digit: {len(single)} of {len(ctrl_rows)}, "
          f"of them split by auto: {sum(r['n_concepts'] >= 2 for r in single)}")
    if montage_dir is not None:
        montage_dir.mkdir(parents=True, exist_ok=True)
        by_neuron = {cs.neuron: cs for cs in live}
        chosen = [r["neuron"] for r in sorted(single, key=lambda r: -r["top_purity"]) if r["n_concepts"] >= 2]
        for j in chosen[:n_montage]:
            montage(by_neuron[j], images, digits, montage_dir / f"control_unit{j}.png")
        for r in pair_rows[:2]:
            cs = cv.disentangle(acts["merged"], neuron=r["neuron"], params=auto)
            montage(cs, images, digits, montage_dir / f"merged_unit{r['neuron']}.png")
        print(f"montages: {montage_dir}")
    # the units whose answer is known, with the evidence's verdicts (a montage per unit under montage_dir/truth)
    truth_cases(acts, images, digits, params=auto, montage_dir=montage_dir / "truth" if montage_dir is not None else None,
                seed=seed)


BOTH_AT_LEAST = 20  # a merged-pair unit is a known two-concept case when both merged digits hold this many of its top
ONE_DIGIT_SHARE = 0.9  # a control unit is a known one-concept case when one digit holds this share of its top
LEVELS = (0.01, 0.05, 0.1)


def truth_cases(acts: dict[str, np.ndarray], images: np.ndarray, digits: np.ndarray, *, params: cv.Params,
                montage_dir: Path | None = None, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """auto's answer and its evidence on the digits units whose answer is known, printed and returned.

    - **two concepts**: units of the merged network whose top set holds both digits of a merged pair (trained as one
      class) at least ``BOTH_AT_LEAST`` times each; right when split with each merged digit the majority of a concept;
    - **one concept**: units of the 10-class control whose top set is at least ``ONE_DIGIT_SHARE`` one digit; right
      when not split (a split of them cannot follow the digit).

    Each unit's split check uses its first-split p-value adjusted over its layer's scan (``split_q``), as a scan's
    evidence does; the label check uses the digits. ``montage_dir``: one PNG per unit (``montage``).
    """
    from conceptvec.core.auto import unit_rows
    from conceptvec.core.evidence import count_words, layer_verdicts
    from conceptvec.core.fdr import adjusted_p
    from conceptvec.models.digits import are_merged

    out: dict[str, list[dict[str, Any]]] = {"two": [], "one": []}
    for name, case in (("merged", "two"), ("control", "one")):
        scan = cv.scan_layer(acts[name], params=params, workers=1, progress=False)
        evidence = layer_verdicts(scan.concept_offsets, scan.top_indices, scan.labels, first_p=scan.first_p,
                                  level=params.evidence_fdr, reappearance=None, example_labels=digits, seed=seed)
        q = adjusted_p(scan.first_p)
        for i in np.flatnonzero(scan.live):
            top = digits[scan.top_indices[i]]
            (a, na), (b, nb) = (Counter(top.tolist()).most_common(2) + [(-1, 0)])[:2]
            if case == "two" and not (are_merged(a, b) and nb >= BOTH_AT_LEAST):
                continue
            if case == "one" and na < ONE_DIGIT_SHARE * len(top):
                continue
            cs = scan[int(scan.neurons[i])]
            n = cs.n_concepts
            majorities = [Counter(digits[cs.members(j)].tolist()).most_common(1)[0][0] for j in range(n)]
            rows = evidence[i]
            row = {"neuron": int(scan.neurons[i]), "top": [(int(a), int(na)), (int(b), int(nb))], "n_concepts": n,
                   "split_q": float(q[i]), "label_check": [r["checks"].get("labels") for r in rows],
                   "words": count_words(n, rows)}
            if case == "two":
                row["right"] = bool(a in majorities and b in majorities)
                row["pair_ari"] = pair_ari(cs, digits, [int(a), int(b)])
                # how far apart the two digits are as auto sees the rows (unit length, in units of their RMS spread
                # about their mean), beside the smallest separation auto's test detects at this N (core.power)
                unit = unit_rows(cs.top_activations)
                rms = float(np.sqrt(np.mean(np.sum((unit - unit.mean(axis=0)) ** 2, axis=1))))
                row["apart"] = float(np.linalg.norm(unit[top == a].mean(axis=0) - unit[top == b].mean(axis=0)) / rms)
                row["detects"] = cv.detectable_separation(cs.top_activations, significance=params.significance, seed=seed)
            else:
                row["right"] = n == 1
            out[case].append(row)
            if montage_dir is not None:
                montage_dir.mkdir(parents=True, exist_ok=True)
                montage(cs, images, digits, montage_dir / f"{name}_unit{row['neuron']}.png")
    print(f"\ndigits CNN, units whose answer is known (auto, significance {params.significance:g}; split check: split_q over "
          f"the layer's scan at FDR {params.evidence_fdr:g}; label check: the digits)")
    for case, what in (("two", f"two concepts: merged network, both merged digits >= {BOTH_AT_LEAST} of the top"),
                       ("one", f"one concept: control, >= {ONE_DIGIT_SHARE:.0%} of the top one digit")):
        rows = out[case]
        split = [r for r in rows if r["n_concepts"] >= 2]
        levels = ", ".join(f"{sum(r['split_q'] < lv for r in split)} at {lv:g}" for lv in LEVELS)
        print(f"{what}: {len(rows)} units; auto splits {len(split)}, right {sum(r['right'] for r in rows)} of {len(rows)}; "
              f"splits supported by the split check: {levels}; by the label check: "
              f"{sum(all(c for c in r['label_check']) for r in split)}")
        for r in rows:
            extra = (f" pair ARI {r['pair_ari']:.2f}; the digits {r['apart']:.2f} apart, auto detects {r['detects']:.2g}"
                     if "pair_ari" in r else "")
            print(f"  unit {r['neuron']:>2}: top {r['top']}, {r['n_concepts']} concept(s), split_q {r['split_q']:.3g}, "
                  f"labels {r['label_check']}{extra}; {'right' if r['right'] else 'wrong'}; evidence: {r['words']}")
    if montage_dir is not None:
        print(f"montages: {montage_dir}")
    return out
