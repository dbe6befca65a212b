"""Random transforms seen by the image at each step (Lucent's ``transform.standard_transforms``).

Lucent pads, jitters, scales, rotates and jitters again; here the pad is followed by one affine
warp per image that composes the four geometric transforms, so each item of a batch draws its own
transform from its own seeded generator (Lucent applies one draw to the whole batch) and the batch
keeps one size. Images are (k, channels, h, w) in [0, 1]; the result is (k, channels, h + 2 pad,
w + 2 pad).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch.nn import functional as F



_SCALES = torch.tensor([1 + (i - 5) / 50.0 for i in range(11)])
_ANGLES = torch.tensor(list(range(-10, 11)) + 5 * [0], dtype=torch.float32)  # Lucent's: a zero angle is likelier


@dataclass(frozen=True)
class TransformSizes:
    """The pad and the two jitters' ranges, in pixels."""

    pad: int
    jitter1: int
    jitter2: int

    @classmethod
    def for_size(cls, size: int) -> "TransformSizes":
        """The amounts for images of ``size`` pixels."""
        # Lucent's pixel amounts are for 224-pixel images; scale them so that a 16-pixel digit is not
        # shifted by half its width.
        r = size / 224
        return cls(pad=max(1, round(12 * r)), jitter1=max(2, round(8 * r)), jitter2=max(2, round(4 * r)))


def _draw_affine(generators: Sequence[torch.Generator], sizes: TransformSizes, padded: int) -> torch.Tensor:
    """(k, 2, 3) matrices for ``F.affine_grid``, one draw per item from its own generator."""
    thetas = []
    for g in generators:
        j1 = torch.randint(0, sizes.jitter1, (2,), generator=g).float() - (sizes.jitter1 - 1) // 2
        scale = _SCALES[torch.randint(0, len(_SCALES), (1,), generator=g)].item()
        angle = math.radians(_ANGLES[torch.randint(0, len(_ANGLES), (1,), generator=g)].item())
        j2 = torch.randint(0, sizes.jitter2, (2,), generator=g).float() - (sizes.jitter2 - 1) // 2
        # The content moves by y = R S (x + j1) + j2 about the centre; grid_sample needs the inverse
        # x = A (y - j2) - j1 with A = (R S)^-1, and offsets in units of half the image (align_corners=False).
        c, s = math.cos(angle), math.sin(angle)
        a = torch.tensor([[c, s], [-s, c]]) / scale
        b = (-(a @ j2) - j1) * 2.0 / padded
        thetas.append(torch.cat([a, b[:, None]], dim=1))
    return torch.stack(thetas)


def random_transform(images: torch.Tensor, generators: Sequence[torch.Generator] | None,
                     sizes: TransformSizes) -> torch.Tensor:
    """Pad, then warp each image by its own random draw.

    Parameters
    ----------
    images : tensor of shape (k, channels, h, w), values in [0, 1]
    generators : one per image, advanced by the draw; None returns ``images`` unchanged
    sizes : the pad and jitters (:meth:`TransformSizes.for_size`)

    Returns
    -------
    tensor of shape (k, channels, h + 2 pad, w + 2 pad), differentiable in ``images``
    """
    if generators is None:
        return images
    # Pad with grey (0.5) as Lucent does; the warp also fills with grey (warping image - 0.5 with zeros).
    x = F.pad(images, [sizes.pad] * 4, value=0.5)
    theta = _draw_affine(generators, sizes, x.shape[-1]).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5
