import warnings

import numpy as np
import pytest

import conceptvec as cv
from conceptvec.core.evidence import count_words, label_checks
from conceptvec.core.planted import planted_layer


@pytest.fixture(scope="module")
def layer():
    return planted_layer(64, n_neurons=8, seed=0)


def facet_labels(layer) -> np.ndarray:
    # the truth as a store's class labels: one class per (neuron, facet), background unlabelled (-1)
    return np.where(layer.owner >= 0, layer.owner * 10 + layer.facet, -1)


def test_a_planted_split_is_supported_by_every_check_and_saved(layer, tmp_path):
    j = int(np.flatnonzero(layer.n_facets == 3)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        cs = cv.disentangle(layer.acts, neuron=j, params=cv.Params(distance_threshold="auto"), stability=8)
    assert cs.n_concepts == 3
    rows = cv.concept_evidence(cs, labels=facet_labels(layer))
    for r in rows:
        assert r["checks"] == {"split": True, "stability": True, "labels": True}, r
        assert r["verdict"] == "supported by 3 of 3 checks (split, stability, labels)"
        assert r["label_purity"] > 0.9 and r["label_enrichment_p"] < 1e-10 and r["label_purity_p"] < 0.01
    assert {r["label_label"] for r in rows} == {j * 10, j * 10 + 1, j * 10 + 2}
    cs.save(tmp_path / "cs")
    assert cv.ConceptSet.load(tmp_path / "cs").evidence == rows


def test_nothing_is_called_supported_that_no_check_supports(layer):
    j = int(np.flatnonzero(layer.n_facets == 1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        cs = cv.disentangle(layer.acts, neuron=j, params=cv.Params(distance_threshold="auto"))
    assert cs.n_concepts == 1
    # one concept: no split to check; its label is enriched against the store (its facet is 1 % of the examples)
    row = cv.concept_evidence(cs, labels=facet_labels(layer), recommend_for=2.0)[0]
    assert row["verdict"] == "supported by 1 of 1 checks (labels)"
    closer = row["one_concept_or_two_closer_than"]
    assert 0 < closer < np.inf  # the power of the one-concept answer
    # a separation above what the neuron's own N detects needs no more examples; the words say both
    assert closer <= row["recommended_for"] == 2.0 and row["recommended_top"] <= 100
    assert count_words(1, [row]) == (f"one concept, or two closer than {closer:.2g} (top {row['recommended_top']:.0f} "
                                     f"would detect two 2 apart)")
    # labels that say nothing about the examples: the only check fails, and the verdict says so
    shuffled = np.random.default_rng(0).integers(0, 3, len(layer.acts))
    row = cv.concept_evidence(cs, labels=shuffled, recommend_for=None)[0]
    assert row["checks"] == {"labels": False} and row["verdict"] == "not supported (0 of 1 checks)"
    assert "recommended_top" not in row and count_words(1, [row]).endswith("; not supported (0 of 1 checks)")
    assert cv.concept_evidence(cs, labels=None, recommend_for=None)[0]["verdict"] == "no check applies"
    with pytest.raises(cv.ConceptvecError, match="one per example"):
        cv.concept_evidence(cs, labels=np.zeros(3))


def test_purity_is_judged_against_random_splits_of_the_same_sizes():
    # 40 top examples: concept 0 holds 20 of class 1, concept 1 holds 20 of class 2 -> far purer than random halves
    labels_store = np.array([1] * 20 + [2] * 20 + [3] * 960)
    top = np.arange(40)
    rows = label_checks(labels_store, top, np.array([0] * 20 + [1] * 20), seed=0)
    assert [r["label"] for r in rows] == [1, 2] and all(r["purity"] == 1.0 for r in rows)
    assert all(r["purity_p"] < 0.01 and 0.5 <= r["random_purity"] < 0.8 for r in rows)
    # the same examples split across the classes: each concept is as pure as random halves
    mixed = label_checks(labels_store, top, np.array([0, 1] * 20), seed=0)
    assert all(r["purity_p"] > 0.2 for r in mixed)


def test_causal_selectivity_is_a_check_when_effects_were_measured(layer):
    j = int(np.flatnonzero(layer.n_facets == 3)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        cs = cv.disentangle(layer.acts, neuron=j, params=cv.Params(distance_threshold="auto"))
    concepts = [f"concept {k}" for k in range(cs.n_concepts)]

    def hurt(i: str, g: str) -> float:
        # ablating concept 0 hurts its own members most; the others hurt other concepts' members more than their own
        if i == "concept 0":
            return 2.0 if g == "concept 0" else 0.1
        if i.startswith("concept"):
            return 0.2 if g == i else 0.5
        return 0.1

    effects = [{"intervention": i, "kind": i.split()[0], "group": g, "n_examples": 10, "d_logit": -hurt(i, g)}
               for i in concepts + ["random 0"] for g in concepts + ["random"]]
    rows = cv.concept_evidence(cs, labels=None, effects=cv.CausalEffects(effects=effects, steering=[], params={}))
    assert [r["checks"]["causal"] for r in rows] == [True] + [False] * (cs.n_concepts - 1)
    assert rows[0]["verdict"].endswith("(split, causal)")


def test_the_scan_tables_carry_each_concepts_evidence(layer, tmp_path):
    import pyarrow.parquet as pq

    labels = facet_labels(layer)
    store = cv.ActivationStore.create(tmp_path / "store", layer.acts, examples={"label": labels.tolist()},
                                      metadata={"model": {"name": "m"}, "layer": "l"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cv.ConceptvecWarning)
        scan = cv.scan_layer(store, params=cv.Params(distance_threshold="auto"), neurons=list(range(8)), workers=1,
                             out=tmp_path / "scan", progress=False)
        cv.scan_layer(store, params=cv.Params(distance_threshold=1.0, outlier_threshold=40.0), neurons=[0, 4],
                      workers=1, out=tmp_path / "fixed", progress=False)
    assert np.array_equal(scan.n_concepts, layer.n_facets)  # auto finds every planted facet
    neurons = pq.read_table(tmp_path / "scan" / "neurons.parquet").to_pylist()
    concepts = pq.read_table(tmp_path / "scan" / "concepts.parquet").to_pylist()
    for row in neurons:
        k = int(layer.n_facets[row["neuron"]])
        assert row["supported_concepts"] == k
        # one concept's label is enriched; the scan runs no power simulation (it costs per neuron), so no "or two closer"
        assert row["evidence"] == (f"{k} concepts" if k > 1 else "one concept")
    split = [c for c in concepts if layer.n_facets[c["neuron"]] > 1]
    assert all(c["supported_by"].startswith("split, labels") and c["split_p"] < 0.01 for c in split)
    assert all(c["label_purity_p"] < 0.01 and c["label_enrichment_p"] < 1e-10 for c in split)
    # a single facet cut by a small fixed threshold: no check supports its groups, and the table says so
    for row in pq.read_table(tmp_path / "fixed" / "neurons.parquet").to_pylist():
        assert row["concepts"] >= 2 and row["supported_concepts"] == 0
        assert row["evidence"] == f"unsupported split into {row['concepts']} groups"
    # the same verdicts as cv.concept_evidence gives one neuron of the scan (its split p-value is the scan's)
    j = int(np.flatnonzero(layer.n_facets == 3)[0])
    one = cv.concept_evidence(scan[j], labels=labels)
    assert [r["verdict"] for r in one] == [r["verdict"] for r in scan.evidence()[j]]
    assert one[0]["split_p"] == scan.first_p[scan.position(j)]


@pytest.mark.slow
def test_the_scans_power_column_is_asked_for_and_recorded(layer, tmp_path):
    from typer.testing import CliRunner

    from conceptvec.cli import app
    from conceptvec.core.power import detectable_separation, finer_separation
    from conceptvec.storage.atomic import read_manifest

    cv.ActivationStore.create(tmp_path / "store", layer.acts, examples={"label": facet_labels(layer).tolist()},
                              metadata={"model": {"name": "m"}, "layer": "l"})
    run = CliRunner().invoke(app, ["scan", str(tmp_path / "store"), "--neurons", "0-2", "--distance-threshold", "auto",
                                   "--workers", "1", "--power", "--out", str(tmp_path / "scan")], env={"COLUMNS": "200"})
    assert run.exit_code == 0, run.output
    import pyarrow.parquet as pq

    power = pq.read_table(tmp_path / "scan" / "power.parquet").to_pylist()
    assert [r["neuron"] for r in power] == [j for j in range(3) if layer.n_facets[j] == 1] == [0]  # one-concept neurons only
    scan = cv.ScanResult.load(tmp_path / "scan")
    for r in power:
        x = scan[r["neuron"]].top_activations
        # the recommendation is for one step of the grid closer than the neuron's own X, at a top above its 100
        assert r["one_concept_or_two_closer_than"] == detectable_separation(x)
        assert r["recommended_for"] == finer_separation(r["one_concept_or_two_closer_than"])
        assert r["recommended_top"] in (200, 300, 500, 750, 1000, np.inf)
    assert "power.parquet" in read_manifest(tmp_path / "scan")["files"] and "[bold]" not in run.output
    assert "power 1 one-concept neurons: one concept, or two closer than" in run.output
    assert "would detect two one step closer" in run.output
    bad = CliRunner().invoke(app, ["scan", str(tmp_path / "store"), "--power", "--out", str(tmp_path / "s2")])
    assert bad.exit_code == 2 and "--power needs --distance-threshold auto" in bad.output and not (tmp_path / "s2").exists()


def test_power_recommends_no_top_the_data_cannot_fill():
    # a 400-example store: "even top 1000 would not detect ..." named a top the user cannot take (h4b's walkthrough)
    from conceptvec.core.evidence import count_words
    from conceptvec.scan.evidence import layer_power

    acts = np.random.default_rng(0).standard_normal((400, 16))
    cs = cv.disentangle(acts, neuron=0, params=cv.Params(distance_threshold="auto"))
    assert cs.n_concepts == 1
    row = cv.concept_evidence(cs, labels=None)[0]
    assert row["recommended_within"] == 300 and row["recommended_top"] in (200.0, 300.0, np.inf)
    table = layer_power(acts, cs.top_indices[None, :], np.array([0]), np.array([True]), significance=0.01,
                        recommend_for="finer").to_pylist()
    assert table[0]["recommended_within"] == 300 and table[0]["recommended_top"] == row["recommended_top"]
    words = count_words(1, [row | {"recommended_top": np.inf}])
    assert words.endswith(f"(even top 300, all this data allows, would not detect two {row['recommended_for']:.3g} apart)")
