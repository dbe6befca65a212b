"""The human evaluation study: drawing questions as the paper does, a form that leaks nothing, honest scoring."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.cli import app
from conceptvec.errors import ConceptvecError
from conceptvec import Study, fleiss_kappa, make_study, read_labels, score_study, wilson_interval
from conceptvec.study import write_scores
from conceptvec import maximally_projecting, most_similar

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
PARAMS = cv.Params(top=40, distance_threshold=10.0, outlier_threshold=40.0)
# Which digits each neuron fires for: neurons 0-3 are polysemantic (two digits), 4-7 monosemantic.
FIRES = {0: (0, 1), 1: (2, 3), 2: (4, 5), 3: (6, 7), 4: (8,), 5: (9,), 6: (0,), 7: (5,)}

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium); .ci/run installs it"
)


def digit_store(path, n=600, seed=0):
    """Digits whose activations separate by class: a group of 3 units per digit, and neurons planted per FIRES."""
    from conceptvec.sources.digits import load_digits_images

    _, digits = load_digits_images()
    digits = digits[:n]
    rng = np.random.default_rng(seed)
    acts = np.abs(rng.normal(0.0, 0.3, size=(n, 40)))
    for d in range(10):
        acts[digits == d, 10 + 3 * d : 13 + 3 * d] += 6.0
    for neuron, ds in FIRES.items():
        rows = np.isin(digits, ds)
        acts[rows, neuron] += 5.0 + rng.normal(0, 0.1, rows.sum())
    examples = {"id": [f"d{i}" for i in range(n)], "label": digits.tolist(), "label_name": [f"digit {d}" for d in digits],
                "source": [f"sklearn-digits:{i}" for i in range(n)]}
    meta = {"model": {"name": "planted"}, "layer": "units", "data": {"kind": "sklearn-digits"}}
    return cv.ActivationStore.create(path, acts, examples=examples, metadata=meta), digits


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    store, digits = digit_store(root / "store")
    scan = cv.scan_layer(store, params=PARAMS, neurons=range(8), workers=1, out=root / "scan", progress=False)
    assert scan.n_concepts.tolist() == [2, 2, 2, 2, 1, 1, 1, 1]  # the planted structure is recovered
    return root, store, digits, scan


@pytest.fixture(scope="module")
def study(run, tmp_path_factory):
    root = run[0]
    return make_study(root, tmp_path_factory.mktemp("s") / "study", seed=0)


def pools(store, scan, neurons, pool=20, rank=maximally_projecting):
    """Each concept's maximally projecting examples, computed independently of the study."""
    names, vectors = [], []
    for n in neurons:
        for j, v in enumerate(scan.concepts_of(n)):
            names.append((n, j))
            vectors.append(v)
    idx, _ = rank(store.activations, np.stack(vectors), top=pool)
    return {name: set(row.tolist()) for name, row in zip(names, idx)}


def perfect_answers(study, rater="r"):
    rows = []
    for q, e in study.key.items():
        if e["type"] == "label":
            rows.append((rater, q, f"label {e['neuron']}:{e['concept']}"))
        else:
            rows.append((rater, q, e["answer"]))
    return rows


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rater", "question", "answer"])
        w.writerows(rows)
    return path


# -- making a study -------------------------------------------------------------------------------
def test_study_follows_the_paper(run, study):
    root, store, digits, scan = run
    key = study.key
    assert list(key) == [f"q{i:02d}" for i in range(1, 11)]
    assert [e["type"] for e in key.values()] == ["intruder"] * 4 + ["label"] * 2 + ["agree"] * 4
    assert study.meta["neurons"] == list(range(8))  # the first 8 neurons
    pool = pools(store, scan, range(8))
    for q in study.questions("intruder"):
        e = key[q]
        assert e["options"] == ["a", "b", "c", "d", "e"] and e["answer"] in e["options"]
        # Polysemantic neurons' concepts first, each with the neuron's other concept as the intruder.
        assert FIRES[e["neuron"]].__len__() == 2 and e["intruder"]["from"] == "same neuron"
        assert e["intruder"]["neuron"] == e["neuron"] and e["intruder"]["concept"] != e["concept"]
        own, theirs = pool[e["neuron"], e["concept"]], pool[e["neuron"], e["intruder"]["concept"]]
        shown = e["examples"]
        assert len(set(shown.values())) == 5
        assert shown[e["answer"]] in theirs and shown[e["answer"]] not in own
        assert all(shown[o] in own and shown[o] not in theirs for o in e["options"] if o != e["answer"])
        # On these planted digits the intruder is a different digit from the other four.
        answer_digit = digits[shown[e["answer"]]]
        assert all(digits[shown[o]] != answer_digit for o in e["options"] if o != e["answer"])
        assert e["example_ids"] == {o: f"d{i}" for o, i in shown.items()}
    for q in study.questions("label") + study.questions("agree"):
        e = key[q]
        assert len(e["examples"]) == 4 and set(e["examples"].values()) <= pool[e["neuron"], e["concept"]]
    for q in study.questions("agree"):
        e = key[q]
        members = scan.top_indices[e["neuron"]][scan.labels[e["neuron"]] == e["concept"]]
        majority = np.bincount(digits[members]).argmax()
        assert e["label"] == f"digit {majority}" and e["options"] == ["yes", "no"] and e["answer"] == "yes"
        assert e["label_source"].startswith("most common class among its")
    # Agree questions avoid the concepts already labelled freely.
    free = {(key[q]["neuron"], key[q]["concept"]) for q in study.questions("label")}
    assert not free & {(key[q]["neuron"], key[q]["concept"]) for q in study.questions("agree")}
    assert study.meta["config"]["seed"] == 0 and study.meta["source"]["kind"] == "scan"
    assert study.meta["source"]["provenance"]["activations"]["store"]


def test_intruder_from_another_neuron_when_the_neuron_has_one_concept(run, tmp_path):
    s = make_study(run[0] / "scan", tmp_path / "s", neurons="4-7", seed=3, label_questions=0)
    for q in s.questions("intruder"):
        e = s.key[q]
        assert e["intruder"]["from"] == "another neuron" and e["intruder"]["neuron"] != e["neuron"]
        assert e["intruder"]["neuron"] in range(4, 8)


def test_same_seed_same_study_and_another_seed_differs(run, study, tmp_path):
    again = make_study(run[0], tmp_path / "again", seed=0)
    for name in ("form.html", "key.json"):
        assert (again.path / name).read_bytes() == (study.path / name).read_bytes()
    other = make_study(run[0], tmp_path / "other", seed=1)
    assert other.key != study.key and other.study_id != study.study_id


def test_cosine_ranking_draws_from_the_most_similar(run, tmp_path):
    root, store, _, scan = run
    s = make_study(root, tmp_path / "s", rank="cosine", pool=10, seed=2)
    pool = pools(store, scan, range(8), pool=10, rank=most_similar)
    for e in s.key.values():
        assert set(e["examples"].values()) - {e["examples"].get(e.get("answer"))} <= pool[e["neuron"], e["concept"]]


def test_centred_ranking_draws_from_the_centred_most_similar_and_is_recorded(run, tmp_path):
    import json

    from conceptvec import layer_mean

    root, store, _, scan = run
    s = make_study(root, tmp_path / "s", rank="centred", pool=10, seed=2)
    mean = layer_mean(store.activations)
    pool = pools(store, scan, range(8), pool=10, rank=lambda a, v, top: most_similar(a, v, top=top, centre=mean))
    for e in s.key.values():
        assert set(e["examples"].values()) - {e["examples"].get(e.get("answer"))} <= pool[e["neuron"], e["concept"]]
    assert json.loads((tmp_path / "s" / "study.json").read_text())["config"]["rank"] == "centred"


def test_a_single_conceptset_and_a_run_of_conceptsets(run, tmp_path):
    root, store, _, scan = run
    cs = cv.disentangle(store, neuron=0, params=PARAMS)
    cs.save(tmp_path / "neuron_0")
    s = make_study(tmp_path / "neuron_0", tmp_path / "one", intruder_questions=2, label_questions=0)
    assert s.meta["neurons"] == [0] and all(s.key[q]["intruder"]["from"] == "same neuron" for q in s.key)
    assert s.meta["source"]["kind"] == "conceptsets"
    with pytest.raises(ConceptvecError, match="intruder question needs two concepts"):
        cs4 = cv.disentangle(store, neuron=4, params=PARAMS)
        cs4.save(tmp_path / "only4" / "neuron_4")
        make_study(tmp_path / "only4" / "neuron_4", tmp_path / "x", label_questions=0)


def test_labels_file_json_and_csv(run, tmp_path):
    root = run[0]
    (tmp_path / "labels.json").write_text(json.dumps({"0:0": "round zero", "1:1": "threes"}))
    s = make_study(root, tmp_path / "j", labels=tmp_path / "labels.json", intruder_questions=0, free_labels=0, label_questions=4)
    assert {(s.key[q]["neuron"], s.key[q]["concept"], s.key[q]["label"]) for q in s.key} == {(0, 0, "round zero"), (1, 1, "threes")}
    assert all(s.key[q]["label_source"] == "labels file" for q in s.key)
    (tmp_path / "labels.csv").write_text("neuron,concept,label\n2,0,\"fours, mostly\"\n")
    assert read_labels(tmp_path / "labels.csv") == {"2:0": "fours, mostly"}
    (tmp_path / "bad.json").write_text(json.dumps({"zero": "x"}))
    with pytest.raises(ConceptvecError, match="NEURON:CONCEPT"):
        read_labels(tmp_path / "bad.json")
    # A given label is text, escaped as html.escape does (forms made before the templates read the same).
    marked = make_study(root, tmp_path / "m", labels={"0:0": "<b>\"round\" & 'zero'</b>"}, intruder_questions=0,
                        free_labels=0, label_questions=1)
    assert ('<b class="given">&lt;b&gt;&quot;round&quot; &amp; &#x27;zero&#x27;&lt;/b&gt;</b>'
            in (marked.path / "form.html").read_text())
    (tmp_path / "unknown.json").write_text(json.dumps({"9:0": "x"}))
    with pytest.raises(ConceptvecError, match=r"9:0.*not among the study's concepts"):
        make_study(root, tmp_path / "u", labels=tmp_path / "unknown.json")


def test_bad_settings_get_clear_errors(run, tmp_path):
    root = run[0]
    with pytest.raises(ConceptvecError, match=r"neuron\(s\) \[8, 9\] are not in this run \(it holds 8 neuron\(s\), 0-7\)"):
        make_study(root, tmp_path / "a", neurons="0-9")
    with pytest.raises(ConceptvecError, match=r"free_labels \(3\) is more than label_questions \(2\).*--free-labels"):
        make_study(root, tmp_path / "b", free_labels=3, label_questions=2, intruder_questions=0)
    only_free = make_study(root, tmp_path / "b1", free_labels=2, label_questions=2, intruder_questions=0)
    assert [e["type"] for e in only_free.key.values()] == ["label", "label"]
    with pytest.raises(ConceptvecError, match="intruder_questions must be >= 0"):
        make_study(root, tmp_path / "b2", intruder_questions=-1)
    with pytest.raises(ConceptvecError, match="seed must be a whole number"):
        make_study(root, tmp_path / "b3", seed=1.5)
    with pytest.raises(ConceptvecError, match="pool"):
        make_study(root, tmp_path / "c", images=8, pool=5)
    with pytest.raises(ConceptvecError, match="rank must be one of"):
        make_study(root, tmp_path / "d", rank="norm")
    with pytest.raises(ConceptvecError, match="unknown study setting"):
        make_study(root, tmp_path / "e", sed=1)
    # Two concepts pointing the same way share their maximally projecting examples: no clean intruder.
    cs = cv.disentangle(run[1], neuron=0, params=PARAMS)
    cs.concept_vectors[1] = cs.concept_vectors[0]
    cs.save(tmp_path / "twins")
    with pytest.raises(ConceptvecError, match="concepts 0:0 and 0:1 share 20 of their 20 .* even 200 down their rankings .* or try --rank cosine"):
        make_study(tmp_path / "twins", tmp_path / "f", label_questions=0)
    with pytest.raises(ConceptvecError, match=r"share 10 of their 10 most cosine-similar examples, .* choose other neurons\.$"):
        make_study(tmp_path / "twins", tmp_path / "f", label_questions=0, rank="cosine", pool=10)
    make_study(root, tmp_path / "g", label_questions=0)
    with pytest.raises(ConceptvecError, match="already exists"):
        make_study(root, tmp_path / "g", label_questions=0)


def test_overlapping_pools_draw_from_what_each_concept_does_not_share(run, tmp_path):
    # Two concepts pointing almost the same way: their 20 maximally projecting examples are mostly the same.
    cs = cv.disentangle(run[1], neuron=0, params=PARAMS)
    v0, v1 = cs.concept_vectors
    cs.concept_vectors[1] = (0.9 * v0 + 0.1 * v1) / np.linalg.norm(0.9 * v0 + 0.1 * v1)
    cs.save(tmp_path / "close")
    with pytest.warns(cv.errors.ConceptvecWarning, match=r"concepts 0:\d and 0:\d share \d+ of their 20 .*not in the other's first"):
        study = make_study(tmp_path / "close", tmp_path / "s", label_questions=0, intruder_questions=2)
    acts = run[1].activations
    pools = maximally_projecting(acts, cs.concept_vectors, top=20)[0]
    for q in study.key.values():
        assert "drawn_to_rank" in q and q["shared_pool_examples_left_out"] > 20 - 4  # too few left in the pools alone
        own_pool, their_pool = pools[q["concept"]], pools[q["intruder"]["concept"]]
        shown = [i for o, i in q["examples"].items() if o != q["answer"]]
        assert not np.isin(shown, their_pool).any()  # the concept's images are none of the other's pool
        assert q["examples"][q["answer"]] not in own_pool  # and the intruder is none of the concept's
        depth = q["drawn_to_rank"]["depth"]
        assert 40 <= depth <= 200 and depth % 20 == 0


# -- the form holds no answer ---------------------------------------------------------------------
def test_form_holds_no_answer(run, study):
    page = (study.path / "form.html").read_text()
    stripped = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "IMG", page)
    # No example id, class name of a shown example (other than an agree question's given label), neuron or concept.
    for e in study.key.values():
        for example_id in e["example_ids"].values():
            assert not re.search(rf"\b{example_id}\b", stripped)
    assert "neuron" not in stripped.lower() and "concept" not in stripped.lower()
    assert "answer\"" not in stripped and "key.json" not in stripped
    given = {e["label"] for e in study.key.values() if e["type"] == "agree"}
    assert set(re.findall(r"digit \d", stripped)) == given
    # Every option of an intruder question is marked up the same way: only its letter and image differ.
    for q in study.questions("intruder"):
        section = re.search(rf'<section[^>]*data-question="{q}".*?</section>', stripped, re.S).group(0)
        options = re.findall(r'<label class="option">.*?</label>', section)
        assert len(options) == 5
        assert len({re.sub(r'value="[a-e]"|>[a-e]<', "", o) for o in options}) == 1
    assert not re.search(r'(src|href)\s*=\s*"?(https?:)?//', page) and "Content-Security-Policy" in page


def test_form_is_one_page_with_its_style_and_script_inlined(study):
    from importlib import resources

    page = (study.path / "form.html").read_text()
    static = resources.files("conceptvec.study") / "static"
    assert f"<style>\n{(static / 'form.css').read_text()}</style>" in page
    assert f"<script>\n{(static / 'form.js').read_text()}</script>" in page
    assert page.count("<section") == len(study.key) and page.endswith("</body></html>\n")


def test_intruder_position_is_shuffled(run, tmp_path):
    s = make_study(run[0], tmp_path / "many", intruder_questions=40, label_questions=0, seed=5)
    positions = [s.key[q]["answer"] for q in s.key]
    assert len(set(positions)) == 5  # every position is used
    assert max(positions.count(p) for p in "abcde") < 20


# -- scoring ------------------------------------------------------------------------------------------
def test_wilson_interval_against_hand_computed_values():
    # p = 8/8: centre (1 + z^2/16) / (1 + z^2/8), half-width z / (1 + z^2/8) * sqrt(z^2 / 256).
    z2 = 1.959963984540054**2
    lo = (1 + z2 / 16) / (1 + z2 / 8) - (z2**0.5) / (1 + z2 / 8) * (z2 / 256) ** 0.5
    assert wilson_interval(8, n=8) == pytest.approx((lo, 1.0), abs=1e-9)
    assert lo == pytest.approx(0.6756, abs=1e-4)
    assert wilson_interval(7, n=10) == pytest.approx((0.3968, 0.8922), abs=1e-4)
    assert wilson_interval(0, n=5) == pytest.approx((0.0, 0.4345), abs=1e-4)
    assert all(np.isnan(wilson_interval(0, n=0)))


def test_fleiss_kappa_against_hand_computed_values():
    # The worked example of Fleiss' kappa on Wikipedia: 10 subjects, 14 raters, 5 categories; kappa 0.210.
    # By hand: column sums 20, 28, 39, 21, 32 of 140 give Pe = sum((c / 140)^2) = 0.2127551; the rows'
    # agreements (sum n_ij^2 - 14) / (14 * 13) average to P = 688 / 1820 = 0.3780220.
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                      [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(table) == pytest.approx((688 / 1820 - 0.2127551) / (1 - 0.2127551), abs=1e-6)
    assert fleiss_kappa(table) == pytest.approx(0.2099, abs=1e-4)
    assert fleiss_kappa([[2, 0], [0, 2]]) == pytest.approx(1.0)
    assert fleiss_kappa([[1, 1], [1, 1]]) == pytest.approx(-1.0)
    assert np.isnan(fleiss_kappa([[3, 0], [3, 0]]))  # every rating in one category: undefined
    with pytest.raises(ConceptvecError, match="same number"):
        fleiss_kappa([[2, 0], [1, 0]])


def test_perfect_raters(study, tmp_path):
    files = [write_csv(tmp_path / f"r{i}.csv", perfect_answers(study, f"r{i}")) for i in range(8)]
    s = score_study(study.path, files)
    assert s.n_raters == 8 and s.intruder_accuracy == 1.0 and s.agreement_rate == 1.0
    assert s.intruder["n"] == 32 and s.intruder["ci95"][1] == 1.0 and s.intruder["ci95"][0] == pytest.approx(wilson_interval(32, n=32)[0])
    assert s.intruder["chance"] == pytest.approx(0.2)
    answers = {study.key[q]["answer"] for q in study.questions("intruder")}
    assert s.fleiss_kappa["intruder"]["kappa"] == (1.0 if len(answers) > 1 else pytest.approx(np.nan, nan_ok=True))
    assert np.isnan(s.fleiss_kappa["agree"]["kappa"])  # all "yes": chance agreement is 1, kappa undefined
    assert [len(x["labels"]) for x in s.labels] == [8, 8] and not s.unanswered


def test_uniformly_random_raters_score_near_chance(study, tmp_path):
    rng = np.random.default_rng(0)
    rows = [(f"r{i}", q, str(rng.choice(study.key[q]["options"]))) for i in range(500) for q in study.questions("intruder")]
    s = score_study(study.path, [write_csv(tmp_path / "random.csv", rows)])
    assert s.intruder_accuracy == pytest.approx(0.2, abs=0.03)
    lo, hi = s.intruder["ci95"]
    assert lo < 0.2 < hi
    assert abs(s.fleiss_kappa["intruder"]["kappa"]) < 0.02
    assert s.unanswered["r0"] == study.questions("label") + study.questions("agree")


def test_mixed_panel_scores_the_expected_value(study, tmp_path):
    # Three perfect raters, one who always picks option a and says no to every given label.
    rows = [r for i in range(3) for r in perfect_answers(study, f"p{i}")]
    rows += [("lazy", q, "a") for q in study.questions("intruder")] + [("lazy", q, "no") for q in study.questions("agree")]
    s = score_study(study.path, [write_csv(tmp_path / "mixed.csv", rows)])
    lucky = sum(study.key[q]["answer"] == "a" for q in study.questions("intruder"))
    assert s.intruder_accuracy == pytest.approx((12 + lucky) / 16)
    assert s.agreement_rate == pytest.approx(12 / 16)
    per_q = s.intruder["questions"]
    for q in study.questions("intruder"):
        assert per_q[q]["accuracy"] == pytest.approx((3 + (study.key[q]["answer"] == "a")) / 4)
    # Hand-computed kappa for the agree questions: each has 3 yes and 1 no.
    p_i = (9 + 1 - 4) / 12
    p_e = 0.75**2 + 0.25**2
    assert s.fleiss_kappa["agree"]["kappa"] == pytest.approx((p_i - p_e) / (1 - p_e))


def test_scores_are_written_and_plotted(study, tmp_path):
    files = [write_csv(tmp_path / "a.csv", perfect_answers(study, "a")), write_csv(tmp_path / "b.csv", perfect_answers(study, "b"))]
    out = write_scores(score_study(study, files), tmp_path / "scores", answer_files=files)
    data = json.loads((out / "scores.json").read_text())
    assert data["intruder_accuracy"] == 1.0 and data["n_raters"] == 2 and data["answer_files"] == [str(f) for f in files]
    assert data["fleiss_kappa"]["agree"]["kappa"] is None  # undefined (all "yes") is null in JSON, never NaN
    assert "NaN" not in (out / "scores.json").read_text()
    assert (out / "scores.png").stat().st_size > 10_000


def test_scoring_never_replaces_the_study_or_other_folders(study, tmp_path):
    from typer.testing import CliRunner

    from conceptvec.cli import app

    answers = write_csv(tmp_path / "a.csv", perfect_answers(study, "a"))
    before = {p.name: p.read_bytes() for p in study.path.iterdir() if p.is_file()}
    result = CliRunner().invoke(app, ["study", "score", str(study.path), str(answers), "--out", str(study.path)])
    assert result.exit_code == 2 and "this command's input" in result.output
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    result = CliRunner().invoke(app, ["study", "score", str(study.path), str(answers), "--out", str(mine)])
    assert result.exit_code == 2 and "not a scores folder" in result.output
    assert (mine / "notes.txt").read_text() == "keep"
    assert {p.name: p.read_bytes() for p in study.path.iterdir() if p.is_file()} == before
    # scoring again replaces the earlier scores
    for _ in range(2):
        assert CliRunner().invoke(app, ["study", "score", str(study.path), str(answers), "--out", str(tmp_path / "s")]).exit_code == 0


def test_making_a_study_never_replaces_its_run(run, tmp_path):
    with pytest.raises(ConceptvecError, match="this command's input"):
        make_study(run[0], run[0], neurons="0-3", overwrite=True)


def test_answer_files_in_other_encodings_or_not_files(study, tmp_path):
    rows = perfect_answers(study, "José")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(("rater,question,answer\n" + "".join(f"{r},{q},{a}\n" for r, q, a in rows)).encode("cp1252"))
    scores = score_study(study, [latin])
    assert scores.raters == ["José"] and scores.to_dict()["intruder_accuracy"] == 1.0
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ConceptvecError, match="binary.csv is not a text file"):
        score_study(study, [binary])
    with pytest.raises(ConceptvecError, match="is a folder"):
        score_study(study, [tmp_path])


def test_bad_answers_get_clear_errors(study, tmp_path):
    def score(text, name="x.csv"):
        (tmp_path / name).write_text(text)
        return score_study(study.path, [tmp_path / name])

    with pytest.raises(ConceptvecError, match="is empty"):
        score("")
    with pytest.raises(ConceptvecError, match="header but no answers"):
        score("rater,question,answer\n")
    with pytest.raises(ConceptvecError, match="row 1: expected the header"):
        score("who,what\nann,q01\n")
    with pytest.raises(ConceptvecError, match=r"row 3: question 'q99' is not in study"):
        score("rater,question,answer\nann,q01,a\nann,q99,a\n")
    with pytest.raises(ConceptvecError, match=r"row 4: rater 'ann' answers question q01 a second time \(first at .*row 2\)"):
        score("rater,question,answer\nann,q01,a\nbob,q01,b\nann,q01,c\n")
    with pytest.raises(ConceptvecError, match=r"row 2: answer 'f' is not an option of question q01"):
        score("rater,question,answer\nann,q01,f\n")
    with pytest.raises(ConceptvecError, match=r"row 2: answer 'maybe' is not an option"):
        score(f"rater,question,answer\nann,{study.questions('agree')[0]},maybe\n")
    # Duplicates across files are found too.
    (tmp_path / "one.csv").write_text("rater,question,answer\nann,q01,a\n")
    (tmp_path / "two.csv").write_text("rater,question,answer\nann,q01,b\n")
    with pytest.raises(ConceptvecError, match=r"two.csv, row 2: rater 'ann' answers question q01 a second time"):
        score_study(study.path, [tmp_path / "one.csv", tmp_path / "two.csv"])


def test_a_key_that_does_not_match_the_study_is_refused(run, study, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(study.path, copy)
    other = make_study(run[0], tmp_path / "other", seed=9)
    shutil.copy(other.path / "key.json", copy / "key.json")
    with pytest.raises(cv.StoreError, match="does not match study"):
        Study.load(copy)
    key = json.loads((study.path / "key.json").read_text())
    key["q01"]["answer"] = "a" if key["q01"]["answer"] != "a" else "b"
    (copy / "key.json").write_text(json.dumps(key, indent=2) + "\n")
    with pytest.raises(cv.StoreError, match="edited or belongs to another study"):
        score_study(copy, [])


@pytest.mark.slow
def test_cli_make_and_score(run, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["study", "make", str(run[0] / "scan"), "--neurons", "0-7", "--seed", "0",
                              "--out", str(tmp_path / "study")])
    assert res.exit_code == 0, res.output
    assert "form.html" in res.output and (tmp_path / "study" / "key.json").exists()
    study = Study.load(tmp_path / "study")
    answers = write_csv(tmp_path / "a.csv", perfect_answers(study, "a") + perfect_answers(study, "b"))
    res = runner.invoke(app, ["study", "score", str(tmp_path / "study"), str(answers), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["intruder_accuracy"] == 1.0 and data["agreement_rate"] == 1.0 and data["n_raters"] == 2
    res = runner.invoke(app, ["study", "score", str(tmp_path / "study"), str(answers)])
    assert res.exit_code == 0 and "intruder accuracy 100.0% of 8 answers" in res.output
    res = runner.invoke(app, ["study", "make", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s2")])
    assert res.exit_code == 2 and "does not exist" in res.output


# -- the form in a browser -------------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.slow
@needs_chromium
def test_form_in_chromium_exports_answers_that_score_as_expected(study, tmp_path):
    from playwright.sync_api import sync_playwright

    key = study.key
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(accept_downloads=True)
            problems, requests = [], []
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto((study.path / "form.html").resolve().as_uri())
            assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            # Export without an id is refused with a message.
            page.click("#export")
            assert "participant id" in page.inner_text("#status")
            page.fill("#rater", "ann, the \"first\"")
            for q, e in key.items():
                if e["type"] == "intruder":
                    choice = e["answer"] if q != "q02" else next(o for o in e["options"] if o != e["answer"])
                    page.check(f'input[name="{q}"][value="{choice}"]')
                elif e["type"] == "label":
                    page.fill(f'input[name="{q}"]', 'round, "loopy"')
                elif q != study.questions("agree")[-1]:  # the last one left unanswered
                    page.check(f'input[name="{q}"][value="yes"]')
            # A reload keeps the answers (kept in the browser, not sent). Chromium hands localStorage writes to its
            # storage service asynchronously: a reload at once, on a loaded machine, once read the store before the
            # write had landed (1 failure in about 5 full runs); a person does not reload within half a second.
            page.wait_for_timeout(500)
            page.reload()
            assert page.input_value("#rater") == 'ann, the "first"'
            with page.expect_download() as download:
                page.click("#export")
            path = tmp_path / "ann.csv"
            download.value.save_as(path)
            assert "1 question(s) unanswered" in page.inner_text("#status")
        finally:
            browser.close()
    assert not problems, problems
    assert all(u.startswith(("file:", "data:", "blob:")) for u in requests), requests
    rows = list(csv.reader(path.open(newline="")))
    assert rows[0] == ["rater", "question", "answer"] and len(rows) == 1 + len(key) - 1
    s = score_study(study.path, [path])
    assert s.raters == ['ann, the "first"']
    assert s.intruder_accuracy == pytest.approx(3 / 4) and s.intruder["questions"]["q02"]["accuracy"] == 0.0
    assert s.agreement_rate == 1.0 and s.agree["n"] == 3
    assert [x["labels"][0]["label"] for x in s.labels] == ['round, "loopy"'] * 2
    assert s.unanswered == {'ann, the "first"': [study.questions("agree")[-1]]}


def test_text_examples_show_without_their_id_and_escaped():
    from conceptvec.report.examples import TextExamples
    from conceptvec.study.form import example_html

    texts = TextExamples(["doc-7"], ["sports"], [["The", " <script>", " pitch"]], strengths=[[0.1, 0.2, 0.9]])
    fragment = example_html(texts, index=0)
    assert fragment == '<span class="snippet">The &lt;script&gt;<mark> pitch</mark></span>'
    assert "doc-7" not in fragment and "sports" not in fragment


def test_make_study_overwrite_keeps_answers_and_scores(run, tmp_path):
    study = tmp_path / "study"
    make_study(run[0], study, neurons="0-3", seed=0, label_questions=0)
    (study / "rater1.csv").write_text("rater,question,answer\n")
    (study / "scores").mkdir()
    (study / "scores" / "mine.txt").write_text("kept")
    make_study(run[0], study, neurons="0-3", seed=1, label_questions=0, overwrite=True)
    assert (study / "rater1.csv").read_text() == "rater,question,answer\n"  # the raters' answers are carried over
    assert (study / "scores" / "mine.txt").read_text() == "kept"
    (study / "form.html").write_text("edited")  # an edited file of the study itself is the user's now
    with pytest.raises(ConceptvecError, match="form.html"):
        make_study(run[0], study, neurons="0-3", seed=2, label_questions=0, overwrite=True)
    assert (study / "form.html").read_text() == "edited"
