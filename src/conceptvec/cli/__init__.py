"""The command line, ``conceptvec ...``: a thin typer layer over the Python API."""

from .app import app
from . import causal, dictionary, reproduce, scan, thresholds  # noqa: F401 - register `conceptvec causal`, `dictionary`, `reproduce`, `scan`, `thresholds`

__all__ = ["app"]
