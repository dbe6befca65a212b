"""``conceptvec.thresholds``, a stable name for :mod:`conceptvec.core.thresholds` (the public API of ``shared/design.md``)."""

from .core.thresholds import *  # noqa: F401,F403
from .core.thresholds import __all__  # noqa: F401
