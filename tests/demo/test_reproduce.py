"""`conceptvec reproduce` on a tiny ImageNet-layout tree with random Inception V3 weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.cli import app
from conceptvec.demo.reproduce import (LAYER, PAPER_HISTOGRAM, REPRODUCE_FILE, authors_inception_v3, every_nth_image,
                                       paper_transform, reproduce)

WNIDS = ("n01440764", "n01443537", "n01484850")


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """train/<wnid>/<wnid>_<k>.JPEG, 3 classes of 12 images of odd sizes, and random weights saved as a state dict."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for wnid in WNIDS:
        (root / "train" / wnid).mkdir(parents=True)
        for k in range(12):
            image = rng.integers(0, 255, (40 + k, 60, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / "train" / wnid / f"{wnid}_{k * 7}.JPEG", quality=90)
    torch.manual_seed(0)
    from torchvision.models import inception_v3

    module = inception_v3(weights=None, aux_logits=True, init_weights=False)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(root / "inception_v3_random.safetensors"))
    return root


def test_every_nth_of_the_sorted_list_and_the_authors_model(imagenet):
    files = every_nth_image(imagenet / "train", 10)
    listing = sorted(f"{w}/{f.name}" for w in WNIDS for f in (imagenet / "train" / w).iterdir())
    assert files.paths == listing[::10] and len(files.paths) == 4  # 36 images: 0, 10, 20, 30
    assert [files.classes[c] for c in files.labels] == [p.split("/")[0] for p in listing[::10]]
    model = authors_inception_v3(imagenet / "inception_v3_random.safetensors")
    assert model.transform_input is True and not model.training
    t = paper_transform()
    assert [type(s).__name__ for s in t.transforms] == ["Resize", "CenterCrop", "ToTensor", "Normalize"]
    assert t.transforms[0].size == 299 and t.transforms[1].size == (299, 299)
    assert tuple(t(Image.new("RGB", (500, 375))).shape) == (3, 299, 299)


@pytest.mark.slow
def test_reproduce_writes_the_run_and_sets_the_paper_beside_it(imagenet, tmp_path):
    weights = imagenet / "inception_v3_random.safetensors"
    params = cv.Params(top=10)
    result = reproduce(imagenet / "train", weights=weights, out=tmp_path / "run", every=3, params=params, batch_size=6,
                       device="cpu", umap=False, progress=False)
    store = result.store
    assert store.n_examples == 12 and store.n_units == 2048 and store.metadata["layer"] == LAYER
    assert store.ids.tolist() == every_nth_image(imagenet / "train", 3).paths
    # the model as `conceptvec extract --model torchvision:inception_v3 --weights FILE` loads it: transform_input on, the file by content
    from conceptvec.storage.provenance import file_digest

    model_record = store.metadata["model"]
    assert model_record["name"] == "torchvision:inception_v3" and model_record["architecture"] == {"transform_input": True}
    assert model_record["weights_sha256"] == file_digest(weights)["sha256"]
    # the same numbers as the authors' model and preprocessing run by hand
    model = authors_inception_v3(weights)
    maps = []
    model.Mixed_7b.register_forward_hook(lambda m, i, o: maps.append(o.mean(dim=(2, 3))))
    with torch.no_grad():
        model(torch.stack([paper_transform()(Image.open(imagenet / "train" / p).convert("RGB")) for p in store.ids[:3]]))
    np.testing.assert_allclose(store.activations[:3], maps[0].numpy(), rtol=1e-4, atol=1e-5)

    assert sum(result.histogram.values()) == 2048
    assert np.array_equal(result.scan.n_concepts[[35, 16, 1]], [result.concept_sets[j].n_concepts for j in (35, 16, 1)])
    record = json.loads((tmp_path / "run" / REPRODUCE_FILE).read_text())
    assert [row["what"] for row in record["findings"]] == ["neuron 35", "neuron 16", "neuron 1", "layer scan (2048 neurons)"]
    assert record["setting"]["every"] == 3 and record["setting"]["params"]["top"] == 10
    assert "491" in record["findings"][3]["paper"] and "unsorted os.listdir" in record["caveat"]
    for j in (35, 16, 1):
        assert (tmp_path / "run" / f"neuron_{j}" / "conceptset.json").exists()
    assert result.report is not None and result.report.exists()

    # The command on the same folder continues (here: everything is done) and prints the comparison.
    cmd = ["reproduce", "--imagenet", str(imagenet / "train"), "--weights", str(weights), "--out", str(tmp_path / "run"),
           "--every", "3", "--top", "10", "--device", "cpu", "--batch-size", "6", "--no-report"]
    shown = CliRunner().invoke(app, cmd)
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "3 clusters and 2 concepts" in text and "unsorted os.listdir" in text
    assert ", ".join(f"{k}: {v}" for k, v in PAPER_HISTOGRAM.items()) in text
    # another setting into the same folder is refused, as is a folder of other files
    other = CliRunner().invoke(app, [*cmd[:7], "--every", "4", *cmd[9:]])
    assert other.exit_code == 2 and "another setting (differs in every)" in " ".join(other.output.split())


def test_bad_inputs(imagenet, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    weights = str(imagenet / "inception_v3_random.safetensors")
    for args, message in (
        (["--imagenet", str(imagenet / "train"), "--weights", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "a")], "is not a file"),
        (["--imagenet", str(tmp_path / "nowhere"), "--weights", weights, "--out", str(tmp_path / "a")], "is not a folder"),
        (["--imagenet", str(imagenet / "train"), "--weights", weights, "--out", str(tmp_path / "busy")], "holds other files"),
    ):
        result = CliRunner().invoke(app, ["reproduce", *args])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine" and not (tmp_path / "a").exists()
