"""The evidence on a neuron's page: one badge per concept with its verdict, every number behind it on hover and
when expanded, and the neuron's count in words that follow the verdict (``core.evidence.count_words``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.evidence import badge, count_words, details, state
from ..errors import ConceptvecError
from ..scan.evidence import concept_evidence
from ..storage.conceptset import ConceptSet
from ..storage.store import ActivationStore


def evidence_section(cs: ConceptSet, store: ActivationStore, causal_dir: Path | None) -> dict[str, Any]:
    """What the page shows of ``cs``'s evidence: the set's own (``cs.evidence``, saved with it) or, when it has
    none, ``cv.concept_evidence`` run now with the store's class labels and the set's causal effects, if any."""
    rows = cs.evidence if cs.evidence is not None and len(cs.evidence) == cs.n_concepts else None
    computed = rows is None
    if rows is None:
        effects = None
        if causal_dir is not None:
            from ..storage.causal_effects import METADATA_FILE, CausalEffects

            effects = CausalEffects.load(causal_dir) if (causal_dir / METADATA_FILE).is_file() else None
        try:
            rows = concept_evidence(cs, labels=store, effects=effects)
        except ConceptvecError:  # causal effects of another set: the page shows the checks without them
            rows = concept_evidence(cs, labels=store)
    shown = []
    for r in rows:
        numbers = details(r)
        shown.append({"concept": r["concept"], "state": state(r), "badge": badge(r), "verdict": r["verdict"],
                      "details": numbers, "title": "; ".join(f"{k}: {v}" for k, v in numbers)})
    # the split check's level as the rows were judged: recorded in each row since evidence_fdr; evidence saved before
    # with a split check was judged at fdr, else significance
    recorded = next((r["split_level"] for r in rows if "split_level" in r), None)
    if recorded is None and any("split" in (r.get("checks") or {}) for r in rows):
        recorded = cs.params.decision_level
    return {"words": count_words(cs.n_concepts, rows), "rows": shown, "computed": computed,
            "split_level": recorded if recorded is not None else cs.params.evidence_fdr}
