"""The neuron page names the split check's level its verdicts were judged at: recorded in the rows, or for evidence
saved before ``evidence_fdr`` existed, the rule of the time (``fdr``, else ``significance``)."""

import numpy as np

import conceptvec as cv
from conceptvec.core.planted import planted_layer
from conceptvec.report.evidence_section import evidence_section


def test_the_page_names_the_level_the_verdicts_were_judged_at():
    layer = planted_layer(64, n_neurons=8, n_background=500, seed=0)  # neuron 1: three facets
    cs = cv.disentangle(layer.acts, neuron=1, params=cv.Params(distance_threshold="auto", evidence_fdr=0.02))
    rows = cv.concept_evidence(cs, labels=None)
    assert cs.n_concepts == 3 and all(r["split_level"] == 0.02 and r["checks"]["split"] for r in rows)
    assert evidence_section(cs, None, None)["split_level"] == 0.02
    # evidence saved before the level was recorded: judged at significance (here 0.01), and the page says so
    cs.evidence = [{k: v for k, v in r.items() if k != "split_level"} for r in rows]
    assert evidence_section(cs, None, None)["split_level"] == 0.01
    # no split check among the rows (one concept): the set's own evidence_fdr
    one = cv.disentangle(layer.acts, neuron=0, params=cv.Params(distance_threshold="auto"))
    cv.concept_evidence(one, labels=None, recommend_for=None)
    assert one.n_concepts == 1 and np.isclose(evidence_section(one, None, None)["split_level"], 0.05)
