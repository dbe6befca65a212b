"""scikit-learn's bundled digits as a data source: the images, their example index and source strings."""

from __future__ import annotations

import numpy as np

DIGITS_PREFIX = "sklearn-digits:"


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: images (1797, 8, 8) float32 in [0, 16] and digit labels (1797,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


_DIGITS: tuple[np.ndarray, np.ndarray] | None = None


def cached_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """``load_digits_images()``, read once per process (report pages draw many digits)."""
    global _DIGITS
    if _DIGITS is None:
        _DIGITS = load_digits_images()
    return _DIGITS


def digits_examples() -> dict[str, list]:
    """The example index of the bundled digits: stable ids, digit labels, sources."""
    _, digits = load_digits_images()
    return {
        "id": [f"digits-{i:04d}" for i in range(len(digits))],
        "label": digits.tolist(),
        "label_name": [f"digit {d}" for d in digits],
        "source": [f"{DIGITS_PREFIX}{i}" for i in range(len(digits))],
    }
