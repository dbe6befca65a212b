"""The command line, ``conceptvec ...``: a thin typer layer over the Python API."""

from .app import app
from . import thresholds  # noqa: F401 - registers `conceptvec thresholds` on app
from . import causal  # noqa: F401 - registers `conceptvec causal` on app

__all__ = ["app"]
