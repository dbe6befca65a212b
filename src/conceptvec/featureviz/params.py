"""Options of feature visualisation (:class:`FeatureVizParams`), declared once; imports no torch."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.options import at_least, boolean, check_fields, documented, one_of, option, positive_number, whole_number

OBJECTIVES = {
    "projection": "the layer's spatially averaged activation projected on the unit direction",
    "cosine": "cosine of the direction with the activation at each position, averaged over positions (Lucent's `direction`)",
}

TRANSFORMS = {
    "standard": "Lucent's standard transforms: pad 12, jitter 8, scale 0.9-1.1, rotate -10..10 degrees, jitter 4 (pixels at size 224)",
    "none": "no random transforms (the image is optimised as it is)",
}


@documented
@dataclass(frozen=True)
class FeatureVizParams:
    """How the images were optimised; written beside them. Each field is declared once (``core.options.option``):
    ``cv.feature_visualisation`` takes the same keywords and ``conceptvec featureviz`` the same options."""

    steps: int = option(512, "Adam steps (paper, via Lucent: 512).", check=lambda name, value: whole_number(
        name, value, 1, 100_000, why="the paper's 512 converge; 10**9 would run for days with no result"))
    size: int = option(224, "Image side in pixels.", check=lambda name, value: whole_number(
        name, value, 8, 4096, why="a batch of images of 100000 pixels a side needs hundreds of GiB"))
    seed: int = option(0, "Random seed of the first image (image i: seed + i), recorded with the images.", check=at_least(0))
    lr: float = option(0.05, "Adam's learning rate (Lucent: 0.05).", check=positive_number)
    objective: str = option("projection", "What is maximised along a direction: projection or cosine (see OBJECTIVES).",
                            check=one_of(tuple(OBJECTIVES)))
    transforms: str = option("standard", "Random transforms of every step: standard (Lucent's) or none.",
                             check=one_of(tuple(TRANSFORMS)))
    decorrelate: bool = option(True, "Optimise RGB in Lucid's decorrelated colour basis.", check=boolean)
    fft_sd: float = option(0.01, "Standard deviation of the initial Fourier coefficients (Lucent: 0.01).", check=positive_number)
    decay_power: float = option(1.0, "Frequencies scaled by 1 / f ** decay_power (Lucent: 1).", check=positive_number)
    batch: bool = option(True, "Optimise all images in one batch (else one after another; the same result).", check=boolean)

    def __post_init__(self) -> None:
        check_fields(self)
