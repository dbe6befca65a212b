"""The command line, ``conceptvec ...``: a thin typer layer over the Python API."""

from .app import app

__all__ = ["app"]
