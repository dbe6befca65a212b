"""Image parameterisation: a batch of images as ``1 / f``-scaled Fourier coefficients (Lucent's
``param.image(..., fft=True, decorrelate=True)``).

Notation: ``k`` images, ``channels`` 1 (grey) or 3 (RGB), ``size`` pixels a side. The coefficients
have shape (k, channels, size, size // 2 + 1, 2), real and imaginary parts of a real 2-D FFT; the
images, (k, channels, size, size) in [0, 1].
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

# Lucid's square root of the ImageNet colour covariance, columns normalised to a maximum norm of 1
# (these numbers are measured data, shared by Lucid and Lucent).
_COLOR_SQRT = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
_COLOR_DECORRELATION = _COLOR_SQRT / np.max(np.linalg.norm(_COLOR_SQRT, axis=0))


def _frequency_scale(size: int, decay_power: float) -> torch.Tensor:
    """1 / |f|^decay_power on the (size, size // 2 + 1) grid of a real 2-D FFT, floored at 1 / size."""
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    freqs = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / torch.clamp(freqs, min=1.0 / size) ** decay_power


class FourierImage(nn.Module):
    """A batch of images as scaled Fourier coefficients; ``forward()`` gives (k, channels, size, size) in [0, 1].

    Parameters
    ----------
    spectra : tensor of shape (k, channels, size, size // 2 + 1, 2)
        The initial coefficients (see :meth:`init`), optimised as ``self.spectra``.
    size : image side in pixels
    decorrelate : use Lucid's decorrelated colour basis (3 channels only)
    decay_power : the exponent of the ``1 / f`` frequency scaling
    """

    scale: torch.Tensor  # buffers (register_buffer below), which nn.Module's typing cannot tell from submodules
    colour: torch.Tensor

    def __init__(self, spectra: torch.Tensor, size: int, decorrelate: bool, decay_power: float):
        super().__init__()
        self.spectra = nn.Parameter(spectra)  # (k, channels, size, size // 2 + 1, 2): real and imaginary parts
        self.size = size
        self.register_buffer("scale", _frequency_scale(size, decay_power)[None, None, :, :, None])
        channels = spectra.shape[1]
        self.decorrelate = decorrelate and channels == 3
        self.register_buffer("colour", torch.from_numpy(_COLOR_DECORRELATION.T.copy()))

    @staticmethod
    def init(k: int, channels: int, size: int, sd: float, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """(k, channels, size, size // 2 + 1, 2) normal coefficients of standard deviation ``sd``, item i from ``generators[i]``."""
        shape = (channels, size, size // 2 + 1, 2)
        return torch.stack([torch.randn(shape, generator=g) * sd for g in generators])

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.scale * self.spectra)
        # Lucid's constant 4 keeps the sigmoid out of saturation at the start.
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4.0
        if self.decorrelate:
            image = torch.einsum("kchw,cd->kdhw", image, self.colour)
        return torch.sigmoid(image)
