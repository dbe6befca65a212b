"""``conceptvec.metrics``, a stable name for :mod:`conceptvec.core.metrics` (the public API of ``shared/design.md``)."""

from .core.metrics import *  # noqa: F401,F403
from .core.metrics import __all__  # noqa: F401
