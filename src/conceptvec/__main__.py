"""``python -m conceptvec``: the command line, as the ``conceptvec`` script runs it."""

from .cli import app

app(prog_name="conceptvec")
