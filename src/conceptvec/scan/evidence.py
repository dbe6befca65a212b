"""``cv.concept_evidence``: the checks of ``core.evidence`` run on a ConceptSet, its store's labels and causal effects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..core.evidence import label_checks, verdicts
from ..core.arrays import read_rows
from ..core.fdr import first_split_p
from ..core.power import RECOMMEND_FOR, TOPS, answer_power
from ..errors import ConceptvecError
from ..progress import progress_bar
from ..storage.causal_effects import CausalEffects
from ..storage.conceptset import ConceptSet, recorded_store
from ..storage.store import ActivationStore


def concept_evidence(cs: ConceptSet, *, labels: Any = "store", effects: CausalEffects | None = None,
                     seed: int = 0, recommend_for: float | str | None = RECOMMEND_FOR) -> list[dict[str, Any]]:
    """The evidence for each concept of ``cs`` in one place; also kept in ``cs.evidence`` (saved with the set).

    Parameters
    ----------
    cs : ConceptSet
        From ``cv.disentangle`` (with ``stability=B`` for the stability check).
    labels : 'store', ActivationStore, array of shape (n_examples,), or None
        Class labels of the examples: 'store' reads those of the store ``cs`` was made from when it has any
        (negative labels: unlabelled), an ActivationStore its labels; None skips the label check.
    effects : CausalEffects, optional
        ``cv.causal_effects`` of this ConceptSet, for the causal check.
    seed : int
        Seeds the random splits of the purity test.
    recommend_for : float, 'finer' or None
        For a neuron auto gives one concept: the separation (RMS units, as ``one_concept_or_two_closer_than``) whose
        recommended top is reported (``core.power.answer_power``); 'finer' (the default): one step of the power grid
        below the neuron's own X, so the words read "one concept, or two closer than 1.5 (top 300 would detect two
        1.25 apart)"; None skips it.

    Returns
    -------
    list of dict, one per concept: ``concept``, each check's numbers, ``checks`` (name -> True/False), ``supported_by``
    and ``verdict`` ("supported by 2 of 3 checks (split, labels)", or "not supported"). A live neuron auto gives one
    concept also gets ``one_concept_or_two_closer_than`` (``core.power.detectable_separation``: the separation, in
    units of the top examples' RMS spread, that auto's test would detect with 80 % power at this N and width) and
    ``recommended_top`` (the top at which it would detect ``recommended_for`` with 80 % power; inf beyond 1,000;
    neither when X is already the grid's finest, 0.25).
    """
    if not isinstance(cs, ConceptSet):
        raise ConceptvecError(f"concept_evidence takes a ConceptSet (from cv.disentangle), got {type(cs).__name__}.")
    example_labels = _labels(cs, labels)
    split_p, split_q = _split_p(cs)
    level = cs.params.decision_level  # auto's own level, for its power
    reappearance = np.asarray(cs.stability["reappearance"]) if cs.stability is not None else None
    causal = effects.selectivity() if effects is not None else None
    if causal is not None and len(causal) != cs.n_concepts:
        raise ConceptvecError(f"the causal effects hold {len(causal)} concepts, this ConceptSet {cs.n_concepts}: pass the "
                              f"effects of cv.causal_effects on this ConceptSet.")
    checked = (label_checks(example_labels, cs.top_indices, cs.labels, seed=seed) if example_labels is not None else None)
    adjusted = cs.params.fdr is not None and split_q is not None  # auto decided a scan at fdr on the adjusted p
    cs.evidence = verdicts(cs.n_concepts, split_p=split_p, split_level=cs.params.evidence_fdr, reappearance=reappearance,
                           labels=checked, causal=causal, split_q=split_q,
                           # the count's decision as auto made it, for the borderline flag (a scan at fdr: the adjusted p)
                           decision=None if split_p is None else (split_q if adjusted and split_q is not None else split_p, level),
                           decision_adjusted=adjusted)
    if cs.params.auto_distance and cs.n_concepts == 1 and cs.params.representation == "activations" and cs.is_live:
        # the power of the answer: one concept, or two closer than this (core.power)
        n_examples = cs.provenance.get("n_examples")  # a top the data cannot fill is not a recommendation
        tops = tuple(t for t in TOPS if n_examples is None or t <= n_examples)
        cs.evidence[0].update(answer_power(cs.top_activations, recommend_for=recommend_for, significance=level, seed=seed,
                                           tops=tops))
    return cs.evidence


def _split_p(cs: ConceptSet) -> tuple[float | None, float | None]:
    """The first split's p-value, and (from a scan: ``scan[n]``) the same adjusted over the scan's first splits."""
    if not cs.params.auto_distance:
        return None, None
    if cs.split_tests is not None:
        return first_split_p(cs.split_tests), None
    scanned = cs.provenance.get("scan") if isinstance(cs.provenance, dict) else None
    recorded = scanned.get("first_split_p") if isinstance(scanned, dict) else None
    adjusted = scanned.get("first_split_q") if isinstance(scanned, dict) else None
    return (float(recorded) if isinstance(recorded, (int, float)) else float("nan"),
            float(adjusted) if isinstance(adjusted, (int, float)) else None)


def _labels(cs: ConceptSet, labels: Any) -> np.ndarray | None:
    if labels is None:
        return None
    if isinstance(labels, ActivationStore):
        return store_labels(labels)
    if isinstance(labels, str) and labels == "store":
        path = recorded_store(cs)
        if path is None:
            return None
        return store_labels(path)
    found = np.asarray(labels)
    top_max = int(np.max(cs.top_indices)) if cs.top_indices.size else -1
    if found.ndim != 1 or len(found) <= top_max:
        raise ConceptvecError(f"labels must be one per example of the store (a vector longer than {top_max}), got shape "
                              f"{found.shape}.")
    return found


def store_labels(store: ActivationStore | str | None) -> np.ndarray | None:
    """A store's (or a store path's) class labels when it has any (numbers, some >= 0), else None."""
    try:
        if not isinstance(store, ActivationStore):
            if store is None or not Path(store).exists():
                return None
            store = ActivationStore.open(store)
        found = np.asarray(store.labels)
    except (KeyError, OSError, ConceptvecError):
        return None
    return found if np.issubdtype(found.dtype, np.number) and (found >= 0).any() else None


def layer_power(matrix: Any, top_indices: np.ndarray, neurons: np.ndarray, one_concept: np.ndarray, *, significance: float,
                recommend_for: float | str | None = None, seed: int = 0, progress: bool = False) -> pa.Table:
    """The power of each one-concept answer of a scan (``ScanResult.power``): one row per neuron of ``one_concept``.

    Parameters
    ----------
    matrix : A, array of shape (n_examples, n_units) or a memory map
    top_indices : array of shape (m, N)
        The scanned neurons' top examples.
    neurons : array of shape (m,)
    one_concept : bool array of shape (m,)
        The neurons to simulate (live, one concept, auto).

    Returns
    -------
    pyarrow.Table with ``neuron``, ``one_concept_or_two_closer_than`` and, with ``recommend_for`` (a separation or
    'finer', ``core.power.answer_power``), ``recommended_top``, ``recommended_for`` and ``recommended_within`` (null where
    X is the grid's finest; tops above the layer's examples are not tried); about 0.6 s per neuron on a planted 256-wide layer (benchmarks/bench_power.py).
    """
    rows: dict[str, list[Any]] = {"neuron": [], "one_concept_or_two_closer_than": []}
    if recommend_for is not None:
        rows.update(recommended_top=[], recommended_for=[], recommended_within=[])
    tops = tuple(t for t in TOPS if t <= matrix.shape[0])  # a top the layer's examples cannot fill is not a recommendation
    chosen = np.flatnonzero(one_concept)
    with progress_bar("neurons", disable=not progress, transient=True) as bar:
        task = bar.add_task("power of one-concept answers", total=len(chosen))
        for i in chosen:
            x = read_rows(matrix, top_indices[i])
            rows["neuron"].append(int(neurons[i]))
            found = answer_power(x, recommend_for=recommend_for, significance=significance, seed=seed, tops=tops)
            for key, column in rows.items():
                if key != "neuron":
                    column.append(found.get(key))
            bar.advance(task)
    return pa.table({k: pa.array(v, pa.int64() if k == "neuron" else pa.float64()) for k, v in rows.items()})
