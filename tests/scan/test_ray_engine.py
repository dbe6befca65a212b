"""The scan on Ray (``engine="ray"``): bit for bit the local scan, resumable, retried, with the local run's errors."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import conceptvec as cv
from conftest import planted_class_acts
from conceptvec import ConceptvecError
from conceptvec.cli import app
from conceptvec.scan import engine, layer
from conceptvec.scan.ray_engine import RayEngine

PARAMS = cv.Params(top=30, distance_threshold=10.0, outlier_threshold=2.0, min_cluster_size=4)

RESULT_FIELDS = ("neurons", "top_indices", "top_scores", "linkage", "n_agglomerative", "kmeans_labels",
                 "centroid_sq_distances", "labels", "concept_vectors", "concept_offsets", "kmeans_cluster_ids")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    # 16 neurons, each firing for 1 to 3 of 10 classes of examples (planted concepts, as in test_scan.py)
    return cv.ActivationStore.create(tmp_path_factory.mktemp("ray") / "store", planted_class_acts())


def assert_same(a, b) -> None:
    for name in RESULT_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    for name in ("indices", "projections", "cosine"):
        assert np.array_equal(a.projecting[name], b.projecting[name]), name


@pytest.mark.ray
@pytest.mark.slow
def test_ray_scan_equals_local_bit_for_bit(ray_cluster, store, monkeypatch):
    monkeypatch.setattr(layer, "BATCH", 4)  # 16 neurons: 4 tasks
    local = cv.scan_layer(store, params=PARAMS, workers=1, progress=False)
    shared = cv.scan_layer(store, params=PARAMS, engine="ray", progress=False)
    assert_same(shared, local)
    # rows shipped through the object store (workers that do not share the disk), and an array in memory
    shipped = cv.scan_layer(store, params=PARAMS, engine=RayEngine(data="object-store"), progress=False)
    assert_same(shipped, local)
    in_memory = cv.scan_layer(np.asarray(store.activations), params=PARAMS, engine="ray", progress=False)
    assert_same(in_memory, local)
    with pytest.raises(ConceptvecError, match="data='shared' needs an activation store"):
        cv.scan_layer(np.asarray(store.activations), params=PARAMS, engine=RayEngine(data="shared"), progress=False)


@pytest.mark.ray
@pytest.mark.slow
def test_cli_scan_on_ray(ray_cluster, store, tmp_path):
    from conceptvec.scan.result import ScanResult

    local = cv.scan_layer(store, params=cv.Params(), workers=1, progress=False)
    result = CliRunner().invoke(app, ["scan", str(store.path), "--out", str(tmp_path / "scan"), "--engine", "ray"])
    assert result.exit_code == 0, result.output
    saved = ScanResult.load(tmp_path / "scan")
    assert np.array_equal(saved.concept_vectors, local.concept_vectors) and np.array_equal(saved.labels, local.labels)


def fails_at(task, *, first_top: int):
    """A worker's error: the batch whose first neuron's best example is ``first_top`` fails as the method fails."""
    if int(task.top_indices[0, 0]) == first_top:
        raise ConceptvecError("top=30 is too large for neuron 8; lower --top.")
    return engine.cluster_batch(task)


def dies_once(task, *, marker: str):
    """Kills its worker process the first time any task runs (the marker file remembers), then clusters."""
    if not os.path.exists(marker):
        Path(marker).write_text("died once")
        os._exit(1)
    return engine.cluster_batch(task)


def engine_running(function, **kwargs) -> RayEngine:
    ray_engine = RayEngine(**kwargs)
    ray_engine.batch_function = function
    return ray_engine


@pytest.mark.ray
@pytest.mark.slow
def test_worker_error_is_the_local_message_and_the_scan_resumes(ray_cluster, store, tmp_path, monkeypatch):
    monkeypatch.setattr(layer, "BATCH", 4)
    local = cv.scan_layer(store, params=PARAMS, workers=1, progress=False)
    failing = engine_running(functools.partial(fails_at, first_top=int(local.top_indices[12, 0])), workers=1)
    with pytest.raises(ConceptvecError) as caught:
        cv.scan_layer(store, params=PARAMS, engine=failing, progress=False, out=tmp_path / "scan")
    assert str(caught.value) == "top=30 is too large for neuron 8; lower --top."
    assert type(caught.value) is ConceptvecError  # not Ray's wrapper, whose text carries the worker's traceback
    assert not (tmp_path / "scan").exists()
    kept = len(list((tmp_path / "scan.partial").glob("part-*.safetensors")))
    assert kept <= 3  # the failing batch (neurons 12-15) was not saved

    resumed = cv.scan_layer(store, params=PARAMS, engine="ray", progress=False, out=tmp_path / "scan")
    assert resumed.resumed == 4 * kept
    assert_same(resumed, local)


@pytest.mark.ray
@pytest.mark.slow
def test_killed_worker_is_retried_nothing_lost(ray_cluster, store, tmp_path, monkeypatch):
    monkeypatch.setattr(layer, "BATCH", 4)
    local = cv.scan_layer(store, params=PARAMS, workers=1, progress=False)
    marker = tmp_path / "died"
    dying = engine_running(functools.partial(dies_once, marker=str(marker)))
    result = cv.scan_layer(store, params=PARAMS, engine=dying, progress=False)
    assert marker.read_text() == "died once"  # a worker really died, and Ray ran its task again
    assert_same(result, local)


def test_without_ray_installed_says_how_to_install(store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is not installed
    with pytest.raises(ConceptvecError, match=r'needs Ray, which is not installed; install it with pip install "conceptvec\[ray\]"'):
        cv.scan_layer(store, params=PARAMS, engine="ray", progress=False)
    result = CliRunner().invoke(app, ["scan", str(store.path), "--out", str(tmp_path / "s"), "--engine", "ray"])
    assert result.exit_code == 2
    assert 'pip install "conceptvec[ray]"' in " ".join(result.output.split())
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_bad_engine_options(store):
    from conceptvec.engines.raycluster import check_reachable

    with pytest.raises(ConceptvecError, match=r"no Ray cluster answers at 127.0.0.1:1 .*ray start --head"):
        check_reachable("127.0.0.1:1")  # a closed port: refused at once, not after ray.init's minutes of retrying
    check_reachable("auto")
    with pytest.raises(ConceptvecError, match=r"--ray-address .* applies to an engine on a Ray cluster \(--engine ray\)"):
        engine.make_engine("local", ray_address="10.0.0.1:6379")
    with pytest.raises(ConceptvecError, match="data must be one of auto, shared, object-store"):
        RayEngine(data="nfs")
    with pytest.raises(ConceptvecError, match="workers must be a whole number"):
        RayEngine(workers=-1)
