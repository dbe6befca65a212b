"""The command line, ``conceptvec ...``: a thin typer layer over the Python API."""

from .app import app
from . import causal, reproduce, thresholds  # noqa: F401 - register `conceptvec causal`, `reproduce` and `thresholds` on app

__all__ = ["app"]
