"""The command line, ``conceptvec ...``: a thin typer layer over the Python API."""

from .app import app
from . import reproduce, thresholds  # noqa: F401 - register `conceptvec reproduce` and `conceptvec thresholds` on app

__all__ = ["app"]
