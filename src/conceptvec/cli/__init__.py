"""The command line, ``conceptvec ...``: a thin typer layer over the Python API."""

from .app import app
from . import causal, reproduce, scan, thresholds  # noqa: F401 - register `conceptvec causal`, `reproduce`, `scan`, `thresholds`

__all__ = ["app"]
