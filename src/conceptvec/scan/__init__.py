"""The layer scan: the paper's method over every neuron of a layer (or SVD / file directions).

``layer`` (scan_layer), ``result`` (ScanResult and its files), ``directions`` (neurons, svd:K,
files), ``engine`` (where steps 2-4 run: ``LocalEngine``; others plug in through ``ENGINES``),
``resume`` (``<out>.partial``).
"""

from .layer import scan_layer
from .result import ScanResult

__all__ = ["ScanResult", "scan_layer"]
