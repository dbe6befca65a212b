import warnings

import numpy as np
import pytest

import conceptvec as cv
from conceptvec.core.stability import concept_stability

PARAMS = cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0)


def test_planted_facets_come_back_in_every_run(planted_acts):
    acts, groups = planted_acts
    cs = cv.disentangle(acts, neuron=3, params=PARAMS)
    s = concept_stability(cs.top_activations, cs.labels, params=PARAMS, runs=15)
    assert cs.n_concepts == 2
    assert s.reappearance.tolist() == [1.0, 1.0] and s.count_agreement == 1.0 and s.jaccard.min() > 0.95
    assert not s.unstable().any()


def test_an_arbitrary_split_of_one_blob_does_not(planted_acts):
    # One continuous blob cut by a low threshold: its "concepts" depend on which examples were drawn.
    rng = np.random.default_rng(0)
    blob = np.abs(rng.normal(0, 1, size=(400, 24)))
    blob[:, 3] += 5
    params = cv.Params(top=60, distance_threshold=4.0, outlier_threshold=30.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cs = cv.disentangle(blob, neuron=3, params=params)
    s = concept_stability(cs.top_activations, cs.labels, params=params, runs=15)
    assert cs.n_concepts >= 2
    assert s.jaccard.mean(axis=0).max() < 0.5 and s.unstable().all() and s.count_agreement < 0.5
    # the same concept vectors, compared by direction, would look alike: the layer's shared component
    assert (cs.concept_vectors @ cs.concept_vectors.T).min() > 0.9


def test_scale_free_and_seeded(planted_acts):
    acts, _ = planted_acts
    cs = cv.disentangle(acts, neuron=3, params=PARAMS)
    a = concept_stability(cs.top_activations, cs.labels, params=PARAMS, runs=8, seed=3)
    b = concept_stability(cs.top_activations, cs.labels, params=PARAMS, runs=8, seed=3)
    scaled = PARAMS.replace(distance_threshold=100.0, outlier_threshold=3000.0)
    c = concept_stability(cs.top_activations * 10, cs.labels, params=scaled, runs=8, seed=3)
    assert np.array_equal(a.jaccard, b.jaccard) and np.array_equal(a.jaccard, c.jaccard)
    # The seed draws the resamples: on concepts that do not always come back whole, another seed gives other Jaccards.
    rng = np.random.default_rng(0)
    noisy = np.abs(rng.normal(0, 1, size=(60, 24)))
    loose = cv.Params(top=60, distance_threshold=3.0, outlier_threshold=30.0)
    labels = cv.disentangle(noisy, neuron=0, params=loose).labels
    runs = [concept_stability(noisy, labels, params=loose, runs=8, seed=s).jaccard for s in (3, 4)]
    assert runs[0].size and not np.array_equal(runs[0], runs[1])
    assert a.to_dict()["runs"] == 8 and len(a.to_dict()["mean_jaccard"]) == 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(runs=0), "runs must be >= 1"),
    (dict(min_jaccard=0), r"min_jaccard must be a number in \(0, 1\]"),
    (dict(min_jaccard=True), "min_jaccard"),
    (dict(seed=-1), "seed must be >= 0"),
])
def test_bad_arguments(planted_acts, kwargs, match):
    acts, _ = planted_acts
    cs = cv.disentangle(acts, neuron=3, params=PARAMS)
    with pytest.raises(cv.ConceptvecError, match=match):
        concept_stability(cs.top_activations, cs.labels, params=PARAMS, **kwargs)
    with pytest.raises(cv.ConceptvecError, match="one entry per top example"):
        concept_stability(cs.top_activations, cs.labels[:-1], params=PARAMS)


def test_disentangle_records_stability_and_the_set_keeps_it(planted_acts, tmp_path):
    acts, _ = planted_acts
    plain = cv.disentangle(acts, neuron=3, params=PARAMS)
    cs = cv.disentangle(acts, neuron=3, params=PARAMS, stability=6)
    assert plain.stability is None and plain.unstable() is None
    np.testing.assert_array_equal(cs.concept_vectors, plain.concept_vectors)  # the concepts do not depend on it
    assert cs.stability["runs"] == 6 and cs.stability["reappearance"] == [1.0, 1.0]
    assert cs.unstable().tolist() == [False, False]
    cs.save(tmp_path / "cs")
    assert cv.ConceptSet.load(tmp_path / "cs").stability == cs.stability
    with pytest.raises(cv.ConceptvecError, match="stability must be >= 0"):
        cv.disentangle(acts, neuron=3, params=PARAMS, stability=-1)


def test_cli_disentangle_shows_whether_concepts_come_back(planted_acts, tmp_path):
    from typer.testing import CliRunner

    from conceptvec.cli import app

    acts, _ = planted_acts
    cv.ActivationStore.create(tmp_path / "store", acts)
    result = CliRunner().invoke(app, ["disentangle", str(tmp_path / "store"), "--neuron", "3", "--top", "60",
                                      "--distance-threshold", "10", "--outlier-threshold", "30", "--stability", "5",
                                      "--out", str(tmp_path / "cs")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "comes back (5 runs)" in result.output and "100%" in result.output
    assert cv.ConceptSet.load(tmp_path / "cs").stability["runs"] == 5


def test_the_report_table_flags_unstable_concepts(planted_acts):
    from conceptvec.report import figures

    acts, _ = planted_acts
    cs = cv.disentangle(acts, neuron=3, params=PARAMS, stability=4)
    cs.stability["reappearance"] = [1.0, 0.25]  # as if the second concept came back once in four runs
    rows = figures.summary_table(cs)
    assert [r.get("comes back (of 4 runs)") for r in rows[:2]] == ["100%", "25% unstable"]
    assert "comes back (of 4 runs)" not in figures.summary_table(cv.disentangle(acts, neuron=3, params=PARAMS))[0]
