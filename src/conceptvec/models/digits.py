"""The embedded default: a small CNN trained on scikit-learn's bundled digits, offline.

Pairs of unrelated digits share one output class (0|5, 1|6, 2|7, 3|8, 4|9), so the network is
pushed to make units that respond to two digits: polysemantic neurons planted by construction.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from ..core.options import whole_number
from ..storage.atomic import atomic_directory, read_json, write_json
from ..storage.provenance import environment, file_digest
from ..sources.digits import load_digits_images
from ..errors import ConceptvecError

WEIGHTS_FILE = "digits_cnn.safetensors"
CONFIG_FILE = "digits_cnn.json"
INPUT_SIZE = 16
DEFAULT_LAYER = "block3"
# The trained networks shipped as package data (models/weights/<folder>/digits_cnn.*), each the model folder
# that `conceptvec demo --retrain --control` writes: seeded training gives other weights on other CPUs
# and thread counts, so a fixed copy is what makes the demo's numbers the same everywhere.
SHIPPED = {True: "digits-merged", False: "digits-control"}


def merged_class(digits: np.ndarray) -> np.ndarray:
    """The training target of each digit: 0 and 5 share class 0, 1 and 6 class 1, and so on."""
    return np.asarray(digits) % 5


def are_merged(a: int, b: int) -> bool:
    """Whether two different digits were trained as one class."""
    return a != b and a % 5 == b % 5


class DigitsCNN(nn.Module):
    """conv 1-16, conv 16-32, max-pool, conv 32-64, global average pool, linear 64-5; input (N, 1, 16, 16)."""

    def __init__(self, n_classes: int = 5):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block3 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block3(self.block2(self.block1(x))))


def preprocess_digits(images: np.ndarray) -> torch.Tensor:
    """(n, 8, 8) grey levels 0-16 to (n, 1, 16, 16) floats in [0, 1], bilinearly upsampled."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32) / 16.0).unsqueeze(1)
    return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)


PREPROCESSING = {"scale": "grey level / 16 -> [0, 1]", "resize": f"bilinear {INPUT_SIZE}x{INPUT_SIZE}", "normalise": None}


@dataclass(frozen=True)
class TrainConfig:
    """How the bundled digits CNN is trained; saved beside its weights."""

    epochs: int = 120
    batch_size: int = 64
    lr: float = 1e-3
    test_fraction: float = 0.2
    seed: int = 0
    merged: bool = True  # False trains the 10-class control network on the digits themselves

    def __post_init__(self) -> None:
        # 0 epochs would "train" nothing and the demo would report evidence from an untrained network.
        for name, low, high in (("epochs", 1, 10_000), ("batch_size", 1, None), ("seed", 0, 2**32 - 1)):
            whole_number(f"{name} (--{name.replace('_', '-')})", getattr(self, name), low, high)
        if not (self.lr > 0 and 0 < self.test_fraction < 1):
            raise ConceptvecError(f"lr must be > 0 and test_fraction in (0, 1), got {self.lr} and {self.test_fraction}.")


def train_digits_cnn(config: TrainConfig = TrainConfig(), progress: Callable[[int, int], None] | None = None) -> tuple[DigitsCNN, dict[str, Any]]:
    """Train the CNN on the merged classes with a fixed seed; returns the model and its test accuracy."""
    images, digits = load_digits_images()
    x, y = preprocess_digits(images), torch.as_tensor(merged_class(digits) if config.merged else digits)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(x))
    n_test = int(round(config.test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    torch.manual_seed(config.seed)
    model = DigitsCNN(5 if config.merged else 10)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    x_train, y_train = x[train], y[train]
    for epoch in range(config.epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        for start in range(0, len(perm), config.batch_size):
            batch = perm[start : start + config.batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            loss.backward()
            opt.step()
        if progress:
            progress(epoch + 1, config.epochs)
    model.eval()
    with torch.inference_mode():
        accuracy = float((model(x[test]).argmax(1) == y[test]).float().mean())
    key = "test_accuracy_merged_classes" if config.merged else "test_accuracy_digits"
    return model, {key: accuracy, "n_train": len(train), "n_test": n_test}


def save_digits_cnn(model: DigitsCNN, directory: str | os.PathLike[str], config: TrainConfig, results: dict[str, Any], *, overwrite: bool = False) -> Path:
    with atomic_directory(directory, overwrite=overwrite, what="model") as tmp:
        save_file(model.state_dict(), str(tmp / WEIGHTS_FILE))
        write_json(tmp / CONFIG_FILE, {
            "model": "conceptvec DigitsCNN", "merged_pairs": [[d, d + 5] for d in range(5)] if config.merged else [],
            "train": asdict(config), **results, "weights": file_digest(tmp / WEIGHTS_FILE),
            # Seeded training still differs across CPUs and thread counts: where these weights came from.
            "trained_on": {"cpu": cpu_name(), "machine": platform.machine(), "torch_threads": torch.get_num_threads()},
            "preprocessing": PREPROCESSING, **environment(),
        })
    return Path(directory)


def cpu_name() -> str:
    """The processor's model name as the OS reports it ('unknown' where it does not)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def training_results(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """What training recorded beside the weights in ``directory`` (its config, test accuracy, weights' digest)."""
    return read_json(Path(directory) / CONFIG_FILE)


def recorded_accuracy(results: dict[str, Any]) -> float:
    """The test accuracy training recorded: on the merged classes, or on the digits for the control network."""
    accuracy = results.get("test_accuracy_merged_classes", results.get("test_accuracy_digits"))
    if accuracy is None:
        raise ConceptvecError(f"the training record ({CONFIG_FILE}) has no test accuracy; train the network again.")
    return float(accuracy)


def shipped_digits_dir(*, merged: bool = True) -> Path:
    """The folder of the trained CNN shipped with conceptvec (merged classes, or the 10-class control)."""
    folder = resources.files("conceptvec.models").joinpath("weights", SHIPPED[merged])
    if not isinstance(folder, Path) or not (folder / WEIGHTS_FILE).is_file():
        raise ConceptvecError(
            f"the shipped digits CNN ({SHIPPED[merged]}) is missing from this installation of conceptvec ({folder}); "
            f"reinstall conceptvec, or train one with `conceptvec demo --retrain`."
        )
    return folder


def load_shipped_digits_cnn(*, merged: bool = True) -> tuple[DigitsCNN, Path, dict[str, Any]]:
    """The shipped trained CNN, its folder and its training record; checked against the digest recorded there."""
    folder = shipped_digits_dir(merged=merged)
    results = training_results(folder)
    if file_digest(folder / WEIGHTS_FILE) != results.get("weights"):
        raise ConceptvecError(f"the shipped weights {folder / WEIGHTS_FILE} do not match the digest recorded in "
                              f"{folder / CONFIG_FILE}; reinstall conceptvec.")
    return load_digits_cnn(folder), folder, results


def load_digits_cnn(weights: str | os.PathLike[str]) -> DigitsCNN:
    """The CNN with weights from a safetensors file (or a directory holding digits_cnn.safetensors)."""
    path = Path(weights)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.exists():
        raise ConceptvecError(f"no digits CNN weights at {path}; give a file that `conceptvec demo --retrain` wrote (DIR/model), or omit --weights to use the shipped ones.")
    from safetensors import SafetensorError

    try:
        state = load_file(str(path))
        model = DigitsCNN(n_classes=state["head.2.weight"].shape[0])
        model.load_state_dict(state)
    except (SafetensorError, OSError, KeyError, RuntimeError) as exc:  # another file, or another network's weights
        reason = " ".join(str(exc).split())[:200]
        raise ConceptvecError(f"{path} is not the digits CNN's weights ({type(exc).__name__}: {reason}); give a file that "
                              f"`conceptvec demo --retrain` wrote (DIR/model), or omit --weights to use the shipped ones.") from None
    return model.eval()


def cached_digits_cnn(directory: str | os.PathLike[str] | None = None, config: TrainConfig = TrainConfig(), progress=None) -> tuple[DigitsCNN, Path, bool]:
    """Reuse the trained CNN in ``directory`` if its training config matches, else train and save it.

    Returns the model, its directory, and whether it was reused.
    """
    directory = Path(directory) if directory is not None else default_cache() / "digits-cnn"
    cfg_file = directory / CONFIG_FILE
    if cfg_file.exists() and read_json(cfg_file).get("train") == asdict(config):
        return load_digits_cnn(directory), directory, True
    model, results = train_digits_cnn(config, progress=progress)
    save_digits_cnn(model, directory, config, results, overwrite=True)
    return model.eval(), directory, False


def default_cache() -> Path:
    return Path(os.environ.get("CONCEPTVEC_CACHE", Path.home() / ".cache" / "conceptvec"))
