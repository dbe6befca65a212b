"""``conceptvec.humaneval``, a stable name for :mod:`conceptvec.study` (the human evaluation study)."""

from .study import *  # noqa: F401,F403
from .study import __all__  # noqa: F401
