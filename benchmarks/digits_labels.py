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
    fig, axes = plt.subplots(rows, per_row, figsize=(per_row * 0.7, rows * 0.85), squeeze=False)
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
    fig.suptitle(f"neuron {cs.neuron}: {cs.n_concepts} concepts (auto)", fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _summary(rows: list[dict[str, Any]], key: str) -> str:
    vals = np.array([r[key] for r in rows if key in r], dtype=float)
    if not len(vals):
        return "-"
    return f"{np.median(vals):.2f} [{np.percentile(vals, 10):.2f}, {np.percentile(vals, 90):.2f}]"


def digits_labels(montage_dir: Path | None = None, *, n_montage: int = 4, seed: int = 0) -> None:
    """Print label agreement of auto's concepts for the control's live units and the merged-pair units."""
    import torch

    from conceptvec.demo.demo import merged_pair_units
    from conceptvec.models.digits import load_shipped_digits_cnn, preprocess_digits
    from conceptvec.models.hooks import capture_layer, forward_to_layer
    from conceptvec.sources.digits import load_digits_images

    images, digits = load_digits_images()
    x = preprocess_digits(images)
    auto = cv.Params(distance_threshold="auto")
    acts = {}
    for name, merged in (("merged", True), ("control", False)):
        model, _, _ = load_shipped_digits_cnn(merged=merged)
        with capture_layer(model.block3) as captured, torch.inference_mode():
            acts[name] = forward_to_layer(model, x, captured).numpy().astype(np.float64)
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
