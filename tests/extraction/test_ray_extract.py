"""Extraction on Ray (``engine="ray"``): the local run's store byte for byte, resumable, a killed actor's work redone."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.cli import app


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()).eval()


def image_tree(root: Path) -> Path:
    """Two classes of 6 small images, and one file that is not an image."""
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(root / c / f"img_{i}.png")
    (root / "b" / "broken_1.png").write_bytes(b"\x89PNG but not really")
    return root


class Tensors(torch.utils.data.Dataset):
    """30 prepared tensors in 3 classes; optionally one item kills its process once, or fails as bad data does."""

    def __init__(self, *, die_at: int | None = None, marker: str = "", fail_at: int | None = None):
        self.x = torch.randn(30, 3, 12, 12, generator=torch.Generator().manual_seed(1))
        self.targets = torch.arange(30) % 3
        self.die_at, self.marker, self.fail_at = die_at, marker, fail_at

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        if i == self.die_at and not os.path.exists(self.marker):
            Path(self.marker).write_text("died once")
            os._exit(1)  # the actor's process dies as a killed or crashed worker does
        if i == self.fail_at:
            raise cv.ConceptvecError(f"example {i} is damaged; remove it from the dataset.")
        return self.x[i], int(self.targets[i])


def same_store(a: cv.ActivationStore, b: cv.ActivationStore) -> None:
    for name in ("activations.npy", "examples.parquet"):
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes(), name
    assert a.metadata["skipped"] == b.metadata["skipped"]


@pytest.mark.ray
@pytest.mark.slow
def stop_after_first_chunk(monkeypatch: pytest.MonkeyPatch):
    """Make the next extraction stop (as Ctrl-C would) once it has written one chunk; returns the real writer method."""
    from conceptvec.storage.store import StoreWriter

    real, written = StoreWriter.write_chunk, []

    def stop_after_one(self, *args, **kwargs):
        if written:
            raise KeyboardInterrupt
        written.append(args[0])
        real(self, *args, **kwargs)

    monkeypatch.setattr(StoreWriter, "write_chunk", stop_after_one)
    return real


def test_ray_store_is_the_local_store_byte_for_byte(ray_cluster, tmp_path):
    root = image_tree(tmp_path / "data")
    options = dict(layer="layer2", data=root, weights="none", batch_size=2, chunk_size=3, progress=False)
    local = cv.extract("torchvision:resnet18", out=tmp_path / "local", **options)
    ray = cv.extract("torchvision:resnet18", out=tmp_path / "ray", engine="ray", workers=2, **options)
    same_store(ray, local)
    assert ray.metadata["skipped"]["sources"] == ["b/broken_1.png"] and ray.metadata["engine"] == "ray"
    assert ray.ids.tolist()[:2] == ["a/img_0.png", "a/img_1.png"]


@pytest.mark.ray
@pytest.mark.slow
def test_killed_actor_is_replaced_and_a_partial_store_resumes(ray_cluster, tmp_path, capsys):
    options = dict(layer="3", batch_size=4, chunk_size=5, device="cpu", progress=False)
    local = cv.extract(tiny_cnn(), data=Tensors(), out=tmp_path / "local", **options)
    marker = tmp_path / "died"
    ray = cv.extract(tiny_cnn(), data=Tensors(die_at=17, marker=str(marker)), out=tmp_path / "ray", engine="ray", **options)
    assert marker.read_text() == "died once"  # an actor died mid-run; Ray started another and redid its batch
    same_store(ray, local)

    # A local run stopped after two chunks; Ray finishes it (either engine resumes the other's partial store).
    with pytest.raises(cv.ConceptvecError, match="example 12 is damaged"):
        cv.extract(tiny_cnn(), data=Tensors(fail_at=12), out=tmp_path / "resumed", **options)
    assert len(list((tmp_path / "resumed.partial" / "chunks").glob("*.json"))) == 2
    resumed = cv.extract(tiny_cnn(), data=Tensors(), out=tmp_path / "resumed", engine="ray", **{**options, "progress": True})
    assert "10 of 30 examples already done" in " ".join(capsys.readouterr().err.split())
    same_store(resumed, local)


@pytest.mark.ray
@pytest.mark.slow
def test_actor_error_is_the_local_message(ray_cluster, tmp_path):
    options = dict(layer="3", batch_size=4, chunk_size=5, device="cpu", progress=False)
    with pytest.raises(cv.ConceptvecError) as local:
        cv.extract(tiny_cnn(), data=Tensors(fail_at=21), out=tmp_path / "local", **options)
    with pytest.raises(cv.ConceptvecError) as ray:
        cv.extract(tiny_cnn(), data=Tensors(fail_at=21), out=tmp_path / "ray", engine="ray", **options)
    assert str(ray.value) == str(local.value) == "example 21 is damaged; remove it from the dataset."
    assert type(ray.value) is cv.ConceptvecError


def test_without_ray_installed_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is not installed
    result = CliRunner().invoke(app, ["extract", "--model", "digits", "--layer", "block3", "--data", "digits",
                                      "--out", str(tmp_path / "s"), "--engine", "ray"])
    assert result.exit_code == 2
    assert 'needs Ray, which is not installed; install it with pip install "conceptvec[ray]"' in " ".join(result.output.split())
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.partial").exists()
    with pytest.raises(cv.ConceptvecError, match="unknown engine .dask.; choose one of local, ray"):
        cv.extract("digits", layer="block3", data="digits", out=tmp_path / "s", engine="dask")
    with pytest.raises(cv.ConceptvecError, match=r"--ray-address .* applies to an engine on a Ray cluster \(--engine ray\)"):
        cv.extract("digits", layer="block3", data="digits", out=tmp_path / "s", ray_address="auto")


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("examples", ["tokens", "documents"])
def test_a_language_model_on_ray_is_the_local_store_byte_for_byte(ray_cluster, tmp_path, corpus, tiny_gpt2, examples, monkeypatch):
    from conceptvec.storage.store import StoreWriter

    options = dict(layer="transformer.h.1", data=corpus, examples=examples, chunk_size=4, batch_size=2, progress=False)
    local = cv.extract(f"hf:{tiny_gpt2}", out=tmp_path / "local", **options)
    ray = cv.extract(f"hf:{tiny_gpt2}", out=tmp_path / "ray", engine="ray", workers=2, **options)
    assert ray.metadata["engine"] == "ray" and local.metadata["engine"] == "local" and local.n_examples > 4
    same_store(ray, local)
    if examples == "tokens":
        assert (ray.path / "documents.parquet").read_bytes() == (local.path / "documents.parquet").read_bytes()
        assert ray.examples.column("document").to_pylist() == local.examples.column("document").to_pylist()
    else:
        return

    # A local run stopped after its first chunk; Ray finishes it with the same bytes.
    real = stop_after_first_chunk(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        cv.extract(f"hf:{tiny_gpt2}", out=tmp_path / "resumed", **options)
    assert [p.name for p in (tmp_path / "resumed.partial" / "chunks").glob("*.json")] == ["000000.json"]
    monkeypatch.setattr(StoreWriter, "write_chunk", real)
    resumed = cv.extract(f"hf:{tiny_gpt2}", out=tmp_path / "resumed", engine="ray", **options)
    same_store(resumed, local)


@pytest.mark.ray
@pytest.mark.slow
def test_several_layers_on_ray_write_the_single_layer_stores(ray_cluster, tmp_path, capsys):
    root = image_tree(tmp_path / "data")  # 12 images and a broken file
    options = dict(data=root, weights="none", batch_size=2, chunk_size=3, progress=False)
    singles = {name: cv.extract("torchvision:resnet18", layer=name, out=tmp_path / name, **options) for name in ("layer2", "layer1")}
    both = cv.extract("torchvision:resnet18", layer=["layer2", "layer1"], out=tmp_path / "both", engine="ray", workers=2, **options)
    assert list(both) == ["layer2", "layer1"]
    for name, single in singles.items():
        store = both[name]
        assert store.path == tmp_path / "both" / name and store.shape == (12, 128 if name == "layer2" else 64)
        same_store(store, single)
        what = ("model", "layer", "pooling", "data", "preprocessing", "chunk_size", "dtype")
        assert {k: store.metadata[k] for k in what} == {k: single.metadata[k] for k in what}
        assert store.metadata["engine"] == "ray" and store.metadata["skipped"]["sources"] == ["b/broken_1.png"]
    # each is complete for a single-layer run of its layer, on either engine
    cv.extract("torchvision:resnet18", layer="layer1", out=tmp_path / "both" / "layer1", **{**options, "progress": True})
    assert "already complete" in capsys.readouterr().err


@pytest.mark.ray
@pytest.mark.slow
def test_several_layers_on_ray_resume_a_partial_ray_run(ray_cluster, tmp_path, capsys):
    # (a local partial run finished on Ray: the language-model test below)
    options = dict(batch_size=4, chunk_size=5, device="cpu", progress=False)
    singles = {name: cv.extract(tiny_cnn(), layer=name, data=Tensors(), out=tmp_path / f"single_{name}", **options)
               for name in ("1", "3")}
    out = tmp_path / "run"
    with pytest.raises(cv.ConceptvecError, match="example 12 is damaged"):
        cv.extract(tiny_cnn(), layer=["3", "1"], data=Tensors(fail_at=12), out=out, engine="ray", **options)
    kept = {name: len(list((out / f"{name}.partial" / "chunks").glob("*.json"))) for name in ("1", "3")}
    assert kept["1"] == kept["3"] < 6  # the chunks written before the error (in Ray's order), for both layers
    capsys.readouterr()
    resumed = cv.extract(tiny_cnn(), layer=["3", "1"], data=Tensors(), out=out, engine="ray", **{**options, "progress": True})
    if kept["1"]:
        assert f"{5 * kept['1']} of 30 rows already done for every layer" in " ".join(capsys.readouterr().err.split())
    for name, single in singles.items():
        same_store(resumed[name], single)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("examples", ["tokens", "documents"])
def test_several_layers_of_a_language_model_on_ray_write_the_single_layer_stores(ray_cluster, tmp_path, corpus, tiny_gpt2, examples,
                                                                                  monkeypatch):
    from conceptvec.storage.store import StoreWriter

    layers = ["blocks.1.mlp.hook_post", "transformer.h.0.mlp.act"]  # a TransformerLens name and a module name
    options = dict(data=corpus, examples=examples, chunk_size=4, batch_size=2, progress=False)
    singles = {name: cv.extract(f"hf:{tiny_gpt2}", layer=name, out=tmp_path / name, **options) for name in layers}
    both = cv.extract(f"hf:{tiny_gpt2}", layer=layers, out=tmp_path / "both", engine="ray", workers=2, **options)
    files = ("documents.parquet",) if examples == "tokens" else ()
    for name, single in singles.items():
        assert both[name].metadata["engine"] == "ray" and single.n_examples > 4
        same_store(both[name], single)
        assert all((both[name].path / f).read_bytes() == (single.path / f).read_bytes() for f in files)
        assert both[name].metadata["layer"] == single.metadata["layer"]
    if examples == "tokens":
        return

    # A local run stopped after writing its first chunk to the first layer's store only; Ray finishes both.
    real = stop_after_first_chunk(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        cv.extract(f"hf:{tiny_gpt2}", layer=layers, out=tmp_path / "resumed", **options)
    kept = {name: len(list((tmp_path / "resumed" / f"{name}.partial" / "chunks").glob("*.json"))) for name in layers}
    assert kept == {layers[0]: 1, layers[1]: 0}
    monkeypatch.setattr(StoreWriter, "write_chunk", real)
    resumed = cv.extract(f"hf:{tiny_gpt2}", layer=layers, out=tmp_path / "resumed", engine="ray", **options)
    for name, single in singles.items():
        same_store(resumed[name], single)
