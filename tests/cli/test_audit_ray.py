"""The audit of issue 24 (item 7) on Ray (``--engine ray``): workers that die on every retry, Ctrl-C, a worker's bug,
a store or a data folder the workers cannot see, relative paths on a cluster started elsewhere, huge worker counts.
Each case is a known answer: one line naming the problem and the fix (exit status 2, ConceptvecError in Python), the
finished work kept and resumed to the uninterrupted (local) result bit for bit. docs/audit.md's third table lists them.
One local Ray of 2 CPUs serves the module (``ray_cluster``)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

import conceptvec as cv
from conceptvec.scan import layer, ray_engine
from conceptvec.scan.ray_engine import RayEngine
from conftest import one_line_error, planted_class_acts
from conftest import run_cli as run

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PARAMS = cv.Params(top=30, distance_threshold=10.0, outlier_threshold=2.0, min_cluster_size=4)
FIELDS = ("neurons", "top_indices", "top_scores", "linkage", "labels", "kmeans_labels", "centroid_sq_distances",
          "concept_vectors", "concept_offsets")


def assert_same(a, b) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """16 neurons, each firing for 1 to 3 of 10 classes of 40 examples."""
    return cv.ActivationStore.create(tmp_path_factory.mktemp("rayaudit") / "store", planted_class_acts())


@pytest.fixture(scope="module")
def local(store):
    layer.BATCH, before = 4, layer.BATCH  # 16 neurons: 4 batches
    try:
        yield cv.scan_layer(store, params=PARAMS, workers=1, progress=False)
    finally:
        layer.BATCH = before


@pytest.fixture
def batches_of_4(monkeypatch):
    monkeypatch.setattr(layer, "BATCH", 4)


def always_dies(task):
    os._exit(1)  # the worker process dies, as one killed or out of memory does, on every retry


def a_bug(task):
    raise ValueError("a bug in the method")


# -- the scan ---------------------------------------------------------------------------------------------------------
def test_a_worker_dying_on_every_retry_is_one_line_and_the_scan_resumes(ray_cluster, store, local, batches_of_4, tmp_path,
                                                                       monkeypatch):
    # before: "unexpected WorkerCrashedError ... This is a bug of conceptvec" (cv.scan_layer: Ray's WorkerCrashedError)
    monkeypatch.setattr(RayEngine, "batch_function", staticmethod(always_dies))
    one_line_error(*run("scan", store.path, "--out", tmp_path / "scan", "--engine", "ray", "--workers", "1", "--top", "30",
                        "--distance-threshold", "10", "--outlier-threshold", "2", "--min-cluster-size", "4"),
                   "the Ray cluster lost a worker's work after 3 retries (WorkerCrashedError", "run the same command again to resume")
    assert not (tmp_path / "scan").exists() and (tmp_path / "scan.partial" / "top.safetensors").exists()
    monkeypatch.undo()
    monkeypatch.setattr(layer, "BATCH", 4)
    resumed = cv.scan_layer(store, params=PARAMS, engine="ray", progress=False, out=tmp_path / "scan")
    assert_same(resumed, local)


class StopsAfter(RayEngine):
    """Ctrl-C in the driver after ``n`` batches have come back (as the user's Ctrl-C interrupts ``ray.wait``)."""

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        self.n = n

    def run(self, matrix, tasks, *, finished):
        done = []

        def counting(b, result):
            finished(b, result)
            done.append(b)
            if len(done) == self.n:
                raise KeyboardInterrupt

        super().run(matrix, tasks, finished=counting)


def test_ctrl_c_during_a_ray_scan_keeps_the_finished_batches_and_resumes_bit_for_bit(ray_cluster, store, local, batches_of_4,
                                                                                   tmp_path):
    with pytest.raises(KeyboardInterrupt):
        cv.scan_layer(store, params=PARAMS, engine=StopsAfter(2, workers=1), progress=False, out=tmp_path / "scan")
    assert not (tmp_path / "scan").exists()
    assert len(list((tmp_path / "scan.partial").glob("part-*.safetensors"))) == 2
    resumed = cv.scan_layer(store, params=PARAMS, engine="ray", progress=False, out=tmp_path / "scan")
    assert resumed.resumed == 8
    assert_same(resumed, local)
    assert_same(cv.ScanResult.load(tmp_path / "scan"), local)


def test_a_workers_bug_is_its_own_exception_and_an_unreadable_store_is_one_line(ray_cluster, store, batches_of_4, tmp_path,
                                                                                monkeypatch):
    buggy = RayEngine(workers=1)
    buggy.batch_function = a_bug
    with pytest.raises(ValueError, match="a bug in the method") as caught:
        cv.scan_layer(store, params=PARAMS, engine=buggy, progress=False)
    assert type(caught.value) is ValueError  # before: RayTaskError(ValueError), whose text is the worker's traceback
    # a node that does not mount the store's disk (data='shared' on a cluster of several machines)
    monkeypatch.setattr(ray_engine, "npy_path", lambda matrix: str(tmp_path / "elsewhere" / "activations.npy"))
    with pytest.raises(cv.ConceptvecError, match=r"a Ray worker cannot read the store's activations at .*elsewhere.*"
                                                 r"data='object-store'"):
        cv.scan_layer(store, params=PARAMS, engine=RayEngine(data="shared"), progress=False, out=tmp_path / "scan")


def test_huge_and_zero_worker_counts_on_ray(ray_cluster, store, local, batches_of_4):
    for workers in (0, 10**9):  # 0: one task at a time; 10**9: every batch at once (the cluster runs what fits)
        assert_same(cv.scan_layer(store, params=PARAMS, engine="ray", workers=workers, progress=False), local)


def test_another_address_while_connected_is_said(ray_cluster, store, local, batches_of_4):
    import socket
    import warnings

    here = ray_cluster.get_runtime_context().gcs_address
    with socket.socket() as other:  # something answers there, so the address passes the reachability check
        other.bind(("127.0.0.1", 0))
        other.listen()
        address = f"127.0.0.1:{other.getsockname()[1]}"
        # before: the address was dropped without a word (the scan ran on the cluster already joined)
        with pytest.warns(UserWarning, match=f"already connected to the Ray cluster at {here}; ray_address '{address}' is not joined"):
            assert_same(cv.scan_layer(store, params=PARAMS, engine=RayEngine(ray_address=address), progress=False), local)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its own address: no warning
        cv.scan_layer(store, params=PARAMS, engine=RayEngine(ray_address=here), progress=False)


# -- extraction -------------------------------------------------------------------------------------------------------
def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()).eval()


class Tensors(torch.utils.data.Dataset):
    """20 prepared tensors in 2 classes; optionally item ``die_at`` kills its process every time it is read."""

    def __init__(self, die_at: int | None = None):
        self.x = torch.randn(20, 3, 12, 12, generator=torch.Generator().manual_seed(1))
        self.targets = torch.arange(20) % 2
        self.die_at = die_at

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        if i == self.die_at:
            os._exit(1)
        return self.x[i], int(self.targets[i])


def test_an_actor_dying_on_every_retry_ends_in_one_line_and_the_store_resumes(ray_cluster, tmp_path):
    options = dict(layer="3", batch_size=5, chunk_size=5, device="cpu", progress=False)
    local = cv.extract(tiny_cnn(), data=Tensors(), out=tmp_path / "local", **options)
    # before: Ray Data ran the batch again for ever (a run that never ended); now 3 retries, then one line
    with pytest.raises(cv.ConceptvecError, match=r"the Ray cluster lost a worker's work after 3 retries"):
        cv.extract(tiny_cnn(), data=Tensors(die_at=17), out=tmp_path / "ray", engine="ray", workers=1, **options)
    assert not (tmp_path / "ray").exists()
    kept = sorted(p.name for p in (tmp_path / "ray.partial" / "chunks").glob("*.json"))
    assert "000003.json" not in kept  # the chunk of the poisoned example was not written
    resumed = cv.extract(tiny_cnn(), data=Tensors(), out=tmp_path / "ray", engine="ray", workers=10**9, **options)
    for name in ("activations.npy", "examples.parquet"):
        assert (resumed.path / name).read_bytes() == (local.path / name).read_bytes(), name


def test_a_relative_data_folder_reaches_workers_running_elsewhere(ray_cluster, tmp_path, monkeypatch):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "data" / c / f"{i}.png")
    options = dict(layer="layer1", weights="none", batch_size=2, chunk_size=3, progress=False)
    local = cv.extract("torchvision:resnet18", data=tmp_path / "data", out=tmp_path / "local", **options)
    # The workers were started in the test's folder; the driver now runs in tmp_path and names the folder relatively,
    # as a user does beside a cluster started elsewhere. Before: every image "unreadable" there, and the run failed.
    monkeypatch.chdir(tmp_path)
    ray = cv.extract("torchvision:resnet18", data="data", out="ray", engine="ray", workers=2, **options)
    assert ray.metadata["skipped"]["sources"] == []
    for name in ("activations.npy", "examples.parquet"):
        assert (ray.path / name).read_bytes() == (local.path / name).read_bytes(), name


def test_a_worker_that_cannot_see_the_data_folder_says_so(tmp_path):
    from conceptvec.engines.raycluster import CarriedError, check_visible
    from conceptvec.extraction.ray_images import LayerActor
    from conceptvec.extraction.runner import ImageDataset
    from conceptvec.sources.images import ImageFiles

    files = ImageFiles(tmp_path / "not-mounted-here", ["a.png"], [-1], [], "flat")
    actor = LayerActor(model=tiny_cnn(), load={}, layer="3", pool="mean", dataset=ImageDataset(files, lambda im: im),
                       device="cpu", autocast=False, channels_last=False)
    with pytest.raises(CarriedError) as caught:  # in a worker: carried to the driver as this one line
        actor({"chunk": np.array([0]), "start": np.array([0]), "stop": np.array([1])})
    assert isinstance(caught.value.args[0], cv.ConceptvecError)
    assert "cannot see the data folder" in str(caught.value.args[0]) and "same path on every node" in str(caught.value.args[0])
    check_visible(tmp_path, "data folder")


def test_paths_given_to_workers_are_absolute(tmp_path, monkeypatch):
    from conceptvec.engines.raycluster import for_workers

    (tmp_path / "w.safetensors").write_bytes(b"")
    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert for_workers("w.safetensors") == str(tmp_path.resolve() / "w.safetensors")
    assert for_workers("hf:model") == f"hf:{tmp_path.resolve() / 'model'}"
    assert for_workers("none") == "none" and for_workers("torchvision:resnet18") == "torchvision:resnet18"
    assert for_workers(None) is None


def test_rays_own_errors_are_said_in_one_line():
    import ray.exceptions as rx

    from conceptvec.engines.raycluster import lost_worker, user_error

    crashed = user_error(rx.WorkerCrashedError())
    assert isinstance(crashed, cv.ConceptvecError) and "after 3 retries (WorkerCrashedError" in str(crashed)
    full = user_error(rx.ObjectStoreFullError("the object store is full"))
    assert "ray start --head --object-store-memory" in str(full)
    # an actor whose __init__ failed (the model folder missing on its node): Ray keeps only the text
    init = rx.RayActorError(error_msg="The actor died because of an error raised in its creation task\n  File x\nOSError: no folder m",
                            actor_init_failed=True)
    assert str(lost_worker(init)).startswith("a Ray worker could not start (OSError: no folder m); every node needs the model")
    assert lost_worker(ValueError("x")).args == ("x",)  # not Ray's: as it is


def test_a_ray_address_that_is_not_text_is_one_line(store, tmp_path):
    for address in (3, ["x"], b"127.0.0.1:1"):  # before: TypeError from re
        with pytest.raises(cv.ConceptvecError, match=r"ray_address \(--ray-address\) must be a text such as '10.0.0.1:6379'"):
            cv.scan_layer(store, params=PARAMS, engine="ray", ray_address=address, progress=False, out=tmp_path / "s")
    assert not (tmp_path / "s").exists()

