"""core.evidence's words: a group is called a concept only where a check supports it."""

import numpy as np

from conceptvec.core.evidence import badge, count_words, short_verdict, state, verdicts


def rows(*supported: bool | None) -> list[dict]:
    """Evidence rows, one per concept: True supported by labels, False checked and not supported, None unchecked."""
    out = []
    for j, ok in enumerate(supported):
        labels = None if ok is None else [{"label": 1, "members": 10, "purity": 1.0, "enrichment_p": 1e-9 if ok else 0.5,
                                           "random_purity": 0.5, "purity_p": 0.001}]
        out.append(verdicts(1, split_p=None, split_level=0.01, reappearance=None, labels=labels, causal=None)[0] | {"concept": j})
    return out


def test_counts_follow_the_verdicts():
    assert count_words(2, rows(True, True)) == "2 concepts"
    assert count_words(3, rows(False, False, False)) == "unsupported split into 3 groups"
    assert count_words(3, rows(True, False, True)) == "3 groups: 2 supported concept(s), 1 not"
    assert count_words(2, rows(None, None)) == "2 unchecked groups (no check applies)"
    assert count_words(2, None) == "2 concept(s)"  # evidence not measured: the method's count as before
    assert count_words(1, rows(True)) == "one concept" and count_words(1, rows(False)) == "one group no check supports"
    assert count_words(0, []) == "no concept"
    power = rows(True)[0] | {"one_concept_or_two_closer_than": 1.25, "recommended_top": 500.0, "recommended_for": 0.5}
    assert count_words(1, [power]) == "one concept, or two closer than 1.25 (top 500 would detect two 0.5 apart)"
    assert count_words(1, [power | {"recommended_top": np.inf}]).endswith("(even top 1000 would not detect two 0.5 apart)")


def test_badges_and_short_verdicts():
    supported, unsupported, unchecked = rows(True, False, None)
    assert [state(r) for r in (supported, unsupported, unchecked)] == ["supported", "unsupported", "unchecked"]
    assert [badge(r) for r in (supported, unsupported, unchecked)] == ["1 of 1 checks", "0 of 1 checks", "unchecked"]
    assert [short_verdict(r) for r in (supported, unsupported, unchecked)] == ["labels (1 of 1)", "none (0 of 1)", "unchecked"]


def test_a_recommendation_beyond_the_data_names_the_largest_top_tried():
    power = rows(True)[0] | {"one_concept_or_two_closer_than": 1.5, "recommended_top": np.inf, "recommended_for": 1.25}
    assert count_words(1, [power | {"recommended_within": 1000.0}]).endswith("(even top 1000 would not detect two 1.25 apart)")
    assert count_words(1, [power | {"recommended_within": 300.0}]).endswith(
        "(even top 300, all this data allows, would not detect two 1.25 apart)")
