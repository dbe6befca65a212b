"""Figures of one neuron's ConceptSet, checked on the data they draw (panels, examples, values), not pixels."""

from collections import Counter

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from conftest import planted
from scipy.cluster.hierarchy import fcluster
from scipy.spatial.distance import cdist

import conceptvec as cv
from conceptvec import maximally_projecting, most_similar
from conceptvec.report import figures as F
from conceptvec.report.examples import ImageExamples, TextExamples, examples_for_store
from conceptvec.report.figures.panels import headings, shown_examples

META = {"model": {"name": "test"}, "layer": "x", "data": {"kind": "sklearn-digits"}}
# 80 top examples: two planted facets of 30 and 20 background ones; min_cluster_size=25 removes the background.
PARAMS = cv.Params(top=80, distance_threshold=10.0, outlier_threshold=40.0, min_cluster_size=25)


def make_store(path, acts):
    from conceptvec.sources.digits import load_digits_images

    _, digits = load_digits_images()
    n = len(acts)
    examples = {
        "id": [f"d{i}" for i in range(n)],
        "label": digits[:n].tolist(),
        "label_name": [f"digit {d}" for d in digits[:n]],
        "source": [f"sklearn-digits:{i}" for i in range(n)],
    }
    return cv.ActivationStore.create(path, acts, examples=examples, metadata=META)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    acts, groups = planted()
    store = make_store(tmp_path_factory.mktemp("fig") / "store", acts)
    cs = cv.disentangle(store, neuron=3, params=PARAMS)
    return store, cs, ImageExamples.from_store(store), groups


def gids(fig):
    axes = [a for ax in fig.axes for a in (ax, *ax.child_axes)]  # UMAP thumbnails are inset (child) axes
    inset = [int(ax.get_gid().split(":")[1]) for ax in axes if (ax.get_gid() or "").startswith("example:")]
    return inset + [i for i, _ in shown_examples(fig)]  # the grids' panels, drawn in one Axes


def titles(fig):
    return [title for _, title in shown_examples(fig)]


@pytest.mark.slow
def test_setup_has_two_concepts_and_removed_examples(setup):
    _, cs, _, _ = setup
    assert cs.n_agglomerative == 3 and cs.n_concepts == 2 and (~cs.kept).sum() == 20


@pytest.mark.slow
def test_image_examples_captions_images_and_thumbnails(setup, tmp_path):
    store, _, ex, _ = setup
    assert isinstance(examples_for_store(store), ImageExamples)
    assert len(ex) == store.n_examples
    assert ex.caption(7) == f"d7 · {store.label_names[7]}" and ex.label(7) == store.label_names[7]
    assert ex.image(7).size == (8, 8)
    thumb = ex.thumbnail(7, tmp_path)
    assert thumb.exists() and thumb.name == "7.png"
    before = thumb.stat().st_mtime_ns
    html = ex.html(7, tmp_path)
    assert thumb.stat().st_mtime_ns == before  # made once, reused
    assert html.startswith('<img src="') and f"{tmp_path.name}/thumbs/7.png" in html
    with pytest.raises(IndexError, match="out of range"):
        ex.caption(10_000)


@pytest.mark.slow
def test_top_activating_grid_shows_the_top_examples_in_order(setup):
    _, cs, ex, _ = setup
    fig = F.top_activating_grid(cs, ex, n=12)
    assert gids(fig) == cs.top_indices[:12].tolist() and len(fig.axes) == 1  # one Axes for every panel: fast to draw
    titled = titles(fig)
    assert titled[0].startswith(f"#1 {ex.caption(cs.top_indices[0])}")
    d = F.top_activating_data(cs)
    assert d["index"] == cs.top_indices.tolist() and d["activation"] == cs.top_scores.tolist()
    assert len(gids(F.top_activating_grid(cs, ex))) == PARAMS.top


@pytest.mark.slow
def test_concept_groups_grid_groups_by_concept_removed_last(setup):
    _, cs, ex, _ = setup
    fig = F.concept_groups_grid(cs, ex)
    expected = [*cs.members(0), *cs.members(1), *cs.top_indices[~cs.kept]]
    assert gids(fig) == [int(i) for i in expected]
    groups = F.concept_groups_data(cs)["groups"]
    assert [g["concept"] for g in groups] == [0, 1, -1]
    assert set(groups[-1]["reason"]) == {"small cluster"}
    removed_titles = [t for i, t in shown_examples(fig) if i in set(expected[60:])]
    assert len(removed_titles) == 20 and all("small cluster" in t for t in removed_titles)
    assert [h.split(":")[0] for h in headings(fig)] == ["Concept 0", "Concept 1", "Removed in step 3"]


@pytest.mark.slow
def test_projecting_grid_is_fig3(setup):
    store, cs, ex, _ = setup
    fig = F.projecting_grid(cs, store.activations, ex, n=6)
    idx, vals = maximally_projecting(store.activations, cs.concept_vectors, top=6)
    assert gids(fig) == [*cs.top_indices[:6], *idx[0], *idx[1]]
    cols = F.projecting_data(cs, store.activations, n=6)["columns"]
    assert [c["name"] for c in cols] == ["neuron 3", "concept 0", "concept 1"]
    np.testing.assert_allclose(cols[2]["value"], vals[1])
    with pytest.raises(cv.ConceptvecError, match="activation matrix"):
        F.projecting_grid(cs, store.activations[:, :5], ex)


@pytest.mark.slow
def test_projecting_grid_ranked_by_cosine(setup):
    store, cs, ex, _ = setup
    fig = F.projecting_grid(cs, store.activations, ex, n=6, rank="cosine")
    idx, cos = most_similar(store.activations, cs.concept_vectors, top=6)
    assert gids(fig) == [*cs.top_indices[:6], *idx[0], *idx[1]]
    cols = F.projecting_data(cs, store.activations, n=6, rank="cosine")["columns"]
    np.testing.assert_allclose(cols[1]["value"], cos[0])
    assert np.all(np.asarray(cols[1]["value"]) <= 1.0 + 1e-12)
    precomputed = F.projecting_data(cs, store.activations, n=6, rank="cosine")
    assert gids(F.projecting_grid(cs, None, ex, data=precomputed)) == gids(fig)  # no second pass over the store
    with pytest.raises(cv.ConceptvecError, match=r"rank must be one of \['projection', 'cosine', 'centred'\]"):
        F.projecting_data(cs, store.activations, rank="norm")


@pytest.mark.slow
def test_projecting_grid_ranked_centred(setup):
    from conceptvec import layer_mean

    store, cs, ex, _ = setup
    mean = layer_mean(store.activations)
    fig = F.projecting_grid(cs, store.activations, ex, n=6, rank="centred")
    idx, cos = most_similar(store.activations, cs.concept_vectors, top=6, centre=mean)
    assert gids(fig) == [*cs.top_indices[:6], *idx[0], *idx[1]]
    cols = F.projecting_data(cs, store.activations, n=6, rank="centred", centre=mean)["columns"]
    np.testing.assert_allclose(cols[2]["value"], cos[1])
    assert "centred cosine" in headings(fig)[1]


@pytest.mark.slow
def test_projection_comparison_is_fig5(setup):
    _, cs, _, _ = setup
    data = F.projection_comparison_data(cs)["concepts"]
    for c in data:
        x = cs.top_activations[cs.labels == c["concept"]]
        v = cs.concept_vectors[c["concept"]]
        np.testing.assert_allclose(c["projection_concept"], x @ v)
        np.testing.assert_allclose(c["projection_neuron"], x[:, 3])
        np.testing.assert_allclose(c["cosine_neuron"], x[:, 3] / np.linalg.norm(x, axis=1))
        # The paper's finding, which the planted facets reproduce: members are far closer to their concept.
        assert np.mean(c["cosine_concept"]) > np.mean(c["cosine_neuron"]) + 0.2
    fig = F.projection_comparison(cs)
    # Projection: concept and neuron; cosine: also the unsplit direction and the nearest other concept.
    assert len(fig.axes) == 2 and [len(ax.lines) for ax in fig.axes] == [2 * cs.n_concepts, 4 * cs.n_concepts]


@pytest.mark.slow
def test_fig5_baselines_unsplit_nearest_other_and_centred(setup):
    from conceptvec import layer_mean

    store, cs, _, _ = setup
    mean = layer_mean(store.activations)
    data = F.projection_comparison_data(cs, centre=mean)["concepts"]
    for c in data:
        j = c["concept"]
        x = cs.top_activations[cs.labels == j]
        assert c["nearest_other"] == 1 - j
        np.testing.assert_allclose(c["cosine_unsplit"], x @ cs.unsplit_direction / np.linalg.norm(x, axis=1))
        np.testing.assert_allclose(c["cosine_nearest_other"], x @ cs.concept_vectors[1 - j] / np.linalg.norm(x, axis=1))
        # Two far facets: each concept beats the unsplit direction and, by far, the other concept.
        assert np.mean(c["cosine_concept"]) > np.mean(c["cosine_unsplit"]) + 0.1 > np.mean(c["cosine_nearest_other"]) + 0.2
        d = x - mean
        assert c["centred_concept"] == pytest.approx(np.mean(d @ cs.concept_vectors[j] / np.linalg.norm(d, axis=1)))
    assert "centred_concept" not in F.projection_comparison_data(cs)["concepts"][0]


@pytest.mark.slow
def test_distance_matrices_is_fig4(setup):
    _, cs, _, _ = setup
    d = F.distance_matrices_data(cs)
    np.testing.assert_allclose(d["top"], cdist(cs.top_activations, cs.top_activations), atol=1e-9)
    assert len(d["kept_index"]) == 60 and d["kept_concept"] == sorted(d["kept_concept"])
    assert d["intra"] < d["inter"] / 5
    fig = F.distance_matrices(cs)
    assert [len(ax.images) for ax in fig.axes[:2]] == [1, 1]
    assert fig.axes[1].images[0].get_array().shape == (60, 60)


@pytest.mark.slow
def test_dendrogram_and_threshold_curve_are_figs_a7_a8(setup):
    _, cs, _, _ = setup
    d = F.dendrogram_data(cs)
    assert d["n_clusters"] == cs.n_agglomerative == 3
    assert sorted(d["leaf_index"]) == sorted(cs.top_indices.tolist())
    fig = F.dendrogram_plot(cs)
    cut = [ln for ln in fig.axes[0].lines if ln.get_linestyle() == "--"]
    assert len(cut) == 1 and cut[0].get_ydata()[0] == PARAMS.distance_threshold

    heights = np.sort(cs.linkage[:, 2])
    between = (heights[:-1] + heights[1:]) / 2
    curve = F.threshold_curve_data(cs, thresholds=between)
    assert curve["n_clusters"] == [len(np.unique(fcluster(cs.linkage, t, "distance"))) for t in between]
    default = F.threshold_curve_data(cs)
    at_run = default["threshold"].index(PARAMS.distance_threshold)
    assert default["n_clusters"][at_run] == cs.n_agglomerative
    assert len(F.threshold_curve(cs).axes) == 1


@pytest.mark.slow
def test_components_is_fig_a9(setup):
    _, cs, _, _ = setup
    d = F.components_data(cs, k=8)
    # conftest plants facet 0 on units 0-7 and facet 1 on units 12-19; each concept weighs its facet's units.
    planted_units = [set(range(0, 8)), set(range(12, 20))]
    found = sorted((set(c["top_units"]) for c in d["concepts"]), key=min)
    assert all(len(f & p) >= 7 for f, p in zip(found, planted_units))
    for c in d["concepts"]:
        np.testing.assert_allclose(c["components"], cs.concept_vectors[c["concept"]])
        assert c["neuron_weight"] == pytest.approx(cs.concept_vectors[c["concept"]][3])
    assert len(F.components_plot(cs).axes) == cs.n_concepts


@pytest.mark.slow
def test_class_makeup_counts_labels(setup):
    store, cs, ex, _ = setup
    groups = F.class_makeup_data(cs, ex)["groups"]
    for g in groups:
        idx = cs.top_indices[cs.labels == g["concept"]]
        assert dict(zip(g["labels"], g["counts"])) == dict(Counter(store.label_names[idx]))
        assert sum(g["counts"]) == g["n"] == len(idx)
    fig = F.class_makeup(cs, ex, max_classes=4)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(labels) == 5 and labels[-1] == "other"
    rows = F.summary_table(cs, ex)
    assert [r["concept"] for r in rows] == ["concept 0", "concept 1", "removed"]
    assert rows[0]["members"] == 30 and rows[0]["mean cosine (concept)"] > rows[0]["mean cosine (neuron)"]


def test_scan_figures():
    counts = np.array([0, 1, 1, 2, 3, 1, 2])
    d = F.scan_data(counts)
    assert d["concepts_per_neuron"] == {"0": 1, "1": 3, "2": 2, "3": 1}
    assert d["n_with_2_or_more_concepts"] == 3 and d["share_with_2_or_more_concepts"] == pytest.approx(3 / 7)
    fig = F.scan_histogram(counts)
    assert [p.get_height() for p in fig.axes[0].patches] == [1, 3, 2, 1]
    live = np.array([True, True, True, True, False, True, False])  # two dead units, with 3 and 2 "concepts"
    d = F.scan_data(counts, live)
    assert d["n_not_live"] == 2 and d["n_live"] == 5 and list(d["concepts_per_neuron"].values()) == [1, 3, 1]
    assert d["n_with_2_or_more_concepts"] == 1 and d["share_with_2_or_more_concepts"] == pytest.approx(1 / 5)
    assert "2 not live, left out" in F.scan_histogram(counts, live).axes[0].get_title()


@pytest.mark.slow
def test_umap_is_fig2_seeded_and_separates_concepts(setup):
    _, cs, ex, _ = setup
    d = F.umap_data(cs, seed=0)
    emb = np.asarray(d["embedding"])
    assert emb.shape == (60, 2) and d["index"] == cs.top_indices[cs.kept].tolist()
    lab = np.asarray(d["concept"])
    centres = np.stack([emb[lab == j].mean(0) for j in (0, 1)])
    spread = max(np.linalg.norm(emb[lab == j] - centres[j], axis=1).max() for j in (0, 1))
    assert np.linalg.norm(centres[0] - centres[1]) > 2 * spread
    fig = F.umap_plot(cs, ex, data=d, n_thumbnails=5)
    assert len(fig.axes[0].collections) == 2 and 1 <= len(gids(fig)) <= 5
    assert set(gids(fig)) <= set(d["index"])


@pytest.mark.slow
def test_umap_with_exact_neighbours_is_umap_learns_own_embedding_bit_for_bit(setup):
    # The report hands umap-learn the neighbours it would find itself (no numba compile of its search): same map.
    import umap

    _, cs, _, _ = setup
    d = F.umap_data(cs, seed=3)
    x = cs.top_activations[cs.kept]
    plain = umap.UMAP(n_components=2, n_neighbors=d["n_neighbors"], min_dist=0.1, random_state=3, init="spectral").fit_transform(x)
    np.testing.assert_array_equal(d["embedding"], plain)


@pytest.mark.slow
def test_text_examples_plug_into_the_figures(setup):
    _, cs, _, _ = setup
    n = 400
    tokens = [["The", " <cat>", " sat", f" {i}"] for i in range(n)]
    strengths = [[0.1, 0.9, 0.2, 0.0]] * n
    text = TextExamples([f"t{i}" for i in range(n)], ["<x>"] * n, tokens, strengths)
    assert text.strongest(0) == 1
    html = text.html(0, None)
    assert "<mark> &lt;cat&gt;</mark>" in html and "<cat>" not in html and "&lt;x&gt;" in html
    fig = F.top_activating_grid(cs, text, n=4)
    assert gids(fig) == cs.top_indices[:4].tolist()
    assert "[<cat>]" in fig.axes[0].texts[0].get_text()


@pytest.mark.slow
def test_threshold_sweep_figure_marks_the_given_threshold_and_the_rule():
    from conceptvec.core.sweep import threshold_sweep

    acts, _ = planted()
    sweep = threshold_sweep(acts, params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0), n_grid=10)
    d = F.threshold_sweep_data(sweep)
    fig = F.threshold_sweep_plot(sweep)
    left, right = fig.axes[:2]
    marked = sorted(line.get_xdata()[0] for line in left.lines)
    assert marked == sorted([10.0, d["layer_rule"]["distance_threshold"]])
    labels = [t.get_text() for t in left.get_legend().get_texts()]
    assert labels[0].startswith(f"given 10: {100 * d['given']['quantile']:.1f}% of merges below")
    assert sum(int(p.get_height()) for p in left.patches) == sweep.heights.size
    assert len(right.collections) == 5  # 0, 1, 2, 3, 4+ concepts


@pytest.mark.slow
def test_a_text_examples_caption_has_its_label_on_a_line_of_its_own_and_an_images_does_not(setup):
    store, cs, images, _ = setup
    n = store.n_examples
    ex = TextExamples([f"corpus.jsonl:{i}" for i in range(n)], ["threading"] * n, [["Return", " true."]] * n)
    shown = titles(F.top_activating_grid(cs, ex, n=3))
    assert shown[0].split("\n")[:2] == [f"#1 corpus.jsonl:{cs.top_indices[0]}", "threading"]
    shown = titles(F.top_activating_grid(cs, images, n=1))
    assert shown[0].split("\n")[0] == f"#1 {images.caption(cs.top_indices[0])}"


def test_the_concept_table_of_examples_without_class_labels_has_no_labels_column(setup):
    # a store made from a list of icon paths has no classes: the neuron page's table showed "(none) ×68"
    store, cs, ex, _ = setup
    assert "commonest labels" in F.summary_table(cs, ex)[0]
    plain = ImageExamples(store.ids, [""] * len(store.ids), store.sources)
    rows = F.summary_table(cs, plain)
    assert all("commonest labels" not in r for r in rows) and rows[0]["members"] == F.summary_table(cs, ex)[0]["members"]
