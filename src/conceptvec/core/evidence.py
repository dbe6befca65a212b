"""Evidence per concept, in one place: which checks support a concept, with every number behind the verdict.

A concept of a neuron (``ConceptSet``) is checked by whatever was measured:

- **split**: the neuron's first split was significant (auto's p-value below ``significance``, or below ``fdr`` when
  set: a neuron of one concept has no split to check);
- **stability**: the concept came back in at least ``UNSTABLE_BELOW`` of the resampling runs (``stability=B``);
- **labels**: where the examples have class labels, the concept's most common label is enriched in it against the
  whole store (hypergeometric upper tail below ``LEVEL``), and, for a split neuron, the concept is purer in its
  label than the same-sized groups of random splits of the neuron's kept top examples (permutation p below
  ``LEVEL``): both must hold;
- **causal**: with ``cv.causal_effects`` run, ablating the concept hurts its own members more than any other
  concept's members, the random examples and any random direction hurts them.

The verdict is "supported by k of n checks" over the checks that apply; a concept no check supports is called
"not supported", never a concept with evidence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import hypergeom

LEVEL = 0.01  # enrichment and purity tests are kept at this level
RANDOM_SPLITS = 200  # random splits of the same sizes for the purity test
STABLE_FROM = 0.5  # the share of resampling runs a stable concept comes back in (params.UNSTABLE_BELOW)


def label_checks(example_labels: np.ndarray, top_indices: np.ndarray, concept_labels: np.ndarray, *,
                 seed: int = 0, draws: int = RANDOM_SPLITS) -> list[dict[str, Any]]:
    """Per concept: its most common label, the hypergeometric enrichment of that label against all examples, and
    its purity against random splits of the neuron's kept top examples into groups of the same sizes.

    Parameters
    ----------
    example_labels : array of shape (n_examples,)
        A class label per example of the store (negative: unlabelled, left out).
    top_indices : array of shape (N,)
        The neuron's top examples.
    concept_labels : array of shape (N,)
        Each top example's concept (-1: removed).
    """
    example_labels = np.asarray(example_labels)
    labelled = example_labels >= 0 if np.issubdtype(example_labels.dtype, np.number) else np.ones(len(example_labels), bool)
    population = int(labelled.sum())
    top_labels = example_labels[top_indices]
    kept = (concept_labels >= 0) & labelled[top_indices]
    n_concepts = int(concept_labels.max()) + 1 if concept_labels.size else 0
    rng = np.random.default_rng(seed)
    sizes = [int(np.sum(kept & (concept_labels == j))) for j in range(n_concepts)]
    pool = top_labels[kept]
    random_purity = np.zeros((draws, n_concepts))
    if n_concepts > 1:
        for d in range(draws):
            shuffled = rng.permutation(pool)
            bounds = np.cumsum([0] + sizes)
            random_purity[d] = [_purity(shuffled[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    rows = []
    for j in range(n_concepts):
        members = top_labels[kept & (concept_labels == j)]
        if len(members) == 0:
            rows.append({"label": None, "members": 0, "purity": float("nan"), "enrichment_p": float("nan"),
                         "random_purity": float("nan"), "purity_p": float("nan")})
            continue
        values, counts = np.unique(members, return_counts=True)
        label, k = values[np.argmax(counts)], int(counts.max())
        in_store = int(np.sum(example_labels[labelled] == label))
        purity = k / len(members)
        rows.append({
            "label": label.item() if hasattr(label, "item") else label, "members": int(len(members)), "purity": purity,
            "label_share_in_store": in_store / population,
            "enrichment_p": float(hypergeom.sf(k - 1, population, in_store, len(members))),
            "random_purity": float(random_purity[:, j].mean()) if n_concepts > 1 else float("nan"),
            "purity_p": float((1 + np.sum(random_purity[:, j] >= purity)) / (1 + draws)) if n_concepts > 1 else float("nan"),
        })
    return rows


def _purity(labels: np.ndarray) -> float:
    return float(np.unique(labels, return_counts=True)[1].max() / len(labels)) if len(labels) else 0.0


def verdicts(n_concepts: int, *, split_p: float | None, split_level: float, reappearance: np.ndarray | None,
             labels: list[dict[str, Any]] | None, causal: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """One row per concept: each check's numbers and outcome (True, False, or None: not applicable), and the verdict.

    ``split_p`` is the first split's p-value (None: a fixed threshold, no test); ``reappearance`` (n_concepts,) from
    a stability run; ``labels`` from :func:`label_checks`; ``causal`` from ``CausalEffects.selectivity()``.
    """
    rows = []
    for j in range(n_concepts):
        checks: dict[str, bool | None] = {}
        row: dict[str, Any] = {"concept": j}
        if n_concepts > 1 and split_p is not None and np.isfinite(split_p):
            row["split_p"] = float(split_p)
            checks["split"] = bool(split_p < split_level)
        if reappearance is not None:
            row["reappearance"] = float(reappearance[j])
            checks["stability"] = bool(reappearance[j] >= STABLE_FROM)
        if labels is not None and labels[j]["label"] is not None:
            lab = labels[j]
            row.update({f"label_{k}": v for k, v in lab.items()})
            enriched = lab["enrichment_p"] < LEVEL
            checks["labels"] = bool(enriched and (n_concepts == 1 or lab["purity_p"] < LEVEL))
        if causal is not None and j < len(causal):
            c = causal[j]
            row.update({f"causal_{k}": v for k, v in c.items() if k != "concept"})
            outcomes = [c.get(k) for k in ("more_than_other_concepts", "more_than_random_examples", "more_than_random_directions")]
            checks["causal"] = all(o for o in outcomes if o is not None)
        support = [name for name, ok in checks.items() if ok]
        row["checks"] = checks
        row["supported_by"] = support
        row["verdict"] = (f"supported by {len(support)} of {len(checks)} checks ({', '.join(support)})" if support
                          else f"not supported (0 of {len(checks)} checks)" if checks else "no check applies")
        rows.append(row)
    return rows
