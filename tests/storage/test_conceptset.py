import numpy as np
import pytest

import conceptvec as cv
from conftest import planted


def _cs():
    acts, _ = planted()
    return cv.disentangle(acts, neuron=3, params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0))


def test_save_load_roundtrip(tmp_path):
    cs = _cs()
    cs.save(tmp_path / "cs")
    back = cv.ConceptSet.load(tmp_path / "cs")
    for name in ("top_indices", "top_scores", "top_activations", "linkage", "kmeans_labels",
                 "centroid_sq_distances", "labels", "kmeans_cluster_ids", "concept_vectors"):
        np.testing.assert_array_equal(getattr(back, name), getattr(cs, name))
    assert back.params == cs.params and back.neuron == 3 and back.n_agglomerative == cs.n_agglomerative
    assert back.provenance["n_examples"] == 400
    assert sorted(p.name for p in (tmp_path / "cs").iterdir()) == [".conceptvec-manifest.json", "arrays.safetensors", "conceptset.json"]


def test_direction_and_empty_sets_roundtrip(tmp_path):
    acts, _ = planted()
    cs = cv.disentangle(acts, direction=np.ones(acts.shape[1]), params=cv.Params(top=20, outlier_threshold=1e-9))
    assert cs.n_concepts == 0
    cs.save(tmp_path / "d")
    back = cv.ConceptSet.load(tmp_path / "d")
    assert back.neuron is None and back.concept_vectors.shape == (0, acts.shape[1])
    np.testing.assert_array_equal(back.direction, cs.direction)


def test_summary_and_members():
    acts, _ = planted()
    # an outlier threshold inside the squared distances' range (median 0.68): some examples are outliers
    cs = cv.disentangle(acts, neuron=3, params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=1.0))
    s = cs.summary()
    assert s["n_outliers"] > 0 and s["n_concepts"] == 2
    assert s["n_concepts"] == 2 and sum(s["concept_sizes"]) + s["n_outliers"] + s["n_in_removed_small_clusters"] == 60
    # Counted again from the k-means step itself, not from cs.labels: a concept's members are the examples of
    # its k-means cluster inside the outlier threshold, taken from the top examples in activation order.
    for j, cluster in enumerate(cs.kmeans_cluster_ids):
        inside = (cs.kmeans_labels == cluster) & (cs.centroid_sq_distances < cs.params.outlier_threshold)
        np.testing.assert_array_equal(cs.members(j), cs.top_indices[inside])
        assert s["concept_sizes"][j] == int(inside.sum())
    with pytest.raises(IndexError, match="has 2 concept"):
        cs.members(2)
    assert "C=2" in repr(cs)
    np.testing.assert_array_equal(cs.neuron_direction, np.eye(24)[3])


def test_save_refuses_non_empty_target_and_is_atomic(tmp_path, monkeypatch):
    cs = _cs()
    target = tmp_path / "cs"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    # --overwrite replaces an earlier ConceptSet only, never a folder of the user's files: said with or without it
    # (advising --overwrite there would only lead to this refusal)
    with pytest.raises(cv.ConceptvecError, match="holds other files, not a ConceptSet.*replaces only an earlier ConceptSet"):
        cs.save(target)
    with pytest.raises(cv.ConceptvecError, match="holds other files, not a ConceptSet.*replaces only an earlier ConceptSet"):
        cs.save(target, overwrite=True)
    assert (target / "keep.txt").read_text() == "mine"

    earlier = tmp_path / "earlier"
    cs.save(earlier)
    before = {p.name: p.read_bytes() for p in earlier.iterdir()}

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr("conceptvec.storage.conceptset.write_json", boom)
    with pytest.raises(KeyboardInterrupt):
        cs.save(earlier, overwrite=True)
    assert {p.name: p.read_bytes() for p in earlier.iterdir()} == before  # interrupted: the old set is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cs", "earlier"]  # and no temporary directory is left


def test_save_never_replaces_its_own_store(tmp_path):
    acts, _ = planted()
    store = cv.ActivationStore.create(tmp_path / "store", acts)
    cs = cv.disentangle(store, neuron=3, params=cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0))
    for out in (tmp_path / "store", tmp_path):  # the store itself, or a folder holding it
        with pytest.raises(cv.ConceptvecError, match="holds|is this command's input"):
            cs.save(out, overwrite=True)
    assert cv.ActivationStore.open(tmp_path / "store").shape == acts.shape


def test_load_errors(tmp_path):
    with pytest.raises(cv.StoreError, match="no ConceptSet at"):
        cv.ConceptSet.load(tmp_path)
    (tmp_path / "metadata.json").write_text("{}")
    with pytest.raises(cv.StoreError, match="is an activation store"):
        cv.ConceptSet.load(tmp_path)


def test_is_live():
    acts, _ = planted()
    assert _cs().is_live and _cs().summary()["live"] is True
    acts = acts.copy()
    acts[:, 5] = 0.0
    acts[:10, 5] = 1.0  # active on 10 examples only: its top 60 are padded with zero ties
    dead = cv.disentangle(acts, neuron=5, params=cv.Params(top=60))
    assert not dead.is_live and dead.summary()["live"] is False
    assert dead.top_indices[10:].tolist() == list(range(10, 60))  # the ties, in example order
