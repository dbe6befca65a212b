"""Evidence per concept, in one place: which checks support a concept, with every number behind the verdict.

A concept of a neuron (``ConceptSet``) is checked by whatever was measured:

- **split**: the neuron's first split is a discovery at false discovery rate ``Params.evidence_fdr`` (default 0.05):
  in a scan its p-value adjusted over the layer's first splits (Benjamini-Hochberg) is below it, since every split
  auto made passed its own test; one direction is a layer of one (its p-value). A neuron of one concept has no split
  to check. 0.05 was chosen against class labels (``benchmarks/bench_evidence.py``): the splits a stricter 0.01
  leaves unsupported separate the labels as often as the supported ones;
- **stability**: the concept came back in at least ``UNSTABLE_BELOW`` of the resampling runs (``stability=B``);
- **labels**: where the examples have class labels, the concept's most common label is enriched in it against the
  whole store (hypergeometric upper tail below ``LEVEL``), and, for a split neuron, the concept is purer in its
  label than the same-sized groups of random splits of the neuron's kept top examples (permutation p below
  ``LEVEL``): both must hold;
- **causal**: with ``cv.causal_effects`` run, ablating the concept hurts its own members more than any other
  concept's members, the random examples and any random direction hurts them.

The verdict is "supported by k of n checks" over the checks that apply; a concept no check supports is called
"not supported", never a concept with evidence.

Beside the verdict, a count auto decided is **borderline** when its first split's p lies near the level that decided
it (:func:`is_borderline`): such counts flip far more often under a small change of the direction. The flag changes
no count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import hypergeom

from .fdr import adjusted_p
from .power import TOPS

LEVEL = 0.01  # enrichment and purity tests are kept at this level
RANDOM_SPLITS = 200  # random splits of the same sizes for the purity test
# a count is "borderline" when its first split's p lies in [level / BORDERLINE_BELOW, level * BORDERLINE_ABOVE]: chosen
# by benchmarks/bench_borderline.py on three real layers (docs/thresholds.md, "Borderline counts"); below the level the
# band is wider, since a split's p there comes from fewer null draws and flipped as often at 1e-4 as near the level
BORDERLINE_BELOW = 100.0
BORDERLINE_ABOVE = 3.0
# measured there (seed 0; every live neuron of the image layers, 320 of text): the share of borderline counts a 10 %
# perturbation of the direction flipped, against the others', and on what
BORDERLINE_FLIPPED = 0.22
NOT_BORDERLINE_FLIPPED = 0.04
BORDERLINE_MEASURED_ON = "efficientnet-lite0 blocks.6 / blocks.5 over icons and all-MiniLM-L6-v2 over package descriptions"
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
    if n_concepts > 1 and len(pool):
        # all draws at once: each row a permutation of the pool's label codes, cut into groups of the concepts' sizes
        values, codes = np.unique(pool, return_inverse=True)
        shuffled = rng.permuted(np.broadcast_to(codes, (draws, len(codes))), axis=1)
        offsets = (np.arange(draws) * len(values))[:, None]
        bounds = np.cumsum([0] + sizes)
        for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            if b > a:
                counts = np.bincount((shuffled[:, a:b] + offsets).ravel(), minlength=draws * len(values))
                random_purity[:, j] = counts.reshape(draws, len(values)).max(axis=1) / (b - a)
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


def borderline_band(level: float) -> tuple[float, float]:
    """The p-values around ``level`` that make a count borderline: (level / BORDERLINE_BELOW, level * BORDERLINE_ABOVE)."""
    return level / BORDERLINE_BELOW, level * BORDERLINE_ABOVE


def is_borderline(p: float | None, level: float) -> bool:
    """Whether a first split's p-value lies in :func:`borderline_band` of the level that decided it: a count that a
    small change of the direction flipped for about one neuron in five (``docs/thresholds.md``, "Borderline counts")."""
    lo, hi = borderline_band(level)
    return p is not None and bool(np.isfinite(p)) and lo <= p <= hi


def verdicts(n_concepts: int, *, split_p: float | None, split_level: float, reappearance: np.ndarray | None,
             labels: list[dict[str, Any]] | None, causal: list[dict[str, Any]] | None,
             split_q: float | None = None, decision: tuple[float, float] | None = None,
             decision_adjusted: bool = False) -> list[dict[str, Any]]:
    """One row per concept: each check's numbers and outcome (True, False, or None: not applicable), and the verdict.

    ``split_p`` is the first split's p-value (None: a fixed threshold, no test); ``split_q`` the same adjusted over the
    layer it was scanned with (Benjamini-Hochberg, ``core.fdr.adjusted_p``): the split check uses it when given, since
    every split auto made passed its own test and only the adjusted value can fail it. ``split_level`` is the check's
    false discovery rate (``Params.evidence_fdr``).
    ``reappearance`` (n_concepts,) from a stability run; ``labels`` from :func:`label_checks`; ``causal`` from
    ``CausalEffects.selectivity()``.
    ``decision`` is (the first split's p-value, the level auto compared it with) as auto decided the count (the
    adjusted p and ``Params.fdr`` in a scan at ``fdr``, else the raw p and ``significance``; None: a fixed threshold):
    every row of the neuron then carries ``decision_p``, ``decision_level`` and ``borderline``
    (:func:`is_borderline`), whatever the count; ``decision_adjusted``: that p is the adjusted one (a scan at ``fdr``),
    and the words say so.
    """
    rows = []
    for j in range(n_concepts):
        checks: dict[str, bool | None] = {}
        row: dict[str, Any] = {"concept": j}
        if decision is not None and np.isfinite(decision[0]):
            row.update(decision_p=float(decision[0]), decision_level=float(decision[1]),
                       borderline=is_borderline(decision[0], decision[1]))
            if decision_adjusted:
                row["decision_adjusted"] = True
        if n_concepts > 1 and split_p is not None and np.isfinite(split_p):
            row["split_p"] = float(split_p)
            if split_q is not None and np.isfinite(split_q):
                row["split_q"] = float(split_q)
            row["split_level"] = float(split_level)  # the check's false discovery rate, beside the numbers it judges
            checks["split"] = bool(row.get("split_q", split_p) < split_level)
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


def state(row: dict[str, Any]) -> str:
    """A concept's evidence in one word: ``supported`` (a check supports it), ``unsupported`` (checks apply, none
    supports it) or ``unchecked`` (no check applies)."""
    if row.get("supported_by"):
        return "supported"
    return "unsupported" if row.get("checks") else "unchecked"


def badge(row: dict[str, Any]) -> str:
    """A concept's verdict, short enough for a badge or a table cell: "3 of 4 checks", "0 of 2 checks", "unchecked";
    ", borderline count" after it when the neuron's count is borderline (:func:`is_borderline`)."""
    checks = row.get("checks") or {}
    words = f"{len(row.get('supported_by') or [])} of {len(checks)} checks" if checks else "unchecked"
    return words + (", borderline count" if row.get("borderline") else "")


def short_verdict(row: dict[str, Any]) -> str:
    """A concept's verdict for a narrow table cell: "split, labels (2 of 2)", "none (0 of 1)" or "unchecked"."""
    checks = row.get("checks") or {}
    if not checks:
        return "unchecked"
    support = row.get("supported_by") or []
    return f"{', '.join(support) or 'none'} ({len(support)} of {len(checks)})"


def borderline_words(rows: list[dict[str, Any]] | None) -> str:
    """"borderline (first split's p 0.023, level 0.01)" for a neuron whose count is borderline, else ""."""
    row = rows[0] if rows else {}
    if not row.get("borderline"):
        return ""
    adjusted = "adjusted " if row.get("decision_adjusted") else ""
    return f"borderline (first split's {adjusted}p {row['decision_p']:.2g}, level {row['decision_level']:g})"


def count_words(n_concepts: int, rows: list[dict[str, Any]] | None) -> str:
    """How many concepts a neuron has, in words that follow the evidence, and "; borderline (...)" after them when the
    count is borderline (:func:`borderline_words`)."""
    words = _count_words(n_concepts, rows)
    flag = borderline_words(rows) if rows is not None and len(rows) == n_concepts else ""
    return f"{words}; {flag}" if flag else words


def _count_words(n_concepts: int, rows: list[dict[str, Any]] | None) -> str:
    """How many concepts a neuron has, in words that follow the evidence: a group is called a concept only when a
    check supports it (the method's count itself is never changed).

    ``rows`` are ``cv.concept_evidence``'s (None: not measured; then the method's count, "2 concept(s)"). A split no
    check supports is an "unsupported split into 2 groups"; groups no check applies to are "unchecked". A single
    concept found by ``auto`` carries its power: "one concept, or two closer than 1.25".
    """
    if rows is None or len(rows) != n_concepts:
        return f"{n_concepts} concept(s)"
    if n_concepts == 0:
        return "no concept"
    states = [state(r) for r in rows]
    if n_concepts == 1:
        closer = rows[0].get("one_concept_or_two_closer_than")
        if closer is not None:
            words = "one concept, or two closer than " + (f"{closer:.3g}" if np.isfinite(closer) else "any the test detects")
            need, apart = rows[0].get("recommended_top"), rows[0].get("recommended_for")
            if need is not None and apart is not None:
                within = rows[0].get("recommended_within", max(TOPS))
                words += (f" (top {need:.0f} would detect two {apart:.3g} apart)" if np.isfinite(need)
                          else f" (even top {within:.0f}{'' if within >= max(TOPS) else ', all this data allows,'} would "
                               f"not detect two {apart:.3g} apart)")
            return words + ("" if states[0] != "unsupported" else f"; {rows[0]['verdict']}")
        return {"supported": "one concept", "unsupported": "one group no check supports",
                "unchecked": "one group, unchecked"}[states[0]]
    n_supported, n_unchecked = states.count("supported"), states.count("unchecked")
    if n_supported == n_concepts:
        return f"{n_concepts} concepts"
    if n_unchecked == n_concepts:
        return f"{n_concepts} unchecked groups (no check applies)"
    if n_supported == 0:
        return f"unsupported split into {n_concepts} groups"
    return f"{n_concepts} groups: {n_supported} supported concept(s), {n_concepts - n_supported} not"


def details(row: dict[str, Any]) -> list[tuple[str, str]]:
    """Every number behind a concept's verdict as (name, value) pairs, in the order the checks are listed."""
    skip = {"concept", "checks", "supported_by", "verdict"}
    out = [(f"check {name}", "passes" if ok else "fails") for name, ok in (row.get("checks") or {}).items()]
    for key, value in row.items():
        if key in skip:
            continue
        if isinstance(value, float):
            text = f"{value:.3g}"
        elif isinstance(value, (list, dict)):
            continue
        else:
            text = str(value)
        out.append((key, text))
    return out


def layer_verdicts(concept_offsets: np.ndarray, top_indices: np.ndarray, labels: np.ndarray, *, first_p: np.ndarray | None,
                   level: float, reappearance: np.ndarray | None, example_labels: np.ndarray | None,
                   seed: int = 0, auto_level: float | None = None, auto_fdr: bool = False) -> list[list[dict[str, Any]]]:
    """:func:`verdicts` for every neuron of a scan: per neuron, one row per concept.

    Parameters
    ----------
    concept_offsets : array of shape (m + 1,)
        The scan's index of concepts: neuron i has concepts ``concept_offsets[i]:concept_offsets[i + 1]``.
    top_indices, labels : arrays of shape (m, N)
        Each neuron's top examples and their concept (-1: removed).
    first_p : array of shape (m,) or None
        Each neuron's first-split p-value (None: a fixed threshold); the split check uses them adjusted over the m
        neurons (Benjamini-Hochberg).
    level : float
        The split check's false discovery rate (``Params.evidence_fdr``): a split is supported when its adjusted
        p-value is below it.
    reappearance : array of shape (n_total_concepts,) or None
        Each concept's share of stability runs it came back in.
    example_labels : array of shape (n_examples,) or None
        The store's class labels (negative: unlabelled).
    auto_level, auto_fdr : float or None, bool
        The level auto decided the counts at (``Params.fdr`` or ``significance``; None: no borderline flag) and whether
        it was compared with the adjusted p-values (a scan at ``fdr``) rather than the raw ones.
    """
    first_q = adjusted_p(first_p) if first_p is not None else None
    decided = first_q if auto_fdr else first_p
    out = []
    for i in range(len(top_indices)):
        a, b = int(concept_offsets[i]), int(concept_offsets[i + 1])
        checked = (label_checks(example_labels, top_indices[i], labels[i], seed=seed)
                   if example_labels is not None and b > a else None)
        out.append(verdicts(b - a, split_p=float(first_p[i]) if first_p is not None else None, split_level=level,
                            reappearance=reappearance[a:b] if reappearance is not None else None, labels=checked, causal=None,
                            split_q=float(first_q[i]) if first_q is not None else None,
                            decision=(float(decided[i]), auto_level) if decided is not None and auto_level is not None else None,
                            decision_adjusted=auto_fdr))
    return out
